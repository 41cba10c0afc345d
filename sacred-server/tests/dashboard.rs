//! The admin dashboard's login and sessions over real sockets: the page and
//! its CSP, the cookie's flags, a wrong password (401, audited, counted
//! toward the lockout), a locked address refused even with the right
//! password, CSRF and Origin checks, unknown and expired sessions, logout,
//! and actions that work with a cookie and its token.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use sacred_proto::*;
use sacred_server::{AdminApi, AuditKind, AuditQuery, Hub, admin};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "correct horse battery staple";

#[derive(Debug)]
struct Answer {
    status: u16,
    /// The head, lower-cased.
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The value of the `Set-Cookie` header (lower-cased).
    fn set_cookie(&self) -> Option<&str> {
        let at = self.headers.find("set-cookie: ")?;
        self.headers[at + "set-cookie: ".len()..].lines().next()
    }
}

/// One HTTP/1.1 request; the whole answer.
async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.unwrap();
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
    Answer {
        status: head[9..12].parse().unwrap(),
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

async fn login(addr: SocketAddr, password: &str) -> Answer {
    let body = serde_json::json!({ "password": password }).to_string();
    send(
        addr,
        "POST",
        "/admin/login",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await
}

/// A logged-in session: its `Cookie` header value and its CSRF token.
async fn session(server: &Server) -> (String, String) {
    let answer = login(server.addr, PASSWORD).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let cookie = answer.set_cookie().expect("a session cookie");
    let pair = cookie.split(';').next().unwrap().trim().to_owned();
    let csrf = answer.json()["csrf"].as_str().unwrap().to_owned();
    (pair, csrf)
}

fn hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| admin::hash_password(PASSWORD))
}

async fn start_with(options: sacred_server::HubOptions, admin: fn(AdminApi) -> AdminApi) -> Server {
    let (router, hub) = Hub::builder().options(options).build().unwrap();
    let api = AdminApi::new(hub.clone())
        .password("ops", hash())
        .unwrap()
        .node("node-a");
    Server::serve(router.merge(admin(api).router()), hub).await
}

async fn start() -> Server {
    start_with(unlimited(), |api| api).await
}

#[tokio::test]
async fn the_page_is_served_under_a_strict_policy() {
    let server = start().await;
    let page = send(server.addr, "GET", "/admin/", &[], "").await;
    assert_eq!(page.status, 200);
    assert!(page.headers.contains("content-type: text/html"));
    assert!(
        page.headers.contains(
            "content-security-policy: default-src 'self'; script-src 'self'; style-src 'self'"
        ),
        "{}",
        page.headers
    );
    assert!(page.body.contains("/admin/admin.js"));
    for asset in ["/admin/admin.js", "/admin/admin.css"] {
        let answer = send(server.addr, "GET", asset, &[], "").await;
        assert_eq!(answer.status, 200, "{asset}");
    }
    let script = send(server.addr, "GET", "/admin/admin.js", &[], "").await;
    assert!(
        !script.body.contains(".innerHTML"),
        "the page renders with textContent only"
    );
    // Without a password hash there is no page, only the signed API.
    let (router, hub) = Hub::builder().build().unwrap();
    let bare = Server::serve(router.merge(AdminApi::new(hub.clone()).router()), hub).await;
    assert_eq!(send(bare.addr, "GET", "/admin/", &[], "").await.status, 404);
}

#[tokio::test]
async fn login_sets_a_strict_cookie_and_a_wrong_password_is_401() {
    let server = start().await;
    let wrong = login(server.addr, "guess").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"], "wrong password");
    assert!(wrong.set_cookie().is_none());

    let right = login(server.addr, PASSWORD).await;
    assert_eq!(right.status, 200, "{right:?}");
    let cookie = right.set_cookie().unwrap();
    let id = cookie
        .strip_prefix("sacred_admin=")
        .and_then(|rest| rest.split(';').next())
        .unwrap();
    assert_eq!(id.len(), 64, "256 random bits in hex");
    for flag in [
        "httponly",
        "samesite=strict",
        "path=/admin",
        "max-age=28800",
    ] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("secure"), "plain HTTP: not Secure");
    assert_eq!(right.json()["node"], "node-a");
    assert_eq!(right.json()["csrf"].as_str().unwrap().len(), 64);

    // A form works as well as JSON.
    let form = send(
        server.addr,
        "POST",
        "/admin/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "password=correct+horse%20battery+staple",
    )
    .await;
    assert_eq!(form.status, 200, "{form:?}");

    let sessions = server
        .hub
        .audit_events(&AuditQuery::new().kind(AuditKind::AdminSession))
        .await
        .unwrap();
    let details: Vec<&str> = sessions.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(
        details,
        ["login", "login", "login refused: wrong password"],
        "newest first"
    );
    assert_eq!(sessions[0].actor.as_deref(), Some("ops"));

    // Over TLS the cookie is Secure.
    let secure = start_with(unlimited(), |api| api.secure_cookies(true)).await;
    let answer = login(secure.addr, PASSWORD).await;
    assert!(answer.set_cookie().unwrap().ends_with("; secure"));
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_address_out_even_for_the_right_one() {
    let mut options = unlimited();
    options.lockout_failures = 3;
    let server = start_with(options, |api| api).await;
    for _ in 0..3 {
        assert_eq!(login(server.addr, "guess").await.status, 401);
    }
    let locked = login(server.addr, PASSWORD).await;
    assert_eq!(locked.status, 429, "{locked:?}");
    assert!(locked.headers.contains("retry-after: "), "{locked:?}");
    assert!(locked.set_cookie().is_none());
    assert_eq!(server.hub.lockouts(), 1);
    let lockouts = server
        .hub
        .audit_events(&AuditQuery::new().kind(AuditKind::Lockout))
        .await
        .unwrap();
    assert_eq!(lockouts.len(), 1);
}

#[tokio::test]
async fn state_changing_calls_need_the_csrf_token_and_this_origin() {
    let server = start().await;
    let (cookie, csrf) = session(&server).await;
    let body = r#"{"channel": "news", "data": {"text": "hi"}}"#;
    let json = ("Content-Type", "application/json");
    let missing = send(
        server.addr,
        "POST",
        "/admin/api/broadcast",
        &[("Cookie", &cookie), json],
        body,
    )
    .await;
    assert_eq!(missing.status, 403, "{missing:?}");
    let wrong = send(
        server.addr,
        "POST",
        "/admin/api/broadcast",
        &[
            ("Cookie", &cookie),
            (admin::CSRF_HEADER, &"0".repeat(64)),
            json,
        ],
        body,
    )
    .await;
    assert_eq!(wrong.status, 403, "{wrong:?}");
    let elsewhere = send(
        server.addr,
        "POST",
        "/admin/api/broadcast",
        &[
            ("Cookie", &cookie),
            (admin::CSRF_HEADER, &csrf),
            ("Origin", "https://evil.example"),
            json,
        ],
        body,
    )
    .await;
    assert_eq!(elsewhere.status, 403, "{elsewhere:?}");
    // Reads need no token.
    let stats = send(
        server.addr,
        "GET",
        "/admin/api/stats",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(stats.status, 200, "{stats:?}");
    assert_eq!(stats.json()["node"], "node-a");
    let origin = format!("http://{}", server.addr);
    let sent = send(
        server.addr,
        "POST",
        "/admin/api/broadcast",
        &[
            ("Cookie", &cookie),
            (admin::CSRF_HEADER, &csrf),
            ("Origin", &origin),
            json,
        ],
        body,
    )
    .await;
    assert_eq!(sent.status, 200, "{sent:?}");
}

#[tokio::test]
async fn unknown_expired_and_logged_out_sessions_are_401() {
    let idle = Duration::from_millis(300);
    let server = start_with(unlimited(), |api| {
        api.session_expiry(Duration::from_millis(300), Duration::from_secs(3600))
    })
    .await;
    let unknown = send(
        server.addr,
        "GET",
        "/admin/api/stats",
        &[("Cookie", &format!("sacred_admin={}", "ab".repeat(32)))],
        "",
    )
    .await;
    assert_eq!(unknown.status, 401, "{unknown:?}");
    assert!(unknown.set_cookie().unwrap().contains("max-age=0"));

    let (cookie, _) = session(&server).await;
    // Idle past the expiry (a wait for time to pass, not for an event).
    tokio::time::sleep(idle + Duration::from_millis(100)).await;
    let expired = send(
        server.addr,
        "GET",
        "/admin/session",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(expired.status, 401, "{expired:?}");

    let server = start().await;
    let (cookie, csrf) = session(&server).await;
    let current = send(
        server.addr,
        "GET",
        "/admin/session",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(
        current.json()["csrf"],
        csrf.as_str(),
        "a reload gets the token again"
    );
    let no_token = send(
        server.addr,
        "POST",
        "/admin/logout",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(no_token.status, 403);
    let out = send(
        server.addr,
        "POST",
        "/admin/logout",
        &[("Cookie", &cookie), (admin::CSRF_HEADER, &csrf)],
        "",
    )
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert!(out.set_cookie().unwrap().contains("max-age=0"));
    let after = send(
        server.addr,
        "GET",
        "/admin/api/stats",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(after.status, 401);

    // Bounded: past max_sessions the least recently used goes.
    let server = start_with(unlimited(), |api| api.max_sessions(1)).await;
    let (first, _) = session(&server).await;
    let (second, _) = session(&server).await;
    let gone = send(
        server.addr,
        "GET",
        "/admin/api/stats",
        &[("Cookie", &first)],
        "",
    )
    .await;
    assert_eq!(gone.status, 401);
    let kept = send(
        server.addr,
        "GET",
        "/admin/api/stats",
        &[("Cookie", &second)],
        "",
    )
    .await;
    assert_eq!(kept.status, 200);
}

#[tokio::test]
async fn actions_work_with_the_cookie_and_token() {
    let server = start().await;
    let (cookie, csrf) = session(&server).await;
    let (mut kicked, kicked_reply) = Client::connect(
        &server.url(),
        Codec::Json,
        info("<img src=x onerror=alert(1)>"),
    )
    .await;
    let (mut listener, _) = Client::connect(&server.url(), Codec::Json, info("listener")).await;
    subscribe_reply(listener.request(SubscribeRequest::new("news")).await);
    let json = ("Content-Type", "application/json");
    let post = |path: &'static str, body: serde_json::Value| {
        let (cookie, csrf) = (cookie.clone(), csrf.clone());
        async move {
            send(
                server.addr,
                "POST",
                path,
                &[("Cookie", &cookie), (admin::CSRF_HEADER, &csrf), json],
                &body.to_string(),
            )
            .await
        }
    };

    let listed = send(
        server.addr,
        "GET",
        "/admin/api/connections",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    let names: Vec<String> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"<img src=x onerror=alert(1)>".to_owned()),
        "{names:?}"
    );
    let present = send(
        server.addr,
        "GET",
        "/admin/api/presence?channel=news",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(present.json()[0]["name"], "listener", "{present:?}");

    let sent = post(
        "/admin/api/broadcast",
        serde_json::json!({ "channel": "news", "data": { "text": "from the dashboard" } }),
    )
    .await;
    assert_eq!(sent.status, 200, "{sent:?}");
    let publication = listener.publication().await;
    assert_eq!(
        serde_json::to_value(&publication.data).unwrap(),
        serde_json::json!({ "text": "from the dashboard" })
    );

    let out = post(
        "/admin/api/disconnect",
        serde_json::json!({ "client": kicked_reply.client }),
    )
    .await;
    assert_eq!(out.json(), serde_json::json!({ "disconnected": 1 }));
    assert_eq!(kicked.closed().await, Some(3503));

    wait_until(|| async { server.hub.connections() == 1 }).await;
    let at_ms = 4_102_444_800_000u64;
    let told = post(
        "/admin/api/migrate",
        serde_json::json!({ "url": "wss://blue.example/ws", "at_ms": at_ms }),
    )
    .await;
    assert_eq!(told.json(), serde_json::json!({ "told": 1 }), "{told:?}");
    let bad = post(
        "/admin/api/migrate",
        serde_json::json!({ "url": "http://x", "at_ms": at_ms }),
    )
    .await;
    assert_eq!(bad.status, 400);

    // The counts behind messages per second: one publication in, one delivery out.
    let totals = server.hub.totals();
    assert_eq!((totals.publications, totals.deliveries), (1, 1));
    wait_until(|| async {
        let stats = send(
            server.addr,
            "GET",
            "/admin/api/stats",
            &[("Cookie", &cookie)],
            "",
        )
        .await;
        stats.json()["samples"]
            .as_array()
            .is_some_and(|samples| !samples.is_empty())
    })
    .await;

    let calls = server
        .hub
        .audit_events(&AuditQuery::new().kind(AuditKind::AdminCall))
        .await
        .unwrap();
    let details: Vec<&str> = calls.iter().map(|e| e.detail.as_str()).collect();
    assert!(
        details.contains(&"POST /admin/api/disconnect -> 200 (dashboard)"),
        "{details:?}"
    );
    assert!(
        details.iter().all(|d| !d.starts_with("GET")),
        "reads are not audited: {details:?}"
    );
    assert!(calls.iter().all(|e| e.actor.as_deref() == Some("ops")));
}

#[tokio::test]
async fn a_login_reads_a_form_refuses_a_large_body_and_ends_the_browser_s_old_session() {
    let server = start().await;
    // A form, percent-encoded as browsers send it.
    let form = format!(
        "password={}",
        form_urlencoded::byte_serialize(PASSWORD.as_bytes()).collect::<String>()
    );
    let by_form = send(
        server.addr,
        "POST",
        "/admin/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    )
    .await;
    assert_eq!(by_form.status, 200, "{by_form:?}");

    let huge = format!("{{\"password\": \"{}\"}}", "x".repeat(5000));
    let refused = send(
        server.addr,
        "POST",
        "/admin/login",
        &[("Content-Type", "application/json")],
        &huge,
    )
    .await;
    assert_eq!(refused.status, 413, "{refused:?}");

    let (old, _) = session(&server).await;
    let again = send(
        server.addr,
        "POST",
        "/admin/login",
        &[("Content-Type", "application/json"), ("Cookie", &old)],
        &serde_json::json!({ "password": PASSWORD }).to_string(),
    )
    .await;
    assert_eq!(again.status, 200, "{again:?}");
    let stale = send(
        server.addr,
        "GET",
        "/admin/session",
        &[("Cookie", &old)],
        "",
    )
    .await;
    assert_eq!(stale.status, 401, "the old session ended: {stale:?}");
}
