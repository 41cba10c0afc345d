//! Host hooks over the wire: the authenticator's request context, connect and
//! disconnect notifications, per-channel subscribe and publish decisions, who
//! may send to whom, and host code that fails.

mod support;

use std::time::Duration;

use futures_util::future::BoxFuture;
use sacred_proto::*;
use sacred_server::{
    AuthError, Authenticator, ChannelUse, ConnectContext, Hub, HubOptions, Identity, Refusal,
};
use support::*;
use tokio::sync::mpsc;

/// Authenticates "user:<name>" tokens from one origin, and reports every
/// request context it saw.
struct Recording(mpsc::UnboundedSender<ConnectContext>);

impl Authenticator for Recording {
    fn authenticate<'a>(
        &'a self,
        request: &'a ConnectContext,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        let _ = self.0.send(request.clone());
        let origin = request.headers.get("origin").and_then(|v| v.to_str().ok());
        let result = match (request.token.as_deref(), origin) {
            (_, Some(origin)) if origin != "https://app.example" => {
                Err(AuthError::PermissionDenied)
            }
            (Some(token), _) => match token.strip_prefix("user:") {
                Some(user) => Ok(Identity::user(user).data(Value::from(format!("hello {user}")))),
                None => Err(AuthError::InvalidToken),
            },
            (None, _) => Ok(Identity::anonymous()),
        };
        Box::pin(std::future::ready(result))
    }
}

async fn connect_as(server: &Server, user: &str) -> (Client, ConnectReply) {
    let mut client = Client::open(&server.url(), Codec::Json).await;
    let reply = client
        .connect_with(ConnectRequest::new(
            Some(format!("user:{user}")),
            info(user),
        ))
        .await
        .expect("connect accepted");
    (client, reply)
}

#[tokio::test]
async fn the_authenticator_sees_the_request_and_its_data_reaches_the_client() {
    let (seen, mut contexts) = mpsc::unbounded_channel();
    // Every origin passes admission here: the authenticator is what decides.
    let mut options = sacred_server::HubOptions::default();
    options.allowed_origins = vec!["*".into()];
    let server = Server::start(
        Hub::builder()
            .options(options)
            .authenticator(Recording(seen)),
    )
    .await;
    let mut client = Client::open_with_headers(
        &server.url(),
        Some(Codec::Json.subprotocol()),
        &[
            ("origin", "https://app.example"),
            ("cookie", "session=abc"),
            ("user-agent", "sacred-test/1"),
        ],
    )
    .await
    .unwrap();
    let mut connect = ConnectRequest::new(Some("user:ada".into()), info("ada"));
    connect.data = Value::from("locale=en");
    let reply = client.connect_with(connect).await.unwrap();
    assert_eq!(
        reply.data,
        Value::from("hello ada"),
        "Identity::data is the reply's data"
    );
    assert_eq!(
        reply.limits,
        Some(Limits::default()),
        "the server announces its limits"
    );

    let context = contexts.recv().await.unwrap();
    assert_eq!(context.token.as_deref(), Some("user:ada"));
    assert_eq!(context.client.name, "ada");
    assert_eq!(context.data, Value::from("locale=en"));
    assert_eq!(context.headers["cookie"], "session=abc");
    assert_eq!(context.headers["user-agent"], "sacred-test/1");
    assert!(context.remote_addr.unwrap().ip().is_loopback());
    assert!(!context.refresh);

    // A refresh asks again, saying so; the headers are the upgrade's, gone by now.
    let refreshed = client.request(RefreshRequest::new("user:ada")).await;
    assert!(matches!(refreshed, Ok(Reply::Refresh(_))), "{refreshed:?}");
    let context = contexts.recv().await.unwrap();
    assert!(context.refresh && context.headers.is_empty());

    // The authenticator refuses a foreign origin: closed with 3505.
    let mut foreign = Client::open_with_headers(
        &server.url(),
        Some(Codec::Json.subprotocol()),
        &[("origin", "https://evil.example")],
    )
    .await
    .unwrap();
    foreign
        .send(&[ClientMessage::new(
            1,
            ConnectRequest::new(Some("user:eve".into()), info("eve")),
        )])
        .await;
    assert_eq!(foreign.closed().await, Some(3505));
}

#[tokio::test]
async fn refresh_on_an_anonymous_connection_is_unauthorized() {
    let server = Server::start(Hub::builder()).await;
    let (mut client, _) = Client::connect(&server.url(), Codec::Json, info("anon")).await;
    let err = client
        .request(RefreshRequest::new("sk_anything"))
        .await
        .unwrap_err();
    assert_eq!(err.code, 101);
    assert!(err.message.contains("anonymous"), "{}", err.message);
}

#[tokio::test]
async fn connect_and_disconnect_are_told_with_identity_code_and_reason() {
    let (seen, mut contexts) = mpsc::unbounded_channel();
    let (events, mut told) = mpsc::unbounded_channel();
    let (connected, disconnected) = (events.clone(), events);
    let hub = Hub::builder()
        .authenticator(Recording(seen))
        .on_connect(move |ctx| {
            let connected = connected.clone();
            async move {
                let address = ctx.remote_addr.map(|a| a.ip().is_loopback());
                let _ = connected.send(format!(
                    "connect {} {:?} {address:?}",
                    ctx.client.info.name, ctx.client.user
                ));
            }
        })
        .on_disconnect(move |ctx| {
            let disconnected = disconnected.clone();
            async move {
                let _ = disconnected.send(format!(
                    "disconnect {} {} {}",
                    ctx.client.info.name, ctx.code, ctx.reason
                ));
            }
        });
    let server = Server::start(hub).await;
    let (mut ada, reply) = connect_as(&server, "ada").await;
    assert_eq!(
        told.recv().await.unwrap(),
        "connect ada Some(\"ada\") Some(true)"
    );
    ada.close_normally().await;
    assert_eq!(told.recv().await.unwrap(), "disconnect ada 1000 bye");

    let (mut bob, reply_bob) = connect_as(&server, "bob").await;
    assert_eq!(
        told.recv().await.unwrap(),
        "connect bob Some(\"bob\") Some(true)"
    );
    let kick = DisconnectCode::application(4501).unwrap();
    assert!(server.hub.disconnect(&reply_bob.client, kick));
    assert_eq!(bob.closed().await, Some(4501));
    assert_eq!(told.recv().await.unwrap(), "disconnect bob 4501 disconnect");
    assert_ne!(reply.client, reply_bob.client);
    while contexts.try_recv().is_ok() {}
}

/// `user:<id>` channels are their user's own; `shout:` refuses payloads
/// with "spam"; clients may send only to their own user's connections.
fn private_channels() -> sacred_server::HubBuilder {
    let (seen, _) = mpsc::unbounded_channel();
    Hub::builder()
        .authenticator(Recording(seen))
        .namespace("user", Default::default())
        .namespace("shout", Default::default())
        .authorize_subscribe(|ctx| async move {
            match ctx.channel.strip_prefix("user:") {
                Some(owner) if ctx.client.user.as_deref() != Some(owner) => {
                    let what = match ctx.purpose {
                        ChannelUse::Subscribe => "subscribe to",
                        ChannelUse::Presence => "see who is in",
                        ChannelUse::History => "read",
                        _ => "use",
                    };
                    Err(Refusal::permission_denied(format!(
                        "you may not {what} {owner}'s channel"
                    )))
                }
                _ => Ok(()),
            }
        })
        .authorize_publish(|ctx| async move {
            if ctx.data.as_str().is_some_and(|text| text.contains("spam")) {
                Err(Refusal::new(451, "no spam in here"))
            } else {
                Ok(())
            }
        })
        .authorize_send(|ctx| async move {
            if ctx.from.user == ctx.to.user {
                Ok(())
            } else {
                Err(Refusal::permission_denied("only to your own devices"))
            }
        })
}

#[tokio::test]
async fn private_channels_refuse_everyone_but_their_user() {
    let server = Server::start(private_channels()).await;
    let (mut ada, _) = connect_as(&server, "ada").await;
    let (mut eve, _) = connect_as(&server, "eve").await;
    subscribe_reply(ada.request(SubscribeRequest::new("user:ada")).await);

    let refused = eve
        .request(SubscribeRequest::new("user:ada"))
        .await
        .unwrap_err();
    assert_eq!(
        (refused.code, refused.message.as_str()),
        (103, "you may not subscribe to ada's channel")
    );
    let presence = eve
        .request(PresenceRequest::new("user:ada"))
        .await
        .unwrap_err();
    assert_eq!(presence.message, "you may not see who is in ada's channel");
    let history = eve
        .request(HistoryRequest::new("user:ada"))
        .await
        .unwrap_err();
    assert_eq!(history.message, "you may not read ada's channel");
    assert!(matches!(
        ada.request(PresenceRequest::new("user:ada")).await,
        Ok(Reply::Presence(_))
    ));

    // Asked as part of a connect too: the refused entry comes back as `unsubscribed`.
    let mut eve2 = Client::open(&server.url(), Codec::MsgPack).await;
    let mut connect = ConnectRequest::new(Some("user:eve".into()), info("eve"));
    connect.subs = vec![
        SubscribeRequest::new("user:ada"),
        SubscribeRequest::new("user:eve"),
    ];
    let reply = eve2.connect_with(connect).await.unwrap();
    assert_eq!(reply.subs.keys().collect::<Vec<_>>(), ["user:eve"]);
    match eve2.push().await {
        Push::Unsubscribed(gone) => {
            assert_eq!((gone.channel.as_str(), gone.code), ("user:ada", 103))
        }
        other => panic!("expected unsubscribed, got {other:?}"),
    }
}

#[tokio::test]
async fn publish_and_send_are_decided_by_the_host() {
    let server = Server::start(private_channels()).await;
    let (mut ada, _) = connect_as(&server, "ada").await;
    let (ada_phone, phone) = connect_as(&server, "ada").await;
    let (mut eve, eve_reply) = connect_as(&server, "eve").await;
    subscribe_reply(ada.request(SubscribeRequest::new("shout:all")).await);

    let spam = eve
        .request(PublishRequest::new("shout:all", text("buy spam")))
        .await;
    let spam = spam.unwrap_err();
    assert_eq!((spam.code, spam.message.as_str()), (451, "no spam in here"));
    publish_reply(
        eve.request(PublishRequest::new("shout:all", text("hi")))
            .await,
    );
    assert_eq!(
        ada.publication().await.data,
        text("hi"),
        "only the allowed one arrives"
    );
    // Host code is not asked.
    server
        .hub
        .publish("shout:all", text("spam from the host"))
        .await
        .unwrap();
    assert_eq!(ada.publication().await.data, text("spam from the host"));

    let to_eve = ada
        .request(SendRequest::new(eve_reply.client.clone(), text("psst")))
        .await;
    assert_eq!(to_eve.unwrap_err().message, "only to your own devices");
    let to_phone = ada
        .request(SendRequest::new(phone.client.clone(), text("note")))
        .await;
    assert!(matches!(to_phone, Ok(Reply::Send(_))), "{to_phone:?}");
    let to_nobody = ada.request(SendRequest::new("gone", text("?"))).await;
    assert_eq!(error_code(to_nobody), 114);
    drop((ada_phone, eve));
}

#[tokio::test]
async fn host_code_that_panics_or_hangs_refuses_without_taking_the_connection_down() {
    let mut options = HubOptions::default();
    options.rpc_timeout = Duration::from_millis(200);
    let hub = Hub::builder()
        .options(options)
        .authorize_subscribe(|ctx| async move {
            match ctx.channel.as_str() {
                "boom" => panic!("a bug in the host's hook"),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
                _ => Ok(()),
            }
        })
        .rpc("crash", |_, _| async move {
            if true {
                panic!("a bug in the host's handler");
            }
            Ok(Value::Null)
        });
    let server = Server::start(hub).await;
    let (mut client, _) = Client::connect(&server.url(), Codec::Json, info("c")).await;
    assert_eq!(
        error_code(client.request(SubscribeRequest::new("boom")).await),
        100
    );
    assert_eq!(
        error_code(client.request(SubscribeRequest::new("slow")).await),
        115
    );
    assert_eq!(
        error_code(client.request(RpcRequest::new("crash", Value::Null)).await),
        100
    );
    subscribe_reply(client.request(SubscribeRequest::new("fine")).await);
    assert_eq!(server.hub.connections(), 1, "still connected");
}
