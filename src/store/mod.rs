//! Storage: the consultations, messages, read markers and audit trail.
//!
//! [`Store`] extends the rooms' [`RoomStore`] port with what the HTTP API
//! needs. [`sqlite::SqliteStore`] is the embedded default; a PostgreSQL store
//! is a second implementation of the same traits. Writes go through a
//! group-commit [`writer`], so many rooms share one transaction and one
//! fsync.

pub mod outbox;
pub mod postgres;
mod rows;
pub mod sqlite;
mod sqlite_chains;
mod writer;

use async_trait::async_trait;
use telehub_actors::{Person, QueueStore, RoomRecord, RoomStore, StoreError};
use telehub_signaling::{MediaMode, PaymentStatus, RoomStatus};

pub use outbox::{Attempt, Channel, Notification, Notifications, NotifyKind, NotifyState, OutboxPolicy, Reported};

/// A consultation to create.
#[derive(Debug, Clone)]
pub struct NewConsultation {
    pub id: String,
    pub patient: Contact,
    pub doctor: Person,
    pub clinic: Option<String>,
    pub queue: String,
    pub scheduled_at: Option<String>,
    pub created_at: String,
    /// What the consultation costs; `None`: nothing is owed.
    pub payment: Option<Price>,
}

/// An amount in the currency's smallest unit (cents, rupiah), as Stripe
/// counts, and an ISO 4217 currency, lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub amount: i64,
    pub currency: String,
}

/// A consultation's price and whether it is paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentState {
    pub price: Price,
    pub status: PaymentStatus,
}

/// Where a payment attempt stands at its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Pending,
    Succeeded,
    Failed,
    Refunded,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Pending => "pending",
            TxStatus::Succeeded => "succeeded",
            TxStatus::Failed => "failed",
            TxStatus::Refunded => "refunded",
        }
    }

    /// The status after `self` when `next` is reported. Reports come out
    /// of order (webhooks are redelivered and reordered): a payment never
    /// goes back from succeeded, except to refunded, and a refund is final.
    pub fn then(self, next: TxStatus) -> TxStatus {
        use TxStatus::*;
        match (self, next) {
            (Refunded, _) => Refunded,
            (Succeeded, Refunded) => Refunded,
            (Succeeded, _) => Succeeded,
            (_, next) => next,
        }
    }
}

impl std::str::FromStr for TxStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => TxStatus::Pending,
            "succeeded" => TxStatus::Succeeded,
            "failed" => TxStatus::Failed,
            "refunded" => TxStatus::Refunded,
            other => return Err(format!("unknown payment transaction status {other:?}")),
        })
    }
}

/// The provider of transfers that staff confirm by hand.
pub const BANK_TRANSFER: &str = "bank_transfer";

/// A payment attempt, confirmation or refund to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    pub room: String,
    /// `stripe` or [`BANK_TRANSFER`].
    pub provider: String,
    /// The provider's id of it (a PaymentIntent, a Checkout Session, the
    /// transfer's reference): one transaction per provider and reference.
    pub reference: String,
    pub price: Price,
    pub status: TxStatus,
    pub at: String,
}

/// What recording a payment changed: the consultation's new payment state,
/// if it changed.
pub type PaymentChange = Option<PaymentStatus>;

/// The consultation's payment state after a transaction moved to `tx`
/// (`None`: it does not change). A success pays an unpaid consultation if it
/// covers the price; a refund of a paid one makes it refunded.
pub fn consultation_after(state: &PaymentState, paid_with: &Price, tx: TxStatus) -> Result<PaymentChange, StoreError> {
    match (state.status, tx) {
        (PaymentStatus::Unpaid, TxStatus::Succeeded) => {
            if paid_with.currency != state.price.currency || paid_with.amount < state.price.amount {
                return Err(StoreError::Conflict(format!(
                    "{} {} does not cover the price of {} {}",
                    paid_with.amount, paid_with.currency, state.price.amount, state.price.currency
                )));
            }
            Ok(Some(PaymentStatus::Paid))
        }
        (PaymentStatus::Paid, TxStatus::Refunded) => Ok(Some(PaymentStatus::Refunded)),
        _ => Ok(None),
    }
}

/// A patient with the ways to reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// A BCP 47 tag (`id`, `en-US`): the language of what they are sent.
    pub locale: Option<String>,
}

/// A stored consultation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consultation {
    pub id: String,
    pub status: RoomStatus,
    pub patient: Contact,
    pub doctor: Person,
    pub clinic: Option<String>,
    pub queue: String,
    pub scheduled_at: Option<String>,
    pub media_mode: MediaMode,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Who ended it, when it has ended.
    pub ended_by: Option<Person>,
    pub last_seq: i64,
    /// The price and whether it is paid; `None`: nothing is owed.
    pub payment: Option<PaymentState>,
}

impl Consultation {
    /// The part of the record that rooms use.
    pub fn room_record(&self) -> RoomRecord {
        RoomRecord {
            id: self.id.clone(),
            status: self.status,
            patient: Person { id: self.patient.id.clone(), name: self.patient.name.clone() },
            doctor: self.doctor.clone(),
            clinic: self.clinic.clone(),
            queue: self.queue.clone(),
            media_mode: self.media_mode,
            last_seq: self.last_seq,
            paid: self.payment.as_ref().is_none_or(|p| p.status == PaymentStatus::Paid),
            ended_at: self.ended_at.clone(),
            ended_by: self.ended_by.clone(),
        }
    }
}

/// A filter on the audit trail.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub room: Option<String>,
    pub user: Option<String>,
    /// Only entries of consultations of this clinic (which leaves out the
    /// entries of no consultation, such as signed tokens).
    pub clinic: Option<String>,
    /// Entries with an id greater than this.
    pub after: Option<i64>,
    pub limit: u32,
}

/// One stored audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: String,
    pub room: Option<String>,
    pub user: Option<String>,
    pub action: String,
    pub detail: serde_json::Value,
}

/// Everything the server stores.
#[async_trait]
pub trait Store: RoomStore + QueueStore {
    /// Creates a consultation; a duplicate id is a `Conflict`.
    async fn create_consultation(&self, new: NewConsultation) -> Result<Consultation, StoreError>;
    /// A consultation by id.
    async fn consultation(&self, id: &str) -> Result<Option<Consultation>, StoreError>;
    /// The audit trail, oldest first.
    async fn audit_log(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
    /// Records a payment transaction (or moves a known one forward, see
    /// [`TxStatus::then`]) and, in the same transaction, the consultation's
    /// payment state ([`consultation_after`]). `NotFound` without the
    /// consultation, `Conflict` when it has no price or the payment does not
    /// cover it.
    async fn record_payment(&self, payment: NewPayment) -> Result<PaymentChange, StoreError>;
    /// The newest succeeded payment of a consultation: provider, reference
    /// and what was paid.
    async fn succeeded_payment(&self, room: &str) -> Result<Option<(String, String, Price)>, StoreError>;
    /// Notes a webhook delivery; `false` when it was handled before.
    async fn first_delivery(&self, provider: &str, id: &str, at: &str) -> Result<bool, StoreError>;
    /// The notification outbox (see [`outbox`]).
    fn notifications(&self) -> &dyn Notifications;
    /// Checks that storage answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// What the group-commit writer has done, for `/metrics`.
    fn write_stats(&self) -> WriteStats;
    /// Finishes pending writes and closes connections.
    async fn close(&self);
}

/// What a store's writer has done since the node started, and its backlog.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteStats {
    /// Transactions (group commits), committed or rolled back.
    pub batches: u64,
    /// Writes in them: messages, markers, check-ins and the rest.
    pub jobs: u64,
    /// Transactions that failed and were rolled back (their writes were
    /// answered `unavailable`).
    pub failed_batches: u64,
    /// Time the writer spent in transactions.
    pub busy_seconds: f64,
    /// Writes waiting for the writer now.
    pub queued: usize,
    /// Messages submitted and not answered yet (queued, or in the writer's
    /// transaction), against `max_pending_messages`.
    pub pending_messages: usize,
    /// Messages refused because `max_pending_messages` were pending.
    pub shed_messages: u64,
    /// SQLite only: the write-ahead log's checkpoints.
    pub log: Option<LogStats>,
}

/// SQLite's write-ahead log, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogStats {
    /// Frames in the log at the last checkpoint. It stays near a second's
    /// worth of writes when the log starts over as it should.
    pub frames: i64,
    /// Checkpoints the writer ran between two transactions, so that the
    /// log could start over (see `sqlite::CatchUp`).
    pub writer_checkpoints: u64,
    /// Time the writer spent in them: no transaction commits meanwhile, so
    /// every write that arrives waits for the rest of the checkpoint.
    pub writer_checkpoint_seconds: f64,
}

/// How long a write may wait, and how many messages may.
#[derive(Debug, Clone, Copy)]
pub struct WriteLimits {
    /// How long a write waits for a lock held by another process (SQLite)
    /// or for a connection (PostgreSQL).
    pub busy: std::time::Duration,
    /// Messages that may wait for storage at once; more are refused.
    pub max_pending_messages: usize,
}

impl WriteLimits {
    /// `busy`, and no practical bound on waiting messages.
    pub fn waiting(busy: std::time::Duration) -> WriteLimits {
        WriteLimits { busy, max_pending_messages: usize::MAX }
    }
}

/// Opens the store that a database URL names; it queues notifications as
/// `outbox` says.
pub async fn connect(
    url: &str,
    limits: WriteLimits,
    outbox: std::sync::Arc<OutboxPolicy>,
) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::connect(url, limits, outbox).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(std::sync::Arc::new(postgres::PostgresStore::connect(url, limits, outbox).await?))
    } else {
        anyhow::bail!("unsupported database URL {url:?}: expected sqlite://… or postgres://…")
    }
}

pub(crate) fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}
