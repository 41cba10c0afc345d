//! API keys in the SQLite store, over real sockets: created keys connect
//! with their user and credential, wrong, unknown, revoked and expired ones
//! are refused with 3500, revocation and the end of a rotation's grace close
//! live connections, and only hashes are in the database.

mod support;

use std::time::Duration;

use sacred_proto::*;
use sacred_server::{
    AuthError, Authenticator, Chain, ConnectContext, Hub, NewKey, SqliteKeys, StaticKeys,
};
use support::*;

async fn try_connect(server: &Server, codec: Codec, token: &str) -> Result<Client, Option<u16>> {
    try_connect_url(&server.url(), codec, token).await
}

async fn try_connect_url(url: &str, codec: Codec, token: &str) -> Result<Client, Option<u16>> {
    let mut client = Client::open(url, codec).await;
    client
        .send(&[ClientMessage::new(
            1,
            ConnectRequest::new(Some(token.into()), info("keys")),
        )])
        .await;
    match client.try_reply(1).await {
        Some(Ok(Reply::Connect(_))) => Ok(client),
        Some(other) => panic!("not a connect reply: {other:?}"),
        None => Err(client.closed().await),
    }
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn serve(keys: &SqliteKeys, watch: Duration) -> Server {
    let chain = Chain::new().or(keys.clone()).or(StaticKeys::new([], false));
    let server = Server::start(Hub::builder().options(unlimited()).authenticator(chain)).await;
    keys.watch(&server.hub, watch);
    server
}

#[tokio::test]
async fn a_created_key_connects_with_its_user_tier_and_credential_in_both_codecs() {
    let dir = tempfile::tempdir().unwrap();
    let keys = SqliteKeys::open(dir.path().join("store.db")).unwrap();
    let created = keys
        .create(NewKey::new("ada", "ci").tier("bulk"))
        .await
        .unwrap();
    assert!(
        created
            .secret
            .starts_with(&format!("sk_{}_", created.record.id))
    );
    assert!(
        !format!("{created:?}").contains(&created.secret),
        "Debug hides it"
    );
    let identity = keys
        .authenticate(&ConnectContext::new(Some(created.secret.clone())))
        .await
        .unwrap();
    assert_eq!(identity.user.as_deref(), Some("ada"));
    assert_eq!(identity.tier.as_deref(), Some("bulk"));
    assert_eq!(
        identity.credential.as_deref(),
        Some(created.record.id.as_str())
    );
    let server = serve(&keys, Duration::from_secs(60)).await;
    for codec in [Codec::Json, Codec::MsgPack] {
        let client = try_connect(&server, codec, &created.secret).await.unwrap();
        let users: Vec<_> = server
            .hub
            .clients()
            .into_iter()
            .filter_map(|c| c.peer.user)
            .collect();
        assert!(
            users.iter().all(|u| u == "ada") && !users.is_empty(),
            "{codec:?}"
        );
        drop(client);
    }
    let record = keys.get(&created.record.id).await.unwrap().unwrap();
    assert!(record.last_used_ms.is_some(), "last_used_ms set after use");
}

#[tokio::test]
async fn wrong_unknown_revoked_and_expired_keys_are_refused_with_3500() {
    let dir = tempfile::tempdir().unwrap();
    let keys = SqliteKeys::open(dir.path().join("store.db")).unwrap();
    let good = keys.create(NewKey::new("ada", "a")).await.unwrap();
    let revoked = keys.create(NewKey::new("ada", "b")).await.unwrap();
    let expired = keys
        .create(NewKey::new("ada", "c").expires(now_ms() - 1))
        .await
        .unwrap();
    keys.revoke(&revoked.record.id).await.unwrap().unwrap();
    assert_eq!(keys.revoke("nosuchkey").await.unwrap(), None);
    let wrong = format!("sk_{}_{}", good.record.id, "0".repeat(64));
    let unknown = format!("sk_nosuchkey_{}", "0".repeat(64));
    let server = serve(&keys, Duration::from_secs(60)).await;
    for codec in [Codec::Json, Codec::MsgPack] {
        for token in [
            &wrong,
            &unknown,
            &revoked.secret,
            &expired.secret,
            &"sk_x".to_owned(),
        ] {
            let refused = try_connect(&server, codec, token).await.err();
            assert_eq!(refused, Some(Some(3500)), "{codec:?}");
        }
        assert!(try_connect(&server, codec, &good.secret).await.is_ok());
    }
    assert_eq!(
        keys.authenticate(&ConnectContext::new(None)).await,
        Err(AuthError::Unauthorized)
    );
}

#[tokio::test]
async fn revocation_closes_a_live_connection_within_the_watch_interval() {
    let dir = tempfile::tempdir().unwrap();
    let keys = SqliteKeys::open(dir.path().join("store.db")).unwrap();
    let server = serve(&keys, Duration::from_millis(50)).await;
    for codec in [Codec::Json, Codec::MsgPack] {
        let created = keys.create(NewKey::new("ada", "a")).await.unwrap();
        let other = keys.create(NewKey::new("ada", "b")).await.unwrap();
        let mut live = try_connect(&server, codec, &created.secret).await.unwrap();
        let kept = try_connect(&server, codec, &other.secret).await.unwrap();
        keys.revoke(&created.record.id).await.unwrap().unwrap();
        let code = tokio::time::timeout(Duration::from_secs(5), live.closed())
            .await
            .expect("closed within the bound");
        assert_eq!(code, Some(3500), "{codec:?}");
        // Several keys per user: the other one stays connected.
        wait_until(|| {
            let hub = server.hub.clone();
            async move { hub.clients().len() == 1 }
        })
        .await;
        assert_eq!(
            server
                .hub
                .disconnect_credential(&other.record.id, DisconnectCode::INVALID_TOKEN),
            1
        );
        drop(kept);
    }
}

#[tokio::test]
async fn a_rotated_key_works_during_its_grace_and_is_closed_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = SqliteKeys::open(dir.path().join("store.db")).unwrap();
    let old = keys.create(NewKey::new("ada", "ci")).await.unwrap();
    let server = serve(&keys, Duration::from_millis(50)).await;
    let mut live = try_connect(&server, Codec::Json, &old.secret)
        .await
        .unwrap();
    let new = keys
        .rotate(&old.record.id, Duration::from_millis(600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new.record.user, "ada");
    assert_eq!(new.record.name, "ci");
    let record = keys.get(&old.record.id).await.unwrap().unwrap();
    assert_eq!(record.replaced_by.as_deref(), Some(new.record.id.as_str()));
    // During the grace both work, in both codecs.
    for codec in [Codec::Json, Codec::MsgPack] {
        assert!(try_connect(&server, codec, &old.secret).await.is_ok());
        assert!(try_connect(&server, codec, &new.secret).await.is_ok());
    }
    let code = tokio::time::timeout(Duration::from_secs(5), live.closed())
        .await
        .expect("closed within the bound");
    assert!(matches!(code, Some(3500 | 3004)), "{code:?}");
    wait_until(|| {
        let keys = keys.clone();
        let id = old.record.id.clone();
        async move { !keys.get(&id).await.unwrap().unwrap().is_active(now_ms()) }
    })
    .await;
    for codec in [Codec::Json, Codec::MsgPack] {
        assert_eq!(
            try_connect(&server, codec, &old.secret).await.err(),
            Some(Some(3500))
        );
        assert!(try_connect(&server, codec, &new.secret).await.is_ok());
    }
    assert_eq!(keys.list(Some("ada")).await.unwrap().len(), 2);
    assert!(keys.list(Some("bob")).await.unwrap().is_empty());
}

#[tokio::test]
async fn only_hashes_of_secrets_are_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let keys = SqliteKeys::open(&path).unwrap();
    let created = keys.create(NewKey::new("ada", "a")).await.unwrap();
    let random = created.secret.rsplit('_').next().unwrap().to_owned();
    drop(keys);
    let mut bytes = std::fs::read(&path).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("store.db-wal")) {
        bytes.extend(wal);
    }
    let haystack = String::from_utf8_lossy(&bytes);
    assert!(!haystack.contains(&random), "the secret is not in the file");
    assert!(haystack.contains(&created.record.id), "the id is");
}

/// Runs `sacred-server --store sqlite:DB ARGS`; its stdout, or its stderr on failure.
async fn cli(db: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let store = format!("sqlite:{}", db.display());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sacred-server"))
        .args(["--store", &store])
        .args(args)
        .output();
    let output = tokio::time::timeout(WAIT, output)
        .await
        .expect("the command ends in time")
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

#[tokio::test]
async fn the_binarys_keys_commands_manage_keys_a_running_binary_honours() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let created: serde_json::Value = serde_json::from_str(
        &cli(
            &db,
            &[
                "keys",
                "create",
                "--user",
                "ada",
                "--name",
                "ci",
                "--tier",
                "bulk",
                "--expires-in-days",
                "1",
            ],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["key"]["user"], "ada");
    assert_eq!(created["key"]["tier"], "bulk");
    assert!(created["key"]["expires_ms"].as_u64().unwrap() > now_ms() + 86_000_000);

    let store = format!("sqlite:{}", db.display());
    let (_server, addr) = spawn_binary(["--store", &store, "--store-keys-watch-ms", "50"]).await;
    let url = format!("ws://{addr}/ws");
    let mut live = try_connect_url(&url, Codec::MsgPack, &secret)
        .await
        .unwrap();
    assert!(try_connect_url(&url, Codec::Json, &secret).await.is_ok());

    let listed = cli(&db, &["keys", "list", "--user", "ada"]).await.unwrap();
    assert_eq!(listed.lines().count(), 1);
    assert!(!listed.contains(&secret), "list never shows a secret");
    assert!(listed.contains(&id));
    assert_eq!(
        cli(&db, &["keys", "list", "--user", "bob"]).await.unwrap(),
        ""
    );

    // Revoked by another process: the running server closes the live connection.
    let revoked = cli(&db, &["keys", "revoke", &id]).await.unwrap();
    let revoked: serde_json::Value = serde_json::from_str(&revoked).unwrap();
    assert!(revoked["revoked_ms"].as_u64().is_some(), "{revoked}");
    let code = tokio::time::timeout(WAIT, live.closed())
        .await
        .expect("closed in time");
    assert_eq!(code, Some(3500));
    assert_eq!(
        try_connect_url(&url, Codec::Json, &secret).await.err(),
        Some(Some(3500))
    );

    let err = cli(&db, &["keys", "revoke", "nosuchkey"])
        .await
        .unwrap_err();
    assert!(err.contains("no key nosuchkey"), "{err}");
    let err = cli(&db, &["keys", "rotate", &id]).await.unwrap_err();
    assert!(err.contains("no active key"), "{err}");

    // Rotation from the CLI: the new key connects to the running server.
    let other: serde_json::Value = serde_json::from_str(
        &cli(&db, &["keys", "create", "--user", "ada", "--name", "b"])
            .await
            .unwrap(),
    )
    .unwrap();
    let rotated: serde_json::Value = serde_json::from_str(
        &cli(
            &db,
            &[
                "keys",
                "rotate",
                other["key"]["id"].as_str().unwrap(),
                "--grace-secs",
                "60",
            ],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(try_connect_url(&url, Codec::Json, new_secret).await.is_ok());
    assert!(
        try_connect_url(&url, Codec::Json, other["secret"].as_str().unwrap())
            .await
            .is_ok()
    );

    // The key changes and the refused connect, in the store's audit trail,
    // read by another process while the server runs.
    let changes = cli(&db, &["audit", "--user", "ada"]).await.unwrap();
    let kinds: Vec<String> = changes
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        ["key_rotated", "key_created", "key_revoked", "key_created"],
        "newest first"
    );
    assert!(
        !changes.contains(&secret) && !changes.contains(new_secret),
        "never a secret"
    );
    wait_until(|| {
        let db = db.clone();
        async move {
            cli(&db, &["audit", "--kind", "auth_failure"])
                .await
                .unwrap()
                .lines()
                .count()
                == 1
        }
    })
    .await;
    assert_eq!(
        cli(&db, &["audit", "--limit", "1"])
            .await
            .unwrap()
            .lines()
            .count(),
        1
    );
    let err = cli(&db, &["audit", "--kind", "nope"]).await.unwrap_err();
    assert!(err.contains("no audit event kind"), "{err}");

    // Without a store: a clear error.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sacred-server"))
        .args(["keys", "list"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--store sqlite:PATH"));
}

#[tokio::test]
async fn key_changes_and_refusals_are_in_the_stores_audit_trail_with_filters_and_retention() {
    use sacred_server::{AuditEvent, AuditKind, AuditLog, AuditQuery, SqliteAudit};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let audit = SqliteAudit::open(&path).unwrap();
    let keys = SqliteKeys::open(&path).unwrap();
    let chain = Chain::new().or(keys.clone());
    let server = Server::start(
        Hub::builder()
            .options(unlimited())
            .authenticator(chain)
            .audit_log(audit.clone()),
    )
    .await;
    keys.watch(&server.hub, Duration::from_secs(60));
    let created = keys
        .by("ops")
        .create(NewKey::new("ada", "ci"))
        .await
        .unwrap();
    keys.by("ops").revoke(&created.record.id).await.unwrap();
    keys.create(NewKey::new("bob", "b")).await.unwrap();
    for codec in [Codec::Json, Codec::MsgPack] {
        assert_eq!(
            try_connect(&server, codec, &created.secret).await.err(),
            Some(Some(3500))
        );
    }
    wait_until(|| {
        let audit = audit.clone();
        async move { audit.query(&AuditQuery::new()).await.unwrap().len() >= 5 }
    })
    .await;
    let ada = audit.query(&AuditQuery::new().user("ada")).await.unwrap();
    let kinds: Vec<_> = ada.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [AuditKind::KeyRevoked, AuditKind::KeyCreated],
        "newest first"
    );
    assert!(ada.iter().all(|e| e.actor.as_deref() == Some("ops")));
    let failures = audit
        .query(&AuditQuery::new().kind(AuditKind::AuthFailure))
        .await
        .unwrap();
    assert_eq!(failures.len(), 2);
    assert!(
        failures
            .iter()
            .all(|e| !e.detail.contains(&created.secret) && e.address.is_some())
    );
    assert_eq!(
        audit
            .query(&AuditQuery::new().limit(1))
            .await
            .unwrap()
            .len(),
        1
    );

    // Retention: an event older than it is pruned, a recent one kept.
    let short = SqliteAudit::open_with(&path, Duration::from_secs(86_400)).unwrap();
    let mut old = AuditEvent::new(AuditKind::AdminCall, "an old call");
    old.at_ms = now_ms() - 2 * 86_400_000;
    short.record(old);
    wait_until(|| {
        let short = short.clone();
        async move {
            let calls = short
                .query(&AuditQuery::new().kind(AuditKind::AdminCall))
                .await
                .unwrap();
            calls.len() == 1
        }
    })
    .await;
    assert_eq!(short.prune().await.unwrap(), 1);
    assert!(
        short
            .query(&AuditQuery::new().kind(AuditKind::AdminCall))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        short
            .query(&AuditQuery::new().user("ada"))
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn the_audit_writer_never_blocks_under_a_flood() {
    use sacred_server::{AuditEvent, AuditKind, AuditLog, SqliteAudit};
    let dir = tempfile::tempdir().unwrap();
    let audit = SqliteAudit::open(dir.path().join("store.db")).unwrap();
    let flood = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        for n in 0..50_000 {
            audit.record(AuditEvent::new(
                AuditKind::AuthFailure,
                format!("flood {n}"),
            ));
        }
        (started.elapsed(), audit)
    });
    let (took, audit) = tokio::time::timeout(WAIT, flood)
        .await
        .expect("bounded")
        .unwrap();
    assert!(took < WAIT, "{took:?}");
    // Whatever did not fit in the queue was counted, not waited for: every
    // event is either written or counted as dropped.
    wait_until(|| {
        let audit = audit.clone();
        async move {
            let written = audit
                .query(&sacred_server::AuditQuery::new().limit(100_000))
                .await
                .unwrap()
                .len();
            u64::try_from(written).unwrap() + audit.dropped() == 50_000
        }
    })
    .await;
}
