//! One shard of the Redis backend: where it lives (one Redis, or the master
//! a set of Sentinels names), its two connections, and the pub/sub channels
//! this node listens to on it.
//!
//! A Sentinel shard is watched: every [`SENTINEL_POLL`] the node asks the
//! Sentinels for the master's address, and when a failover moved it, the
//! shard's connections are rebuilt against the new master, every channel is
//! subscribed again, and the channels' subscribers recover from the streams
//! (the pub/sub messages of the switch never arrive).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, PushInfo,
    PushKind, RedisConnectionInfo, RedisError, RedisResult,
};
use tokio::sync::mpsc::UnboundedSender;

/// How often a Sentinel shard asks where its master is.
pub(super) const SENTINEL_POLL: Duration = Duration::from_secs(1);

/// Where a shard lives, parsed from its URL.
enum Target {
    /// `redis://...` or `unix://...`: one Redis.
    Direct(Client),
    /// `redis+sentinel://host:port[,host:port...]/master`: whichever Redis
    /// the Sentinels name master of `master`.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

impl Target {
    /// Parses a shard URL, with RESP3 switched on for the Redis connections.
    fn parse(url: &str) -> RedisResult<Target> {
        let Some(rest) = url.strip_prefix("redis+sentinel://") else {
            let resp3 = if url.contains('?') {
                format!("{url}&protocol=resp3")
            } else {
                format!("{url}?protocol=resp3")
            };
            return Client::open(resp3).map(Target::Direct);
        };
        let invalid = |what: &str| {
            RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "invalid redis+sentinel URL",
                format!(
                    "{what} (expected redis+sentinel://[user:password@]host:port[,host:port...]/master[?db=N])"
                ),
            ))
        };
        let (rest, db) = match rest.split_once('?') {
            None => (rest, 0),
            Some((rest, query)) => {
                let db = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("db="))
                    .ok_or_else(|| invalid("only ?db=N is understood"))?
                    .parse::<i64>()
                    .map_err(|_| invalid("db is not a number"))?;
                (rest, db)
            }
        };
        let (hosts, master) = rest
            .split_once('/')
            .filter(|(_, master)| !master.is_empty())
            .ok_or_else(|| invalid("no master name"))?;
        // The credentials are the Redis nodes' (Sentinels usually have none).
        let (credentials, hosts) = match hosts.rsplit_once('@') {
            Some((credentials, hosts)) => (Some(credentials), hosts),
            None => (None, hosts),
        };
        let mut redis = RedisConnectionInfo::default()
            .set_protocol(ProtocolVersion::RESP3)
            .set_db(db);
        if let Some(credentials) = credentials {
            let (user, password) = credentials.split_once(':').unwrap_or(("", credentials));
            if !user.is_empty() {
                redis = redis.set_username(user);
            }
            if !password.is_empty() {
                redis = redis.set_password(password);
            }
        }
        let sentinels = hosts
            .split(',')
            .map(|host| format!("redis://{host}").into_connection_info())
            .collect::<RedisResult<Vec<ConnectionInfo>>>()?;
        if sentinels.is_empty() {
            return Err(invalid("no Sentinel address"));
        }
        let client = SentinelClient::build(
            sentinels,
            master.to_owned(),
            Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(redis)),
            SentinelServerType::Master,
        )?;
        Ok(Target::Sentinel(tokio::sync::Mutex::new(client)))
    }

    /// A client for the shard's Redis now (asks the Sentinels if need be).
    async fn resolve(&self) -> RedisResult<Client> {
        match self {
            Target::Direct(client) => Ok(client.clone()),
            Target::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }
}

/// A shard's two connections to one Redis, both reconnecting by themselves.
struct Connections {
    /// Where they go (a failover changes it).
    address: ConnectionAddr,
    commands: ConnectionManager,
    /// RESP3: pub/sub messages arrive as pushes on a connection that also
    /// takes commands, and the manager resubscribes after a reconnect.
    subscriber: ConnectionManager,
}

/// One shard (see the module docs).
pub(super) struct Shard {
    target: Target,
    timeout: Duration,
    connections: RwLock<Arc<Connections>>,
    /// Where the subscriber's pushes go, across rebuilds.
    pushes: UnboundedSender<PushInfo>,
    /// The pub/sub channels this node subscribed to here.
    channels: Mutex<HashSet<String>>,
}

impl Shard {
    /// Connects to the shard `url` names; its pub/sub messages go to `pushes`.
    pub(super) async fn connect(
        url: &str,
        timeout: Duration,
        pushes: UnboundedSender<PushInfo>,
    ) -> RedisResult<Shard> {
        let target = Target::parse(url)?;
        let client = tokio::time::timeout(timeout, target.resolve())
            .await
            .map_err(|_| timed_out(timeout))??;
        let connections = Connections::open(client, timeout, &pushes).await?;
        Ok(Shard {
            target,
            timeout,
            connections: RwLock::new(Arc::new(connections)),
            pushes,
            channels: Mutex::new(HashSet::new()),
        })
    }

    fn current(&self) -> Arc<Connections> {
        Arc::clone(&self.connections.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The connection for commands.
    pub(super) fn commands(&self) -> ConnectionManager {
        self.current().commands.clone()
    }

    /// Subscribes to the pub/sub channel `target`.
    pub(super) async fn subscribe(&self, target: String) -> RedisResult<()> {
        // Recorded first: a failover meanwhile subscribes it again.
        self.lock_channels().insert(target.clone());
        self.current().subscriber.clone().subscribe(target).await
    }

    /// Unsubscribes from the pub/sub channel `target`.
    pub(super) async fn unsubscribe(&self, target: String) -> RedisResult<()> {
        self.lock_channels().remove(&target);
        self.current().subscriber.clone().unsubscribe(target).await
    }

    /// The pub/sub channels this node subscribed to here.
    pub(super) fn channels(&self) -> Vec<String> {
        self.lock_channels().iter().cloned().collect()
    }

    fn lock_channels(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a Sentinel names this shard's master (and it must be watched).
    pub(super) fn has_sentinel(&self) -> bool {
        matches!(self.target, Target::Sentinel(_))
    }

    /// Asks the Sentinels where the master is; if a failover moved it,
    /// moves this shard's connections there and resubscribes. Returns
    /// whether it moved.
    pub(super) async fn follow_master(&self) -> RedisResult<bool> {
        let client = tokio::time::timeout(self.timeout, self.target.resolve())
            .await
            .map_err(|_| timed_out(self.timeout))??;
        let address = client.get_connection_info().addr();
        if *address == self.current().address {
            return Ok(false);
        }
        tracing::warn!(master = %address, "Redis Sentinel names a new master: moving there");
        let connections = Connections::open(client, self.timeout, &self.pushes).await?;
        let channels = self.channels();
        if !channels.is_empty() {
            // What was published during the switch never arrives: the
            // delivery task makes these channels' subscribers recover once
            // the new subscriptions answer.
            let _ = self.pushes.send(PushInfo {
                kind: PushKind::Disconnection,
                data: Vec::new(),
            });
            let mut subscriber = connections.subscriber.clone();
            tokio::time::timeout(self.timeout, subscriber.subscribe(&channels))
                .await
                .map_err(|_| timed_out(self.timeout))??;
        }
        *self.connections.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(connections);
        Ok(true)
    }
}

impl Connections {
    async fn open(
        client: Client,
        timeout: Duration,
        pushes: &UnboundedSender<PushInfo>,
    ) -> RedisResult<Connections> {
        let config = || {
            ConnectionManagerConfig::new()
                .set_response_timeout(Some(timeout))
                .set_connection_timeout(Some(timeout))
                .set_max_delay(Duration::from_secs(2))
        };
        let address = client.get_connection_info().addr().clone();
        let commands = ConnectionManager::new_with_config(client.clone(), config()).await?;
        let subscriber = ConnectionManager::new_with_config(
            client,
            config()
                .set_push_sender(pushes.clone())
                .set_automatic_resubscription(),
        )
        .await?;
        Ok(Connections {
            address,
            commands,
            subscriber,
        })
    }
}

fn timed_out(timeout: Duration) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Io,
        "timed out",
        format!("no answer within {timeout:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse_or_say_what_is_wrong() {
        assert!(matches!(
            Target::parse("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/main"),
            Ok(Target::Sentinel(_))
        ));
        assert!(matches!(
            Target::parse("redis+sentinel://:secret@127.0.0.1:26379/main?db=2"),
            Ok(Target::Sentinel(_))
        ));
        assert!(matches!(
            Target::parse("redis://127.0.0.1:6379"),
            Ok(Target::Direct(_))
        ));
        for bad in [
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/",
            "redis+sentinel://127.0.0.1:26379/main?db=x",
            "redis+sentinel://127.0.0.1:26379/main?tls=1",
        ] {
            let Err(err) = Target::parse(bad) else {
                panic!("{bad} parsed");
            };
            assert!(err.to_string().contains("redis+sentinel"), "{bad}: {err}");
        }
    }
}
