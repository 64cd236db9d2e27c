//! What happened in each second of a run: sends, deliveries, acks, joins
//! and closes, counted as they happen, for the report's plots of
//! throughput and connections over time.
//!
//! A counter per second and kind, preallocated for an hour; events later
//! than that count in the last second. Counting is one relaxed atomic add,
//! cheap enough for every frame.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::stats::now_micros;

/// Seconds the timeline holds.
const SECONDS: usize = 3600;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Sent,
    Delivered,
    Acked,
    Joined,
    Closed,
}

const KINDS: usize = 5;

/// Counters per second since the timeline was made.
pub struct Timeline {
    start: u64,
    counts: Vec<[AtomicU64; KINDS]>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

impl Timeline {
    /// A timeline whose second 0 starts now.
    pub fn new() -> Self {
        Timeline { start: now_micros(), counts: (0..SECONDS).map(|_| Default::default()).collect() }
    }

    /// Counts one `event` at `at` (on the `micros_at` clock).
    pub fn count(&self, event: Event, at: u64) {
        let second = usize::try_from(at.saturating_sub(self.start) / 1_000_000).unwrap_or(usize::MAX);
        self.counts[second.min(SECONDS - 1)][event as usize].fetch_add(1, Ordering::Relaxed);
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
        let load = |s: usize, e: Event| self.counts[s][e as usize].load(Ordering::Relaxed);
        let now = usize::try_from(at.saturating_sub(self.start) / 1_000_000).unwrap_or(0).min(SECONDS - 1);
        let last = now.saturating_sub(1);
        let (joined, closed) =
            (0..=now).fold((0u64, 0u64), |(j, c), s| (j + load(s, Event::Joined), c + load(s, Event::Closed)));
        Live {
            sent_per_s: load(last, Event::Sent),
            delivered_per_s: load(last, Event::Delivered),
            acked_per_s: load(last, Event::Acked),
            connections: joined.saturating_sub(closed),
        }
    }

    /// The seconds up to the last one with any event.
    pub fn report(&self) -> TimelineReport {
        let load = |s: usize, e: Event| self.counts[s][e as usize].load(Ordering::Relaxed);
        let used = (0..SECONDS).rev().find(|&s| (0..KINDS).any(|k| self.counts[s][k].load(Ordering::Relaxed) > 0));
        let seconds = used.map_or(0, |last| last + 1);
        let series = |e: Event| (0..seconds).map(|s| load(s, e)).collect::<Vec<_>>();
        let mut open = 0i64;
        let connections = (0..seconds)
            .map(|s| {
                open += i64::try_from(load(s, Event::Joined)).unwrap_or(0);
                open -= i64::try_from(load(s, Event::Closed)).unwrap_or(0);
                open
            })
            .collect();
        TimelineReport {
            seconds: (0..seconds as u64).collect(),
            sent_per_s: series(Event::Sent),
            delivered_per_s: series(Event::Delivered),
            acked_per_s: series(Event::Acked),
            connections,
        }
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_land_in_their_second_and_connections_add_up() {
        let timeline = Timeline::new();
        let at = |s: f64| timeline.start + (s * 1e6) as u64;
        timeline.count(Event::Joined, at(0.1));
        timeline.count(Event::Joined, at(0.9));
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
        timeline.count(Event::Joined, at(0.5));
        timeline.count(Event::Joined, at(0.6));
        timeline.count(Event::Sent, at(1.2));
        timeline.count(Event::Delivered, at(1.3));
        timeline.count(Event::Delivered, at(1.4));
        timeline.count(Event::Closed, at(2.1));
        timeline.count(Event::Sent, at(2.2));
        let live = timeline.live_at(at(2.5));
        assert_eq!(live, Live { sent_per_s: 1, delivered_per_s: 2, acked_per_s: 0, connections: 1 });
    }

    #[test]
    fn an_empty_timeline_has_no_seconds() {
        assert!(Timeline::new().report().seconds.is_empty());
    }
}
