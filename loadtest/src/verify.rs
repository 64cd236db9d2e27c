//! Delivery verification against the protocol's guarantees.
//!
//! The protocol promises that every stored message of a room reaches every
//! session in the room once, in `seq` order, and that `seq` has no gaps in
//! what is stored. So each session checks its own stream of `message`
//! frames ([`SeqCheck`]): after its join point, every `seq` must come once
//! and in increasing order. At the end, everything up to the highest `seq`
//! the room is known to have stored (seen by any of its sessions, or acked
//! to any of them) must have reached each session; what did not is lost.
//!
//! [`RoomProgress`] is shared by the sessions of a room while the test runs,
//! so that each can tell when nothing more is on its way and stop waiting
//! before the drain time is up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

/// What one `seq` was, relative to what the session had received before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next one.
    InOrder,
    /// Newer than the next one: the `skipped` seqs between are missing for now.
    Gap { skipped: u64 },
    /// One of the missing seqs, arriving after a newer one.
    Late,
    /// Already received, or from before the join point.
    Duplicate,
}

/// The `seq`s one session received from one room.
///
/// Only the gaps are stored, as ranges, so a long in-order run costs no
/// memory and a wild `seq` from a broken hub cannot make it allocate.
#[derive(Debug, Clone)]
pub struct SeqCheck {
    /// The highest `seq` received, or the join point before any.
    highest: i64,
    /// Missing seqs below `highest`: start to end, both inclusive.
    missing: BTreeMap<i64, i64>,
    pub received: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
}

impl SeqCheck {
    /// A session that joined when the room's last `seq` was `since`: it
    /// expects `since + 1` next.
    pub fn new(since: i64) -> Self {
        SeqCheck { highest: since, missing: BTreeMap::new(), received: 0, duplicated: 0, out_of_order: 0 }
    }

    /// Takes one received `seq` into account.
    pub fn observe(&mut self, seq: i64) -> Seen {
        self.received += 1;
        if seq > self.highest {
            let first_missing = self.highest.saturating_add(1);
            self.highest = seq;
            if seq == first_missing {
                Seen::InOrder
            } else {
                self.missing.insert(first_missing, seq - 1);
                Seen::Gap { skipped: span(first_missing, seq - 1) }
            }
        } else if self.take_missing(seq) {
            self.out_of_order += 1;
            Seen::Late
        } else {
            self.duplicated += 1;
            Seen::Duplicate
        }
    }

    /// Removes `seq` from the missing ranges; false if it was not missing.
    fn take_missing(&mut self, seq: i64) -> bool {
        let Some((start, end)) = self.missing_range(seq) else {
            return false;
        };
        self.missing.remove(&start);
        if start < seq {
            self.missing.insert(start, seq - 1);
        }
        if seq < end {
            self.missing.insert(seq + 1, end);
        }
        true
    }

    /// Whether `seq` has not been received yet: newer than every one
    /// received, or one of the missing.
    pub fn is_new(&self, seq: i64) -> bool {
        seq > self.highest || self.missing_range(seq).is_some()
    }

    /// The missing range `seq` is in, if it is missing.
    fn missing_range(&self, seq: i64) -> Option<(i64, i64)> {
        let (&start, &end) = self.missing.range(..=seq).next_back()?;
        (end >= seq).then_some((start, end))
    }

    /// The highest `seq` received (the join point if none was).
    pub fn highest(&self) -> i64 {
        self.highest
    }

    /// Whether every seq after the join point up to `seq` has arrived.
    pub fn complete_through(&self, seq: i64) -> bool {
        self.highest >= seq && self.missing.keys().next().is_none_or(|&start| start > seq)
    }

    /// The seqs after the join point up to `room_highest` that never
    /// arrived: the gaps that stayed open, and everything above the highest
    /// one received.
    pub fn lost(&self, room_highest: i64) -> u64 {
        let holes = self.missing.iter().fold(0u64, |sum, (&start, &end)| sum.saturating_add(span(start, end)));
        let tail = if room_highest > self.highest { span(self.highest + 1, room_highest) } else { 0 };
        holes.saturating_add(tail)
    }
}

/// How many seqs `start..=end` holds (`end >= start`).
fn span(start: i64, end: i64) -> u64 {
    u64::try_from(i128::from(end) - i128::from(start) + 1).unwrap_or(u64::MAX)
}

/// What the sessions of one room have sent and had answered, shared
/// between them while the test runs.
#[derive(Debug)]
pub struct RoomProgress {
    /// The highest `seq` acked to any session of the room.
    max_acked: AtomicI64,
    /// Chat frames sent by the room's sessions and not yet answered with
    /// `ack` or `error`. A session whose connection ends takes its own
    /// unanswered frames back out, since they will never be answered.
    unanswered: AtomicI64,
    /// Sessions of the room that joined and have not finished sending.
    sending: AtomicU32,
}

impl Default for RoomProgress {
    fn default() -> Self {
        RoomProgress { max_acked: AtomicI64::new(i64::MIN), unanswered: AtomicI64::new(0), sending: AtomicU32::new(0) }
    }
}

impl RoomProgress {
    /// A session joined and will send.
    pub fn joined(&self) {
        self.sending.fetch_add(1, Ordering::SeqCst);
    }

    /// A session has sent its last frame (or cannot send any more).
    pub fn done_sending(&self) {
        self.sending.fetch_sub(1, Ordering::SeqCst);
    }

    /// `n` frames went out, awaiting answers.
    pub fn sent(&self, n: i64) {
        self.unanswered.fetch_add(n, Ordering::SeqCst);
    }

    /// `n` frames will not be answered, or were: an error or a dead connection.
    pub fn settled(&self, n: i64) {
        self.unanswered.fetch_sub(n, Ordering::SeqCst);
    }

    /// A frame was acked with `seq`.
    pub fn acked(&self, seq: i64) {
        self.max_acked.fetch_max(seq, Ordering::SeqCst);
        self.settled(1);
    }

    /// The highest `seq` acked in the room, if any was.
    pub fn max_acked(&self) -> Option<i64> {
        let seq = self.max_acked.load(Ordering::SeqCst);
        (seq != i64::MIN).then_some(seq)
    }

    /// Whether nothing more can be on its way to the session `check`
    /// belongs to: the room's sessions have all finished sending, every
    /// frame they sent is answered, and the session has received every seq
    /// up to the highest acked one.
    pub fn drained(&self, check: &SeqCheck) -> bool {
        self.sending.load(Ordering::SeqCst) == 0
            && self.unanswered.load(Ordering::SeqCst) <= 0
            && self.max_acked().is_none_or(|seq| check.complete_through(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe_all(check: &mut SeqCheck, seqs: &[i64]) -> Vec<Seen> {
        seqs.iter().map(|&seq| check.observe(seq)).collect()
    }

    #[test]
    fn in_order_once_is_clean() {
        let mut check = SeqCheck::new(0);
        let seen = observe_all(&mut check, &[1, 2, 3, 4, 5]);
        assert!(seen.iter().all(|s| *s == Seen::InOrder));
        assert_eq!((check.received, check.duplicated, check.out_of_order), (5, 0, 0));
        assert!(check.complete_through(5));
        assert_eq!(check.lost(5), 0);
    }

    #[test]
    fn the_join_point_is_where_checking_starts() {
        let mut check = SeqCheck::new(41);
        assert_eq!(check.observe(42), Seen::InOrder);
        assert_eq!(check.observe(41), Seen::Duplicate, "41 came with the join");
        assert_eq!(check.observe(7), Seen::Duplicate);
        assert_eq!(check.lost(42), 0);
    }

    #[test]
    fn a_gap_that_stays_open_is_lost() {
        let mut check = SeqCheck::new(0);
        let seen = observe_all(&mut check, &[1, 2, 5, 6]);
        assert_eq!(seen[2], Seen::Gap { skipped: 2 });
        assert!(!check.complete_through(3));
        assert!(check.complete_through(2));
        assert_eq!(check.lost(6), 2, "3 and 4");
        assert_eq!((check.duplicated, check.out_of_order), (0, 0));
    }

    #[test]
    fn a_late_arrival_fills_its_gap_and_counts_as_out_of_order() {
        let mut check = SeqCheck::new(10);
        let seen = observe_all(&mut check, &[11, 13, 12, 13, 15]);
        assert_eq!(
            seen,
            vec![Seen::InOrder, Seen::Gap { skipped: 1 }, Seen::Late, Seen::Duplicate, Seen::Gap { skipped: 1 }]
        );
        assert_eq!(check.duplicated, 1, "13 twice");
        assert_eq!(check.out_of_order, 1, "12 after 13");
        assert_eq!(check.lost(15), 1, "14 never came");
        assert!(check.complete_through(13));
        assert!(!check.complete_through(14));
    }

    #[test]
    fn filling_the_middle_of_a_gap_splits_it() {
        let mut check = SeqCheck::new(0);
        observe_all(&mut check, &[10, 5, 1, 9]);
        assert_eq!(check.out_of_order, 3);
        // Still missing: 2, 3, 4, 6, 7, 8.
        assert_eq!(check.lost(10), 6);
        assert_eq!(check.observe(5), Seen::Duplicate);
        observe_all(&mut check, &[2, 3, 4, 6, 7, 8]);
        assert_eq!(check.lost(10), 0);
        assert!(check.complete_through(10));
    }

    #[test]
    fn messages_that_never_came_after_the_last_one_are_lost() {
        let mut check = SeqCheck::new(0);
        observe_all(&mut check, &[1, 2, 3]);
        assert_eq!(check.lost(3), 0);
        assert_eq!(check.lost(7), 4, "the room reached 7, this session stopped at 3");
        assert_eq!(check.lost(1), 0, "a lower room maximum loses nothing");
    }

    #[test]
    fn wild_seqs_do_not_overflow_or_allocate() {
        let mut check = SeqCheck::new(0);
        assert_eq!(check.observe(i64::MAX), Seen::Gap { skipped: (i64::MAX - 1) as u64 });
        assert_eq!(check.lost(i64::MAX), (i64::MAX - 1) as u64);
        assert_eq!(check.observe(i64::MIN), Seen::Duplicate);
    }

    #[test]
    fn a_room_is_drained_when_all_sent_is_answered_and_received() {
        let room = RoomProgress::default();
        room.joined();
        room.joined();
        let mut check = SeqCheck::new(0);
        assert!(!room.drained(&check), "still sending");
        room.sent(2);
        room.done_sending();
        room.done_sending();
        assert!(!room.drained(&check), "two frames unanswered");
        room.acked(1);
        room.acked(2);
        assert_eq!(room.max_acked(), Some(2));
        assert!(!room.drained(&check), "acked but not yet received");
        check.observe(1);
        check.observe(2);
        assert!(room.drained(&check));
    }

    #[test]
    fn errors_and_dead_connections_settle_frames() {
        let room = RoomProgress::default();
        room.joined();
        room.sent(3);
        room.done_sending();
        room.settled(1); // an error frame
        room.settled(2); // the connection died with two frames in flight
        let check = SeqCheck::new(0);
        assert_eq!(room.max_acked(), None);
        assert!(room.drained(&check));
    }
}
