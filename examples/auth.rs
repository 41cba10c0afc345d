//! Authentication end to end: the host's authenticator checks signed,
//! short-lived tokens and keeps `user:<id>` channels private to their user;
//! the client gets its tokens from a provider, which it asks before every
//! connect and again before the token expires (the refresh keeps the
//! connection alive without a reconnect).
//!
//! Run with: cargo run --example auth

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use sacred_client::{Client, ClientEvent};
use sacred_examples::serve_locally;
use sacred_server::{AuthError, Authenticator, ConnectContext, Hub, Identity, Refusal};
use sha2::{Digest, Sha256};

/// The application's login service: it signs `user.expiry` with a secret.
/// (A real one would use JWTs or a session store; the shape is the same.)
struct Tokens {
    secret: &'static str,
}

impl Tokens {
    fn issue(&self, user: &str, ttl: Duration) -> String {
        let expiry = now_ms() + ttl.as_millis() as u64;
        format!("{user}.{expiry}.{}", self.sign(user, expiry))
    }

    fn sign(&self, user: &str, expiry: u64) -> String {
        let digest = Sha256::digest(format!("{}|{user}|{expiry}", self.secret));
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The user and expiry of a valid token.
    fn check(&self, token: &str) -> Option<(String, u64)> {
        let mut parts = token.splitn(3, '.');
        let (user, expiry, signature) = (parts.next()?, parts.next()?, parts.next()?);
        let expiry: u64 = expiry.parse().ok()?;
        (signature == self.sign(user, expiry) && expiry > now_ms())
            .then(|| (user.to_owned(), expiry))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The host's authenticator: who a connection is, from its token.
struct SignedTokens(Arc<Tokens>);

impl Authenticator for SignedTokens {
    fn authenticate<'a>(
        &'a self,
        request: &'a ConnectContext,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        let verdict = match request.token.as_deref() {
            None => Err(AuthError::Unauthorized),
            Some(token) => match self.0.check(token) {
                Some((user, expiry)) => Ok(Identity::user(user).expires(expiry)),
                None => Err(AuthError::InvalidToken),
            },
        };
        Box::pin(std::future::ready(verdict))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tokens = Arc::new(Tokens {
        secret: "keep me in a secret store",
    });
    let hub = Hub::builder()
        .authenticator(SignedTokens(Arc::clone(&tokens)))
        .namespace("user", Default::default())
        .authorize_subscribe(|ctx| async move {
            match ctx.channel.strip_prefix("user:") {
                Some(owner) if ctx.client.user.as_deref() != Some(owner) => {
                    Err(Refusal::permission_denied("another user's channel"))
                }
                _ => Ok(()),
            }
        });
    let (url, hub) = serve_locally(hub).await?;

    // The client asks its provider for a token: here the login service
    // directly; in an app, an HTTP call to the backend that holds the session.
    let (asked, mut times_asked) = tokio::sync::watch::channel(0u32);
    let provider = {
        let tokens = Arc::clone(&tokens);
        move || {
            let tokens = Arc::clone(&tokens);
            asked.send_modify(|n| *n += 1);
            println!("client: token provider asked ({})", *asked.borrow());
            async move { Ok::<_, std::convert::Infallible>(tokens.issue("ada", Duration::from_secs(2))) }
        }
    };
    let client = Client::builder(&url)
        .name("ada's laptop")
        .token_provider(provider)
        .build()?;
    let mut events = client.events();
    client.connect().await?;
    let mut mine = client.subscribe("user:ada").await?;
    let err = client.subscribe("user:bob").await.unwrap_err();
    println!("client: user:bob refused: {err}");

    // Before the first token's 2 s are up the provider is asked again, and
    // the connection lives on past them (a refresh, not a reconnect).
    times_asked.wait_for(|n| *n >= 2).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.publish("user:ada", "for ada only".into()).await?;
    let publication = mine
        .next_publication()
        .await
        .ok_or("the subscription ended")?;
    println!("client: got {:?} on user:ada", publication.data);
    while let Some(event) = events.try_recv() {
        assert!(
            !matches!(event, ClientEvent::Disconnected { .. }),
            "{event:?}"
        );
    }
    println!("client: still on the first connection after the token was refreshed");

    // A forged token is refused for good.
    let forged = Client::builder(&url)
        .token("ada.99999999999999.forged")
        .connect()
        .await;
    println!("forged token: {}", forged.unwrap_err());
    Ok(())
}
