//! Latency samples and their percentiles, the server's memory, and the
//! progress line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

/// Latencies in nanoseconds; percentiles are exact over what was recorded.
#[derive(Debug, Default)]
pub(crate) struct Samples(Vec<u64>);

impl Samples {
    pub(crate) fn record(&mut self, nanos: u64) {
        self.0.push(nanos);
    }

    pub(crate) fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// `{"p50": µs, "p99": µs, "p99_9": µs, "max": µs, "samples": n}`.
    pub(crate) fn summary(mut self) -> Value {
        if self.0.is_empty() {
            return json!({ "samples": 0 });
        }
        self.0.sort_unstable();
        let at = |q: f64| {
            let index = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len()) - 1;
            micros(self.0[index])
        };
        json!({
            "p50": at(0.50),
            "p99": at(0.99),
            "p99_9": at(0.999),
            "max": micros(*self.0.last().unwrap()),
            "samples": self.0.len(),
        })
    }
}

fn micros(nanos: u64) -> f64 {
    (nanos as f64 / 100.0).round() / 10.0
}

/// Resident memory of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Prints a progress line to stderr every second until dropped: the rate
/// of each counter over the last second.
pub(crate) struct Progress(tokio::task::JoinHandle<()>);

impl Progress {
    pub(crate) fn start(label: String, counters: Vec<(&'static str, Arc<AtomicU64>)>) -> Progress {
        Progress(tokio::spawn(async move {
            let mut last: Vec<u64> = counters
                .iter()
                .map(|(_, c)| c.load(Ordering::Relaxed))
                .collect();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let mut line = label.clone();
                for ((name, counter), last) in counters.iter().zip(&mut last) {
                    let now = counter.load(Ordering::Relaxed);
                    line.push_str(&format!("  {name} {}/s", si(now - *last)));
                    *last = now;
                }
                eprint!("\r{line}    ");
            }
        }))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
        eprintln!();
    }
}

fn si(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

/// CPU time (user + system) process `pid` has used, in seconds, from
/// `/proc/PID/stat` (in clock ticks of 1/100 s, `getconf CLK_TCK` on Linux).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// CPU use over a measured window: cores busy in the server and in this generator.
#[derive(Debug)]
pub(crate) struct CpuWindow {
    server: Option<(u32, f64)>,
    generator: Option<f64>,
    start: std::time::Instant,
}

impl CpuWindow {
    pub(crate) fn start(server_pid: Option<u32>) -> CpuWindow {
        CpuWindow {
            server: server_pid.and_then(|pid| Some((pid, cpu_seconds(pid)?))),
            generator: cpu_seconds(std::process::id()),
            start: std::time::Instant::now(),
        }
    }

    /// `{"server_cores": x, "generator_cores": y}` over the window so far.
    pub(crate) fn summary(&self) -> Value {
        let elapsed = self.start.elapsed().as_secs_f64();
        let cores = |before: f64, after: Option<f64>| {
            after.map(|after| ((after - before) / elapsed * 100.0).round() / 100.0)
        };
        json!({
            "server_cores": self.server.and_then(|(pid, before)| cores(before, cpu_seconds(pid))),
            "generator_cores": self.generator.and_then(|before| cores(before, cpu_seconds(std::process::id()))),
        })
    }
}

/// Settings every traffic scenario (fanout, channels) has.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct TrafficArgs {
    /// Application payload, bytes of JSON text (the same for every server).
    #[arg(long, default_value_t = 200)]
    pub(crate) payload: usize,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 2)]
    pub(crate) warmup: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
}

/// The counters of a traffic scenario (fanout, channels), shared by its tasks.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) published: Arc<AtomicU64>,
    pub(crate) delivered: Arc<AtomicU64>,
    /// Whether the measured window is open: latencies are recorded only then.
    pub(crate) measuring: std::sync::atomic::AtomicBool,
    pub(crate) errors: AtomicU64,
}

/// Rates over the measured window.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) seconds: f64,
    pub(crate) published_per_s: f64,
    pub(crate) delivered_per_s: f64,
    pub(crate) cpu: Value,
    pub(crate) server_rss: Option<u64>,
}

impl Measured {
    /// Which process was the bound: the one that kept its core busy. A row
    /// where the generator is the bound measures the generator, not the server.
    pub(crate) fn bound(&self) -> &'static str {
        let cores = |key: &str| self.cpu[key].as_f64().unwrap_or(0.0);
        let (server, generator) = (cores("server_cores"), cores("generator_cores"));
        if generator >= 0.9 && generator >= server {
            "generator"
        } else if server >= 0.9 {
            "server"
        } else {
            "neither: latency, not CPU"
        }
    }
}

impl Traffic {
    /// After publishing stopped: waits until `expected` deliveries arrived,
    /// or nothing more arrives for a second (at most 30 s), and returns how
    /// many never did.
    pub(crate) async fn settle(&self, expected: u64) -> u64 {
        let mut last = self.delivered.load(Ordering::Relaxed);
        for _ in 0..300 {
            if last >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.delivered.load(Ordering::Relaxed);
            if now == last {
                // A tenth of a second without progress: give it nine more.
                let mut quiet = 1;
                while quiet < 10 && self.delivered.load(Ordering::Relaxed) == now {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    quiet += 1;
                }
                if self.delivered.load(Ordering::Relaxed) == now {
                    break;
                }
            }
            last = self.delivered.load(Ordering::Relaxed);
        }
        expected.saturating_sub(self.delivered.load(Ordering::Relaxed))
    }

    /// Shows progress, waits out the warm-up, then measures for `duration`.
    pub(crate) async fn measure(
        &self,
        label: String,
        server_pid: Option<u32>,
        warmup: u64,
        duration: u64,
    ) -> Measured {
        let progress = Progress::start(
            label,
            vec![
                ("published", Arc::clone(&self.published)),
                ("delivered", Arc::clone(&self.delivered)),
            ],
        );
        tokio::time::sleep(Duration::from_secs(warmup)).await;
        let (published, delivered) = (
            self.published.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
        );
        let cpu = CpuWindow::start(server_pid);
        self.measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(duration)).await;
        self.measuring.store(false, Ordering::Relaxed);
        let seconds = cpu.start.elapsed().as_secs_f64();
        let rate = |counter: &AtomicU64, before: u64| {
            ((counter.load(Ordering::Relaxed) - before) as f64 / seconds * 10.0).round() / 10.0
        };
        let measured = Measured {
            seconds: (seconds * 10.0).round() / 10.0,
            published_per_s: rate(&self.published, published),
            delivered_per_s: rate(&self.delivered, delivered),
            cpu: cpu.summary(),
            server_rss: server_pid.and_then(rss),
        };
        drop(progress);
        measured
    }
}
