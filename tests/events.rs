//! Every state change and failure is observable: events from before the
//! first connect, a failed attempt's cause, a disconnect's code and reason,
//! the client's id, and a bounded first connect.

use std::error::Error as _;
use std::time::Duration;

use sacred_client::{Client, ClientEvent, Events};
use sacred_proto::{Codec, DisconnectCode};
use sacred_server::Hub;
use sacred_tests::{Server, any_port, quick, within};

/// The next event that is not `Connecting`.
async fn next_event(events: &mut Events) -> ClientEvent {
    loop {
        match within("an event", events.recv())
            .await
            .expect("the client lives")
        {
            ClientEvent::Connecting => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn events_from_before_the_first_connect_announce_the_connection_and_its_id() {
    let server = Server::start(Hub::builder(), any_port()).await;
    let client = quick(&server.url(), Codec::Json).build().unwrap();
    assert_eq!(client.id(), None);
    let mut events = client.events();
    within("connect", client.connect()).await.unwrap();
    assert!(matches!(
        within("connecting", events.recv()).await,
        Some(ClientEvent::Connecting)
    ));
    let ClientEvent::Connected { client: id } = next_event(&mut events).await else {
        panic!("expected connected")
    };
    assert_eq!(client.id().as_deref(), Some(id.as_str()));
    let _subscription = within("subscribe", client.subscribe("x")).await.unwrap();
    assert_eq!(
        server.hub.presence("x").await[0].id,
        id,
        "the server's id for it"
    );

    // A disconnect carries the server's code and reason; the id changes.
    assert!(server.hub.disconnect(&id, DisconnectCode::FORCE_RECONNECT));
    let ClientEvent::Disconnected {
        code,
        reason,
        reconnect,
    } = next_event(&mut events).await
    else {
        panic!("expected disconnected")
    };
    assert_eq!(
        (code, reason.as_str(), reconnect),
        (3006, "force reconnect", true)
    );
    let ClientEvent::Connected { client: again } = next_event(&mut events).await else {
        panic!("expected connected again")
    };
    assert_ne!(again, id);
}

#[tokio::test]
async fn a_failed_attempt_surfaces_with_its_cause_and_a_bounded_connect_times_out() {
    // Nothing listens on this port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", dead.local_addr().unwrap());
    drop(dead);
    let client = quick(&url, Codec::Json)
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut events = client.events();
    let err = within("connect", client.connect()).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let cause = err.source().expect("the last attempt's error");
    assert!(cause.to_string().contains("cannot open"), "{cause}");
    let ClientEvent::Error(error) = next_event(&mut events).await else {
        panic!("expected the attempt's error")
    };
    assert!(error.is_transport() && error.is_temporary(), "{error}");
    assert!(error.source().is_some(), "the I/O error is kept");
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Disconnected {
            code: 1006,
            reconnect: true,
            ..
        }
    ));
    client.close().await;
}

#[tokio::test]
async fn a_wrong_path_reports_the_http_status() {
    let server = Server::start(Hub::builder(), any_port()).await;
    let url = format!("ws://{}/nowhere", server.addr);
    let client = quick(&url, Codec::Json).build().unwrap();
    let mut events = client.events();
    let connecting = client.clone();
    tokio::spawn(async move { connecting.connect().await });
    let ClientEvent::Error(error) = next_event(&mut events).await else {
        panic!("expected the attempt's error")
    };
    assert!(error.to_string().contains("404"), "{error}");
    client.close().await;
}

#[tokio::test]
async fn a_refused_token_fails_connect_with_the_servers_code_and_reason() {
    let server = Server::start(
        Hub::builder()
            .allow_anonymous(false)
            .api_key(sacred_server::ApiKey::from_plain("sk_good", "ada")),
        any_port(),
    )
    .await;
    let client = quick(&server.url(), Codec::MsgPack)
        .token("sk_bad")
        .build()
        .unwrap();
    let mut events = client.events();
    let err = within("connect", client.connect()).await.unwrap_err();
    assert!(err.is_refused() && err.code() == Some(3500), "{err}");
    assert_eq!(err.server_message(), Some("invalid token"));
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Disconnected {
            code: 3500,
            reconnect: false,
            ..
        }
    ));
    // And the builder's shortcut closes the client it could not connect.
    let err = within(
        "connect",
        Client::builder(server.url()).token("sk_bad").connect(),
    )
    .await
    .unwrap_err();
    assert!(err.is_refused(), "{err}");
}

#[test]
fn invalid_settings_are_refused_by_the_builder() {
    let long = "n".repeat(65);
    let err = Client::builder("ws://127.0.0.1:1/ws")
        .name(long)
        .build()
        .unwrap_err();
    assert!(err.is_builder() && err.to_string().contains("64"), "{err}");
    let err = Client::builder("http://127.0.0.1:1/ws")
        .build()
        .unwrap_err();
    assert!(err.is_builder(), "{err}");
    // Outside a tokio runtime there is nothing to run the connection on.
    let err = Client::builder("ws://127.0.0.1:1/ws").build().unwrap_err();
    assert!(err.to_string().contains("runtime"), "{err}");
}
