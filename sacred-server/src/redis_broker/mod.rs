//! Several nodes on Redis (feature `redis`): [`RedisBroker`] carries
//! publications, joins and leaves between nodes over Redis pub/sub and keeps
//! channels' streams in Redis streams; [`RedisPresence`] keeps presence in
//! Redis with expiry, refreshed by the node that holds each client.
//!
//! Layout, for a prefix `sacred` and a channel `c`:
//!
//! | key | what |
//! |---|---|
//! | `sacred.s.c` | the stream: entries `0-<offset>` with field `d`, a MessagePack publication push |
//! | `sacred.m.c` | the stream's meta hash: `e` its epoch, `s` its last offset |
//! | `sacred.c.c` | the pub/sub channel: `p<offset>:<epoch>:<push>` (with a stream), `u<push>` (without), `j<push>`, `l<push>` |
//! | `sacred.pe.c`, `sacred.pd.c` | presence: a sorted set of expiry times, a hash of peers |
//! | `sacred.u.<user>` | a user's connections: client ids scored by expiry time |
//!
//! A publish is one Lua script (offset, stream entry and pub/sub message in
//! one step), so every node sees a channel's publications in offset order.
//! Channels are spread over the configured Redis instances by jump
//! consistent hashing of their names, as Centrifugo does; every instance
//! has its own pub/sub connection, and a shard given as Sentinels follows
//! its master across failovers. Every call has a timeout, and repeated
//! failures open a circuit breaker: calls then fail at once (clients get a
//! temporary error) and `/ready` says no, until a probe succeeds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::{PushInfo, PushKind, RedisResult, Script, Value as RedisValue};
use sacred_proto::{Join, Leave, Peer, Publication, Push, StreamPosition};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::broker::{Broker, BrokerError, BrokerEvents};
use crate::history::{Page, Query, Retention};
use crate::presence::PresenceStore;
use crate::stored::{self, decode, fnv1a};

mod scripts;
mod shard;

use shard::Shard;

/// How the Redis backend connects and keeps its keys.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// One URL per shard: `redis://host:port`, `redis+unix:///path`, or
    /// `redis+sentinel://host:port[,host:port...]/master` for the master a
    /// set of Sentinels names (followed across failovers). RESP3 is switched
    /// on by the backend.
    pub urls: Vec<String>,
    /// The prefix of every key and pub/sub channel.
    pub prefix: String,
    /// How long any Redis call may take before it counts as failed.
    pub timeout: Duration,
    /// How long a stream's epoch and last offset outlive its last publish
    /// (so a client can still be told "unrecoverable" rather than start
    /// over silently).
    pub meta_ttl: Duration,
    /// How long a presence entry lives unless its node refreshes it; the
    /// node refreshes every third of it.
    pub presence_ttl: Duration,
}

impl RedisConfig {
    /// One shard per URL, with the defaults: prefix `sacred`, 2 s timeout,
    /// stream meta kept 7 days, presence 60 s.
    pub fn new<I, S>(urls: I) -> RedisConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisConfig {
            urls: urls.into_iter().map(Into::into).collect(),
            prefix: "sacred".to_owned(),
            timeout: Duration::from_secs(2),
            meta_ttl: Duration::from_secs(7 * 24 * 3600),
            presence_ttl: Duration::from_secs(60),
        }
    }

    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> RedisConfig {
        self.prefix = prefix.into();
        self
    }

    /// Sets the timeout of every call.
    pub fn timeout(mut self, timeout: Duration) -> RedisConfig {
        self.timeout = timeout;
        self
    }

    /// Sets how long presence entries live unless refreshed.
    pub fn presence_ttl(mut self, ttl: Duration) -> RedisConfig {
        self.presence_ttl = ttl;
        self
    }
}

/// Why the Redis backend could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// No URL was given.
    #[error("no Redis URL given")]
    NoUrl,
    /// A URL could not be parsed, or the first connection failed.
    #[error("Redis at {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: redis::RedisError,
    },
}

/// Consecutive failures that open the circuit.
const OPEN_AFTER: u32 = 3;
/// How long an open circuit refuses calls before one probe goes through.
const OPEN_FOR: Duration = Duration::from_secs(1);

/// A circuit breaker: closed while calls succeed; after [`OPEN_AFTER`]
/// failures in a row, open for [`OPEN_FOR`], then half-open (the next call
/// is tried; its outcome closes or reopens it).
#[derive(Debug, Default)]
struct Breaker {
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl Breaker {
    fn admit(&self) -> Result<(), BrokerError> {
        let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        match *open {
            Some(until) if Instant::now() < until => Err(BrokerError::unavailable(
                "Redis circuit open after repeated failures",
            )),
            Some(_) => {
                // Half-open: this call is the probe; keep others out meanwhile.
                *open = Some(Instant::now() + OPEN_FOR);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        *self.open_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn failed(&self) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= OPEN_AFTER {
            let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
            if open.is_none() {
                tracing::warn!(failures, "Redis failing: circuit open");
            }
            *open = Some(Instant::now() + OPEN_FOR);
        }
    }

    fn is_closed(&self) -> bool {
        self.open_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

/// What `RedisBroker` and `RedisPresence` share: the shards and the breaker.
struct Shared {
    config: RedisConfig,
    shards: Vec<Shard>,
    breaker: Breaker,
    publish: Script,
    read: Script,
    presence_add: Script,
    presence_remove: Script,
    presence_list: Script,
    user_add: Script,
    user_count: Script,
}

impl Shared {
    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[jump_hash(fnv1a(channel.as_bytes()), self.shards.len())]
    }

    fn key(&self, kind: &str, channel: &str) -> String {
        format!("{}.{kind}.{channel}", self.config.prefix)
    }

    /// Runs `script` on the shard of `shard_key` (a channel or a user) with
    /// the keys and arguments `build` gives it.
    async fn script<T: redis::FromRedisValue>(
        &self,
        shard_key: &str,
        script: &Script,
        build: impl FnOnce(&mut redis::ScriptInvocation<'_>),
    ) -> Result<T, BrokerError> {
        let mut connection = self.shard(shard_key).commands();
        let mut invocation = script.prepare_invoke();
        build(&mut invocation);
        self.call(invocation.invoke_async(&mut connection)).await
    }

    /// Runs one Redis call under the timeout and the breaker.
    async fn call<T>(&self, call: impl Future<Output = RedisResult<T>>) -> Result<T, BrokerError> {
        self.breaker.admit()?;
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok(value)) => {
                self.breaker.succeeded();
                Ok(value)
            }
            Ok(Err(err)) => {
                self.breaker.failed();
                Err(BrokerError::unavailable(err))
            }
            Err(_) => {
                self.breaker.failed();
                Err(BrokerError::unavailable(format!(
                    "Redis did not answer within {:?}",
                    self.config.timeout
                )))
            }
        }
    }
}

/// The Redis broker (see the module docs). [`RedisBroker::presence`] gives
/// the presence store on the same connections.
pub struct RedisBroker {
    shared: Arc<Shared>,
    /// Each shard's pub/sub messages, until [`Broker::attach`] reads them.
    pushes: Mutex<Vec<UnboundedReceiver<PushInfo>>>,
    events: OnceLock<Arc<dyn BrokerEvents>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("urls", &self.shared.config.urls)
            .field("available", &self.shared.breaker.is_closed())
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Connects to every shard (two connections each: commands and pub/sub,
    /// both reconnecting by themselves).
    pub async fn connect(config: RedisConfig) -> Result<RedisBroker, RedisSetupError> {
        if config.urls.is_empty() {
            return Err(RedisSetupError::NoUrl);
        }
        let mut shards = Vec::with_capacity(config.urls.len());
        let mut pushes = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            let (sender, receiver) = unbounded_channel();
            let shard = Shard::connect(url, config.timeout, sender)
                .await
                .map_err(|source| RedisSetupError::Connect {
                    url: url.clone(),
                    source,
                })?;
            shards.push(shard);
            pushes.push(receiver);
        }
        let shared = Shared {
            config,
            shards,
            breaker: Breaker::default(),
            publish: Script::new(scripts::PUBLISH),
            read: Script::new(scripts::READ),
            presence_add: Script::new(scripts::PRESENCE_ADD),
            presence_remove: Script::new(scripts::PRESENCE_REMOVE),
            presence_list: Script::new(scripts::PRESENCE_LIST),
            user_add: Script::new(scripts::USER_ADD),
            user_count: Script::new(scripts::USER_COUNT),
        };
        Ok(RedisBroker {
            shared: Arc::new(shared),
            pushes: Mutex::new(pushes),
            events: OnceLock::new(),
        })
    }

    /// The presence store on this broker's connections.
    pub fn presence(&self) -> RedisPresence {
        RedisPresence {
            shared: Arc::clone(&self.shared),
        }
    }

    fn pubsub_channel(&self, channel: &str) -> String {
        self.shared.key("c", channel)
    }
}

/// What the read script returns: the epoch, the last offset, the first
/// offset after `since` (0: none), and the entries as XRANGE gives them.
type ReadReply = (String, u64, u64, Vec<(String, Vec<(String, Vec<u8>)>)>);

/// A new epoch: 64 random bits in hex.
fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// While the circuit is open, pings every shard each [`OPEN_FOR`]; closes
/// it once all answer (so `/ready` turns true again without waiting for a
/// client's call). Ends with the broker.
async fn probe(shared: Weak<Shared>) {
    let mut ticks = tokio::time::interval(OPEN_FOR);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.breaker.is_closed() {
            continue;
        }
        let mut answered = true;
        for shard in &shared.shards {
            let mut connection = shard.commands();
            let ping = redis::cmd("PING");
            let pong = tokio::time::timeout(
                shared.config.timeout,
                ping.query_async::<String>(&mut connection),
            );
            answered &= matches!(pong.await, Ok(Ok(_)));
        }
        if answered {
            tracing::info!("Redis answers again: circuit closed");
            shared.breaker.succeeded();
        }
    }
}

/// Keeps a Sentinel shard on the current master (see [`Shard::follow_master`]).
/// Ends with the broker.
async fn follow_master(shared: Weak<Shared>, shard: usize) {
    let mut ticks = tokio::time::interval(shard::SENTINEL_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match shared.shards[shard].follow_master().await {
            Ok(moved) => {
                if moved {
                    // The new master answered while the connections opened.
                    shared.breaker.succeeded();
                }
                failing = false;
            }
            // Once per outage, not every poll.
            Err(err) if !failing => {
                tracing::warn!(%err, "Redis Sentinel: cannot learn the master");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

fn encode(push: impl Into<Push>) -> Result<Vec<u8>, BrokerError> {
    stored::encode(push).map_err(BrokerError::unavailable)
}

/// Hands one shard's pub/sub messages to the node, in order.
///
/// When the pub/sub connection drops, what is published until it is back
/// never arrives. Subscribers stay connected meanwhile (their publishes get
/// temporary errors); once the connection manager has resubscribed, every
/// subscriber of this shard's channels is told to recover (3005), from the
/// stream if it survived (Redis with AOF or a replica promoted by Sentinel)
/// or under a new epoch if not.
async fn deliver(
    shared: Weak<Shared>,
    shard: usize,
    mut pushes: UnboundedReceiver<PushInfo>,
    events: Arc<dyn BrokerEvents>,
) {
    let Some(channel_prefix) = shared.upgrade().map(|s| s.key("c", "")) else {
        return;
    };
    let mut lost = false;
    while let Some(push) = pushes.recv().await {
        if lost && !matches!(push.kind, PushKind::Disconnection) {
            tracing::info!("Redis pub/sub is back: subscribers recover from the streams");
            let Some(shared) = shared.upgrade() else {
                return;
            };
            for target in shared.shards[shard].channels() {
                if let Some(channel) = target.strip_prefix(&channel_prefix) {
                    events.lost(Some(channel));
                }
            }
            lost = false;
        }
        match push.kind {
            PushKind::Message => {
                let [
                    RedisValue::BulkString(name),
                    RedisValue::BulkString(payload),
                ] = &push.data[..]
                else {
                    continue;
                };
                let Some(channel) = std::str::from_utf8(name)
                    .ok()
                    .and_then(|name| name.strip_prefix(&channel_prefix))
                else {
                    continue;
                };
                deliver_one(&*events, channel, payload);
            }
            PushKind::Disconnection => {
                if !lost {
                    tracing::warn!(
                        "Redis pub/sub connection lost: subscribers recover once it is back"
                    );
                }
                lost = true;
            }
            _ => {}
        }
    }
}

fn deliver_one(events: &dyn BrokerEvents, channel: &str, payload: &[u8]) {
    let Some((&tag, rest)) = payload.split_first() else {
        return;
    };
    match tag {
        b'p' => {
            let mut parts = rest.splitn(3, |&b| b == b':');
            let (Some(offset), Some(epoch), Some(push)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return;
            };
            let offset = std::str::from_utf8(offset)
                .ok()
                .and_then(|o| o.parse::<u64>().ok());
            let epoch = std::str::from_utf8(epoch).ok();
            if let (Some(offset), Some(epoch), Some(Push::Publication(mut publication))) =
                (offset, epoch, decode(push))
            {
                publication.offset = Some(offset);
                publication.epoch = Some(epoch.to_owned());
                events.publication(channel, Arc::new(publication));
            }
        }
        b'u' => {
            if let Some(Push::Publication(publication)) = decode(rest) {
                events.publication(channel, Arc::new(publication));
            }
        }
        b'j' => {
            if let Some(Push::Join(join)) = decode(rest) {
                events.join(channel, &join.client);
            }
        }
        b'l' => {
            if let Some(Push::Leave(leave)) = decode(rest) {
                events.leave(channel, &leave.client);
            }
        }
        _ => {}
    }
}

impl Broker for RedisBroker {
    fn attach(&self, events: Arc<dyn BrokerEvents>) {
        if self.events.set(Arc::clone(&events)).is_err() {
            return;
        }
        tokio::spawn(probe(Arc::downgrade(&self.shared)));
        let pushes = std::mem::take(&mut *self.pushes.lock().unwrap_or_else(|p| p.into_inner()));
        for (shard, receiver) in pushes.into_iter().enumerate() {
            let shared = Arc::downgrade(&self.shared);
            tokio::spawn(deliver(shared, shard, receiver, Arc::clone(&events)));
            if self.shared.shards[shard].has_sentinel() {
                tokio::spawn(follow_master(Arc::downgrade(&self.shared), shard));
            }
        }
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Option<Retention>,
    ) -> BoxFuture<'a, Result<Arc<Publication>, BrokerError>> {
        async move {
            let shared = &self.shared;
            let shard = shared.shard(channel);
            let payload = encode(publication.clone())?;
            let mut connection = shard.commands();
            let Some(retention) = retention else {
                let mut message = Vec::with_capacity(payload.len() + 1);
                message.push(b'u');
                message.extend_from_slice(&payload);
                let target = self.pubsub_channel(channel);
                let mut command = redis::cmd("PUBLISH");
                command.arg(target).arg(message);
                let publish = command.query_async::<i64>(&mut connection);
                shared.call(publish).await?;
                return Ok(Arc::new(publication));
            };
            let (offset, epoch): (u64, String) = shared
                .script(channel, &shared.publish, |invocation| {
                    invocation
                        .key(shared.key("s", channel))
                        .key(shared.key("m", channel))
                        .arg(payload)
                        .arg(retention.size.max(1))
                        .arg(retention.ttl.as_secs().max(1))
                        .arg((retention.ttl + shared.config.meta_ttl).as_secs().max(1))
                        .arg(new_epoch())
                        .arg(self.pubsub_channel(channel));
                })
                .await?;
            let mut stored = publication;
            stored.offset = Some(offset);
            stored.epoch = Some(epoch);
            Ok(Arc::new(stored))
        }
        .boxed()
    }

    fn join<'a>(
        &'a self,
        channel: &'a str,
        peer: &'a Peer,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.announce(channel, b'j', encode(Join::new(channel, peer.clone())))
    }

    fn leave<'a>(
        &'a self,
        channel: &'a str,
        peer: &'a Peer,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.announce(channel, b'l', encode(Leave::new(channel, peer.clone())))
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            let shard = self.shared.shard(channel);
            let target = self.pubsub_channel(channel);
            self.shared.call(shard.subscribe(target)).await
        }
        .boxed()
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            let shard = self.shared.shard(channel);
            let target = self.pubsub_channel(channel);
            self.shared.call(shard.unsubscribe(target)).await
        }
        .boxed()
    }

    fn read<'a>(
        &'a self,
        channel: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Page, BrokerError>> {
        async move {
            let shared = &self.shared;
            let since = query.since.as_ref().map(|since| since.offset);
            let (epoch, top, first, entries): ReadReply = shared
                .script(channel, &shared.read, |invocation| {
                    invocation
                        .key(shared.key("s", channel))
                        .key(shared.key("m", channel))
                        .arg(new_epoch())
                        .arg(shared.config.meta_ttl.as_secs().max(1))
                        .arg(since.map(|s| s.to_string()).unwrap_or_default())
                        .arg(query.limit.map(|l| l.to_string()).unwrap_or_default())
                        .arg(if query.reverse { "1" } else { "0" });
                })
                .await?;
            if let Some(since) = &query.since {
                // Another epoch, beyond the top, or publications after it gone.
                let gone = since.offset < top && first != since.offset + 1;
                if since.epoch != epoch || since.offset > top || gone {
                    return Err(BrokerError::Unrecoverable);
                }
            }
            let mut publications = Vec::with_capacity(entries.len());
            for (id, fields) in entries {
                let offset = id.strip_prefix("0-").and_then(|o| o.parse::<u64>().ok());
                let payload = fields
                    .into_iter()
                    .find(|(field, _)| field == "d")
                    .map(|(_, v)| v);
                if let (Some(offset), Some(Push::Publication(mut publication))) =
                    (offset, payload.as_deref().and_then(decode))
                {
                    publication.offset = Some(offset);
                    publication.epoch = Some(epoch.clone());
                    publications.push(publication);
                }
            }
            Ok(Page::new(StreamPosition::new(top, epoch), publications))
        }
        .boxed()
    }

    fn is_available(&self) -> bool {
        self.shared.breaker.is_closed()
    }
}

impl RedisBroker {
    fn announce<'a>(
        &'a self,
        channel: &'a str,
        tag: u8,
        push: Result<Vec<u8>, BrokerError>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            let push = push?;
            let mut message = Vec::with_capacity(push.len() + 1);
            message.push(tag);
            message.extend_from_slice(&push);
            let mut connection = self.shared.shard(channel).commands();
            let target = self.pubsub_channel(channel);
            let mut command = redis::cmd("PUBLISH");
            command.arg(target).arg(message);
            let publish = command.query_async::<i64>(&mut connection);
            self.shared.call(publish).await.map(drop)
        }
        .boxed()
    }
}

/// Presence in Redis (see the module docs); from [`RedisBroker::presence`].
pub struct RedisPresence {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence").finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    crate::time::now_ms()
}

impl RedisPresence {
    async fn list_or_count(&self, channel: &str, count: bool) -> Result<RedisValue, BrokerError> {
        let shared = &self.shared;
        shared
            .script(channel, &shared.presence_list, |invocation| {
                invocation
                    .key(shared.key("pe", channel))
                    .key(shared.key("pd", channel))
                    .arg(now_ms())
                    .arg(if count { "1" } else { "0" });
            })
            .await
    }
}

impl PresenceStore for RedisPresence {
    fn add<'a>(
        &'a self,
        channel: &'a str,
        peer: &'a Peer,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            let shared = &self.shared;
            let payload = encode(Join::new(channel, peer.clone()))?;
            let ttl = shared.config.presence_ttl;
            shared
                .script::<i64>(channel, &shared.presence_add, |invocation| {
                    invocation
                        .key(shared.key("pe", channel))
                        .key(shared.key("pd", channel))
                        .arg(now_ms() + ttl.as_millis() as u64)
                        .arg(&peer.id)
                        .arg(payload)
                        .arg(ttl.as_secs().max(1) * 2);
                })
                .await
                .map(drop)
        }
        .boxed()
    }

    fn remove<'a>(
        &'a self,
        channel: &'a str,
        client: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            let shared = &self.shared;
            shared
                .script::<i64>(channel, &shared.presence_remove, |invocation| {
                    invocation
                        .key(shared.key("pe", channel))
                        .key(shared.key("pd", channel))
                        .arg(client);
                })
                .await
                .map(drop)
        }
        .boxed()
    }

    fn list<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Vec<Peer>, BrokerError>> {
        async move {
            let values: Vec<Vec<u8>> =
                redis::from_redis_value(self.list_or_count(channel, false).await?)
                    .map_err(BrokerError::unavailable)?;
            Ok(values
                .iter()
                .filter_map(|bytes| match decode(bytes) {
                    Some(Push::Join(join)) => Some(join.client),
                    _ => None,
                })
                .collect())
        }
        .boxed()
    }

    fn count<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        async move {
            redis::from_redis_value(self.list_or_count(channel, true).await?)
                .map_err(BrokerError::unavailable)
        }
        .boxed()
    }

    fn user_connected<'a>(
        &'a self,
        user: &'a str,
        client: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            let shared = &self.shared;
            let ttl = shared.config.presence_ttl;
            shared
                .script::<i64>(user, &shared.user_add, |invocation| {
                    invocation
                        .key(shared.key("u", user))
                        .arg(now_ms() + ttl.as_millis() as u64)
                        .arg(client)
                        .arg(ttl.as_secs().max(1) * 2);
                })
                .await
                .map(drop)
        }
        .boxed()
    }

    fn user_disconnected<'a>(
        &'a self,
        user: &'a str,
        client: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        async move {
            let shared = &self.shared;
            let mut connection = shared.shard(user).commands();
            let mut command = redis::cmd("ZREM");
            command.arg(shared.key("u", user)).arg(client);
            shared
                .call(command.query_async::<i64>(&mut connection))
                .await
                .map(drop)
        }
        .boxed()
    }

    fn user_connections<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        async move {
            let shared = &self.shared;
            shared
                .script(user, &shared.user_count, |invocation| {
                    invocation.key(shared.key("u", user)).arg(now_ms());
                })
                .await
        }
        .boxed()
    }

    fn refresh_interval(&self) -> Option<Duration> {
        Some(self.shared.config.presence_ttl / 3)
    }
}

/// Jump consistent hash (Lamping and Veach, 2014): a bucket in `0..buckets`
/// that moves for only 1/n of the keys when the n-th bucket is added.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut bucket, mut next) = (-1i64, 0i64);
    while next < buckets as i64 {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket.max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hash_spreads_and_moves_little() {
        let keys: Vec<u64> = (0..10_000u32)
            .map(|n| fnv1a(format!("chat:{n}").as_bytes()))
            .collect();
        let three: Vec<usize> = keys.iter().map(|&k| jump_hash(k, 3)).collect();
        for shard in 0..3 {
            let share = three.iter().filter(|&&s| s == shard).count();
            assert!((3000..3700).contains(&share), "shard {shard} got {share}");
        }
        let four: Vec<usize> = keys.iter().map(|&k| jump_hash(k, 4)).collect();
        let moved = three.iter().zip(&four).filter(|(a, b)| a != b).count();
        assert!(
            moved < 3000,
            "{moved} of 10000 moved; about a quarter should"
        );
        assert!(
            four.iter().zip(&three).all(|(&f, &t)| f == t || f == 3),
            "keys only move to the new shard"
        );
        assert_eq!(jump_hash(42, 1), 0);
    }
}
