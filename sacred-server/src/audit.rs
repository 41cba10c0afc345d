//! The audit trail: authentication failures, lockouts, key changes, admin
//! calls and forced disconnects, each a structured log line (target
//! `sacred::audit`) and a record in an [`AuditLog`] that can be queried.
//!
//! An event names who and what, never a secret: no token, key or signature
//! is ever put in one (a key is named by its id).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// A connect or refresh was refused: wrong, expired or missing credential.
    AuthFailure,
    /// An address was locked out after repeated failures.
    Lockout,
    /// An API key was created.
    KeyCreated,
    /// An API key was rotated (the old one stays valid for its grace period).
    KeyRotated,
    /// An API key was revoked.
    KeyRevoked,
    /// A call to the admin API, accepted or refused.
    AdminCall,
    /// A dashboard login (accepted or refused) or logout.
    AdminSession,
    /// A client was disconnected by the host or an operator.
    ForcedDisconnect,
    /// A user's stored data was deleted.
    UserDataDeleted,
}

impl AuditKind {
    /// The kind's name on the wire and in the store (`auth_failure`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::AuthFailure => "auth_failure",
            AuditKind::Lockout => "lockout",
            AuditKind::KeyCreated => "key_created",
            AuditKind::KeyRotated => "key_rotated",
            AuditKind::KeyRevoked => "key_revoked",
            AuditKind::AdminCall => "admin_call",
            AuditKind::AdminSession => "admin_session",
            AuditKind::ForcedDisconnect => "forced_disconnect",
            AuditKind::UserDataDeleted => "user_data_deleted",
        }
    }

    /// The kind named `name` ([`AuditKind::as_str`]).
    pub fn parse(name: &str) -> Option<AuditKind> {
        [
            AuditKind::AuthFailure,
            AuditKind::Lockout,
            AuditKind::KeyCreated,
            AuditKind::KeyRotated,
            AuditKind::KeyRevoked,
            AuditKind::AdminCall,
            AuditKind::AdminSession,
            AuditKind::ForcedDisconnect,
            AuditKind::UserDataDeleted,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

/// One entry of the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub kind: AuditKind,
    /// Who did it: an admin credential's name, `"host"` for host code;
    /// `None` for a client's own action.
    pub actor: Option<String>,
    /// The client address involved, if any (behind trusted proxies, the client's).
    pub address: Option<IpAddr>,
    /// The user involved, if known.
    pub user: Option<String>,
    /// The client id involved, if any.
    pub client: Option<String>,
    /// What else there is to say: a reason, a key id, a path. Never a secret.
    pub detail: String,
}

impl AuditEvent {
    /// An event of `kind` now, with `detail` and nothing else named.
    pub fn new(kind: AuditKind, detail: impl Into<String>) -> AuditEvent {
        AuditEvent {
            at_ms: crate::time::now_ms(),
            kind,
            actor: None,
            address: None,
            user: None,
            client: None,
            detail: detail.into(),
        }
    }

    /// Who did it.
    pub fn actor(mut self, actor: impl Into<String>) -> AuditEvent {
        self.actor = Some(actor.into());
        self
    }

    /// The client address involved.
    pub fn address(mut self, address: Option<IpAddr>) -> AuditEvent {
        self.address = address;
        self
    }

    /// The user involved.
    pub fn user(mut self, user: Option<impl Into<String>>) -> AuditEvent {
        self.user = user.map(Into::into);
        self
    }

    /// The client involved.
    pub fn client(mut self, client: impl Into<String>) -> AuditEvent {
        self.client = Some(client.into());
        self
    }

    /// Writes the event as a structured log line, target `sacred::audit`.
    pub(crate) fn log(&self) {
        tracing::info!(
            target: "sacred::audit",
            kind = self.kind.as_str(),
            actor = self.actor.as_deref(),
            address = self.address.map(tracing::field::display),
            user = self.user.as_deref(),
            client = self.client.as_deref(),
            detail = %self.detail,
            "audit"
        );
    }
}

/// Which events a query returns, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only events of this kind.
    pub kind: Option<AuditKind>,
    /// Only events about this user.
    pub user: Option<String>,
    /// Only events strictly older than this (milliseconds since the epoch):
    /// the `at_ms` of the last event of the previous page.
    pub before_ms: Option<u64>,
    /// At most this many (default 100).
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> AuditQuery {
        AuditQuery {
            kind: None,
            user: None,
            before_ms: None,
            limit: 100,
        }
    }
}

impl AuditQuery {
    /// The newest 100 events of any kind.
    pub fn new() -> AuditQuery {
        AuditQuery::default()
    }

    /// Only events of `kind`.
    pub fn kind(mut self, kind: AuditKind) -> AuditQuery {
        self.kind = Some(kind);
        self
    }

    /// Only events about `user`.
    pub fn user(mut self, user: impl Into<String>) -> AuditQuery {
        self.user = Some(user.into());
        self
    }

    /// Only events older than `before_ms`.
    pub fn before(mut self, before_ms: u64) -> AuditQuery {
        self.before_ms = Some(before_ms);
        self
    }

    /// At most `limit` events.
    pub fn limit(mut self, limit: usize) -> AuditQuery {
        self.limit = limit;
        self
    }

    /// Whether `event` is one the query asks for (the limit aside).
    pub fn matches(&self, event: &AuditEvent) -> bool {
        self.kind.is_none_or(|kind| event.kind == kind)
            && self
                .user
                .as_deref()
                .is_none_or(|user| event.user.as_deref() == Some(user))
            && self.before_ms.is_none_or(|before| event.at_ms < before)
    }
}

/// The audit trail could not be read.
#[derive(Debug, thiserror::Error)]
#[error("audit log: {0}")]
pub struct AuditError(pub Box<dyn std::error::Error + Send + Sync>);

/// Where audit events are kept. [`MemoryAudit`] keeps the latest in memory;
/// with the `sqlite` feature the store keeps them with a retention.
///
/// `record` is called on the path of the event (a refused connect, an admin
/// call): it must not block; queue the write and return.
pub trait AuditLog: Send + Sync + 'static {
    /// Keeps `event`.
    fn record(&self, event: AuditEvent);

    /// The events `query` asks for, newest first.
    fn query<'a>(
        &'a self,
        query: &'a AuditQuery,
    ) -> BoxFuture<'a, Result<Vec<AuditEvent>, AuditError>>;
}

/// The latest events in memory, the oldest dropped past a capacity
/// (default 10,000): the trail of a hub without a store.
#[derive(Debug)]
pub struct MemoryAudit {
    events: Mutex<VecDeque<AuditEvent>>,
    capacity: usize,
}

impl Default for MemoryAudit {
    fn default() -> MemoryAudit {
        MemoryAudit::with_capacity(10_000)
    }
}

impl MemoryAudit {
    /// An empty trail keeping the latest 10,000 events.
    pub fn new() -> MemoryAudit {
        MemoryAudit::default()
    }

    /// An empty trail keeping the latest `capacity` events.
    pub fn with_capacity(capacity: usize) -> MemoryAudit {
        MemoryAudit {
            events: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
        }
    }
}

impl AuditLog for MemoryAudit {
    fn record(&self, event: AuditEvent) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event);
    }

    fn query<'a>(
        &'a self,
        query: &'a AuditQuery,
    ) -> BoxFuture<'a, Result<Vec<AuditEvent>, AuditError>> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let found = events
            .iter()
            .rev()
            .filter(|event| query.matches(event))
            .take(query.limit)
            .cloned()
            .collect();
        Box::pin(std::future::ready(Ok(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_keeps_the_latest_and_filters_newest_first() {
        let audit = MemoryAudit::with_capacity(3);
        for (n, kind) in [
            AuditKind::AuthFailure,
            AuditKind::Lockout,
            AuditKind::AuthFailure,
            AuditKind::AdminCall,
        ]
        .into_iter()
        .enumerate()
        {
            let mut event = AuditEvent::new(kind, format!("e{n}")).user(Some("ada"));
            event.at_ms = n as u64;
            audit.record(event);
        }
        let all = futures_util::FutureExt::now_or_never(audit.query(&AuditQuery::new()))
            .unwrap()
            .unwrap();
        let details: Vec<&str> = all.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(details, ["e3", "e2", "e1"], "the oldest dropped");
        let query = AuditQuery::new().kind(AuditKind::AuthFailure);
        let failures = futures_util::FutureExt::now_or_never(audit.query(&query))
            .unwrap()
            .unwrap();
        assert_eq!(failures.len(), 1);
        let query = AuditQuery::new().before(3).limit(1);
        let page = futures_util::FutureExt::now_or_never(audit.query(&query))
            .unwrap()
            .unwrap();
        assert_eq!(page[0].detail, "e2");
        assert_eq!(AuditKind::parse("key_revoked"), Some(AuditKind::KeyRevoked));
        assert_eq!(AuditKind::parse("nope"), None);
    }
}
