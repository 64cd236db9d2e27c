//! The measurement clock, latency histograms, and the reports (the printed
//! table and the JSON file).
//!
//! Latencies are recorded in microseconds in HDR histograms and reported in
//! milliseconds. Thousands of sessions record concurrently, and one HDR
//! histogram covering 1 µs to 10 minutes at 3 significant digits is about
//! 170 KiB, so sessions do not own histograms: they record into a few
//! shared shards ([`Latencies`]) that are merged once at the end.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency a histogram tracks; larger values are recorded as
/// this (10 minutes, in microseconds).
const MAX_MICROS: u64 = 600_000_000;

/// The process-wide epoch of the measurement clock. Call it once at startup
/// so the epoch is fixed before any timestamp is taken.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds from the epoch to `at` (0 for instants before it). Message
/// texts carry this clock; sender and receivers are all in this process,
/// so they agree on it exactly.
pub fn micros_at(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_micros()).unwrap_or(u64::MAX)
}

/// Microseconds from the epoch to now.
pub fn now_micros() -> u64 {
    micros_at(Instant::now())
}

/// An empty latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("the bounds are valid constants")
}

/// Records a latency, clamped into the histogram's range: 0 µs (possible
/// only through rounding) counts as 1 µs and anything beyond 10 minutes as
/// 10 minutes, rather than being dropped.
pub fn record(histogram: &mut Histogram<u64>, micros: u64) {
    histogram.saturating_record(micros.max(1));
}

/// Latency histograms per step, sharded so that concurrent sessions rarely
/// wait for one another's lock.
pub struct Latencies {
    shards: Vec<Mutex<Vec<Histogram<u64>>>>,
}

impl Latencies {
    /// Histograms for `steps` steps in `shards` shards (at least one).
    pub fn new(steps: usize, shards: usize) -> Self {
        let shards = (0..shards.max(1)).map(|_| Mutex::new((0..steps).map(|_| histogram()).collect())).collect();
        Latencies { shards }
    }

    /// A shard count that keeps contention low on this machine.
    pub fn default_shards() -> usize {
        std::thread::available_parallelism().map_or(8, |n| n.get() * 2).min(64)
    }

    /// Records `micros` for `step`; `key` (a session number) picks the shard.
    pub fn record(&self, key: usize, step: usize, micros: u64) {
        // A panic while a shard was locked cannot leave a histogram half
        // updated in a way that matters for a report, so poisoning is ignored.
        let mut shard = self.shards[key % self.shards.len()].lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(histogram) = shard.get_mut(step) {
            record(histogram, micros);
        }
    }

    /// All shards merged: one histogram per step.
    pub fn merged(&self) -> Vec<Histogram<u64>> {
        let mut merged: Vec<Histogram<u64>> = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if merged.is_empty() {
                merged = shard.iter().map(|_| histogram()).collect();
            }
            for (total, part) in merged.iter_mut().zip(shard.iter()) {
                total.add(part).expect("histograms of the same bounds add");
            }
        }
        merged
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }

    /// `p50 … max` for a one-line summary.
    pub fn line(&self) -> String {
        format!(
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            self.p50, self.p90, self.p99, self.max, self.count
        )
    }
}

/// A rate over a duration, safe for a zero duration.
pub fn per_second(count: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Adds `n` to the count of `key`.
pub fn bump(counts: &mut BTreeMap<String, u64>, key: impl Into<String>, n: u64) {
    *counts.entry(key.into()).or_default() += n;
}

/// `a 3, b 1`, or `none`.
pub fn counts_line(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

/// One step of the chat scenario as measured.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The offered send rate of the step (all sessions together).
    pub offered_per_s: f64,
    /// Sends actually scheduled in the measured window; below the offered
    /// rate only if the load tester itself could not keep up.
    pub sent_per_s: f64,
    /// `message` frames received by all sessions together; with two
    /// sessions per room a keeping-up hub delivers twice the send rate.
    pub delivered_per_s: f64,
    pub acked_per_s: f64,
    pub latency_ms: StepLatency,
}

/// Delivery and ack latency of one step.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StepLatency {
    pub delivery: Summary,
    /// Deliveries to the room's other session only (across nodes with
    /// `--peer-url`).
    pub peer: Summary,
    pub ack: Summary,
}

/// Delivery, ack and join latency for the top level of the chat report.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ChatLatency {
    pub delivery: Summary,
    pub peer: Summary,
    pub ack: Summary,
    pub join: Summary,
}

/// The whole chat report, as written to `--json`. The top-level rates and
/// latencies are those of the last step (the only one unless `--rate` is a
/// list); `steps` has every step.
#[derive(Debug, Clone, Serialize)]
pub struct ChatReport {
    pub scenario: serde_json::Value,
    pub offered_per_s: f64,
    pub sent_per_s: f64,
    pub delivered_per_s: f64,
    pub acked_per_s: f64,
    pub latency_ms: ChatLatency,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// `error` frames received, by code, but for the refusals answered by
    /// sending the message again (`resent`).
    pub errors: BTreeMap<String, u64>,
    /// Refusals (`unavailable`, `rate_limited`) answered by sending the
    /// same message again, by code.
    pub resent: BTreeMap<String, u64>,
    /// Sessions that joined and took part.
    pub sessions: usize,
    /// Sessions that could not connect or join, by reason.
    pub failed_sessions: usize,
    pub failures: BTreeMap<String, u64>,
    /// Sessions whose connection closed or broke before the end, by reason.
    pub closed_sessions: usize,
    pub closes: BTreeMap<String, u64>,
    pub join_per_s: f64,
    /// Acks received over the whole run, warm-up included.
    pub acked: u64,
    pub steps: Vec<StepReport>,
    /// Latency by percentile over every measured step, for plotting.
    pub distribution_ms: Distribution,
    /// Frames and connections per second of the whole run.
    pub timeline: crate::timeline::TimelineReport,
    /// Chat frames that got neither an ack nor an error by the end of the
    /// drain.
    pub unanswered: u64,
    /// `message` frames that reached a session of another room.
    pub misrouted: u64,
    /// Of `duplicated`: sends stored twice, that is, received under two
    /// `seq`s with one (sender, client_id).
    pub stored_twice: u64,
    /// No loss, duplicate, reordering or misrouted message; every session
    /// joined and stayed; every send was answered, and some were acked.
    pub clean: bool,
}

/// Latency by percentile: `[percentile, ms]` pairs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Distribution {
    pub delivery: Vec<(f64, f64)>,
    pub ack: Vec<(f64, f64)>,
}

/// The percentiles a [`Distribution`] has.
const PERCENTILES: [f64; 13] = [0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 99.999, 100.0];

/// `[percentile, ms]` of the histograms together (empty when they are).
pub fn distribution(histograms: &[Histogram<u64>]) -> Vec<(f64, f64)> {
    let mut all = histogram();
    for h in histograms {
        all.add(h).expect("histograms of the same bounds add");
    }
    if all.is_empty() {
        return Vec::new();
    }
    PERCENTILES.iter().map(|&p| (p, all.value_at_quantile(p / 100.0) as f64 / 1000.0)).collect()
}

impl ChatReport {
    /// Prints the report as a table, one row per step.
    pub fn print(&self) {
        println!();
        println!(
            "sessions: {} joined, {} failed, {:.0} joins/s; join latency {}",
            self.sessions,
            self.failed_sessions,
            self.join_per_s,
            self.latency_ms.join.line()
        );
        if !self.failures.is_empty() {
            println!("join failures: {}", counts_line(&self.failures));
        }
        println!();
        println!(
            "{:>10} {:>10} {:>11} {:>10} │ {:>8} {:>8} {:>8} {:>9} │ {:>8} {:>8} {:>8} {:>9}",
            "offered/s",
            "sent/s",
            "deliver/s",
            "acked/s",
            "del p50",
            "del p90",
            "del p99",
            "del max",
            "ack p50",
            "ack p90",
            "ack p99",
            "ack max"
        );
        for step in &self.steps {
            let (d, a) = (step.latency_ms.delivery, step.latency_ms.ack);
            println!(
                "{:>10.0} {:>10.0} {:>11.0} {:>10.0} │ {:>8.2} {:>8.2} {:>8.2} {:>9.2} │ {:>8.2} {:>8.2} {:>8.2} {:>9.2}",
                step.offered_per_s,
                step.sent_per_s,
                step.delivered_per_s,
                step.acked_per_s,
                d.p50,
                d.p90,
                d.p99,
                d.max,
                a.p50,
                a.p90,
                a.p99,
                a.max
            );
        }
        println!("(latencies in ms from the scheduled send time; each send is delivered to both sessions of its room)");
        println!();
        println!("deliveries to the room's other session only (across nodes with --peer-url):");
        for step in &self.steps {
            println!("{:>10.0}/s offered: {}", step.offered_per_s, step.latency_ms.peer.line());
        }
        println!();
        println!(
            "verification: {} acks; lost {}, duplicated {} (stored twice {}), out of order {}, misrouted {}, unanswered {}",
            self.acked,
            self.lost,
            self.duplicated,
            self.stored_twice,
            self.out_of_order,
            self.misrouted,
            self.unanswered
        );
        println!("error frames: {}", counts_line(&self.errors));
        println!("refused and sent again: {}", counts_line(&self.resent));
        println!("connections closed early: {} ({})", self.closed_sessions, counts_line(&self.closes));
        println!("result: {}", if self.clean { "PASS" } else { "FAIL" });
    }
}

/// The idle report, as written to `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub scenario: serde_json::Value,
    pub sessions: usize,
    pub failed_sessions: usize,
    pub failures: BTreeMap<String, u64>,
    pub join_per_s: f64,
    pub latency_ms: IdleLatency,
    /// Sessions the hub closed (or that broke) during the hold, by reason.
    pub closed_sessions: usize,
    pub closes: BTreeMap<String, u64>,
    pub rss_kib_before: Option<u64>,
    pub rss_kib_after: Option<u64>,
    /// At the end of the hold, to show growth while idle.
    pub rss_kib_end: Option<u64>,
    pub rss_kib_per_session: Option<f64>,
    /// Every session joined and none was closed during the hold.
    pub clean: bool,
}

/// Join latency of the idle scenario.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct IdleLatency {
    pub join: Summary,
}

impl IdleReport {
    pub fn print(&self) {
        println!();
        println!("sessions: {} joined, {} failed, {:.0} joins/s", self.sessions, self.failed_sessions, self.join_per_s);
        println!("join latency: {}", self.latency_ms.join.line());
        if !self.failures.is_empty() {
            println!("join failures: {}", counts_line(&self.failures));
        }
        println!("closed during the hold: {} ({})", self.closed_sessions, counts_line(&self.closes));
        if let (Some(before), Some(after)) = (self.rss_kib_before, self.rss_kib_after) {
            println!("hub VmRSS: {before} KiB before connecting, {after} KiB with all sessions joined");
        }
        if let Some(end) = self.rss_kib_end {
            println!("hub VmRSS at the end of the hold: {end} KiB");
        }
        if let Some(per) = self.rss_kib_per_session {
            println!("hub memory per joined session: {per:.2} KiB");
        }
        println!("result: {}", if self.clean { "PASS" } else { "FAIL" });
    }
}

/// Writes a report as pretty JSON.
pub fn write_json(path: &Path, report: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").map_err(|err| anyhow::anyhow!("cannot write {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_counts_from_the_epoch() {
        let start = epoch();
        assert_eq!(micros_at(start), 0);
        assert_eq!(micros_at(start + Duration::from_millis(1500)), 1_500_000);
        assert!(now_micros() >= micros_at(start));
    }

    #[test]
    fn summaries_are_in_milliseconds() {
        let mut h = histogram();
        for us in [1000, 2000, 3000, 100_000] {
            record(&mut h, us);
        }
        let s = Summary::of(&h);
        assert_eq!(s.count, 4);
        assert!((s.p50 - 2.0).abs() < 0.01, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
        assert_eq!(Summary::of(&histogram()), Summary::default());
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_dropped() {
        let mut h = histogram();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert!(h.max() >= MAX_MICROS);
    }

    #[test]
    fn shards_merge_per_step() {
        let latencies = Latencies::new(2, 4);
        for key in 0..10 {
            latencies.record(key, 0, 1000);
        }
        latencies.record(3, 1, 5000);
        latencies.record(3, 7, 5000); // no such step: ignored
        let merged = latencies.merged();
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].len(), 10);
        assert_eq!(merged[1].len(), 1);
    }

    #[test]
    fn rates_and_counts() {
        assert_eq!(per_second(500, Duration::from_secs(2)), 250.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
        let mut counts = BTreeMap::new();
        assert_eq!(counts_line(&counts), "none");
        bump(&mut counts, "rate_limited", 2);
        bump(&mut counts, "forbidden", 1);
        bump(&mut counts, "rate_limited", 1);
        assert_eq!(counts_line(&counts), "forbidden 1, rate_limited 3");
    }
}
