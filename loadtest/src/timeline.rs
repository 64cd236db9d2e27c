//! What happened in each second of a run: sends, deliveries, acks, relayed
//! signals, consultations, reconnects, and sessions opened and closed,
//! counted as they happen, for the reports' plots of throughput and
//! connections over time, and the delivery latency of each second (its
//! median, 99th percentile and maximum), for the plot of latency over time
//! that shows when a run's tail happened, not only how long it was.
//!
//! One [`Timeline`] counts every kind; each scenario reports the kinds it
//! has: [`TimelineReport`] for chat, [`ConsultTimelineReport`] for consult.
//!
//! A counter per second and kind, preallocated for an hour; events later
//! than that count in the last second. Counting is one relaxed atomic add,
//! cheap enough for every frame. A second's latencies go into buckets of
//! their own, allocated when the second sees its first delivery: buckets
//! four to an octave, so a percentile is within 12.5 % of the true one; the
//! maximum is exact.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::stats::now_micros;

/// Seconds the timeline holds.
const SECONDS: usize = 3600;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Sent,
    /// A `message` frame reached a session (chat: every copy; consult: the
    /// other side's, at its delivery step).
    Delivered,
    Acked,
    /// A session opened: joined (chat) or connected (consult).
    Opened,
    Closed,
    /// A signal relayed to the other side of a consultation.
    Signaled,
    /// A consultation began, went through every step, or failed.
    Started,
    Completed,
    Failed,
    /// A patient rejoined after dropping its connection.
    Reconnected,
}

const KINDS: usize = 10;

/// Latency buckets of one second: values under 8 µs exactly, then four
/// buckets per power of two up to 2^32 µs (71 minutes), and one above.
const BUCKETS: usize = 8 + 29 * 4 + 1;

/// The delivery latencies of one second.
struct Latencies {
    buckets: [AtomicU64; BUCKETS],
    max: AtomicU64,
}

/// Counters per second since the timeline was made.
pub struct Timeline {
    start: u64,
    counts: Vec<[AtomicU64; KINDS]>,
    latencies: Vec<OnceLock<Box<Latencies>>>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

impl Timeline {
    /// A timeline whose second 0 starts now.
    pub fn new() -> Self {
        Timeline {
            start: now_micros(),
            counts: (0..SECONDS).map(|_| Default::default()).collect(),
            latencies: (0..SECONDS).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Counts a delivery at `at` that took `micros` from its send.
    pub fn delivered(&self, at: u64, micros: u64) {
        self.count(Event::Delivered, at);
        let second = self.second(at);
        let latencies = self.latencies[second].get_or_init(|| {
            Box::new(Latencies { buckets: std::array::from_fn(|_| AtomicU64::new(0)), max: AtomicU64::new(0) })
        });
        latencies.buckets[bucket(micros)].fetch_add(1, Ordering::Relaxed);
        if latencies.max.load(Ordering::Relaxed) < micros {
            latencies.max.fetch_max(micros, Ordering::Relaxed);
        }
    }

    fn second(&self, at: u64) -> usize {
        let second = usize::try_from(at.saturating_sub(self.start) / 1_000_000).unwrap_or(usize::MAX);
        second.min(SECONDS - 1)
    }

    /// Counts one `event` at `at` (on the `micros_at` clock).
    pub fn count(&self, event: Event, at: u64) {
        self.counts[self.second(at)][event as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one `event` now.
    pub fn now(&self, event: Event) {
        self.count(event, now_micros());
    }

    /// The rates of the last full second, and the sessions open now.
    pub fn live(&self) -> Live {
        self.live_at(now_micros())
    }

    /// [`Timeline::live`] at `at` (on the `micros_at` clock).
    fn live_at(&self, at: u64) -> Live {
        let load = |s: usize, e: Event| self.load(s, e);
        let now = usize::try_from(at.saturating_sub(self.start) / 1_000_000).unwrap_or(0).min(SECONDS - 1);
        let last = now.saturating_sub(1);
        let (joined, closed) =
            (0..=now).fold((0u64, 0u64), |(j, c), s| (j + load(s, Event::Opened), c + load(s, Event::Closed)));
        Live {
            sent_per_s: load(last, Event::Sent),
            delivered_per_s: load(last, Event::Delivered),
            acked_per_s: load(last, Event::Acked),
            connections: joined.saturating_sub(closed),
        }
    }

    /// The chat report's timeline: the seconds up to the last one with any
    /// event.
    pub fn report(&self) -> TimelineReport {
        let seconds = self.used();
        TimelineReport {
            seconds: (0..seconds as u64).collect(),
            sent_per_s: self.series(Event::Sent, seconds),
            delivered_per_s: self.series(Event::Delivered, seconds),
            acked_per_s: self.series(Event::Acked, seconds),
            connections: self.connections(seconds),
            delivery_ms: self.latency_series(seconds),
        }
    }

    /// The consult report's timeline, like [`Timeline::report`].
    pub fn consult_report(&self) -> ConsultTimelineReport {
        let seconds = self.used();
        ConsultTimelineReport {
            seconds: (0..seconds as u64).collect(),
            started_per_s: self.series(Event::Started, seconds),
            completed_per_s: self.series(Event::Completed, seconds),
            failed_per_s: self.series(Event::Failed, seconds),
            delivered_per_s: self.series(Event::Delivered, seconds),
            signals_per_s: self.series(Event::Signaled, seconds),
            reconnects_per_s: self.series(Event::Reconnected, seconds),
            connections: self.connections(seconds),
            delivery_ms: self.latency_series(seconds),
        }
    }

    /// The delivery latency of each of the first `seconds` seconds.
    fn latency_series(&self, seconds: usize) -> LatencySeries {
        let mut series = LatencySeries::default();
        for second in 0..seconds {
            let summary = self.latencies[second].get().and_then(|l| l.summary());
            series.p50.push(summary.map(|s| s.0));
            series.p99.push(summary.map(|s| s.1));
            series.max.push(summary.map(|s| s.2));
        }
        series
    }

    fn load(&self, second: usize, event: Event) -> u64 {
        self.counts[second][event as usize].load(Ordering::Relaxed)
    }

    /// Seconds up to the last one with any event.
    fn used(&self) -> usize {
        let used = (0..SECONDS).rev().find(|&s| (0..KINDS).any(|k| self.counts[s][k].load(Ordering::Relaxed) > 0));
        used.map_or(0, |last| last + 1)
    }

    /// `event` in each of the first `seconds` seconds.
    fn series(&self, event: Event, seconds: usize) -> Vec<u64> {
        (0..seconds).map(|s| self.load(s, event)).collect()
    }

    /// Sessions open at the end of each of the first `seconds` seconds.
    fn connections(&self, seconds: usize) -> Vec<i64> {
        let mut open = 0i64;
        (0..seconds)
            .map(|s| {
                open += i64::try_from(self.load(s, Event::Opened)).unwrap_or(0);
                open -= i64::try_from(self.load(s, Event::Closed)).unwrap_or(0);
                open
            })
            .collect()
    }
}

impl Latencies {
    /// The median, 99th percentile and maximum in ms, if any was counted.
    fn summary(&self) -> Option<(f64, f64, f64)> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let max = self.max.load(Ordering::Relaxed);
        let at = |q: f64| {
            let rank = ((total as f64 * q).ceil() as u64).max(1);
            let mut seen = 0;
            let index = counts.iter().position(|&c| {
                seen += c;
                seen >= rank
            });
            // A bucket stands for its middle, never above the maximum.
            index.map_or(max, |i| middle(i).min(max)) as f64 / 1000.0
        };
        Some((at(0.50), at(0.99), max as f64 / 1000.0))
    }
}

/// The bucket of a latency of `micros`.
fn bucket(micros: u64) -> usize {
    if micros < 8 {
        return micros as usize;
    }
    let octave = 63 - micros.leading_zeros() as usize; // 3 and up
    let quarter = ((micros >> (octave - 2)) & 3) as usize;
    (8 + (octave - 3) * 4 + quarter).min(BUCKETS - 1)
}

/// The middle of bucket `index`, in µs.
fn middle(index: usize) -> u64 {
    if index < 8 {
        return index as u64;
    }
    let (octave, quarter) = ((index - 8) / 4 + 3, ((index - 8) % 4) as u64);
    let step = 1u64 << (octave - 2);
    (1u64 << octave) + quarter * step + step / 2
}

/// What the progress line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub sent_per_s: u64,
    pub delivered_per_s: u64,
    pub acked_per_s: u64,
    pub connections: u64,
}

/// The timeline in the report: one entry per second from the start of the
/// run (setup and connecting included).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimelineReport {
    pub seconds: Vec<u64>,
    pub sent_per_s: Vec<u64>,
    pub delivered_per_s: Vec<u64>,
    pub acked_per_s: Vec<u64>,
    /// Sessions joined and not yet closed at the end of each second.
    pub connections: Vec<i64>,
    /// The latency of the deliveries of each second.
    pub delivery_ms: LatencySeries,
}

/// A latency per second: its median, 99th percentile and maximum in ms,
/// `null` for a second without deliveries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencySeries {
    pub p50: Vec<Option<f64>>,
    pub p99: Vec<Option<f64>>,
    pub max: Vec<Option<f64>>,
}

/// The consult report's timeline: one entry per second from the start of
/// the run (displays connecting included).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConsultTimelineReport {
    pub seconds: Vec<u64>,
    /// Consultations that began, went through every step, or failed.
    pub started_per_s: Vec<u64>,
    pub completed_per_s: Vec<u64>,
    pub failed_per_s: Vec<u64>,
    /// Chat messages that reached the other side of their consultation.
    pub delivered_per_s: Vec<u64>,
    /// Signals (offers, answers, candidates) relayed to the other side.
    pub signals_per_s: Vec<u64>,
    /// Patients that rejoined after dropping their connection.
    pub reconnects_per_s: Vec<u64>,
    /// Connections (patients, doctors, displays) open at the end of each
    /// second.
    pub connections: Vec<i64>,
    /// The latency of the chat deliveries of each second.
    pub delivery_ms: LatencySeries,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_land_in_their_second_and_connections_add_up() {
        let timeline = Timeline::new();
        let at = |s: f64| timeline.start + (s * 1e6) as u64;
        timeline.count(Event::Opened, at(0.1));
        timeline.count(Event::Opened, at(0.9));
        timeline.count(Event::Sent, at(1.5));
        timeline.count(Event::Delivered, at(1.6));
        timeline.count(Event::Delivered, at(2.2));
        timeline.count(Event::Closed, at(3.0));
        // Beyond the hour: counted in the last second.
        timeline.count(Event::Acked, at(1.0e9));
        let report = timeline.report();
        assert_eq!(report.seconds.len(), SECONDS, "an event in the last second keeps every second");
        assert_eq!(&report.sent_per_s[..4], &[0, 1, 0, 0]);
        assert_eq!(&report.delivered_per_s[..4], &[0, 1, 1, 0]);
        assert_eq!(&report.connections[..4], &[2, 2, 2, 1]);
        assert_eq!(report.acked_per_s[SECONDS - 1], 1);
    }

    #[test]
    fn the_live_view_shows_the_last_full_second() {
        let timeline = Timeline::new();
        let at = |s: f64| timeline.start + (s * 1e6) as u64;
        timeline.count(Event::Opened, at(0.5));
        timeline.count(Event::Opened, at(0.6));
        timeline.count(Event::Sent, at(1.2));
        timeline.count(Event::Delivered, at(1.3));
        timeline.count(Event::Delivered, at(1.4));
        timeline.count(Event::Closed, at(2.1));
        timeline.count(Event::Sent, at(2.2));
        let live = timeline.live_at(at(2.5));
        assert_eq!(live, Live { sent_per_s: 1, delivered_per_s: 2, acked_per_s: 0, connections: 1 });
    }

    #[test]
    fn the_consult_timeline_has_its_own_kinds() {
        let timeline = Timeline::new();
        let at = |s: f64| timeline.start + (s * 1e6) as u64;
        timeline.count(Event::Opened, at(0.2));
        timeline.count(Event::Started, at(0.3));
        timeline.count(Event::Signaled, at(0.4));
        timeline.count(Event::Signaled, at(1.1));
        timeline.count(Event::Delivered, at(1.2));
        timeline.count(Event::Reconnected, at(1.3));
        timeline.count(Event::Completed, at(2.5));
        timeline.count(Event::Failed, at(2.6));
        timeline.count(Event::Closed, at(2.7));
        let report = timeline.consult_report();
        assert_eq!(report.seconds, [0, 1, 2]);
        assert_eq!((report.started_per_s, report.signals_per_s), (vec![1, 0, 0], vec![1, 1, 0]));
        assert_eq!((report.delivered_per_s, report.reconnects_per_s), (vec![0, 1, 0], vec![0, 1, 0]));
        assert_eq!((report.completed_per_s, report.failed_per_s), (vec![0, 0, 1], vec![0, 0, 1]));
        assert_eq!(report.connections, [1, 1, 0]);
    }

    #[test]
    fn each_second_has_its_own_latency_percentiles() {
        let timeline = Timeline::new();
        let at = |s: f64| timeline.start + (s * 1e6) as u64;
        // Second 0: 99 deliveries of 2 ms and one of 40 ms.
        for _ in 0..99 {
            timeline.delivered(at(0.5), 2_000);
        }
        timeline.delivered(at(0.6), 40_000);
        // Second 2: 200 deliveries of 10 ms, two of 100 ms, one of 150 ms.
        for _ in 0..200 {
            timeline.delivered(at(2.1), 10_000);
        }
        timeline.delivered(at(2.2), 100_000);
        timeline.delivered(at(2.3), 100_000);
        timeline.delivered(at(2.4), 150_000);
        let report = timeline.report();
        let close = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() <= want * 0.13);
        let d = &report.delivery_ms;
        assert_eq!(report.delivered_per_s, [100, 0, 203]);
        assert!(close(d.p50[0], 2.0) && close(d.p99[0], 2.0), "{d:?}");
        assert_eq!(d.max[0], Some(40.0));
        assert_eq!((d.p50[1], d.p99[1], d.max[1]), (None, None, None), "a second without deliveries");
        assert!(close(d.p50[2], 10.0) && close(d.p99[2], 100.0), "{d:?}");
        assert_eq!(d.max[2], Some(150.0));
    }

    #[test]
    fn buckets_hold_their_values_and_rise_with_them() {
        let mut last = 0;
        for micros in (0..100_000u64).chain([1 << 31, u64::MAX]) {
            let b = bucket(micros);
            assert!(b >= last && b < BUCKETS, "bucket {b} of {micros} after {last}");
            last = b;
            if micros >= 8 && b < BUCKETS - 1 {
                let m = middle(b) as f64;
                assert!((m - micros as f64).abs() <= micros as f64 * 0.125, "{micros} in the bucket of {m}");
            }
        }
    }

    #[test]
    fn an_empty_timeline_has_no_seconds() {
        assert!(Timeline::new().report().seconds.is_empty());
    }
}
