//! JWT at connect and refresh, over real sockets and both codecs: each
//! algorithm, each bad claim, the leeway, the optional claims, expiry and
//! refresh, JWKS rotation against a local HTTP server, and the binary.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use sacred_proto::*;
use sacred_server::{Hub, Jwt};
use serde_json::json;
use support::*;

const SECRET: &[u8] = b"a test secret that is 32 bytes or longer";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for `sub` valid for an hour, with `extra` merged in.
fn claims(sub: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut claims = json!({ "sub": sub, "exp": now() + 3600 });
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    claims
}

fn hs256(claims: &serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

fn rs256(claims: &serde_json::Value, key: &str, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(&fixture(key)).unwrap(),
    )
    .unwrap()
}

fn es256(claims: &serde_json::Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(&fixture("ec.key.pem")).unwrap(),
    )
    .unwrap()
}

/// A hub on `jwt` without the lockout, which the failures here would trip.
async fn start(jwt: Jwt) -> Server {
    let mut options = unlimited();
    options.lockout_failures = 0;
    Server::start(Hub::builder().options(options).authenticator(jwt)).await
}

/// Connects with `token`: the reply, or the close code.
async fn connect(
    server: &Server,
    codec: Codec,
    token: &str,
) -> Result<(Client, ConnectReply), Option<u16>> {
    let mut client = Client::open(&server.url(), codec).await;
    client
        .send(&[ClientMessage::new(
            1,
            ConnectRequest::new(Some(token.to_owned()), info("jwt-client")),
        )])
        .await;
    match client.try_reply(1).await {
        Some(Ok(Reply::Connect(reply))) => Ok((client, reply)),
        Some(other) => panic!("not a connect reply: {other:?}"),
        None => Err(client.closed().await),
    }
}

#[tokio::test]
async fn each_algorithm_is_accepted_with_its_key_and_sub_is_the_user() {
    let servers = [
        (
            start(Jwt::hs256(SECRET).unwrap()).await,
            hs256(&claims("ada", json!({}))),
        ),
        (
            start(Jwt::rs256_pem(&fixture("rsa1.pub.pem")).unwrap()).await,
            rs256(&claims("ada", json!({})), "rsa1.key.pem", None),
        ),
        (
            start(Jwt::es256_pem(&fixture("ec.pub.pem")).unwrap()).await,
            es256(&claims("ada", json!({})), None),
        ),
    ];
    for (server, token) in &servers {
        for codec in [Codec::Json, Codec::MsgPack] {
            let (client, reply) = connect(server, codec, token).await.expect("accepted");
            assert!(
                reply.expires.is_some_and(|at| at > now() * 1000),
                "exp becomes the expiry"
            );
            let clients = server.hub.clients();
            let me = clients.iter().find(|c| c.peer.id == reply.client).unwrap();
            assert_eq!(me.peer.user.as_deref(), Some("ada"));
            drop(client);
        }
        assert_eq!(
            connect(server, Codec::Json, "not-a-jwt").await.err(),
            Some(Some(3500))
        );
    }
}

#[tokio::test]
async fn each_bad_claim_signature_or_shape_is_refused_with_3500() {
    let jwt = Jwt::rs256_pem(&fixture("rsa1.pub.pem"))
        .unwrap()
        .issuer("https://auth.example")
        .audience("sacred");
    let server = start(jwt).await;
    let good = json!({ "iss": "https://auth.example", "aud": "sacred" });
    let token = |extra: serde_json::Value| {
        let mut all = good.clone();
        all.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        rs256(&claims("ada", all), "rsa1.key.pem", None)
    };
    assert!(
        connect(&server, Codec::Json, &token(json!({})))
            .await
            .is_ok(),
        "the good one passes"
    );
    let none_alg = {
        use base64::Engine;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.",
            b64(json!({ "alg": "none", "typ": "JWT" })),
            b64(claims("ada", good.clone()))
        )
    };
    let hs256_with_the_public_key = {
        let header = Header::new(Algorithm::HS256);
        encode(
            &header,
            &claims("ada", good.clone()),
            &EncodingKey::from_secret(&fixture("rsa1.pub.pem")).unwrap(),
        )
        .unwrap()
    };
    let mut no_sub = claims("ada", good.clone());
    no_sub.as_object_mut().unwrap().remove("sub");
    let mut no_exp = claims("ada", good.clone());
    no_exp.as_object_mut().unwrap().remove("exp");
    let cases = [
        (
            "expired past the leeway",
            token(json!({ "exp": now() - 120 })),
        ),
        (
            "not valid before a minute from now",
            token(json!({ "nbf": now() + 120 })),
        ),
        (
            "another issuer",
            token(json!({ "iss": "https://evil.example" })),
        ),
        ("another audience", token(json!({ "aud": "other" }))),
        (
            "no audience",
            rs256(
                &claims("ada", json!({ "iss": "https://auth.example" })),
                "rsa1.key.pem",
                None,
            ),
        ),
        (
            "signed by another key",
            rs256(&claims("ada", good.clone()), "rsa2.key.pem", None),
        ),
        ("alg none", none_alg),
        (
            "HS256 keyed with the RSA public key",
            hs256_with_the_public_key,
        ),
        ("no sub", rs256(&no_sub, "rsa1.key.pem", None)),
        ("no exp", rs256(&no_exp, "rsa1.key.pem", None)),
        (
            "channels not a list",
            token(json!({ "channels": "chat:*" })),
        ),
        ("info not an object", token(json!({ "info": 5 }))),
        ("tier not a string", token(json!({ "tier": 1 }))),
        ("sub not a string", token(json!({ "sub": 7 }))),
        (
            "malformed",
            "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln".to_owned(),
        ),
        ("garbage in three parts", "a.b.c".to_owned()),
    ];
    for (n, (case, token)) in cases.iter().enumerate() {
        let codec = if n % 2 == 0 {
            Codec::Json
        } else {
            Codec::MsgPack
        };
        let mut client = Client::open(&server.url(), codec).await;
        client
            .send(&[ClientMessage::new(
                1,
                ConnectRequest::new(Some(token.clone()), info("x")),
            )])
            .await;
        assert_eq!(client.closed().await, Some(3500), "{case}");
        let disconnect = client.disconnect.expect("a disconnect push first");
        assert_eq!(
            disconnect.reason, "invalid token",
            "{case}: the client hears nothing more"
        );
    }
}

#[tokio::test]
async fn the_leeway_forgives_a_little_clock_drift_and_no_more() {
    let expired_a_bit = hs256(&claims("ada", json!({ "exp": now() - 10 })));
    let lenient = start(Jwt::hs256(SECRET).unwrap()).await;
    assert!(
        connect(&lenient, Codec::Json, &expired_a_bit).await.is_ok(),
        "30 s by default"
    );
    let strict = start(Jwt::hs256(SECRET).unwrap().leeway(Duration::ZERO)).await;
    assert_eq!(
        connect(&strict, Codec::Json, &expired_a_bit).await.err(),
        Some(Some(3500))
    );
}

#[tokio::test]
async fn optional_claims_set_channels_info_tier_data_and_the_credential() {
    let mut options = unlimited();
    options.lockout_failures = 0;
    options
        .namespaces
        .insert("chat".into(), sacred_server::NamespaceOptions::default());
    let server = Server::start(
        Hub::builder()
            .options(options)
            .authenticator(Jwt::hs256(SECRET).unwrap()),
    )
    .await;
    let token = hs256(&claims(
        "ada",
        json!({
            "channels": ["chat:*"],
            "info": { "name": "Ada (verified)", "kind": "app" },
            "tier": "admin",
            "data": { "plan": "pro" },
            "jti": "token-7",
        }),
    ));
    for codec in [Codec::Json, Codec::MsgPack] {
        let (mut client, reply) = connect(&server, codec, &token).await.unwrap();
        assert_eq!(
            serde_json::to_value(&reply.data).unwrap(),
            json!({ "plan": "pro" })
        );
        subscribe_reply(client.request(SubscribeRequest::new("chat:lobby")).await);
        assert_eq!(
            error_code(client.request(SubscribeRequest::new("news")).await),
            103
        );
        let clients = server.hub.clients();
        let me = clients.iter().find(|c| c.peer.id == reply.client).unwrap();
        assert_eq!(me.peer.info.name, "Ada (verified)");
        assert_eq!(me.peer.info.kind, "app");
        assert_eq!(
            me.peer.info.runtime, "rust",
            "what the token leaves out is the client's"
        );
        assert_eq!(
            server
                .hub
                .disconnect_credential("token-7", DisconnectCode::INVALID_TOKEN),
            1
        );
        assert_eq!(client.closed().await, Some(3500));
    }
}

/// The token's `exp` closes the connection with 3004; a refresh with a new
/// token before then keeps it open past the first one's expiry.
#[tokio::test]
async fn expiry_closes_with_3004_unless_refreshed() {
    let server = start(Jwt::hs256(SECRET).unwrap().leeway(Duration::ZERO)).await;
    let exp = now() + 2;
    let short = hs256(&claims("ada", json!({ "exp": exp })));
    for codec in [Codec::Json, Codec::MsgPack] {
        let (mut lapsing, _) = connect(&server, codec, &short).await.unwrap();
        assert_eq!(lapsing.closed().await, Some(3004), "{codec:?}");
    }
    let exp = now() + 2;
    let (mut refreshed, _) = connect(
        &server,
        Codec::MsgPack,
        &hs256(&claims("ada", json!({ "exp": exp }))),
    )
    .await
    .unwrap();
    let reply = refreshed
        .request(RefreshRequest::new(hs256(&claims("ada", json!({})))))
        .await;
    assert!(matches!(reply, Ok(Reply::Refresh(_))), "{reply:?}");
    let other_user = refreshed
        .request(RefreshRequest::new(hs256(&claims("bob", json!({})))))
        .await;
    assert_eq!(error_code(other_user), 101);
    let bad = refreshed.request(RefreshRequest::new("a.b.c")).await;
    assert_eq!(error_code(bad), 101);
    // The first token's expiry is the thing under test: wait it out.
    tokio::time::sleep(Duration::from_millis((exp + 1 - now()) * 1000 + 200)).await;
    let alive = refreshed.request(PresenceRequest::new("lobby")).await;
    assert!(
        alive.is_ok(),
        "still connected past the first expiry: {alive:?}"
    );
}

#[test]
fn an_hs256_secret_under_32_bytes_is_refused() {
    let err = Jwt::hs256(b"only thirty-one bytes long here").unwrap_err();
    assert_eq!(
        err.to_string(),
        "the HS256 secret must be at least 32 bytes; it has 31"
    );
    assert!(Jwt::hs256(&[7; 32]).is_ok());
    assert!(Jwt::rs256_pem(b"not a pem").is_err());
    assert!(
        Jwt::es256_pem(&fixture("rsa1.pub.pem")).is_err(),
        "an RSA key is not an EC one"
    );
}

/// A JWKS served by a local HTTP server, which counts its fetches.
struct JwksServer {
    url: String,
    keys: Arc<RwLock<serde_json::Value>>,
    fetches: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

fn jwk(private_pem: &str, alg: Algorithm, kid: &str) -> Jwk {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&fixture(private_pem)).unwrap(),
        _ => EncodingKey::from_rsa_pem(&fixture(private_pem)).unwrap(),
    };
    let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

impl JwksServer {
    async fn start(keys: Vec<Jwk>) -> JwksServer {
        let keys = Arc::new(RwLock::new(serde_json::to_value(JwkSet { keys }).unwrap()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (Arc::clone(&keys), Arc::clone(&fetches));
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let body = served.read().unwrap().clone();
                async move { axum::Json(body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        JwksServer {
            url,
            keys,
            fetches,
            _task: task,
        }
    }

    fn serve(&self, keys: Vec<Jwk>) {
        *self.keys.write().unwrap() = serde_json::to_value(JwkSet { keys }).unwrap();
    }
}

#[tokio::test]
async fn jwks_keys_are_fetched_by_kid_and_a_rotation_is_picked_up() {
    let jwks = JwksServer::start(vec![
        jwk("rsa1.key.pem", Algorithm::RS256, "k1"),
        jwk("ec.key.pem", Algorithm::ES256, "e1"),
    ])
    .await;
    let jwt = Jwt::jwks(jwks.url.clone())
        .await
        .unwrap()
        .jwks_refetch(Duration::from_millis(50));
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "fetched at start");
    let server = start(jwt).await;
    let ada = claims("ada", json!({}));
    assert!(
        connect(
            &server,
            Codec::Json,
            &rs256(&ada, "rsa1.key.pem", Some("k1"))
        )
        .await
        .is_ok()
    );
    assert!(
        connect(&server, Codec::MsgPack, &es256(&ada, Some("e1")))
            .await
            .is_ok()
    );
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "known kids are served from the cache"
    );
    assert_eq!(
        connect(&server, Codec::Json, &rs256(&ada, "rsa1.key.pem", None))
            .await
            .err(),
        Some(Some(3500)),
        "no kid"
    );
    assert_eq!(
        connect(
            &server,
            Codec::Json,
            &rs256(&ada, "rsa1.key.pem", Some("e1"))
        )
        .await
        .err(),
        Some(Some(3500)),
        "the kid of another algorithm"
    );

    // The provider rotates: k1 retired, k2 served.
    jwks.serve(vec![jwk("rsa2.key.pem", Algorithm::RS256, "k2")]);
    let rotated = rs256(&ada, "rsa2.key.pem", Some("k2"));
    wait_until(|| {
        let (server, rotated) = (&server, &rotated);
        async move { connect(server, Codec::Json, rotated).await.is_ok() }
    })
    .await;
    assert!(
        jwks.fetches.load(Ordering::SeqCst) >= 2,
        "fetched again for the unknown kid"
    );
    assert!(connect(&server, Codec::MsgPack, &rotated).await.is_ok());
    let unknown = rs256(&ada, "rsa1.key.pem", Some("k9"));
    assert_eq!(
        connect(&server, Codec::Json, &unknown).await.err(),
        Some(Some(3500)),
        "a kid nobody serves"
    );
}

/// A flood of made-up kids fetches the set once per interval at most.
#[tokio::test]
async fn made_up_kids_do_not_flood_the_identity_provider() {
    let jwks = JwksServer::start(vec![jwk("rsa1.key.pem", Algorithm::RS256, "k1")]).await;
    let server = start(Jwt::jwks(jwks.url.clone()).await.unwrap()).await;
    for n in 0..30 {
        let token = rs256(
            &claims("ada", json!({})),
            "rsa1.key.pem",
            Some(&format!("made-up-{n}")),
        );
        assert_eq!(
            connect(&server, Codec::Json, &token).await.err(),
            Some(Some(3500))
        );
    }
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "within 10 s of the last fetch, none"
    );
}

#[tokio::test]
async fn an_unreachable_jwks_fails_the_start() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    drop(listener);
    let err = Jwt::jwks(url.clone()).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot fetch the JWKS from {url}")),
        "{err}"
    );
    assert!(Jwt::jwks("ftp://example.com/keys").await.is_err());
}

/// The binary with a JWT secret file and a static API key: both
/// credentials work (a chain), a short secret stops the start.
#[tokio::test]
async fn the_binary_takes_jwts_and_api_keys_and_refuses_a_short_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt-secret");
    std::fs::write(&secret, [SECRET, b"\n"].concat()).unwrap();
    let key_hash = "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3"; // sha256("123")
    let (_child, addr) = spawn_binary([
        "--jwt-hs256-secret-file",
        secret.to_str().unwrap(),
        "--jwt-issuer",
        "https://auth.example",
        "--api-key",
        &format!("svc:{key_hash}"),
        "--allow-anonymous",
        "false",
    ])
    .await;
    let url = format!("ws://{addr}/ws");
    let token = hs256(&claims("ada", json!({ "iss": "https://auth.example" })));
    for credential in [token.as_str(), "123"] {
        let mut client = Client::open(&url, Codec::Json).await;
        let reply = client
            .connect_with(ConnectRequest::new(Some(credential.into()), info("c")))
            .await;
        assert!(reply.is_ok(), "{reply:?}");
    }
    let mut anonymous = Client::open(&url, Codec::Json).await;
    anonymous
        .send(&[ClientMessage::new(
            1,
            ConnectRequest::new(None, info("anon")),
        )])
        .await;
    assert_eq!(anonymous.closed().await, Some(3507));

    std::fs::write(&secret, b"short").unwrap();
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sacred-server"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--jwt-hs256-secret-file",
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
}
