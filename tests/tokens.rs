//! A token provider: asked before every connect and before the token expires,
//! so a connection with short-lived tokens is never closed for expiry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use sacred_client::{Client, ClientEvent, Unauthorized};
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

/// The next event that is not `Connecting`, within `WAIT`.
async fn next_event(events: &mut sacred_client::Events) -> ClientEvent {
    loop {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
            .expect("the stream is open");
        if !matches!(event, ClientEvent::Connecting) {
            return event;
        }
    }
}

#[tokio::test]
async fn a_provider_that_says_unauthorized_closes_the_client_instead_of_retrying() {
    let server = Server::start(
        Hub::builder().authenticator(ShortLived),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await;
    let asked = Arc::new(AtomicU32::new(0));
    let provider = {
        let asked = Arc::clone(&asked);
        move || {
            asked.fetch_add(1, Ordering::AcqRel);
            async { Err::<String, _>(Unauthorized::new("signed out")) }
        }
    };
    let client = Client::builder(format!("ws://{}/ws", server.addr))
        .token_provider(provider)
        .reconnect(Duration::from_millis(1), Duration::from_millis(2))
        .build()
        .unwrap();
    let mut events = client.events();
    let err = tokio::time::timeout(WAIT, client.connect())
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_unauthorized() && err.is_refused(), "{err:?}");
    assert_eq!(err.code(), Some(3507));

    match next_event(&mut events).await {
        ClientEvent::Error(err) => assert!(err.is_token() && err.is_unauthorized(), "{err:?}"),
        other => panic!("the provider's refusal first, not {other:?}"),
    }
    match next_event(&mut events).await {
        ClientEvent::Disconnected {
            code, reconnect, ..
        } => assert!(code == 3507 && !reconnect),
        other => panic!("a disconnect for good, not {other:?}"),
    }
    assert_eq!(client.state(), sacred_client::State::Closed);
    assert_eq!(
        asked.load(Ordering::Acquire),
        1,
        "asked once, never retried"
    );
}

#[tokio::test]
async fn unauthorized_at_a_refresh_closes_the_connection_for_good() {
    let server = Server::start(
        Hub::builder().authenticator(ShortLived),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await;
    let asked = Arc::new(AtomicU32::new(0));
    let provider = {
        let asked = Arc::clone(&asked);
        move || {
            let first = asked.fetch_add(1, Ordering::AcqRel) == 0;
            async move {
                if first {
                    Ok("t1".to_owned())
                } else {
                    Err(Unauthorized::new("revoked"))
                }
            }
        }
    };
    let client = Client::builder(format!("ws://{}/ws", server.addr))
        .token_provider(provider)
        .build()
        .unwrap();
    let mut events = client.events();
    tokio::time::timeout(WAIT, client.connect())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Connected { .. }
    ));
    // The refresh, before the 400 ms expiry, is refused by the provider.
    assert!(
        matches!(next_event(&mut events).await, ClientEvent::Error(err) if err.is_unauthorized())
    );
    match next_event(&mut events).await {
        ClientEvent::Disconnected {
            code, reconnect, ..
        } => assert!(code == 3507 && !reconnect),
        other => panic!("a disconnect for good, not {other:?}"),
    }
    let err = client.publish("x", 1).await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
}
