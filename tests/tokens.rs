//! A token provider: asked before every connect and before the token expires,
//! so a connection with short-lived tokens is never closed for expiry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use sacred_client::{Client, ClientEvent};
use sacred_proto::DisconnectCode;
use sacred_server::{AuthError, Authenticator, ConnectContext, Hub, Identity};
use sacred_tests::{Server, WAIT};
use tokio::sync::watch;

/// Accepts tokens "t<n>" for user "ada", each valid for 400 ms.
struct ShortLived;

impl Authenticator for ShortLived {
    fn authenticate<'a>(
        &'a self,
        request: &'a ConnectContext,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        let token = request.token.as_deref();
        let result = match token {
            Some(token) if token.starts_with('t') => {
                let mut identity = Identity::user("ada");
                let expires = SystemTime::now() + Duration::from_millis(400);
                identity.expires =
                    Some(expires.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64);
                Ok(identity)
            }
            _ => Err(AuthError::InvalidToken),
        };
        Box::pin(std::future::ready(result))
    }
}

#[tokio::test]
async fn short_lived_tokens_are_refreshed_and_fetched_again_on_reconnect() {
    let server = Server::start(
        Hub::builder().authenticator(ShortLived),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await;
    let fetched = Arc::new(AtomicU32::new(0));
    let (count, mut counted) = watch::channel(0u32);
    let provider = {
        let fetched = Arc::clone(&fetched);
        move || {
            let n = fetched.fetch_add(1, Ordering::AcqRel) + 1;
            count.send_replace(n);
            async move { Ok::<_, std::convert::Infallible>(format!("t{n}")) }
        }
    };
    let builder = Client::builder(format!("ws://{}/ws", server.addr))
        .token_provider(provider)
        .reconnect(Duration::from_millis(20), Duration::from_millis(100));
    let client = tokio::time::timeout(WAIT, builder.connect())
        .await
        .unwrap()
        .unwrap();
    let mut events = client.events();

    // Four fetches: the connect and three refreshes, each before a 400 ms expiry.
    let refreshed = tokio::time::timeout(WAIT, counted.wait_for(|n| *n >= 4))
        .await
        .is_ok();
    assert!(refreshed, "the provider is asked before each expiry");
    while let Some(event) = events.try_recv() {
        assert!(
            !matches!(event, ClientEvent::Disconnected { .. }),
            "never closed for expiry: {event:?}"
        );
    }

    // A reconnect asks again.
    let me = {
        let subscription = client.subscribe("x").await.unwrap();
        let id = server.hub.presence("x").await[0].id.clone();
        assert!(subscription.channel() == "x");
        id
    };
    let before = fetched.load(Ordering::Acquire);
    server.hub.disconnect(&me, DisconnectCode::FORCE_RECONNECT);
    loop {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        if matches!(event, ClientEvent::Connected { .. }) {
            break;
        }
    }
    assert!(
        fetched.load(Ordering::Acquire) > before,
        "a fresh token for the new connection"
    );
}
