//! What the hub counts, through the `metrics` facade: whatever recorder the
//! process installed receives it (`install_prometheus` installs
//! Prometheus's, and `/metrics` renders it), and a host's own
//! `metrics::counter!` lands beside it.
//!
//! Every name starts with `sacred_`, and every label takes a bounded set of
//! values: a client's kind and runtime are mapped onto the words the
//! protocol names (anything else is `other`), codes are the protocol's, and
//! no channel name or user id is ever a label.
//!
//! Hot paths (commands, fan-out, writes) increment handles registered once,
//! when the hub is built: an atomic add each. Gauges that describe the
//! whole hub (connections, channels, the coherence, the store) are set when
//! `/metrics` is scraped, from the hub's own state, so they cannot drift.
//! A recorder must therefore be installed before the hub is built;
//! without one every handle is a no-op.

use std::collections::HashMap;
use std::time::Duration;

use metrics::{Counter, Histogram, counter, gauge, histogram};
use sacred_proto::{ClientInfo, CommandKind, DisconnectCode, ErrorCode};

/// The client kinds that are labels of their own; any other is `other`.
pub(crate) const KINDS: [&str; 4] = ["agent", "app", "service", "other"];

/// The client runtimes that are labels of their own; any other is `other`.
pub(crate) const RUNTIMES: [&str; 6] = ["rust", "python", "browser", "node", "mobile", "other"];

/// A client's kind as a label.
pub(crate) fn kind_label(info: &ClientInfo) -> &'static str {
    label(&KINDS, &info.kind)
}

/// A client's runtime as a label.
pub(crate) fn runtime_label(info: &ClientInfo) -> &'static str {
    label(&RUNTIMES, &info.runtime)
}

fn label<const N: usize>(known: &[&'static str; N], value: &str) -> &'static str {
    known
        .iter()
        .find(|known| **known == value)
        .copied()
        .unwrap_or("other")
}

/// Why a connection was refused, as the `reason` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A browser page of an origin that may not connect (HTTP 403).
    Origin,
    /// The address opened connections too fast (HTTP 429).
    Rate,
    /// The address is locked out (HTTP 429, or 3007 at `connect`).
    Lockout,
    /// The server is draining (HTTP 503).
    Draining,
    /// No subprotocol the server speaks (HTTP 400).
    Subprotocol,
    /// The credential was refused at `connect`.
    Auth,
    /// The server or the user holds as many connections as allowed (3504).
    Limit,
}

impl Refusal {
    const ALL: [Refusal; 7] = [
        Refusal::Origin,
        Refusal::Rate,
        Refusal::Lockout,
        Refusal::Draining,
        Refusal::Subprotocol,
        Refusal::Auth,
        Refusal::Limit,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::Origin => "origin",
            Refusal::Rate => "rate",
            Refusal::Lockout => "lockout",
            Refusal::Draining => "draining",
            Refusal::Subprotocol => "subprotocol",
            Refusal::Auth => "auth",
            Refusal::Limit => "limit",
        }
    }
}

/// The handles the hot paths increment, registered once per hub.
pub(crate) struct Metrics {
    /// Per command kind, in [`CommandKind::ALL`] order: its count and latency.
    commands: Vec<(Counter, Histogram)>,
    pub(crate) publications: Counter,
    pub(crate) deliveries: Counter,
    pub(crate) received_bytes: Counter,
    pub(crate) sent_bytes: Counter,
    pub(crate) heartbeat_rtt: Histogram,
    pub(crate) broker_publish: Histogram,
    pub(crate) broker_errors: Counter,
    pub(crate) rate_limited: Counter,
    pub(crate) auth_failures: Counter,
    pub(crate) recovered: Counter,
    pub(crate) not_recovered: Counter,
    pub(crate) replayed: Counter,
}

impl Metrics {
    /// Registers every handle with the recorder installed now, and
    /// describes every metric (the `# HELP` lines).
    pub(crate) fn register() -> Metrics {
        describe();
        gauge!("sacred_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        // Series with a fixed label set exist from the start, at 0, so that
        // rate() and alerts see them before the first event.
        for why in Refusal::ALL {
            drop(counter!("sacred_connections_refused_total", "reason" => why.label()));
        }
        drop(counter!("sacred_rate_limited_total", "scope" => "connect"));
        drop(counter!("sacred_slow_consumers_total"));
        drop(counter!("sacred_broker_offset_gaps_total"));
        let commands = CommandKind::ALL
            .iter()
            .map(|kind| {
                let name = kind.name();
                (
                    counter!("sacred_commands_total", "command" => name),
                    histogram!("sacred_command_duration_seconds", "command" => name),
                )
            })
            .collect();
        Metrics {
            commands,
            publications: counter!("sacred_publications_total"),
            deliveries: counter!("sacred_deliveries_total"),
            received_bytes: counter!("sacred_received_bytes_total"),
            sent_bytes: counter!("sacred_sent_bytes_total"),
            heartbeat_rtt: histogram!("sacred_heartbeat_rtt_seconds"),
            broker_publish: histogram!("sacred_broker_publish_duration_seconds"),
            broker_errors: counter!("sacred_broker_errors_total"),
            rate_limited: counter!("sacred_rate_limited_total", "scope" => "message"),
            auth_failures: counter!("sacred_auth_failures_total"),
            recovered: counter!("sacred_recoveries_total", "outcome" => "recovered"),
            not_recovered: counter!("sacred_recoveries_total", "outcome" => "not_recovered"),
            replayed: counter!("sacred_recovered_publications_total"),
        }
    }

    /// A command of `kind` ran for `took`.
    pub(crate) fn command(&self, kind: CommandKind, took: Duration) {
        if let Some((count, latency)) = CommandKind::ALL
            .iter()
            .position(|known| *known == kind)
            .and_then(|at| self.commands.get(at))
        {
            count.increment(1);
            latency.record(took.as_secs_f64());
        }
    }

    /// A command was answered with error `code`.
    pub(crate) fn error(&self, code: ErrorCode) {
        counter!("sacred_errors_total", "code" => code.as_u32().to_string()).increment(1);
    }

    /// A connection was accepted (registered after `connect`).
    pub(crate) fn accepted(&self, info: &ClientInfo) {
        counter!(
            "sacred_connections_accepted_total",
            "kind" => kind_label(info),
            "runtime" => runtime_label(info),
        )
        .increment(1);
    }

    /// A connection was refused, before the upgrade or at `connect`.
    pub(crate) fn refused(&self, why: Refusal) {
        counter!("sacred_connections_refused_total", "reason" => why.label()).increment(1);
        if why == Refusal::Rate {
            counter!("sacred_rate_limited_total", "scope" => "connect").increment(1);
        }
    }

    /// A connection ended with `code` (1000s from the client's close frame,
    /// 3000s and 4000s from the server).
    pub(crate) fn disconnected(&self, code: u16) {
        counter!("sacred_disconnects_total", "code" => code.to_string()).increment(1);
        if code == DisconnectCode::SLOW_CONSUMER.as_u16() {
            counter!("sacred_slow_consumers_total").increment(1);
        }
    }
}

/// The gauges set at each scrape, from the hub's state.
#[derive(Debug, Default)]
pub(crate) struct Sample {
    /// Connections by (kind, runtime) label.
    pub(crate) connections: HashMap<(&'static str, &'static str), u64>,
    pub(crate) channels: usize,
    pub(crate) subscriptions: usize,
    /// Connected clients with at least one subscription.
    pub(crate) subscribers: usize,
    /// Of those, the ones whose queue drained within the coherence window.
    pub(crate) caught_up: usize,
    pub(crate) coherence_window: Duration,
    pub(crate) ready: bool,
    pub(crate) broker_up: bool,
    pub(crate) lockouts: u64,
    pub(crate) uptime: Duration,
    pub(crate) store: Option<StoreSample>,
}

/// The store's part of a sample.
#[derive(Debug, Default)]
pub(crate) struct StoreSample {
    pub(crate) up: bool,
    pub(crate) stats: crate::history::StoreStats,
}

impl Sample {
    /// The share of subscribers that are caught up; 1 with none.
    pub(crate) fn coherence(&self) -> f64 {
        if self.subscribers == 0 {
            1.0
        } else {
            self.caught_up as f64 / self.subscribers as f64
        }
    }

    /// Sets the gauges (and the counters a store keeps itself).
    pub(crate) fn record(&self) {
        for kind in KINDS {
            for runtime in RUNTIMES {
                let count = self.connections.get(&(kind, runtime)).copied().unwrap_or(0);
                gauge!("sacred_connections", "kind" => kind, "runtime" => runtime)
                    .set(count as f64);
            }
        }
        gauge!("sacred_channels").set(self.channels as f64);
        gauge!("sacred_subscriptions").set(self.subscriptions as f64);
        gauge!("sacred_subscribers").set(self.subscribers as f64);
        gauge!("sacred_field_coherence").set(self.coherence());
        gauge!("sacred_field_coherence_window_seconds").set(self.coherence_window.as_secs_f64());
        gauge!("sacred_ready").set(f64::from(u8::from(self.ready)));
        gauge!("sacred_broker_up").set(f64::from(u8::from(self.broker_up)));
        counter!("sacred_lockouts_total").absolute(self.lockouts);
        gauge!("sacred_uptime_seconds").set(self.uptime.as_secs_f64());
        if let Some(store) = &self.store {
            let stats = &store.stats;
            gauge!("sacred_store_up").set(f64::from(u8::from(store.up)));
            gauge!("sacred_store_bytes").set(stats.bytes as f64);
            if let Some(max) = stats.max_bytes {
                gauge!("sacred_store_max_bytes").set(max as f64);
            }
            gauge!("sacred_store_publications").set(stats.publications as f64);
            gauge!("sacred_store_streams").set(stats.streams as f64);
            counter!("sacred_store_pruned_total").absolute(stats.pruned);
            counter!("sacred_store_capped_streams_total").absolute(stats.capped_streams);
            counter!("sacred_store_backups_total", "outcome" => "ok").absolute(stats.backups);
            counter!("sacred_store_backups_total", "outcome" => "failed")
                .absolute(stats.failed_backups);
            if let Some(took) = stats.last_prune {
                gauge!("sacred_store_last_prune_duration_seconds").set(took.as_secs_f64());
            }
            if let Some(took) = stats.last_backup {
                gauge!("sacred_store_last_backup_duration_seconds").set(took.as_secs_f64());
            }
        }
    }
}

/// The offset gap a node's gap check gave up on (its subscribers recover).
pub(crate) fn offset_gap() {
    counter!("sacred_broker_offset_gaps_total").increment(1);
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("sacred_build_info", "Always 1; the version is a label.");
    describe_gauge!(
        "sacred_connections",
        "Connected clients by kind and runtime (other: a word the protocol does not name)."
    );
    describe_counter!(
        "sacred_connections_accepted_total",
        "Connections registered after connect, by kind and runtime."
    );
    describe_counter!(
        "sacred_connections_refused_total",
        "Connections refused before the upgrade or at connect, by reason."
    );
    describe_gauge!("sacred_channels", "Channels with subscribers on this node.");
    describe_gauge!("sacred_subscriptions", "Subscriptions on this node.");
    describe_gauge!(
        "sacred_subscribers",
        "Connected clients with at least one subscription."
    );
    describe_gauge!(
        "sacred_field_coherence",
        "Share of subscribers whose outbound queue drained within the coherence window (1 with none)."
    );
    describe_gauge!(
        "sacred_field_coherence_window_seconds",
        Unit::Seconds,
        "The coherence window: a subscriber whose queue drained this recently is caught up."
    );
    describe_counter!("sacred_commands_total", "Commands executed, by command.");
    describe_histogram!(
        "sacred_command_duration_seconds",
        Unit::Seconds,
        "Time from a command's decoding to its reply being queued, by command."
    );
    describe_counter!(
        "sacred_publications_total",
        "Publications accepted (from clients and the host)."
    );
    describe_counter!(
        "sacred_deliveries_total",
        "Publications queued to subscribers on this node."
    );
    describe_counter!(
        "sacred_received_bytes_total",
        Unit::Bytes,
        "WebSocket payload bytes received from clients."
    );
    describe_counter!(
        "sacred_sent_bytes_total",
        Unit::Bytes,
        "WebSocket payload bytes written to clients."
    );
    describe_counter!(
        "sacred_disconnects_total",
        "Connections ended, by close code."
    );
    describe_counter!(
        "sacred_errors_total",
        "Commands answered with an error, by error code."
    );
    describe_counter!(
        "sacred_slow_consumers_total",
        "Clients cut off because their outbound queue filled (3002)."
    );
    describe_counter!(
        "sacred_recoveries_total",
        "Subscribes that asked to recover, by outcome."
    );
    describe_counter!(
        "sacred_recovered_publications_total",
        "Publications replayed by recoveries."
    );
    describe_counter!(
        "sacred_rate_limited_total",
        "Refusals by a rate limit: scope connect (HTTP 429) or message (error 111)."
    );
    describe_counter!(
        "sacred_auth_failures_total",
        "Credentials refused at connect or refresh."
    );
    describe_counter!(
        "sacred_lockouts_total",
        "Addresses locked out for failed authentications."
    );
    describe_gauge!("sacred_ready", "1 while the node takes connections.");
    describe_gauge!(
        "sacred_broker_up",
        "1 while the broker delivers (always 1 on one node)."
    );
    describe_histogram!(
        "sacred_broker_publish_duration_seconds",
        Unit::Seconds,
        "Time the broker took to store and deliver a publication."
    );
    describe_counter!("sacred_broker_errors_total", "Publishes the broker failed.");
    describe_counter!(
        "sacred_broker_offset_gaps_total",
        "Offsets that never arrived from the broker (subscribers were told to recover)."
    );
    describe_histogram!(
        "sacred_heartbeat_rtt_seconds",
        Unit::Seconds,
        "Time from a ping to the client's pong."
    );
    describe_gauge!(
        "sacred_uptime_seconds",
        Unit::Seconds,
        "Time since the hub was built."
    );
    describe_gauge!("sacred_store_up", "1 while the history store answers.");
    describe_gauge!(
        "sacred_store_bytes",
        Unit::Bytes,
        "Bytes the store uses on disk."
    );
    describe_gauge!(
        "sacred_store_max_bytes",
        Unit::Bytes,
        "The store's size cap, when it has one."
    );
    describe_gauge!("sacred_store_publications", "Publications the store keeps.");
    describe_gauge!("sacred_store_streams", "Streams the store keeps.");
    describe_counter!(
        "sacred_store_pruned_total",
        "Expired publications pruned since the store opened."
    );
    describe_counter!(
        "sacred_store_capped_streams_total",
        "Streams dropped because the store reached its cap."
    );
    describe_counter!("sacred_store_backups_total", "Backups by outcome.");
    describe_gauge!(
        "sacred_store_last_prune_duration_seconds",
        Unit::Seconds,
        "How long the last prune took."
    );
    describe_gauge!(
        "sacred_store_last_backup_duration_seconds",
        Unit::Seconds,
        "How long the last successful backup took."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_take_only_the_words_the_protocol_names() {
        let mut info = ClientInfo::default();
        info.kind = "agent".into();
        info.runtime = "python".into();
        assert_eq!(
            (kind_label(&info), runtime_label(&info)),
            ("agent", "python")
        );
        info.kind = "<script>".into();
        info.runtime = "a-user-id-1234".into();
        assert_eq!(
            (kind_label(&info), runtime_label(&info)),
            ("other", "other")
        );
    }

    #[test]
    fn coherence_is_the_share_caught_up_and_one_without_subscribers() {
        let mut sample = Sample::default();
        assert_eq!(sample.coherence(), 1.0);
        sample.subscribers = 4;
        sample.caught_up = 1;
        assert_eq!(sample.coherence(), 0.25);
    }
}
