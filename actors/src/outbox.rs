//! The bounded queue of frames from rooms to one session.
//!
//! A room never waits for a session: it offers each frame with
//! [`Outbox::push`], and a full outbox means the session cannot keep up. The
//! room then drops the frame and raises the overflow flag, which the
//! session's task turns into a close with code 4009. That keeps one slow
//! phone from holding back a room, or the node.

use std::sync::Arc;

use bytestring::ByteString;
use tokio::sync::{Notify, mpsc};

/// The sending side, held by every room the session is in.
#[derive(Clone, Debug)]
pub struct Outbox {
    frames: mpsc::Sender<ByteString>,
    overflow: Arc<Notify>,
}

/// The session's side of its outbox.
#[derive(Debug)]
pub struct OutboxReceiver {
    pub frames: mpsc::Receiver<ByteString>,
    pub overflow: Arc<Notify>,
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

/// Makes an outbox that holds at most `capacity` frames.
pub fn outbox(capacity: usize) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let overflow = Arc::new(Notify::new());
    (Outbox { frames: tx, overflow: overflow.clone() }, OutboxReceiver { frames: rx, overflow })
}

impl Outbox {
    /// Offers a frame without waiting. The bytes are shared, not copied, so
    /// a broadcast costs one serialization for the whole room.
    pub fn push(&self, frame: ByteString) -> Push {
        match self.frames.try_send(frame) {
            Ok(()) => Push::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // notify_one stores a permit, so the session sees the
                // overflow even if it is not waiting at this moment.
                self.overflow.notify_one();
                Push::Overflow
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Push::Closed,
        }
    }

    /// Whether the session's task still reads this outbox.
    pub fn is_closed(&self) -> bool {
        self.frames.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_outbox_drops_and_flags_overflow() {
        let (tx, mut rx) = outbox(2);
        assert_eq!(tx.push("a".into()), Push::Queued);
        assert_eq!(tx.push("b".into()), Push::Queued);
        assert_eq!(tx.push("c".into()), Push::Overflow);
        rx.overflow.notified().await;
        assert_eq!(rx.frames.recv().await.as_deref(), Some("a"));
        assert_eq!(rx.frames.recv().await.as_deref(), Some("b"));
        drop(rx);
        assert_eq!(tx.push("d".into()), Push::Closed);
    }
}
