//! Latency histograms and the delivery checks.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Microseconds since the process's first call: the clock that message
/// texts carry, so sender and receiver (both in this process) agree.
pub fn now_micros() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The same clock for a given instant, past or future.
pub fn micros_at(at: Instant) -> u64 {
    let now = Instant::now();
    let base = now_micros();
    if at >= now {
        base + u64::try_from(at.duration_since(now).as_micros()).unwrap_or(0)
    } else {
        base.saturating_sub(u64::try_from(now.duration_since(at).as_micros()).unwrap_or(0))
    }
}

/// A latency histogram in microseconds (1 µs to 10 min, 3 digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Summary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// Checks the `seq`s one session receives in one room: each once, in order.
#[derive(Debug, Default)]
pub struct SeqCheck {
    seen: HashSet<i64>,
    max: i64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

impl SeqCheck {
    /// Starts after `since`, the room's `seq` when the session joined.
    pub fn new(since: i64) -> Self {
        SeqCheck { max: since, ..SeqCheck::default() }
    }

    pub fn observe(&mut self, seq: i64) {
        if !self.seen.insert(seq) {
            self.duplicated += 1;
        } else if seq < self.max {
            self.out_of_order += 1;
        }
        self.max = self.max.max(seq);
    }

    /// How many of the `acked` seqs this session never received.
    pub fn missing<'a>(&self, acked: impl IntoIterator<Item = &'a i64>) -> u64 {
        acked.into_iter().filter(|seq| !self.seen.contains(seq)).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_once_is_clean() {
        let mut check = SeqCheck::new(0);
        for seq in 1..=5 {
            check.observe(seq);
        }
        assert_eq!((check.duplicated, check.out_of_order), (0, 0));
        assert_eq!(check.missing(&[1, 2, 3, 4, 5]), 0);
    }

    #[test]
    fn finds_duplicates_reordering_and_losses() {
        let mut check = SeqCheck::new(10);
        for seq in [11, 13, 12, 13, 15] {
            check.observe(seq);
        }
        assert_eq!(check.duplicated, 1);
        assert_eq!(check.out_of_order, 1, "12 after 13");
        assert_eq!(check.missing(&[11, 12, 13, 14, 15]), 1, "14 never came");
    }

    #[test]
    fn the_clock_maps_past_and_future_instants() {
        let now = Instant::now();
        let t = now_micros();
        let later = micros_at(now + std::time::Duration::from_secs(2));
        let earlier = micros_at(now - std::time::Duration::from_millis(1));
        assert!(later >= t + 1_999_000 && later <= t + 2_100_000, "{t} {later}");
        assert!(earlier < later);
    }

    #[test]
    fn summaries_are_in_milliseconds() {
        let mut h = histogram();
        for us in [1000, 2000, 3000, 100_000] {
            h.record(us).unwrap();
        }
        let s = Summary::of(&h);
        assert_eq!(s.count, 4);
        assert!((s.p50 - 2.0).abs() < 0.01, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
    }
}
