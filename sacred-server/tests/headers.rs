//! Security headers on every HTTP response Sacred serves: the probes, the
//! WebSocket endpoint's refusals, a 404, the browser package's files and
//! the admin API; a host's own value wins.

mod support;

use std::net::SocketAddr;

use sacred_server::{AdminApi, ClientFiles, Hub};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECURITY: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

/// One request with extra header lines; the response's head (the socket is
/// read until the blank line, so an upgrade does not keep it waiting).
async fn head(addr: SocketAddr, request_line: &str, extra: &str) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let connection = if extra.contains("Connection:") {
            ""
        } else {
            "Connection: close\r\n"
        };
        let request = format!("{request_line}\r\nHost: {addr}\r\n{connection}{extra}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let mut byte = [0u8; 1];
        while !response.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            response.push(byte[0]);
        }
        String::from_utf8_lossy(&response).into_owned()
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("an answer in time")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn assert_secure(head: &str) {
    for (name, value) in SECURITY {
        assert_eq!(header(head, name), Some(value), "{name} in\n{head}");
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.js"), "export const hello = 1;\n").unwrap();
    std::fs::write(
        dir.path().join("demo.html"),
        "<!doctype html><script type=module>import './index.js'</script>\n",
    )
    .unwrap();
    let (router, hub) = Hub::builder().options(unlimited()).build().unwrap();
    let admin = AdminApi::new(hub.clone())
        .credential("ops", [7u8; 32].to_vec())
        .unwrap();
    let files = ClientFiles::from_dir(dir.path()).unwrap();
    let app = router.merge(admin.router()).merge(files.router());
    let server = Server::serve(app, hub).await;
    let version = env!("CARGO_PKG_VERSION");
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sacred.v1.json\r\n";
    let cases = [
        ("GET /health HTTP/1.1", String::new(), "200"),
        ("GET /ready HTTP/1.1", String::new(), "200"),
        ("GET /nothing-here HTTP/1.1", String::new(), "404"),
        ("GET /ws HTTP/1.1", String::new(), "400"),
        (
            "GET /ws HTTP/1.1",
            format!("{upgrade}Origin: https://evil.example\r\n"),
            "403",
        ),
        (
            &*format!("GET /client/v{version}/index.js HTTP/1.1"),
            String::new(),
            "200",
        ),
        (
            &*format!("GET /client/v{version}/missing.js HTTP/1.1"),
            String::new(),
            "404",
        ),
        ("GET /admin/api/connections HTTP/1.1", String::new(), "400"),
    ];
    for (line, extra, status) in &cases {
        let head = head(server.addr, line, extra).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{line}: {head}"
        );
        assert_secure(&head);
    }
    for probe in [
        "GET /health HTTP/1.1",
        "GET /ready HTTP/1.1",
        "GET /admin/api/channels HTTP/1.1",
    ] {
        let head = head(server.addr, probe, "").await;
        assert_eq!(header(&head, "cache-control"), Some("no-store"), "{probe}");
    }
    // A page beside the package runs its scripts: only framing is refused.
    let page = head(
        server.addr,
        &format!("GET /client/v{version}/demo.html HTTP/1.1"),
        "",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert_eq!(
        header(&page, "content-security-policy"),
        Some("frame-ancestors 'none'")
    );
    assert_eq!(header(&page, "x-frame-options"), Some("DENY"));
    // The upgrade itself is answered with them too.
    let head = head(server.addr, "GET /ws HTTP/1.1", upgrade).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_secure(&head);
}

#[tokio::test]
async fn a_host_s_own_header_wins() {
    use axum::http::{HeaderValue, header};
    let (router, hub) = Hub::builder().build().unwrap();
    let app = router.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    ));
    let server = Server::serve(app, hub).await;
    let head = head(server.addr, "GET /health HTTP/1.1", "").await;
    assert_eq!(header(&head, "x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
}
