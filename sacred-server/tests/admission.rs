//! Refusals before the upgrade, over real sockets: too many connections from
//! one address (429 with Retry-After, keyed on the address a trusted proxy
//! names), and a browser page of another origin (403).

mod support;

use sacred_proto::*;
use sacred_server::{Hub, HubOptions};
use support::*;
use tokio_tungstenite::tungstenite;

/// The HTTP status (and Retry-After) of a refused upgrade; `None` if it was accepted.
async fn refusal(url: &str, headers: &[(&'static str, &str)]) -> Option<(u16, Option<String>)> {
    match Client::open_with_headers(url, Some("sacred.v1.json"), headers).await {
        Ok(_) => None,
        Err(tungstenite::Error::Http(response)) => Some((
            response.status().as_u16(),
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        )),
        Err(err) => panic!("not an HTTP refusal: {err}"),
    }
}

#[tokio::test]
async fn an_address_past_its_connection_rate_gets_429_with_retry_after() {
    let mut options = HubOptions::default();
    options.connections_per_minute = 5;
    options.connection_burst = 3;
    let server = Server::start(Hub::builder().options(options)).await;
    for _ in 0..3 {
        assert_eq!(refusal(&server.url(), &[]).await, None, "the burst");
    }
    let (status, retry) = refusal(&server.url(), &[]).await.expect("refused");
    assert_eq!(status, 429);
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=12).contains(&retry), "{retry} s");
    // A connection made within the burst works as any other.
    let mut options = HubOptions::default();
    options.connections_per_minute = 5;
    let other = Server::start(Hub::builder().options(options)).await;
    let (mut client, _) = Client::connect(&other.url(), Codec::Json, info("fine")).await;
    subscribe_reply(client.request(SubscribeRequest::new("room")).await);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_limit_keys_on_the_address_it_names() {
    let mut options = HubOptions::default();
    options.connections_per_minute = 1;
    options.connection_burst = 1;
    options.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let server = Server::start(Hub::builder().options(options)).await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    assert_eq!(refusal(&server.url(), &from("203.0.113.1")).await, None);
    assert_eq!(
        refusal(&server.url(), &from("203.0.113.2")).await,
        None,
        "another client"
    );
    let (status, _) = refusal(&server.url(), &from("203.0.113.1"))
        .await
        .expect("refused");
    assert_eq!(status, 429, "the first client again");
    // Without the proxy's header, the proxy itself is the client.
    assert_eq!(refusal(&server.url(), &[]).await, None);
    assert_eq!(refusal(&server.url(), &[]).await.map(|r| r.0), Some(429));
}

#[tokio::test]
async fn pages_of_another_origin_get_403_unless_allowed() {
    let server = Server::start(Hub::builder()).await;
    let host = server.addr.to_string();
    let same = format!("http://{host}");
    assert_eq!(
        refusal(&server.url(), &[("origin", &same)]).await,
        None,
        "same host"
    );
    assert_eq!(refusal(&server.url(), &[]).await, None, "not a browser");
    let evil = [("origin", "https://evil.example")];
    assert_eq!(refusal(&server.url(), &evil).await.map(|r| r.0), Some(403));
    let mut options = HubOptions::default();
    options.allowed_origins = vec!["https://evil.example".into()];
    let listed = Server::start(Hub::builder().options(options)).await;
    assert_eq!(refusal(&listed.url(), &evil).await, None, "listed");
    let other = [("origin", "https://other.example")];
    assert_eq!(refusal(&listed.url(), &other).await.map(|r| r.0), Some(403));
}
