//! The hub serving the browser package: files under /client/vVERSION/ with
//! their content type, a year of caching, an ETag and 304 for a fresh copy.

use std::time::Duration;

use sacred_server::{ClientFiles, Hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

/// One HTTP/1.1 request over a fresh connection; the whole response as text.
async fn request(addr: std::net::SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{head}\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("a response in time")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test]
async fn the_package_is_served_with_cache_headers_and_an_etag() {
    let dir = std::env::temp_dir().join(format!("sacred-client-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.js"), "export const hello = 1;\n").unwrap();
    std::fs::write(dir.join("sacred_client_wasm_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let files = ClientFiles::from_dir(&dir).unwrap();
    let path = files.path();
    assert_eq!(path, format!("/client/v{}/", env!("CARGO_PKG_VERSION")));
    assert_eq!(files.names(), ["index.js", "sacred_client_wasm_bg.wasm"]);

    let (router, _hub) = Hub::builder().build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router.merge(files.router())).await });

    let js = request(addr, &format!("GET {path}index.js HTTP/1.1")).await;
    assert!(js.starts_with("HTTP/1.1 200"), "{js}");
    assert_eq!(
        header(&js, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        header(&js, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(
        header(&js, "access-control-allow-origin"),
        Some("*"),
        "a page on another origin may import it"
    );
    assert_eq!(header(&js, "x-content-type-options"), Some("nosniff"));
    assert!(js.ends_with("export const hello = 1;\n"));
    let etag = header(&js, "etag").expect("an etag").to_owned();

    let wasm = request(
        addr,
        &format!("GET {path}sacred_client_wasm_bg.wasm HTTP/1.1"),
    )
    .await;
    assert_eq!(header(&wasm, "content-type"), Some("application/wasm"));
    assert_ne!(
        header(&wasm, "etag"),
        Some(etag.as_str()),
        "one tag per content"
    );

    let fresh = request(
        addr,
        &format!("GET {path}index.js HTTP/1.1\r\nIf-None-Match: {etag}"),
    )
    .await;
    assert!(fresh.starts_with("HTTP/1.1 304"), "{fresh}");
    assert!(!fresh.contains("hello"), "no body with a 304");

    let stale = request(
        addr,
        &format!("GET {path}index.js HTTP/1.1\r\nIf-None-Match: \"other\""),
    )
    .await;
    assert!(stale.starts_with("HTTP/1.1 200"), "{stale}");

    for missing in [
        format!("{path}nope.js"),
        "/client/v0.0.0/index.js".into(),
        format!("{path}../Cargo.toml"),
    ] {
        let response = request(addr, &format!("GET {missing} HTTP/1.1")).await;
        assert!(
            response.starts_with("HTTP/1.1 404"),
            "{missing}: {response}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_or_missing_directory_is_an_error() {
    assert!(ClientFiles::from_dir("/nonexistent/sacred").is_err());
    let dir = std::env::temp_dir().join(format!("sacred-client-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = ClientFiles::from_dir(&dir).unwrap_err();
    assert!(err.to_string().contains("holds no files"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
