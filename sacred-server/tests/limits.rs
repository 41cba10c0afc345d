//! Limits on every axis, over real sockets, each hit and recovered from:
//! connections per user and per server (3504), rate tiers and the admin
//! bypass, the channels a credential allows, and the lockout of an address
//! that keeps presenting wrong tokens.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sacred_proto::*;
use sacred_server::{
    AuditKind, AuditQuery, AuthError, Authenticator, ConnectContext, Hub, HubOptions, Identity,
    NamespaceOptions, Tier,
};
use support::*;
use tokio_tungstenite::tungstenite;

/// Tokens to identities, fixed by the test.
struct Tokens(HashMap<&'static str, Identity>);

impl Authenticator for Tokens {
    fn authenticate<'a>(
        &'a self,
        request: &'a ConnectContext,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        let verdict = match request.token.as_deref() {
            None => Ok(Identity::anonymous()),
            Some(token) => self.0.get(token).cloned().ok_or(AuthError::InvalidToken),
        };
        Box::pin(std::future::ready(verdict))
    }
}

fn tokens(pairs: impl IntoIterator<Item = (&'static str, Identity)>) -> Tokens {
    Tokens(pairs.into_iter().collect())
}

async fn connect_as(server: &Server, codec: Codec, token: &str) -> Client {
    let mut client = Client::open(&server.url(), codec).await;
    client
        .send(&[ClientMessage::new(
            1,
            ConnectRequest::new(Some(token.into()), info(token)),
        )])
        .await;
    client
}

/// Connects with `token`; the connect reply, or the close code.
async fn try_connect(server: &Server, codec: Codec, token: &str) -> Result<Client, Option<u16>> {
    let mut client = connect_as(server, codec, token).await;
    match client.try_reply(1).await {
        Some(Ok(Reply::Connect(_))) => Ok(client),
        Some(other) => panic!("not a connect reply: {other:?}"),
        None => Err(client.closed().await),
    }
}

#[tokio::test]
async fn a_user_past_five_connections_is_closed_with_3504_until_one_leaves() {
    assert_eq!(
        HubOptions::default().max_connections_per_user,
        5,
        "the default"
    );
    let auth = tokens([
        ("ada", Identity::user("ada")),
        ("bob", Identity::user("bob")),
    ]);
    let server = Server::start(Hub::builder().options(unlimited()).authenticator(auth)).await;
    for codec in [Codec::Json, Codec::MsgPack] {
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(try_connect(&server, codec, "ada").await.expect("within"));
        }
        let mut sixth = connect_as(&server, codec, "ada").await;
        assert_eq!(sixth.closed().await, Some(3504), "{codec:?}");
        let disconnect = sixth.disconnect.expect("a disconnect push first");
        assert_eq!(disconnect.reason, "too many connections for this user");
        assert!(try_connect(&server, codec, "bob").await.is_ok(), "per user");
        assert_eq!(server.hub.user_connections("ada").await.unwrap(), 5);
        // One leaves: the place is free again.
        let mut leaving = held.pop().unwrap();
        leaving.close_normally().await;
        wait_until(|| async { server.hub.user_connections("ada").await.unwrap() == 4 }).await;
        held.push(try_connect(&server, codec, "ada").await.expect("freed"));
        drop(held);
        wait_until(|| async { server.hub.user_connections("ada").await.unwrap() == 0 }).await;
    }
}

#[tokio::test]
async fn a_server_at_its_connection_limit_closes_the_next_with_3504() {
    assert_eq!(HubOptions::default().max_connections, 10_000, "the default");
    let mut options = HubOptions::default();
    options.max_connections = 3;
    let server = Server::start(Hub::builder().options(options)).await;
    let mut held = Vec::new();
    for n in 0..3 {
        held.push(Client::connect(&server.url(), Codec::Json, info(&n.to_string())).await);
    }
    let mut fourth = Client::open(&server.url(), Codec::MsgPack).await;
    fourth
        .send(&[ClientMessage::new(1, ConnectRequest::default())])
        .await;
    assert_eq!(fourth.closed().await, Some(3504));
    assert_eq!(
        fourth.disconnect.unwrap().reason,
        "too many connections on this server"
    );
    held.pop().unwrap().0.close_normally().await;
    wait_until(|| async { server.hub.connections() == 2 }).await;
    Client::connect(&server.url(), Codec::Json, info("again")).await;
}

/// Sends `n` publishes in one batch; how many were accepted before the
/// first 111.
async fn accepted_of(client: &mut Client, n: u32) -> u32 {
    let first = client.next_id() + 1;
    let batch: Vec<ClientMessage> = (0..n)
        .map(|i| ClientMessage::new(first + i, PublishRequest::new("room", Value::from(i))))
        .collect();
    for _ in 0..n {
        client.next_id();
    }
    client.send(&batch).await;
    let mut accepted = 0;
    for id in first..first + n {
        match client.reply(id).await {
            Ok(_) => accepted += 1,
            Err(err) => {
                assert_eq!(err.code, 111);
                break;
            }
        }
    }
    accepted
}

#[tokio::test]
async fn tiers_raise_or_lower_the_command_rate_and_admin_has_none() {
    let mut options = HubOptions::default();
    options.messages_per_minute = 10;
    options.tiers.insert("bulk".into(), Tier::new(60, 30));
    options.tiers.insert("trial".into(), Tier::new(3, 0));
    let auth = tokens([
        ("plain", Identity::user("plain")),
        ("bulk", Identity::user("bulk").tier("bulk")),
        ("trial", Identity::user("trial").tier("trial")),
        ("ops", Identity::user("ops").tier(sacred_server::ADMIN_TIER)),
        ("odd", Identity::user("odd").tier("no-such-tier")),
    ]);
    let server = Server::start(Hub::builder().options(options).authenticator(auth)).await;
    for codec in [Codec::Json, Codec::MsgPack] {
        for (token, expected) in [
            ("plain", 10),
            ("bulk", 30),
            ("trial", 3),
            ("odd", 10),
            ("ops", 90),
        ] {
            let mut client = try_connect(&server, codec, token).await.expect("connects");
            assert_eq!(
                accepted_of(&mut client, 90).await,
                expected,
                "{codec:?} {token}"
            );
        }
    }
}

#[tokio::test]
async fn the_default_rate_refuses_a_flood_of_300_then_closes_with_3007() {
    let server = Server::start(Hub::builder()).await;
    for codec in [Codec::Json, Codec::MsgPack] {
        let (mut flooder, _) = Client::connect(&server.url(), codec, info("flood")).await;
        let first = flooder.next_id() + 1;
        for batch in 0..3u32 {
            let messages: Vec<_> = (0..100)
                .map(|i| {
                    let id = first + batch * 100 + i;
                    ClientMessage::new(id, PublishRequest::new("room", Value::from(id)))
                })
                .collect();
            flooder.send(&messages).await;
        }
        for id in first..first + 100 {
            assert!(flooder.reply(id).await.is_ok(), "{codec:?}: the first 100");
        }
        for id in first + 100..first + 110 {
            assert_eq!(error_code(flooder.reply(id).await), 111, "{codec:?}");
        }
        assert_eq!(flooder.closed().await, Some(3007), "{codec:?}");
    }
}

#[tokio::test]
async fn a_credential_s_channels_bound_what_the_connection_may_use() {
    let auth = tokens([(
        "scoped",
        Identity::user("scoped").channels(["chat:*", "news"]),
    )]);
    let server = Server::start(
        Hub::builder()
            .namespace("chat", NamespaceOptions::default())
            .namespace("news", NamespaceOptions::default())
            .authenticator(auth),
    )
    .await;
    for codec in [Codec::Json, Codec::MsgPack] {
        let mut client = try_connect(&server, codec, "scoped")
            .await
            .expect("connects");
        subscribe_reply(client.request(SubscribeRequest::new("chat:lobby")).await);
        subscribe_reply(client.request(SubscribeRequest::new("news")).await);
        assert_eq!(
            error_code(client.request(SubscribeRequest::new("newsroom")).await),
            103,
            "a name is exact"
        );
        assert_eq!(
            error_code(client.request(PresenceRequest::new("room")).await),
            103
        );
        assert_eq!(
            error_code(client.request(HistoryRequest::new("room")).await),
            103
        );
        // Publishing is the namespace's and the hooks' business.
        publish_reply(
            client
                .request(PublishRequest::new("room", Value::from(1)))
                .await,
        );
    }
    let mut connect = ConnectRequest::new(Some("scoped".into()), info("scoped"));
    connect.subs = vec![
        SubscribeRequest::new("chat:a"),
        SubscribeRequest::new("room"),
    ];
    let mut client = Client::open(&server.url(), Codec::Json).await;
    let reply = client.connect_with(connect).await.unwrap();
    assert!(reply.subs.contains_key("chat:a"));
    let Push::Unsubscribed(refused) = client.push().await else {
        panic!("the refused subscription is pushed");
    };
    assert_eq!((refused.channel.as_str(), refused.code), ("room", 103));
}

#[tokio::test]
async fn the_credential_s_info_replaces_what_the_client_said() {
    let mut vouched = ClientInfo::default();
    vouched.kind = "agent".into();
    let auth = tokens([("bot", Identity::user("bot").info(vouched))]);
    let server = Server::start(Hub::builder().authenticator(auth)).await;
    let mut client = try_connect(&server, Codec::Json, "bot").await.unwrap();
    subscribe_reply(client.request(SubscribeRequest::new("room")).await);
    let present = server.hub.presence("room").await;
    assert_eq!(present[0].info.kind, "agent");
    assert_eq!(
        present[0].info.name, "bot",
        "what the token leaves alone stays"
    );
}

/// The HTTP status and Retry-After of a refused upgrade; `None` if accepted.
async fn upgrade_refusal(server: &Server) -> Option<(u16, u64)> {
    match Client::open_with_headers(&server.url(), Some("sacred.v1.json"), &[]).await {
        Ok(_) => None,
        Err(tungstenite::Error::Http(response)) => Some((
            response.status().as_u16(),
            response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap(),
        )),
        Err(err) => panic!("not an HTTP refusal: {err}"),
    }
}

/// 40 wrong tokens in a row, then the right one: with the defaults the
/// address is locked out after 10, its upgrades get 429 until the lock
/// ends, and the right token is refused meanwhile.
#[tokio::test]
async fn forty_wrong_tokens_lock_the_address_out_and_the_right_one_waits() {
    let mut options = HubOptions::default();
    options.connections_per_minute = 0;
    let auth = tokens([("right", Identity::user("ada"))]);
    let server = Server::start(Hub::builder().options(options).authenticator(auth)).await;
    let mut closes = HashMap::new();
    for n in 0..40 {
        match upgrade_refusal(&server).await {
            Some((status, retry)) => {
                assert_eq!(status, 429, "guess {n}");
                assert!((1..=60).contains(&retry), "{retry} s");
                *closes.entry(429).or_default() += 1;
            }
            None => {
                let code = try_connect(&server, Codec::Json, "wrong")
                    .await
                    .err()
                    .flatten();
                *closes.entry(code.unwrap()).or_insert(0u32) += 1;
            }
        }
    }
    assert_eq!(closes, HashMap::from([(3500, 10), (429, 30)]));
    assert_eq!(upgrade_refusal(&server).await.map(|r| r.0), Some(429));
    assert_eq!(server.hub.lockouts(), 1);
    let failures = server
        .hub
        .audit_events(&AuditQuery::new().kind(AuditKind::AuthFailure))
        .await
        .unwrap();
    assert_eq!(failures.len(), 10, "each wrong token in the trail");
    assert_eq!(failures[0].detail, "connect: invalid token");
    assert!(
        failures.iter().all(|e| !e.detail.contains("wrong")),
        "never the token"
    );
    assert_eq!(
        failures[0].address,
        Some(std::net::Ipv4Addr::LOCALHOST.into())
    );
    let locks = server
        .hub
        .audit_events(&AuditQuery::new().kind(AuditKind::Lockout))
        .await
        .unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].detail, "locked out for 60 s");
}

/// Revoking a credential closes the connections that hold it, on both
/// codecs, and leaves the others; the host's disconnect is in the trail.
#[tokio::test]
async fn connections_holding_a_revoked_credential_are_closed() {
    let auth = tokens([
        ("old", Identity::user("ada").credential("key-1")),
        ("new", Identity::user("ada").credential("key-2")),
    ]);
    let server = Server::start(Hub::builder().options(unlimited()).authenticator(auth)).await;
    let mut old_json = try_connect(&server, Codec::Json, "old").await.unwrap();
    let mut old_pack = try_connect(&server, Codec::MsgPack, "old").await.unwrap();
    let mut new = try_connect(&server, Codec::Json, "new").await.unwrap();
    assert_eq!(server.hub.clients().len(), 3);
    let closed = server
        .hub
        .disconnect_credential("key-1", DisconnectCode::INVALID_TOKEN);
    assert_eq!(closed, 2);
    assert_eq!(old_json.closed().await, Some(3500));
    assert_eq!(old_pack.closed().await, Some(3500));
    let reply = new.request(PresenceRequest::new("lobby")).await;
    assert!(reply.is_ok(), "the other key's connection stays: {reply:?}");
    let id = server.hub.clients()[0].peer.id.clone();
    assert!(server.hub.disconnect(&id, DisconnectCode::FORCE_DISCONNECT));
    assert_eq!(
        new.closed().await,
        Some(DisconnectCode::FORCE_DISCONNECT.as_u16())
    );
    let forced = server
        .hub
        .audit_events(&AuditQuery::new().kind(AuditKind::ForcedDisconnect))
        .await
        .unwrap();
    assert_eq!(forced.len(), 1);
    assert_eq!(forced[0].actor.as_deref(), Some("host"));
    assert_eq!(forced[0].client.as_deref(), Some(id.as_str()));
    assert_eq!(forced[0].user.as_deref(), Some("ada"));
}

/// A short lockout, waited out: refused while it lasts (before the upgrade,
/// and at connect for a socket opened before it began, and at refresh),
/// served once it ends; wrong refresh tokens count too.
#[tokio::test]
async fn a_lockout_ends_and_refresh_failures_count() {
    let mut options = HubOptions::default();
    options.connections_per_minute = 0;
    options.lockout_failures = 3;
    options.lockout = Duration::from_millis(300);
    let auth = tokens([("right", Identity::user("ada"))]);
    let server = Server::start(Hub::builder().options(options).authenticator(auth)).await;
    let mut refresher = try_connect(&server, Codec::MsgPack, "right").await.unwrap();
    let early = Client::open(&server.url(), Codec::Json).await;
    for _ in 0..3 {
        let reply = refresher.request(RefreshRequest::new("wrong")).await;
        assert_eq!(error_code(reply), 101);
    }
    let locked_at = tokio::time::Instant::now();
    assert_eq!(upgrade_refusal(&server).await.map(|r| r.0), Some(429));
    let reply = refresher.request(RefreshRequest::new("right")).await;
    assert_eq!(error_code(reply), 111, "refresh refused while locked");
    let mut early = early;
    early
        .send(&[ClientMessage::new(
            1,
            ConnectRequest::new(Some("right".into()), info("early")),
        )])
        .await;
    assert_eq!(early.closed().await, Some(3007), "a socket opened before");
    // The lock is the thing under test: wait it out.
    tokio::time::sleep_until(locked_at + Duration::from_millis(300)).await;
    assert!(try_connect(&server, Codec::Json, "right").await.is_ok());
    assert!(
        refresher
            .request(RefreshRequest::new("right"))
            .await
            .is_ok()
    );
}
