//! TLS in the binary, with certificates made at test time: a wss:// round
//! trip in both codecs, https:// probes with their headers, a reload on
//! SIGHUP that new handshakes see while old connections go on, a bad
//! replacement that keeps the old certificate, a client that never
//! handshakes, and a key that does not match its certificate.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use sacred_proto::*;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A CA and a `localhost` certificate it signed, as PEM files in `dir`.
fn make_certificate(dir: &Path, name: &str) -> CertificateDer<'static> {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    ca_cert.der().clone()
}

/// Puts `name`'s files in place of the served ones.
fn serve_files(dir: &Path, name: &str) {
    for ext in ["crt", "key"] {
        std::fs::copy(
            dir.join(format!("{name}.{ext}")),
            dir.join(format!("served.{ext}")),
        )
        .unwrap();
    }
}

fn connector(ca: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn handshake(addr: SocketAddr, ca: &CertificateDer<'static>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(WAIT, connector(ca).connect(name, tcp))
        .await
        .expect("a handshake in time")
}

/// A Sacred client over wss:// (tokio-tungstenite on the TLS stream).
struct Wss {
    ws: tokio_tungstenite::WebSocketStream<Tls>,
    codec: Codec,
    /// Messages of a batch frame not read yet.
    queued: std::collections::VecDeque<ServerMessage>,
}

impl Wss {
    async fn open(addr: SocketAddr, ca: &CertificateDer<'static>, codec: Codec) -> Wss {
        let stream = handshake(addr, ca)
            .await
            .expect("the certificate is trusted");
        let mut request = format!("wss://localhost:{}/ws", addr.port())
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            codec.subprotocol().parse().unwrap(),
        );
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
            .await
            .unwrap()
            .unwrap();
        let mut client = Wss {
            ws,
            codec,
            queued: Default::default(),
        };
        match client
            .call(1, ConnectRequest::new(None, info("tls")).into())
            .await
        {
            ServerMessage::Reply {
                result: Ok(Reply::Connect(_)),
                ..
            } => client,
            other => panic!("not a connect reply: {other:?}"),
        }
    }

    async fn send(&mut self, id: u32, command: Command) {
        let bytes = self.codec.encode(&ClientMessage { id, command }).unwrap();
        let frame = match self.codec {
            Codec::Json => Message::text(String::from_utf8(bytes).unwrap()),
            Codec::MsgPack => Message::binary(bytes),
        };
        self.ws.send(frame).await.unwrap();
    }

    async fn next(&mut self) -> ServerMessage {
        while self.queued.is_empty() {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .unwrap()
                .unwrap();
            let bytes = match frame {
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Binary(bytes) => bytes.to_vec(),
                _ => continue,
            };
            let batch = self
                .codec
                .decode::<ServerMessage>(&bytes, &Limits::default())
                .unwrap();
            // Heartbeats come when they come; the test reads past them.
            self.queued.extend(batch.into_iter().filter(|message| {
                !matches!(message, ServerMessage::Push(push) if format!("{push:?}").starts_with("Ping"))
            }));
        }
        self.queued.pop_front().expect("a message")
    }

    /// Sends a command; its reply (publications meanwhile are passed over).
    async fn call(&mut self, id: u32, command: Command) -> ServerMessage {
        self.send(id, command).await;
        loop {
            match self.next().await {
                ServerMessage::Push(_) => continue,
                reply => return reply,
            }
        }
    }
}

/// The binary with TLS, its log lines kept for the test to read.
async fn start(
    dir: &Path,
    extra: &[&str],
) -> (
    tokio::process::Child,
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sacred-server"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--connections-per-minute",
            "0",
        ])
        .arg("--tls-cert")
        .arg(dir.join("served.crt"))
        .arg("--tls-key")
        .arg(dir.join("served.key"))
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let log: serde_json::Value = serde_json::from_str(&line).unwrap();
            if let Some(address) = log["fields"]["address"].as_str() {
                assert!(
                    log["fields"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("wss://"),
                    "{line}"
                );
                return address.parse().unwrap();
            }
        }
        panic!("the binary exited before listening");
    })
    .await
    .unwrap();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    (child, addr, rx)
}

/// Waits for a log line containing `text`.
async fn logged(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, text: &str) {
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.recv().await {
            if line.contains(text) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {text:?}"));
}

fn hangup(child: &tokio::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn wss_in_both_codecs_https_probes_and_a_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let first = make_certificate(dir.path(), "first");
    let second = make_certificate(dir.path(), "second");
    serve_files(dir.path(), "first");
    let (child, addr, mut log) = start(dir.path(), &[]).await;

    let mut held = Vec::new();
    for codec in [Codec::Json, Codec::MsgPack] {
        let mut client = Wss::open(addr, &first, codec).await;
        let reply = client.call(2, SubscribeRequest::new("news").into()).await;
        assert!(
            matches!(reply, ServerMessage::Reply { result: Ok(_), .. }),
            "{reply:?}"
        );
        client
            .send(
                3,
                PublishRequest::new("news", Value::from("over TLS")).into(),
            )
            .await;
        let mut saw = (false, false);
        while saw != (true, true) {
            match client.next().await {
                ServerMessage::Reply { id: 3, result } => {
                    result.unwrap();
                    saw.0 = true;
                }
                ServerMessage::Push(push) => {
                    let text = format!("{push:?}");
                    assert!(text.contains("over TLS"), "{text}");
                    saw.1 = true;
                }
                other => panic!("{other:?}"),
            }
        }
        held.push(client);
    }

    // https:// probes, with the security headers and HSTS.
    let mut stream = handshake(addr, &first).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .ok();
    let response = response.to_ascii_lowercase();
    assert!(response.starts_with("http/1.1 200"), "{response}");
    for header in [
        "strict-transport-security: max-age=31536000",
        "x-content-type-options: nosniff",
        "cache-control: no-store",
    ] {
        assert!(response.contains(header), "{header} in {response}");
    }

    // The second certificate, then SIGHUP: new handshakes get it.
    serve_files(dir.path(), "second");
    hangup(&child);
    logged(&mut log, "TLS certificate reloaded").await;
    assert!(
        handshake(addr, &first).await.is_err(),
        "the first CA no longer verifies"
    );
    let mut fresh = Wss::open(addr, &second, Codec::Json).await;
    assert!(matches!(
        fresh.call(2, PresenceRequest::new("news").into()).await,
        ServerMessage::Reply { result: Ok(_), .. }
    ));
    for client in &mut held {
        let reply = client.call(9, PresenceRequest::new("news").into()).await;
        assert!(
            matches!(
                reply,
                ServerMessage::Reply {
                    id: 9,
                    result: Ok(_)
                }
            ),
            "an old connection goes on: {reply:?}"
        );
    }

    // A broken replacement: logged, and the second certificate stays.
    std::fs::write(dir.path().join("served.crt"), "not a certificate").unwrap();
    hangup(&child);
    logged(&mut log, "cannot reload the TLS certificate").await;
    assert!(
        handshake(addr, &second).await.is_ok(),
        "the certificate in use stays"
    );
}

#[tokio::test]
async fn a_client_that_never_handshakes_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    make_certificate(dir.path(), "only");
    serve_files(dir.path(), "only");
    let (_child, addr, _log) = start(dir.path(), &["--header-timeout-secs", "1"]).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(WAIT, tcp.read(&mut buffer))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn a_key_that_does_not_match_or_a_missing_half_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    make_certificate(dir.path(), "a");
    make_certificate(dir.path(), "b");
    let run = |args: Vec<std::ffi::OsString>| async move {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sacred-server"))
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .output();
        tokio::time::timeout(WAIT, output)
            .await
            .expect("it stops at once")
            .unwrap()
    };
    let mismatched = run(vec![
        "--tls-cert".into(),
        dir.path().join("a.crt").into(),
        "--tls-key".into(),
        dir.path().join("b.key").into(),
    ])
    .await;
    assert_eq!(mismatched.status.code(), Some(2));
    let message = String::from_utf8(mismatched.stderr).unwrap();
    assert!(
        message.contains("does not go with the certificate"),
        "{message}"
    );
    assert!(!message.contains("PRIVATE KEY"), "never the key");
    let half = run(vec!["--tls-cert".into(), dir.path().join("a.crt").into()]).await;
    assert_eq!(half.status.code(), Some(2));
    assert!(
        String::from_utf8(half.stderr)
            .unwrap()
            .contains("both --tls-cert and --tls-key")
    );
}
