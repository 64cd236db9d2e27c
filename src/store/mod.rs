//! Storage: the consultations, messages, read markers and audit trail.
//!
//! [`Store`] extends the rooms' [`RoomStore`] port with what the HTTP API
//! needs. [`sqlite::SqliteStore`] is the embedded default; a PostgreSQL store
//! is a second implementation of the same traits. Writes go through a
//! group-commit [`writer`], so many rooms share one transaction and one
//! fsync.

pub mod postgres;
mod rows;
pub mod sqlite;
mod writer;

use async_trait::async_trait;
use telehub_actors::{Person, QueueStore, RoomRecord, RoomStore, StoreError};
use telehub_signaling::{MediaMode, RoomStatus};

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
}

/// A patient with the ways to reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
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
    pub last_seq: i64,
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
        }
    }
}

/// A filter on the audit trail.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub room: Option<String>,
    pub user: Option<String>,
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
    /// Checks that storage answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Finishes pending writes and closes connections.
    async fn close(&self);
}

/// Opens the store that a database URL names.
pub async fn connect(url: &str, busy: std::time::Duration) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::connect(url, busy).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(std::sync::Arc::new(postgres::PostgresStore::connect(url, busy).await?))
    } else {
        anyhow::bail!("unsupported database URL {url:?}: expected sqlite://… or postgres://…")
    }
}

pub(crate) fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}
