//! The storage ports of rooms and queues.
//!
//! Rooms and queues persist through these traits so that the embedded SQLite store and the
//! PostgreSQL store of a cluster are two implementations, not two code paths
//! in the rooms. Every method either did its whole job or returns an error:
//! in particular [`RoomStore::append`] returns only after the message is
//! durable, which is what makes an `ack` a promise.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use telehub_signaling::{MediaMode, MessageEvent, MessageKind, RoomStatus, Sender};

use crate::QueueId;

/// The stored facts about a consultation that a room needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    pub id: String,
    pub status: RoomStatus,
    pub patient: Person,
    pub doctor: Person,
    pub clinic: Option<String>,
    pub queue: String,
    pub media_mode: MediaMode,
    /// The last `seq` stored in the room; 0 when it has no messages.
    pub last_seq: i64,
    /// Nothing is owed: no price, or paid. An unpaid consultation cannot
    /// be admitted unless staff override.
    pub paid: bool,
    /// When it ended or was cancelled, if it has.
    pub ended_at: Option<String>,
    /// Who ended it: a user, or the hub itself for a no-show.
    pub ended_by: Option<Person>,
}

impl RoomRecord {
    /// The queue the consultation waits in, within its clinic.
    pub fn queue_id(&self) -> QueueId {
        QueueId::new(self.clinic.as_deref(), &self.queue)
    }
}

/// A person named in a consultation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: String,
    pub name: String,
}

/// A chat message to store; the store assigns `seq`, `id` and `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub room: String,
    pub from: Sender,
    pub client_id: Option<String>,
    pub kind: MessageKind,
    pub text: String,
}

/// A stored message's place in its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    pub id: String,
    pub at: String,
    /// The same (room, sender, client_id) was stored before: these are the
    /// original's `seq`, `id` and `at`, and nothing new was stored.
    pub duplicate: bool,
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub room: Option<String>,
    pub user: Option<String>,
    pub action: String,
    pub detail: serde_json::Value,
}

/// Why storage failed. `Unavailable` is the store's fault and worth a retry;
/// nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Too many messages are waiting for storage already: this one was
    /// refused before it was queued, and may be sent again after `retry_ms`.
    #[error("storage overloaded: retry in {retry_ms} ms")]
    Overloaded { retry_ms: u64 },
}

/// What rooms need from storage.
#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// The consultation, or `None` if there is no such consultation.
    async fn load_room(&self, room: &str) -> Result<Option<RoomRecord>, StoreError>;
    /// Up to `limit` messages with `seq > after`, in `seq` order.
    async fn messages_after(&self, room: &str, after: i64, limit: u32) -> Result<Vec<MessageEvent>, StoreError>;
    /// The last `limit` messages, in `seq` order.
    async fn last_messages(&self, room: &str, limit: u32) -> Result<Vec<MessageEvent>, StoreError>;
    /// Stores a message durably, or finds the original of a resend. A new
    /// message to a consultation that has ended is a `Conflict` where other
    /// nodes can end it (PostgreSQL). On SQLite the one node's room is the
    /// only writer of its status and refuses such a message itself.
    async fn append(&self, message: NewMessage) -> Result<Appended, StoreError>;
    /// The stored message of `sender` with `client_id` in the room, as a
    /// resend's `append` would answer it, without storing anything: how an
    /// ended room still acknowledges a message sent before the end.
    async fn sent(&self, room: &str, sender: &str, client_id: &str) -> Result<Option<Appended>, StoreError>;
    /// Every user's read marker in the room.
    async fn read_markers(&self, room: &str) -> Result<Vec<(String, i64)>, StoreError>;
    /// Moves a user's read marker forward (never back); returns the marker.
    async fn set_read_marker(&self, room: &str, user: &str, seq: i64) -> Result<i64, StoreError>;
    /// Changes the consultation's status; `by` is who ended it, for an end.
    async fn set_status(
        &self,
        room: &str,
        status: RoomStatus,
        at: DateTime<Utc>,
        by: Option<Person>,
    ) -> Result<(), StoreError>;
    /// Records the room's media mode.
    async fn set_media_mode(&self, room: &str, mode: MediaMode) -> Result<(), StoreError>;
    /// Queues an entry for the audit trail, in order with the writes queued
    /// before and after it, without waiting. The trail is best effort: an
    /// entry that cannot be queued is logged and dropped, and never turns a
    /// successful action into an error.
    fn audit(&self, entry: AuditEntry);
}

/// Where a waiting-room entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// In the queue.
    Waiting,
    /// Admitted; the patient has not joined the consultation yet.
    Admitted,
    /// Admitted and joined: the queue is done with it.
    Seen,
    /// Offline for longer than the grace period.
    Left,
    /// Admitted but never joined within the no-show timeout.
    NoShow,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Waiting => "waiting",
            EntryState::Admitted => "admitted",
            EntryState::Seen => "seen",
            EntryState::Left => "left",
            EntryState::NoShow => "no_show",
        }
    }
}

impl std::str::FromStr for EntryState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "waiting" => EntryState::Waiting,
            "admitted" => EntryState::Admitted,
            "seen" => EntryState::Seen,
            "left" => EntryState::Left,
            "no_show" => EntryState::NoShow,
            other => return Err(format!("unknown queue entry state {other:?}")),
        })
    }
}

/// A waiting-room entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub room: String,
    pub ticket: String,
    pub clinic: Option<String>,
    pub patient: Person,
    /// When the patient checked in (RFC 3339).
    pub since: String,
    pub state: EntryState,
    /// When the state last changed.
    pub changed_at: DateTime<Utc>,
    /// Nothing is owed for the consultation.
    pub paid: bool,
}

/// A check-in as stored: the patient's ticket and place in the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedIn {
    pub ticket: String,
    pub since: String,
}

/// What queues need from storage.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Puts the consultation's patient in `queue`. A patient who is waiting
    /// already keeps their ticket and place; anyone else gets the queue's
    /// next ticket of the day. A `scheduled` consultation becomes `waiting`.
    async fn check_in(&self, room: &str, queue: &QueueId, at: DateTime<Utc>) -> Result<CheckedIn, StoreError>;
    /// Moves an entry to another state.
    async fn set_entry_state(&self, room: &str, state: EntryState, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Stores the admission of a patient who has no session online: the
    /// entry becomes `Admitted` and, in the same transaction, the store
    /// queues whatever calls the patient in (an SMS, an email), so the
    /// admission and the call are stored together or not at all.
    async fn admit_away(&self, room: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// The entries a queue starts from: the waiting ones of consultations
    /// still waiting, and the admitted ones of active consultations, in
    /// check-in order.
    async fn load_queue(&self, queue: &QueueId) -> Result<Vec<StoredEntry>, StoreError>;
    /// How long the queue's most recent ended consultations took, newest
    /// first, at most `limit`.
    async fn recent_lengths(&self, queue: &QueueId, limit: u32) -> Result<Vec<Duration>, StoreError>;
    /// Whether `doctor` is the doctor of any consultation in `queue`.
    async fn serves(&self, queue: &QueueId, doctor: &str) -> Result<bool, StoreError>;
    /// Whether any consultation, of any status, is in `queue`.
    async fn queue_exists(&self, queue: &QueueId) -> Result<bool, StoreError>;
}
