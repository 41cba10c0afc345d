//! The `sacred-server` binary as an operator runs it: a real process on a
//! free port, stopped by signals, with sockets open that try to pin it.

mod support;

use std::time::{Duration, Instant};

use sacred_proto::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

/// A running `sacred-server` and the address it listens on.
struct Process {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Process {
    /// Starts the binary on a free port with `args`; returns once it listens.
    async fn start(args: &[&str]) -> Process {
        let (child, addr) = spawn_binary(args).await;
        Process { child, addr }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (at most `within`) for the process to exit; true if it exited cleanly.
    async fn exits_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the process exits in time")
            .unwrap()
            .success()
    }
}

/// Reads until the peer closes the connection; fails the test if it does not.
async fn read_until_closed(stream: &mut TcpStream) {
    let mut sink = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut sink))
        .await
        .expect("the server closes the connection in time")
        .ok();
}

#[tokio::test]
async fn sigterm_ends_the_process_after_the_drain_whatever_sockets_are_open() {
    // A long header timeout, so that only shutdown itself can end these sockets.
    let mut server = Process::start(&["--drain-secs", "1", "--header-timeout-secs", "600"]).await;
    let mut half_sent = TcpStream::connect(server.addr).await.unwrap();
    half_sent
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    let mut keep_alive = TcpStream::connect(server.addr).await.unwrap();
    keep_alive
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = [0; 64];
    let n = keep_alive.read(&mut response).await.unwrap();
    assert!(response[..n].starts_with(b"HTTP/1.1 200"));
    let (mut client, _) = Client::connect(&server.url(), Codec::Json, info("stays")).await;

    let started = Instant::now();
    server.signal("-TERM");
    assert!(matches!(client.push().await, Push::Migrate(_)));
    // While it drains it still answers: the balancer learns it is not ready.
    let ready = http_get(server.addr, "/ready").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert_eq!(
        client.closed().await,
        Some(3001),
        "closed at the end of the drain"
    );
    assert!(
        server.exits_within(Duration::from_secs(6)).await,
        "a clean exit"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "drain + a few seconds at most"
    );
    read_until_closed(&mut half_sent).await;
}

#[tokio::test]
async fn a_request_that_never_completes_its_headers_is_closed() {
    let _server = Process::start(&["--header-timeout-secs", "1"]).await;
    let mut half_sent = TcpStream::connect(_server.addr).await.unwrap();
    half_sent
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    read_until_closed(&mut half_sent).await;
    let mut silent = TcpStream::connect(_server.addr).await.unwrap();
    read_until_closed(&mut silent).await;
}

#[tokio::test]
async fn a_second_signal_exits_without_waiting_for_the_drain() {
    let mut server = Process::start(&["--drain-secs", "600"]).await;
    let (mut client, _) = Client::connect(&server.url(), Codec::Json, info("stays")).await;
    server.signal("-TERM");
    assert!(
        matches!(client.push().await, Push::Migrate(_)),
        "the drain began"
    );
    server.signal("-INT");
    assert!(server.exits_within(Duration::from_secs(5)).await);
}
