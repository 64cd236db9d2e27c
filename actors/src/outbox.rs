//! The bounded queue of frames from rooms to one session.
//!
//! A room never waits for a session: it offers each frame with
//! [`Outbox::push`], and a full outbox means the session cannot keep up. The
//! room then drops the frame and raises the overflow flag, which the
//! session's task turns into a close with code 4009. That keeps one slow
//! phone from holding back a room, or the node.
//!
//! Every joined session holds one for as long as it lives, idle or not, so
//! it is small: a lock around a `VecDeque` that holds memory only while
//! frames wait, and two [`Notify`]s. (A tokio channel preallocates a block of 32
//! slots and cache-padded counters: about 1.5 KiB a session.)
//!
//! Besides frames, an outbox carries what a session lost when an actor it
//! follows stopped under it, which only a fault in the hub makes happen
//! ([`Outbox::lost`]): the session's task takes it up in the order it came,
//! after the frames queued before it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytestring::ByteString;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::{QueueId, RoomHandle};

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Woken on every push; its stored permit covers a push that comes
    /// while the session is not waiting.
    ready: Notify,
    overflow: Notify,
}

#[derive(Debug)]
struct Queue {
    frames: VecDeque<ByteString>,
    /// What the session lost, with the number of frames queued before each.
    lost: Vec<(usize, Lost)>,
    capacity: usize,
    senders: usize,
    receiver_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock, and a queue of frames is
        // whole after any of its operations.
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The sending side, held by every room the session is in.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The session's side of its outbox.
#[derive(Debug)]
pub struct OutboxReceiver {
    shared: Arc<Shared>,
}

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The outbox was full: the frame is dropped and the session will close.
    Overflow,
    /// The session is gone.
    Closed,
}

/// What a session lost when a room or queue stopped under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// It was in this room, through this handle.
    Room { room: String, handle: RoomHandle },
    /// It watched this queue.
    Watch(QueueId),
    /// It waited in a queue, checked in for this consultation.
    CheckIn(String),
}

/// What a session's task takes from its outbox next. (A loss is boxed so
/// that this is no larger than a frame: every session's task holds one.)
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Frame(ByteString),
    Lost(Box<Lost>),
}

/// Makes an outbox that holds at most `capacity` frames.
pub fn outbox(capacity: usize) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            frames: VecDeque::new(),
            lost: Vec::new(),
            capacity: capacity.max(1),
            senders: 1,
            receiver_gone: false,
        }),
        ready: Notify::new(),
        overflow: Notify::new(),
    });
    (Outbox { shared: shared.clone() }, OutboxReceiver { shared })
}

impl Outbox {
    /// Offers a frame without waiting. The bytes are shared, not copied, so
    /// a broadcast costs one serialization for the whole room.
    pub fn push(&self, frame: ByteString) -> Push {
        let mut queue = self.shared.lock();
        if queue.receiver_gone {
            return Push::Closed;
        }
        if queue.frames.len() >= queue.capacity {
            drop(queue);
            // notify_one stores a permit, so the session sees the overflow
            // even if it is not waiting at this moment.
            self.shared.overflow.notify_one();
            return Push::Overflow;
        }
        queue.frames.push_back(frame);
        drop(queue);
        self.shared.ready.notify_one();
        Push::Queued
    }

    /// Tells the session what it lost, after the frames queued so far. Not
    /// bounded by the capacity: a room or queue says it once, as it stops.
    pub fn lost(&self, lost: Lost) {
        let mut queue = self.shared.lock();
        if queue.receiver_gone {
            return;
        }
        let after = queue.frames.len();
        queue.lost.push((after, lost));
        drop(queue);
        self.shared.ready.notify_one();
    }

    /// Whether the session's task still reads this outbox.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().receiver_gone
    }
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Outbox { shared: self.shared.clone() }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let last = {
            let mut queue = self.shared.lock();
            queue.senders -= 1;
            queue.senders == 0
        };
        if last {
            self.shared.ready.notify_one();
        }
    }
}

impl OutboxReceiver {
    /// The next frame or loss, or `None` once it is empty and every sender
    /// is gone. Cancel-safe: a frame is taken only by the call that returns
    /// it.
    pub async fn recv(&self) -> Option<Next> {
        loop {
            {
                let mut queue = self.shared.lock();
                if let Some(next) = Self::take(&mut queue) {
                    return Some(next);
                }
                if queue.senders == 0 {
                    return None;
                }
            }
            self.shared.ready.notified().await;
        }
    }

    /// The next frame if one is waiting and no loss comes before it.
    pub fn try_recv(&self) -> Option<ByteString> {
        let mut queue = self.shared.lock();
        if queue.lost.first().is_some_and(|(after, _)| *after == 0) {
            return None;
        }
        Self::pop(&mut queue)
    }

    /// Completes once a push found the outbox full (also if that happened
    /// before this was made).
    pub fn overflowed(&self) -> Notified<'_> {
        self.shared.overflow.notified()
    }

    /// A loss whose frames before it are gone, else the next frame.
    fn take(queue: &mut Queue) -> Option<Next> {
        if queue.lost.first().is_some_and(|(after, _)| *after == 0) {
            let (_, lost) = queue.lost.remove(0);
            if queue.lost.is_empty() {
                queue.lost = Vec::new();
            }
            return Some(Next::Lost(Box::new(lost)));
        }
        Self::pop(queue).map(Next::Frame)
    }

    fn pop(queue: &mut Queue) -> Option<ByteString> {
        let frame = queue.frames.pop_front()?;
        for (after, _) in &mut queue.lost {
            *after -= 1;
        }
        if queue.frames.is_empty() {
            // An empty outbox holds no memory: most sessions are idle most
            // of the time, and an allocation per burst costs less than
            // slots kept for each of them.
            queue.frames = VecDeque::new();
        }
        Some(frame)
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.receiver_gone = true;
        queue.frames.clear();
        queue.lost.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    #[tokio::test]
    async fn a_full_outbox_drops_and_flags_overflow() {
        let (tx, rx) = outbox(2);
        assert_eq!(tx.push("a".into()), Push::Queued);
        assert_eq!(tx.push("b".into()), Push::Queued);
        assert_eq!(tx.push("c".into()), Push::Overflow);
        rx.overflowed().await;
        assert_eq!(rx.recv().await, Some(Next::Frame("a".into())));
        assert_eq!(rx.try_recv().as_deref(), Some("b"));
        assert_eq!(rx.try_recv(), None);
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.push("d".into()), Push::Closed);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_a_push_and_ends_with_the_last_sender() {
        let (tx, rx) = outbox(4);
        let other = tx.clone();
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            let end = rx.recv().await;
            (first, second, end)
        });
        tokio::task::yield_now().await;
        assert_eq!(tx.push("a".into()), Push::Queued);
        assert_eq!(other.push("b".into()), Push::Queued);
        drop(tx);
        drop(other);
        let (first, second, end) = waiting.await.unwrap();
        assert_eq!(first, Some(Next::Frame("a".into())));
        assert_eq!(second, Some(Next::Frame("b".into())));
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn a_cancelled_recv_loses_no_frame() {
        let (tx, rx) = outbox(4);
        {
            let pending = rx.recv();
            tokio::pin!(pending);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(pending.as_mut().poll(&mut cx).is_pending());
            assert_eq!(tx.push("a".into()), Push::Queued);
            // dropped here, after the push woke it but before it ran
        }
        assert_eq!(rx.recv().await, Some(Next::Frame("a".into())));
    }

    #[tokio::test]
    async fn a_loss_comes_after_the_frames_queued_before_it_and_wakes_the_receiver() {
        let (tx, rx) = outbox(4);
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await;
            (rx, first)
        });
        tokio::task::yield_now().await;
        tx.lost(Lost::CheckIn("r1".into()));
        let (rx, first) = waiting.await.unwrap();
        assert_eq!(first, Some(Next::Lost(Box::new(Lost::CheckIn("r1".into())))), "a loss alone wakes the session");

        assert_eq!(tx.push("a".into()), Push::Queued);
        tx.lost(Lost::Watch(QueueId::new(None, "q")));
        assert_eq!(tx.push("b".into()), Push::Queued);
        assert_eq!(tx.push("c".into()), Push::Queued);
        tx.lost(Lost::CheckIn("r2".into()));
        assert_eq!(rx.try_recv().as_deref(), Some("a"));
        assert_eq!(rx.try_recv(), None, "a burst of writes stops at a loss");
        assert_eq!(rx.recv().await, Some(Next::Lost(Box::new(Lost::Watch(QueueId::new(None, "q"))))));
        assert_eq!(rx.recv().await, Some(Next::Frame("b".into())));
        assert_eq!(rx.recv().await, Some(Next::Frame("c".into())));
        assert_eq!(rx.recv().await, Some(Next::Lost(Box::new(Lost::CheckIn("r2".into())))));
        assert_eq!(rx.try_recv(), None);
        assert!(rx.shared.lock().lost.capacity() == 0, "nothing is held once taken");
        drop(rx);
        tx.lost(Lost::CheckIn("r3".into()));
        assert!(tx.shared.lock().lost.is_empty(), "a closed outbox keeps nothing");
    }

    #[test]
    fn a_drained_outbox_gives_its_slots_back() {
        let (tx, rx) = outbox(1000);
        for i in 0..3 {
            assert_eq!(tx.push(i.to_string().into()), Push::Queued);
        }
        while rx.try_recv().is_some() {}
        assert_eq!(rx.shared.lock().frames.capacity(), 0);
    }
}
