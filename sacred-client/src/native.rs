//! The native transport: tokio-tungstenite over tokio, with rustls (the ring
//! provider chosen explicitly, webpki roots plus any extra roots) for `wss://`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::CertificateDer;
use sacred_proto::Codec;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::builder::ClientBuilder;
use crate::driver::{self, Incoming};
use crate::error::Error;

/// How long closing a socket may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Settings only the native transport has.
#[derive(Debug, Default)]
pub(crate) struct Options {
    /// Extra trusted root certificates (DER), for `wss://` to private CAs.
    root_certificates: Vec<Vec<u8>>,
}

impl ClientBuilder {
    /// Trusts an extra root certificate (DER) for `wss://`, besides the
    /// webpki roots. Native only: in the browser, the browser's trust store applies.
    pub fn add_root_certificate(mut self, der: Vec<u8>) -> Self {
        self.transport.root_certificates.push(der);
        self
    }
}

/// Starts the connection task on the current tokio runtime.
pub(crate) fn spawn(task: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        Error::builder("no tokio runtime: build the client inside one (e.g. under #[tokio::main])")
    })?;
    runtime.spawn(task);
    Ok(())
}

/// Resolves after `duration` (the first connect's timeout).
pub(crate) async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

fn send_failed(err: tokio_tungstenite::tungstenite::Error) -> Error {
    Error::transport_cause(format!("sending failed: {err}"), err)
}

/// A random seed for the reconnect jitter.
pub(crate) fn seed() -> u64 {
    rand::random()
}

/// tokio-tungstenite with rustls.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    tls: Arc<rustls::ClientConfig>,
    /// The session's clock starts here.
    start: Instant,
}

impl Transport {
    pub(crate) fn new(options: &Options) -> Result<Transport, Error> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for der in &options.root_certificates {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|err| Error::builder(format!("invalid root certificate: {err}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| Error::builder(err.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Transport {
            tls: Arc::new(tls),
            start: Instant::now(),
        })
    }
}

impl driver::Transport for Transport {
    type Socket = Socket;

    async fn open(self, url: String, codec: Codec) -> Result<Socket, Error> {
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|err| Error::transport_cause(format!("invalid URL {url}: {err}"), err))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(codec.subprotocol()),
        );
        let connector = Connector::Rustls(self.tls);
        let (socket, _) =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector))
                .await
                .map_err(|err| Error::transport_cause(format!("cannot open {url}: {err}"), err))?;
        Ok(Socket(socket))
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep_until(&self, at: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(self.start + at)
    }
}

/// A tokio-tungstenite WebSocket.
#[derive(Debug)]
pub(crate) struct Socket(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl driver::Socket for Socket {
    async fn recv(&mut self) -> Incoming {
        loop {
            return match self.0.next().await {
                Some(Ok(Message::Text(text))) => Incoming::Text(text.into()),
                Some(Ok(Message::Binary(bytes))) => Incoming::Binary(bytes),
                Some(Ok(Message::Close(close))) => {
                    Incoming::Closed(Some(close.map_or((1005, String::new()), |c| {
                        (u16::from(c.code), c.reason.to_string())
                    })))
                }
                // tungstenite answers pings itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Err(_)) | None => Incoming::Closed(None),
            };
        }
    }

    async fn send(&mut self, codec: Codec, frames: Vec<Vec<u8>>) -> Result<(), Error> {
        for bytes in frames {
            let frame = match codec {
                // The codec's JSON output is UTF-8 by construction.
                Codec::Json => Message::text(
                    String::from_utf8(bytes)
                        .map_err(|err| Error::transport_cause("a frame that is not UTF-8", err))?,
                ),
                Codec::MsgPack => Message::binary(bytes),
            };
            self.0.feed(frame).await.map_err(send_failed)?;
        }
        self.0.flush().await.map_err(send_failed)
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_GRACE, self.0.close(None)).await;
    }
}
