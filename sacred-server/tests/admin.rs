//! The signed admin API over real sockets: good calls, a bad signature, a
//! stale timestamp, a replayed nonce, malformed headers, the lockout of an
//! address that keeps guessing, and each call's effect on live clients.

mod support;

use std::net::SocketAddr;

use sacred_proto::*;
use sacred_server::{AdminApi, AuditKind, AuditQuery, Hub, admin};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &[u8] = b"test admin secret: 32 bytes or more";

/// An HTTP response: its status and its JSON body (`Null` if none).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: serde_json::Value,
}

/// Sends one HTTP/1.1 request with `headers`; reads the whole answer.
async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Answer {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        String::from_utf8(response).unwrap()
    };
    let response = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("the answer in time");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    let status = head[9..12].parse().unwrap();
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).unwrap()
    };
    Answer {
        status,
        headers: head.to_ascii_lowercase(),
        body,
    }
}

/// The signature headers of a request at `timestamp` with `nonce`.
fn signature(
    secret: &[u8],
    method: &str,
    target: &str,
    timestamp: u64,
    nonce: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    vec![
        (admin::CREDENTIAL_HEADER.into(), "ops".into()),
        (admin::TIMESTAMP_HEADER.into(), timestamp.to_string()),
        (admin::NONCE_HEADER.into(), nonce.into()),
        (
            admin::SIGNATURE_HEADER.into(),
            admin::sign(secret, method, target, timestamp, nonce, body),
        ),
    ]
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("test-nonce-{:08}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A correctly signed call.
async fn call(server: &Server, method: &str, target: &str, body: serde_json::Value) -> Answer {
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    let headers = signature(SECRET, method, target, now(), &nonce(), &body);
    send(server.addr, method, target, &headers, &body).await
}

async fn start(options: sacred_server::HubOptions) -> Server {
    let (router, hub) = Hub::builder().options(options).build().unwrap();
    let admin = AdminApi::new(hub.clone())
        .credential("ops", SECRET)
        .unwrap();
    Server::serve(router.merge(admin.router()), hub).await
}

#[tokio::test]
async fn signed_calls_list_kick_and_broadcast_on_both_codecs() {
    let server = start(unlimited()).await;
    let (mut json, json_reply) =
        Client::connect(&server.url(), Codec::Json, info("json-app")).await;
    let (mut pack, _) = Client::connect(&server.url(), Codec::MsgPack, info("pack-app")).await;
    for client in [&mut json, &mut pack] {
        subscribe_reply(client.request(SubscribeRequest::new("news")).await);
    }
    let listed = call(
        &server,
        "GET",
        "/admin/api/connections",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let names: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"json-app") && names.contains(&"pack-app"));
    let channels = call(
        &server,
        "GET",
        "/admin/api/channels",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(
        channels.body,
        serde_json::json!([{ "channel": "news", "subscribers": 2 }])
    );

    let sent = call(
        &server,
        "POST",
        "/admin/api/broadcast",
        serde_json::json!({ "channel": "news", "data": { "text": "maintenance at noon" } }),
    )
    .await;
    assert_eq!(sent.status, 200, "{sent:?}");
    for client in [&mut json, &mut pack] {
        let publication = client.publication().await;
        assert_eq!(publication.channel, "news");
        assert_eq!(
            serde_json::to_value(&publication.data).unwrap(),
            serde_json::json!({ "text": "maintenance at noon" })
        );
    }

    let kicked = call(
        &server,
        "POST",
        "/admin/api/disconnect",
        serde_json::json!({ "client": json_reply.client }),
    )
    .await;
    assert_eq!(kicked.body, serde_json::json!({ "disconnected": 1 }));
    assert_eq!(
        json.closed().await,
        Some(3503),
        "force disconnect: no reconnect"
    );
    let again = call(
        &server,
        "POST",
        "/admin/api/disconnect",
        serde_json::json!({ "client": json_reply.client }),
    )
    .await;
    assert_eq!(again.body, serde_json::json!({ "disconnected": 0 }));

    let events = server
        .hub
        .audit_events(&AuditQuery::new().kind(AuditKind::AdminCall))
        .await
        .unwrap();
    // Five calls, and the broadcast's own line naming its channel.
    assert_eq!(events.len(), 6, "every call is in the trail");
    assert_eq!(events[0].detail, "POST /admin/api/disconnect -> 200");
    assert!(
        events.iter().any(|e| e.detail.starts_with("broadcast to ")),
        "{events:?}"
    );
    assert!(events.iter().all(|e| e.actor.as_deref() == Some("ops")));
    let forced = server
        .hub
        .audit_events(&AuditQuery::new().kind(AuditKind::ForcedDisconnect))
        .await
        .unwrap();
    assert_eq!(forced[0].actor.as_deref(), Some("ops"));
    let trail = call(
        &server,
        "GET",
        "/admin/api/audit?kind=forced_disconnect&limit=5",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(trail.body.as_array().unwrap().len(), 1, "{trail:?}");
    assert_eq!(trail.body[0]["actor"], "ops");
}

#[tokio::test]
async fn signed_calls_read_stats_and_presence_and_announce_a_migration() {
    let server = start(unlimited()).await;
    let (mut client, reply) = Client::connect(&server.url(), Codec::Json, info("mover")).await;
    subscribe_reply(client.request(SubscribeRequest::new("news")).await);
    publish_reply(
        client
            .request(PublishRequest::new("news", text("hi")))
            .await,
    );
    client.publication().await;

    let stats = call(&server, "GET", "/admin/api/stats", serde_json::Value::Null).await;
    assert_eq!(stats.status, 200, "{stats:?}");
    assert_eq!(stats.body["connections"], 1);
    assert_eq!(stats.body["channels"], 1);
    assert_eq!(stats.body["publications"], 1);
    assert_eq!(stats.body["deliveries"], 1);
    assert!(stats.body["samples"].is_array());

    let present = call(
        &server,
        "GET",
        "/admin/api/presence?channel=news",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(present.body[0]["id"], reply.client.as_str(), "{present:?}");
    assert_eq!(present.body[0]["name"], "mover");

    let at_ms = 4_102_444_800_000u64;
    let told = call(
        &server,
        "POST",
        "/admin/api/migrate",
        serde_json::json!({ "url": "wss://green.example/ws", "at_ms": at_ms }),
    )
    .await;
    assert_eq!(told.body, serde_json::json!({ "told": 1 }), "{told:?}");
    let advice = loop {
        match client.push().await {
            Push::Migrate(advice) => break advice,
            Push::Ping(_) => continue,
            other => panic!("expected a migrate push, got {other:?}"),
        }
    };
    assert_eq!(advice.url.as_deref(), Some("wss://green.example/ws"));
    assert_eq!(advice.at, at_ms);
    // The trail says where everyone was sent, and when.
    let events = server
        .hub
        .audit_events(&AuditQuery::new().kind(AuditKind::AdminCall))
        .await
        .unwrap();
    let expected =
        format!("migrate: 1 clients told to reconnect to wss://green.example/ws by {at_ms}");
    assert!(events.iter().any(|e| e.detail == expected), "{events:?}");
}

#[tokio::test]
async fn bad_stale_replayed_and_unsigned_calls_are_refused() {
    let server = start(unlimited()).await;
    let target = "/admin/api/connections";
    let at = now();
    // No headers at all.
    let bare = send(server.addr, "GET", target, &[], b"").await;
    assert_eq!(bare.status, 400);
    assert!(
        bare.body["error"]
            .as_str()
            .unwrap()
            .contains("sign the request")
    );
    // Signed with another secret, or for another path.
    let wrong = signature(
        b"not the admin secret, but as long",
        "GET",
        target,
        at,
        &nonce(),
        b"",
    );
    assert_eq!(
        send(server.addr, "GET", target, &wrong, b"").await.status,
        401
    );
    let elsewhere = signature(SECRET, "GET", "/admin/api/channels", at, &nonce(), b"");
    assert_eq!(
        send(server.addr, "GET", target, &elsewhere, b"")
            .await
            .status,
        401
    );
    // A body changed after signing.
    let body = br#"{"channel":"news","data":1}"#;
    let signed = signature(SECRET, "POST", "/admin/api/broadcast", at, &nonce(), body);
    let tampered = send(
        server.addr,
        "POST",
        "/admin/api/broadcast",
        &signed,
        br#"{"channel":"news","data":2}"#,
    )
    .await;
    assert_eq!(tampered.status, 401);
    // Outside the window, both ways.
    for skew in [at - 301, at + 301] {
        let stale = send(
            server.addr,
            "GET",
            target,
            &signature(SECRET, "GET", target, skew, &nonce(), b""),
            b"",
        )
        .await;
        assert_eq!(stale.status, 401);
        assert!(
            stale.body["error"].as_str().unwrap().contains("window"),
            "{stale:?}"
        );
    }
    let edge = send(
        server.addr,
        "GET",
        target,
        &signature(SECRET, "GET", target, at - 290, &nonce(), b""),
        b"",
    )
    .await;
    assert_eq!(edge.status, 200, "within the window");
    // The same request twice.
    let captured = signature(SECRET, "GET", target, at, &nonce(), b"");
    assert_eq!(
        send(server.addr, "GET", target, &captured, b"")
            .await
            .status,
        200
    );
    let replay = send(server.addr, "GET", target, &captured, b"").await;
    assert_eq!(replay.status, 401);
    assert!(replay.body["error"].as_str().unwrap().contains("nonce"));
    // A malformed nonce, an unknown credential, an unknown call.
    let short = signature(SECRET, "GET", target, at, "short", b"");
    assert_eq!(
        send(server.addr, "GET", target, &short, b"").await.status,
        400
    );
    let mut stranger = signature(SECRET, "GET", target, at, &nonce(), b"");
    stranger[0].1 = "mallory".into();
    assert_eq!(
        send(server.addr, "GET", target, &stranger, b"")
            .await
            .status,
        401
    );
    let unknown = call(
        &server,
        "GET",
        "/admin/api/nothing",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(unknown.status, 404);
    // Bad bodies, signed.
    let bad = call(
        &server,
        "POST",
        "/admin/api/disconnect",
        serde_json::json!({ "client": "a", "user": "b" }),
    )
    .await;
    assert_eq!(bad.status, 400);
    let bad = call(
        &server,
        "POST",
        "/admin/api/broadcast",
        serde_json::json!({ "channel": "no spaces allowed", "data": 1 }),
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    let bad = call(
        &server,
        "GET",
        "/admin/api/audit?kind=nope",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(bad.status, 400);
    // The refusals are in the trail, without the signature.
    let refused = server
        .hub
        .audit_events(&AuditQuery::new().kind(AuditKind::AdminCall).limit(1000))
        .await
        .unwrap();
    let refusals = refused
        .iter()
        .filter(|e| e.detail.contains("refused"))
        .count();
    assert_eq!(refusals, 9, "{refused:#?}");
    assert!(
        refused
            .iter()
            .all(|e| e.actor.is_none() || e.actor.as_deref() == Some("ops"))
    );
    assert!(
        refused.iter().all(|e| !e.detail.contains(&captured[3].1)),
        "never the signature"
    );
}

/// Guessing signatures counts as failed authentication: after ten the
/// address is locked out (429 with Retry-After), even for a good signature.
#[tokio::test]
async fn an_address_guessing_signatures_is_locked_out() {
    let server = start(unlimited()).await;
    let target = "/admin/api/channels";
    for n in 0..10 {
        let guess = signature(
            b"a guess at the secret, 32 bytes long",
            "GET",
            target,
            now(),
            &nonce(),
            b"",
        );
        assert_eq!(
            send(server.addr, "GET", target, &guess, b"").await.status,
            401,
            "guess {n}"
        );
    }
    let locked = call(&server, "GET", target, serde_json::Value::Null).await;
    assert_eq!(locked.status, 429);
    assert!(
        locked.headers.contains("retry-after: 60"),
        "{}",
        locked.headers
    );
    assert_eq!(server.hub.lockouts(), 1);
}

#[tokio::test]
async fn deleting_a_user_closes_their_connections_and_forgets_their_publications() {
    let dir = tempfile::tempdir().unwrap();
    let store = sacred_server::SqliteHistory::open(
        dir.path().join("h.db"),
        sacred_server::Durability::Always,
    )
    .unwrap();
    let auth =
        sacred_server::StaticKeys::new([sacred_server::ApiKey::from_plain("sk_ada", "ada")], true);
    let (router, hub) = Hub::builder()
        .options(unlimited())
        .authenticator(auth)
        .history_store(store)
        .build()
        .unwrap();
    let admin = AdminApi::new(hub.clone())
        .credential("ops", SECRET)
        .unwrap();
    let server = Server::serve(router.merge(admin.router()), hub).await;
    let mut ada = Client::open(&server.url(), Codec::MsgPack).await;
    ada.connect_with(ConnectRequest::new(Some("sk_ada".into()), info("ada")))
        .await
        .unwrap();
    for n in 0..3 {
        publish_reply(
            ada.request(PublishRequest::new("chat", Value::from(n)))
                .await,
        );
    }
    let deleted = call(
        &server,
        "DELETE",
        "/admin/api/users/ada",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(
        deleted.body,
        serde_json::json!({ "publications": 3, "disconnected": 1 }),
        "{deleted:?}"
    );
    assert_eq!(ada.closed().await, Some(3503));
    let exported = server.hub.export_user("ada").await.unwrap();
    assert!(exported.is_empty());
    let trail = server
        .hub
        .audit_events(&AuditQuery::new().kind(AuditKind::UserDataDeleted))
        .await
        .unwrap();
    assert_eq!(trail[0].user.as_deref(), Some("ada"));
}

#[test]
fn short_secrets_and_odd_names_are_refused() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let (_, hub) = Hub::builder().build().unwrap();
    let err = AdminApi::new(hub.clone())
        .credential("ops", b"too short".to_vec())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "admin credential \"ops\": the secret must be at least 32 bytes"
    );
    assert!(AdminApi::new(hub).credential("with space", SECRET).is_err());
}

/// The binary serves the admin API when given a secret file, and the
/// operator's script (`deploy/admin/sacred-admin.py`, standard library
/// only) signs calls it accepts; a short secret stops the start.
#[tokio::test]
async fn the_binary_serves_the_admin_api_to_the_operator_script() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("admin-secret");
    std::fs::write(
        &secret,
        b"0123456789abcdef0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let (_child, addr) = spawn_binary([
        "--admin-secret-file",
        secret.to_str().unwrap(),
        "--admin-name",
        "ops",
    ])
    .await;
    let (_client, _) =
        Client::connect(&format!("ws://{addr}/ws"), Codec::Json, info("watched")).await;
    let secret_path = secret.to_str().unwrap().to_owned();
    let run = |args: &'static [&'static str]| {
        let secret_path = secret_path.clone();
        async move {
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../deploy/admin/sacred-admin.py"
            );
            let output = tokio::process::Command::new("python3")
                .arg(script)
                .args([
                    "--url",
                    &format!("http://{addr}"),
                    "--name",
                    "ops",
                    "--secret-file",
                    &secret_path,
                ])
                .args(args)
                .output();
            let output = tokio::time::timeout(WAIT, output)
                .await
                .expect("the script ends")
                .expect("python3 runs");
            (
                output.status.success(),
                String::from_utf8(output.stdout).unwrap(),
                String::from_utf8(output.stderr).unwrap(),
            )
        }
    };
    let (ok, out, err) = run(&["GET", "/admin/api/connections"]).await;
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["name"], "watched");
    let (ok, out, err) = run(&[
        "POST",
        "/admin/api/broadcast",
        r#"{"channel":"news","data":"hi"}"#,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("\"offset\":1"), "{out}");
    let (ok, _, err) = run(&["GET", "/admin/api/nothing"]).await;
    assert!(!ok);
    assert!(err.starts_with("404: "), "{err}");
    // Unsigned, through the binary: refused.
    let bare = send(addr, "GET", "/admin/api/connections", &[], b"").await;
    assert_eq!(bare.status, 400);

    std::fs::write(&secret, b"short").unwrap();
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sacred-server"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--admin-secret-file",
                secret.to_str().unwrap(),
            ])
            .output(),
    )
    .await
    .expect("it stops at once")
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8(output.stderr).unwrap();
    assert!(message.contains("at least 32 bytes; it has 5"), "{message}");
    assert!(!message.contains("short"), "never the secret");
}

/// Connects with `token`; the client, or the close code.
async fn connect_with_token(
    server: &Server,
    codec: Codec,
    token: &str,
) -> Result<Client, Option<u16>> {
    let mut client = Client::open(&server.url(), codec).await;
    client
        .send(&[ClientMessage::new(
            1,
            ConnectRequest::new(Some(token.into()), info("keyed")),
        )])
        .await;
    match client.try_reply(1).await {
        Some(Ok(Reply::Connect(_))) => Ok(client),
        Some(other) => panic!("not a connect reply: {other:?}"),
        None => Err(client.closed().await),
    }
}

#[tokio::test]
async fn signed_calls_create_list_rotate_and_revoke_store_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys = sacred_server::SqliteKeys::open(dir.path().join("store.db")).unwrap();
    let (router, hub) = Hub::builder()
        .options(unlimited())
        .authenticator(keys.clone())
        .build()
        .unwrap();
    let api = AdminApi::new(hub.clone())
        .credential("ops", SECRET)
        .unwrap()
        .keys(keys.clone());
    let server = Server::serve(router.merge(api.router()), hub).await;
    keys.attach(&server.hub);

    let created = call(
        &server,
        "POST",
        "/admin/api/keys",
        serde_json::json!({ "user": "ada", "name": "ci", "tier": "bulk" }),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let id = created.body["key"]["id"].as_str().unwrap().to_owned();
    let mut live = connect_with_token(&server, Codec::Json, &secret)
        .await
        .unwrap();
    let mut packed = connect_with_token(&server, Codec::MsgPack, &secret)
        .await
        .unwrap();

    let listed = call(
        &server,
        "GET",
        "/admin/api/keys?user=ada",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert!(
        !listed.body.to_string().contains(&secret),
        "never the secret"
    );

    let bad = call(
        &server,
        "POST",
        "/admin/api/keys",
        serde_json::json!({ "user": "ada" }),
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    let long = call(
        &server,
        "POST",
        &format!("/admin/api/keys/{id}/rotate"),
        serde_json::json!({ "grace_secs": 10_000_000 }),
    )
    .await;
    assert_eq!(long.status, 400, "{long:?}");
    let rotated = call(
        &server,
        "POST",
        &format!("/admin/api/keys/{id}/rotate"),
        serde_json::json!({ "grace_secs": 60 }),
    )
    .await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let new_secret = rotated.body["secret"].as_str().unwrap();
    assert!(
        connect_with_token(&server, Codec::Json, new_secret)
            .await
            .is_ok()
    );

    // Revoked: its live connections close at once, in both codecs.
    let revoked = call(
        &server,
        "DELETE",
        &format!("/admin/api/keys/{id}"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(revoked.body["disconnected"], 2);
    assert_eq!(live.closed().await, Some(3500));
    assert_eq!(packed.closed().await, Some(3500));
    assert_eq!(
        connect_with_token(&server, Codec::Json, &secret)
            .await
            .err(),
        Some(Some(3500))
    );
    let missing = call(
        &server,
        "DELETE",
        "/admin/api/keys/nosuchkey",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(missing.status, 404);

    let kinds: Vec<AuditKind> = server
        .hub
        .audit_events(&AuditQuery::new().user("ada"))
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.actor.as_deref() == Some("ops"))
        .map(|event| event.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            AuditKind::KeyRevoked,
            AuditKind::KeyRotated,
            AuditKind::KeyCreated
        ]
    );
    let failures = server
        .hub
        .audit_events(&AuditQuery::new().kind(AuditKind::AuthFailure))
        .await
        .unwrap();
    assert!(!failures.is_empty(), "the refused connect");
    assert!(failures.iter().all(|event| !event.detail.contains(&secret)));
}
