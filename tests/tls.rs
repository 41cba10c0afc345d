//! `wss://`: the client against a hub behind TLS, with a certificate generated
//! for the test and trusted through `add_root_certificate`. TLS is terminated
//! in front of the hub, as a load balancer would.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sacred_client::Client;
use sacred_proto::Value;
use sacred_server::Hub;
use sacred_tests::{Server, WAIT};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Accepts TLS on a loopback port and forwards the plain bytes to `target`.
async fn tls_front(
    target: SocketAddr,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn wss_works_with_a_custom_root_certificate() {
    let server = Server::start(Hub::builder(), SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = generated.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let front = tls_front(server.addr, cert.clone(), key).await;

    let url = format!("wss://localhost:{}/ws", front.port());
    let connect = Client::builder(&url)
        .name("tls")
        .add_root_certificate(cert.to_vec())
        .connect();
    let client = tokio::time::timeout(WAIT, connect)
        .await
        .expect("connects in time")
        .unwrap();
    let mut subscription = client.subscribe("secure").await.unwrap();
    client.publish("secure", "over TLS").await.unwrap();
    let publication = tokio::time::timeout(WAIT, subscription.next_publication())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(publication.data, Value::from("over TLS"));
}

#[test]
fn an_invalid_root_certificate_is_refused_by_the_builder() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = runtime
        .block_on(
            Client::builder("wss://localhost:1/ws")
                .add_root_certificate(b"not a certificate".to_vec())
                .connect(),
        )
        .unwrap_err();
    assert!(err.is_builder(), "{err}");
}
