//! Group commit: the writes of many rooms in one transaction.
//!
//! Callers send a [`Job`] and wait for its reply. The writer task takes
//! whatever jobs are queued (up to a batch limit), applies them in one
//! transaction, commits once, and only then replies to each. While one batch
//! commits the next one fills up, so under load the cost of an fsync is
//! shared by every message in the batch; when idle a lone job commits at
//! once, with no timer adding latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use telehub_actors::{Appended, AuditEntry, CheckedIn, EntryState, NewMessage, Person, QueueId, StoreError};
use telehub_signaling::{MediaMode, RoomStatus};
use tokio::sync::{mpsc, oneshot};

use super::WriteStats;

/// One write and where its result goes. Messages are stored together, a
/// batch at a time; every other write is applied on its own.
pub(crate) enum Job {
    Append { message: NewMessage, reply: Answer },
    Write(Write),
}

/// Where a message's result goes. Its place in the allowance of
/// [`Writes::append`] is given back the moment the writer answers, not when
/// the waiting task next runs, so a busy CPU does not count as a backlog.
pub(crate) struct Answer {
    reply: oneshot::Sender<Result<Appended, StoreError>>,
    _pending: Pending,
}

impl Answer {
    pub(crate) fn send(self, result: Result<Appended, StoreError>) -> Result<(), Result<Appended, StoreError>> {
        self.reply.send(result)
    }

    /// An answer outside any allowance, for tests that hand a writer its
    /// batch themselves.
    #[cfg(test)]
    pub(crate) fn detached(reply: oneshot::Sender<Result<Appended, StoreError>>) -> Answer {
        Answer { reply, _pending: Pending(Arc::new(AtomicUsize::new(1))) }
    }
}

/// A write other than a message.
pub(crate) enum Write {
    ReadMarker {
        room: String,
        user: String,
        seq: i64,
        reply: oneshot::Sender<Result<i64, StoreError>>,
    },
    Status {
        room: String,
        status: RoomStatus,
        at: DateTime<Utc>,
        /// Who ended it, for an end.
        by: Option<Person>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Media {
        room: String,
        mode: MediaMode,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Audit {
        entry: AuditEntry,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    CheckIn {
        room: String,
        queue: QueueId,
        at: DateTime<Utc>,
        reply: oneshot::Sender<Result<CheckedIn, StoreError>>,
    },
    Entry {
        room: String,
        state: EntryState,
        at: DateTime<Utc>,
        /// The patient is admitted while away: call them in, in the same
        /// transaction.
        call_in: bool,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The result of one [`Write`], held until the batch commits.
pub(crate) enum Outcome {
    Marker(oneshot::Sender<Result<i64, StoreError>>, Result<i64, StoreError>),
    Done(oneshot::Sender<Result<(), StoreError>>, Result<(), StoreError>),
    CheckedIn(oneshot::Sender<Result<CheckedIn, StoreError>>, Result<CheckedIn, StoreError>),
}

impl Outcome {
    /// Replies with the job's own result (the batch committed).
    pub(crate) fn send(self) {
        match self {
            Outcome::Marker(tx, r) => drop(tx.send(r)),
            Outcome::Done(tx, r) => drop(tx.send(r)),
            Outcome::CheckedIn(tx, r) => drop(tx.send(r)),
        }
    }

    /// Replies with the batch's failure: nothing of it was stored.
    pub(crate) fn fail(self, err: StoreError) {
        match self {
            Outcome::Marker(tx, _) => drop(tx.send(Err(err))),
            Outcome::Done(tx, _) => drop(tx.send(Err(err))),
            Outcome::CheckedIn(tx, _) => drop(tx.send(Err(err))),
        }
    }
}

impl Write {
    /// Replies to a write that never reached the database.
    pub(crate) fn fail(self, err: StoreError) {
        match self {
            Write::ReadMarker { reply, .. } => drop(reply.send(Err(err))),
            Write::Status { reply, .. }
            | Write::Media { reply, .. }
            | Write::Audit { reply, .. }
            | Write::Entry { reply, .. } => drop(reply.send(Err(err))),
            Write::CheckIn { reply, .. } => drop(reply.send(Err(err))),
        }
    }
}

/// Waits for one job, then takes every job already queued, up to `max`.
/// Returns `None` when every sender is gone and the queue is drained.
pub(crate) async fn next_batch(rx: &mut mpsc::Receiver<Job>, max: usize) -> Option<Vec<Job>> {
    let first = rx.recv().await?;
    let mut batch = Vec::with_capacity(64);
    batch.push(first);
    while batch.len() < max {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Sends a job to the writer and waits for its reply.
pub(crate) async fn submit<T>(
    tx: &mpsc::Sender<Job>,
    make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
) -> Result<T, StoreError> {
    let (reply, rx) = oneshot::channel();
    tx.send(make(reply)).await.map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
    // A write whose statement failed is dropped with its reply unsent, so
    // this is also how a failed batch reaches the write that failed it.
    rx.await.map_err(|_| StoreError::Unavailable("the write was not done".into()))?
}

/// What a writer task has done, counted by it after each batch.
#[derive(Debug, Default)]
pub(crate) struct WriterCounts {
    batches: AtomicU64,
    jobs: AtomicU64,
    failed: AtomicU64,
    busy_micros: AtomicU64,
}

impl WriterCounts {
    /// Counts a batch of `jobs` that took `elapsed`, committed or not.
    pub(crate) fn batch(&self, jobs: usize, elapsed: Duration, committed: bool) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.jobs.fetch_add(jobs as u64, Ordering::Relaxed);
        if !committed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.busy_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// When a client whose message was refused for overload should try again:
/// at the soonest about what a saturated writer needs to work off a full
/// allowance, and spread over as long again, so that the messages refused
/// in one burst do not all come back in the next one.
pub(crate) const OVERLOAD_RETRY_MS: u64 = 250;

/// [`OVERLOAD_RETRY_MS`], spread: from it to twice it.
fn overload_retry_ms() -> u64 {
    OVERLOAD_RETRY_MS + rand::random_range(0..OVERLOAD_RETRY_MS)
}

/// A store's handle on its writer task: every write either store makes,
/// as a job for the group commit.
pub(crate) struct Writes {
    tx: mpsc::Sender<Job>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    counts: Arc<WriterCounts>,
    /// Messages submitted and not answered yet, and how many may be.
    pending: Arc<AtomicUsize>,
    max_pending: usize,
    /// Messages refused because `max_pending` were waiting.
    shed: AtomicU64,
}

/// A message's place in the allowance of [`Writes::append`], given back
/// when it is answered (or dropped unanswered).
pub(crate) struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Writes {
    /// Runs `writer` (which serves the receiving end, and counts its
    /// batches) as a task.
    /// At most `max_pending` messages wait for it at once.
    pub(crate) fn start<F>(
        max_pending: usize,
        writer: impl FnOnce(mpsc::Receiver<Job>, Arc<WriterCounts>) -> F,
    ) -> Writes
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(16 * 1024);
        let counts = Arc::new(WriterCounts::default());
        let task = tokio::spawn(writer(rx, counts.clone()));
        Writes {
            tx,
            task: tokio::sync::Mutex::new(Some(task)),
            counts,
            pending: Arc::default(),
            max_pending,
            shed: AtomicU64::new(0),
        }
    }

    /// The writer's counts, and the jobs waiting for it now.
    pub(crate) fn stats(&self) -> WriteStats {
        let c = &self.counts;
        WriteStats {
            batches: c.batches.load(Ordering::Relaxed),
            jobs: c.jobs.load(Ordering::Relaxed),
            failed_batches: c.failed.load(Ordering::Relaxed),
            busy_seconds: c.busy_micros.load(Ordering::Relaxed) as f64 / 1e6,
            queued: self.tx.max_capacity() - self.tx.capacity(),
            pending_messages: self.pending.load(Ordering::Relaxed),
            shed_messages: self.shed.load(Ordering::Relaxed),
            log: None,
        }
    }

    /// Stores a message, unless `max_pending` are waiting already: then it
    /// is refused at once (`Overloaded`), before anything is queued. A node
    /// past what its storage can take answers in time and sheds the excess,
    /// instead of queueing it in front of the writer for seconds; the
    /// client's resend with the same `client_id` is safe.
    pub(crate) async fn append(&self, message: NewMessage) -> Result<Appended, StoreError> {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.max_pending {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.shed.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Overloaded { retry_ms: overload_retry_ms() });
        }
        let pending = Pending(self.pending.clone());
        submit(&self.tx, |reply| Job::Append { message, reply: Answer { reply, _pending: pending } }).await
    }

    pub(crate) async fn read_marker(&self, room: &str, user: &str, seq: i64) -> Result<i64, StoreError> {
        let (room, user) = (room.to_owned(), user.to_owned());
        submit(&self.tx, |reply| Job::Write(Write::ReadMarker { room, user, seq, reply })).await
    }

    pub(crate) async fn status(
        &self,
        room: &str,
        status: RoomStatus,
        at: DateTime<Utc>,
        by: Option<Person>,
    ) -> Result<(), StoreError> {
        let room = room.to_owned();
        submit(&self.tx, |reply| Job::Write(Write::Status { room, status, at, by, reply })).await
    }

    pub(crate) async fn media(&self, room: &str, mode: MediaMode) -> Result<(), StoreError> {
        let room = room.to_owned();
        submit(&self.tx, |reply| Job::Write(Write::Media { room, mode, reply })).await
    }

    /// Queues an audit entry without waiting; see `RoomStore::audit`.
    pub(crate) fn audit(&self, entry: AuditEntry) {
        let (reply, _) = oneshot::channel();
        if let Err(err) = self.tx.try_send(Job::Write(Write::Audit { entry, reply })) {
            tracing::warn!(error = %err, "audit entry dropped: the writer is saturated or stopped");
        }
    }

    pub(crate) async fn check_in(
        &self,
        room: &str,
        queue: &QueueId,
        at: DateTime<Utc>,
    ) -> Result<CheckedIn, StoreError> {
        let (room, queue) = (room.to_owned(), queue.clone());
        submit(&self.tx, |reply| Job::Write(Write::CheckIn { room, queue, at, reply })).await
    }

    pub(crate) async fn entry_state(
        &self,
        room: &str,
        state: EntryState,
        at: DateTime<Utc>,
        call_in: bool,
    ) -> Result<(), StoreError> {
        let room = room.to_owned();
        submit(&self.tx, |reply| Job::Write(Write::Entry { room, state, at, call_in, reply })).await
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.tx.is_closed()
    }

    /// Stores a `shutdown` audit entry and waits for it: the writer serves
    /// jobs in order, so every write queued before it is stored too. Then
    /// stops the task.
    pub(crate) async fn finish(&self) {
        let entry = AuditEntry {
            at: Utc::now(),
            room: None,
            user: None,
            action: "shutdown".into(),
            detail: serde_json::json!({}),
        };
        if let Err(err) = submit(&self.tx, |reply| Job::Write(Write::Audit { entry, reply })).await {
            tracing::error!(error = %err, "pending writes may be lost at shutdown");
        }
        if let Some(task) = self.task.lock().await.take() {
            task.abort();
        }
    }
}
