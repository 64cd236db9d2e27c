//! The embedded store: one SQLite file in WAL mode.
//!
//! Reads go through a small pool; every write goes through one writer
//! connection that group-commits (see [`super::writer`]). Because the writer
//! is the only connection that adds messages, it can keep each room's last
//! `seq` and the client ids it has stored in memory (loaded from the table on
//! a room's first write); the memory is dropped whenever a transaction fails,
//! so a rolled-back batch never leaves a gap or a phantom resend. A SQLite
//! database belongs to one node, which is why a cluster needs PostgreSQL.
//!
//! The write-ahead log is copied into the database by a checkpoint on a
//! connection of its own, and finished by the writer between two batches
//! (see [`CatchUp`]), so that the log starts over instead of growing for as
//! long as writes keep coming.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, SqliteConnection};
use telehub_actors::{
    Appended, AuditEntry, CheckedIn, EntryState, NewMessage, Person, QueueId, QueueStore, RoomRecord, RoomStore,
    StoreError, StoredEntry,
};
use telehub_signaling::{MediaMode, MessageEvent, PaymentStatus, RoomStatus, format_time};
use tokio::sync::mpsc;
use tracing::{debug, error, info, trace};

use super::outbox::{self, Notifications, NotifyKind, Outbox, OutboxPolicy};
use super::rows::{
    AuditRow, ConsultationRow, INSERT_DELIVERY, MessageIds, MessageRow, PAYMENT_OF, QUEUE_EXISTS, READ_MARKERS,
    RECENT_ENDED, SERVES, SUCCEEDED_PAYMENT, counts_any, lengths, load_queue_on, next_number, record_payment_on,
    ticket, ticket_letter,
};
use super::sqlite_chains as chains;
use super::writer::{Job, Outcome, Write, WriterCounts, Writes, next_batch};
use super::{
    AuditQuery, AuditRecord, Consultation, LogStats, NewConsultation, NewPayment, PaymentChange, Price, Store,
    WriteLimits, WriteStats, unavailable,
};

/// Most jobs in one transaction.
const MAX_BATCH: usize = 1024;
/// Rooms the writer remembers (last `seq`, stored client ids) before it
/// starts over.
const MAX_CACHED_ROOMS: usize = 20_000;
/// How often the log is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// The size the log is cut back to when it starts over after a burst.
const LOG_SIZE_LIMIT: u64 = 256 << 20;
/// The writer's page cache, in KiB: 4,096 pages of 4 KiB. Since each room's
/// messages are a chain, a commit touches few pages (the table's last ones,
/// the tails, the every-64th index), and 2 MiB measured the same; the rest
/// holds the rooms' recent pages for the resend and numbering lookups.
/// Larger costs more than it saves: a commit after a page split walks the
/// whole cache. (SQLite's B-tree renumbers split pages through the spare
/// page number of the lock byte, so the cache's largest page number stays
/// far past the end of the database, and dropping the pages beyond the end
/// at commit scans every slot of the cache's hash table. With a 256 MiB
/// cache that scan was a fifth of the writer's CPU.) A page that falls out
/// of this cache is read back from the operating system's.
const WRITER_CACHE_KIB: u32 = 16 << 10;
/// The page cache of the pool's connections, in KiB. A reader's cache is
/// dropped whole each time it starts reading after a commit, which the
/// writer makes hundreds of times a second, so a large one only costs the
/// dropping; a history page or two fits.
const READER_CACHE_KIB: u32 = 4 << 10;

/// SQLite storage.
pub struct SqliteStore {
    pool: SqlitePool,
    writes: Writes,
    outbox: Arc<OutboxPolicy>,
    /// The outbox's rows.
    rows: Outbox<sqlx::Sqlite>,
    /// Shared with the writer and the checkpoints.
    catch_up: Arc<CatchUp>,
}

impl SqliteStore {
    /// Opens (and creates, and migrates) the database at `url`.
    /// Writes wait up to `limits.busy` for a lock held by another process.
    pub async fn connect(url: &str, limits: WriteLimits, outbox: Arc<OutboxPolicy>) -> anyhow::Result<Self> {
        let busy = limits.busy;
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before anyone is told it happened.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(busy)
            .pragma("cache_size", format!("-{READER_CACHE_KIB}"))
            .pragma("temp_store", "memory")
            // Checkpoints run beside the writer (see `checkpoints`), not
            // inside whichever commit happens to cross the threshold.
            .pragma("wal_autocheckpoint", "0")
            // When the log starts over after a burst, its file is cut back
            // to this size instead of keeping the burst's.
            .pragma("journal_size_limit", LOG_SIZE_LIMIT.to_string())
            .disable_statement_logging();
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options.clone()).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let conn = options.clone().pragma("cache_size", format!("-{WRITER_CACHE_KIB}")).connect().await?;
        let catch_up = Arc::new(CatchUp::default());
        let writes = Writes::start(limits.max_pending_messages, {
            let (outbox, catch_up) = (outbox.clone(), catch_up.clone());
            |rx, counts| run_writer(conn, rx, outbox, catch_up, counts)
        });
        tokio::spawn(checkpoints(pool.clone(), catch_up.clone()));
        info!(database = %options.get_filename().display(), "sqlite store open");
        // One node owns a SQLite file: nobody else claims its rows.
        let rows = Outbox::new(pool.clone(), outbox::DUE);
        Ok(SqliteStore { pool, writes, outbox, rows, catch_up })
    }
}

/// Moves the write-ahead log into the database file every so often, on a
/// connection of its own so the writer never waits for the bulk of it. A
/// passive checkpoint never blocks readers or the writer.
/// Once a second: a busy room's index page is written to the log many
/// times a second but copied into the database once per checkpoint, and
/// the checkpoint's own writes and fsync compete with the writer's commits
/// (at 25,000 messages/s the log grows by about 100 MiB between two).
async fn checkpoints(pool: SqlitePool, catch_up: Arc<CatchUp>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        checkpoint_round(&pool, &catch_up).await;
    }
}

/// One background checkpoint in two passes; then the writer is asked to
/// finish it. The second pass copies only what was committed during the
/// first, so the writer's part, during which nothing commits, has only the
/// frames of the second pass's few milliseconds left to copy (at 10,000
/// messages/s this halved the writer's pause). Returns the frames the log
/// held.
async fn checkpoint_round(pool: &SqlitePool, catch_up: &CatchUp) -> Option<i64> {
    if let Err(err) = checkpoint(pool, "checkpoint").await {
        debug!(error = %err, "checkpoint skipped");
        return None;
    }
    match checkpoint(pool, "checkpoint, second pass").await {
        Ok(logged) => {
            catch_up.log_frames.store(logged, Ordering::Relaxed);
            catch_up.due.store(true, Ordering::Release);
            Some(logged)
        }
        Err(err) => {
            debug!(error = %err, "checkpoint skipped");
            None
        }
    }
}

/// A passive checkpoint on `conn`, traced as `what`: the frames the log held.
async fn checkpoint<'c>(conn: impl sqlx::SqliteExecutor<'c>, what: &'static str) -> Result<i64, sqlx::Error> {
    let started = Instant::now();
    let (_, logged, copied) =
        sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(conn).await?;
    trace!(logged, copied, elapsed_us = started.elapsed().as_micros() as u64, "{what}");
    Ok(logged)
}

/// How the log gets to start over while the writer never stops.
///
/// SQLite starts the log from its beginning only when a write transaction
/// begins with every frame of the log already copied into the database.
/// A checkpoint on another connection copies the frames that were there
/// when it began; under steady load the writer commits more while it
/// copies, so that moment never comes and the log (and the index of it in
/// shared memory, which every read searches) grows for as long as the load
/// lasts: hundreds of MiB a minute at a few thousand messages a second.
/// So after each background checkpoint the writer, between two batches,
/// checkpoints on its own connection too. Nothing is written meanwhile, so
/// this one copies only the frames of the last few batches and completes,
/// and the writer's next transaction starts the log over.
#[derive(Default)]
struct CatchUp {
    /// A background checkpoint finished; the writer should finish it.
    due: AtomicBool,
    /// The writer's checkpoints so far, and the time it spent in them.
    done: AtomicU64,
    done_micros: AtomicU64,
    /// Frames in the log at the last background checkpoint.
    log_frames: AtomicI64,
}

impl CatchUp {
    /// The writer's part, when one is due: a passive checkpoint between two
    /// batches.
    async fn run_if_due(&self, conn: &mut SqliteConnection) {
        if !self.due.swap(false, Ordering::AcqRel) {
            return;
        }
        let started = Instant::now();
        match checkpoint(&mut *conn, "writer's checkpoint").await {
            Ok(_) => {
                self.done.fetch_add(1, Ordering::Relaxed);
                self.done_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            Err(err) => debug!(error = %err, "writer's checkpoint skipped"),
        }
    }

    fn stats(&self) -> LogStats {
        LogStats {
            frames: self.log_frames.load(Ordering::Relaxed),
            writer_checkpoints: self.done.load(Ordering::Relaxed),
            writer_checkpoint_seconds: self.done_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// The writer task: batches, applies, commits, replies.
async fn run_writer(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Job>,
    outbox: Arc<OutboxPolicy>,
    catch_up: Arc<CatchUp>,
    counts: Arc<WriterCounts>,
) {
    let mut memory = WriterMemory::default();
    while let Some(batch) = next_batch(&mut rx, MAX_BATCH).await {
        if memory.rooms.len() > MAX_CACHED_ROOMS {
            memory.rooms.clear();
        }
        let (jobs, started) = (batch.len(), Instant::now());
        let committed = apply_batch(&mut conn, &mut memory, batch, &outbox).await;
        counts.batch(jobs, started.elapsed(), committed);
        trace!(jobs, committed, elapsed_us = started.elapsed().as_micros() as u64, "write batch");
        catch_up.run_if_due(&mut conn).await;
    }
}

async fn apply_batch(
    conn: &mut SqliteConnection,
    memory: &mut WriterMemory,
    batch: Vec<Job>,
    outbox: &OutboxPolicy,
) -> bool {
    // Messages are inserted together, a few multi-row statements per batch:
    // each statement is a round trip to sqlx's SQLite thread, and one per
    // message would cost more than the insert itself.
    let mut messages = Vec::new();
    let mut replies = Vec::new();
    let mut others = Vec::new();
    for job in batch {
        match job {
            Job::Append { message, reply } => {
                messages.push(message);
                replies.push(reply);
            }
            Job::Write(write) => others.push(write),
        }
    }
    let mut outcomes = Vec::with_capacity(others.len());
    let only_messages = others.is_empty();
    let mut jobs = others.into_iter();
    let mut appended = Vec::new();
    let result: Result<(), sqlx::Error> = async {
        // The messages' inserts open the transaction and, when the batch
        // holds nothing else, commit it (see `insert_rows`).
        let began;
        (appended, began) = append_all(conn, memory, &messages, &format_time(Utc::now()), only_messages).await?;
        if only_messages {
            return Ok(());
        }
        if !began {
            sqlx::query(BEGIN).execute(&mut *conn).await?;
        }
        for job in jobs.by_ref() {
            outcomes.push(apply_write(conn, job, outbox).await?);
        }
        let committing = Instant::now();
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        trace!(commit_us = committing.elapsed().as_micros() as u64, "commit");
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            for (reply, stored) in replies.into_iter().zip(appended) {
                let _ = reply.send(Ok(stored));
            }
            outcomes.into_iter().for_each(Outcome::send);
            true
        }
        Err(err) => {
            error!(error = %err, "write batch failed, rolled back");
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            memory.forget();
            let err = unavailable(err);
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
            outcomes.into_iter().for_each(|o| o.fail(err.clone()));
            jobs.for_each(|j| j.fail(err.clone()));
            false
        }
    }
}

/// Why a status update changed no row: no such consultation, or one that
/// has ended already.
async fn not_changed(conn: &mut SqliteConnection, room: String) -> Result<StoreError, sqlx::Error> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM consultations WHERE id = $1").bind(&room).fetch_optional(conn).await?;
    Ok(match status {
        Some(status) => StoreError::Conflict(format!("{room} is {status} already")),
        None => StoreError::NotFound(room),
    })
}

async fn apply_write(conn: &mut SqliteConnection, write: Write, outbox: &OutboxPolicy) -> Result<Outcome, sqlx::Error> {
    let now = Utc::now();
    Ok(match write {
        Write::ReadMarker { room, user, seq, reply } => {
            let marker: i64 = sqlx::query_scalar(
                "INSERT INTO read_markers (room, user_id, seq, updated_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (room, user_id) DO UPDATE SET seq = MAX(seq, excluded.seq), updated_at = excluded.updated_at
                 RETURNING seq",
            )
            .bind(&room)
            .bind(&user)
            .bind(seq)
            .bind(format_time(now))
            .fetch_one(&mut *conn)
            .await?;
            Outcome::Marker(reply, Ok(marker))
        }
        Write::Status { room, status, at, by, reply } => {
            let at = format_time(at);
            let (by_id, by_name) = by.map(|p| (p.id, p.name)).unzip();
            let done = sqlx::query(
                "UPDATE consultations SET status = ?1,
                    started_at = CASE WHEN ?1 = 'active' THEN COALESCE(started_at, ?2) ELSE started_at END,
                    ended_at = CASE WHEN ?1 IN ('ended', 'cancelled') THEN ?2 ELSE ended_at END,
                    ended_by_id = CASE WHEN ?1 IN ('ended', 'cancelled') THEN ?4 ELSE ended_by_id END,
                    ended_by_name = CASE WHEN ?1 IN ('ended', 'cancelled') THEN ?5 ELSE ended_by_name END
                 WHERE id = ?3 AND status NOT IN ('ended', 'cancelled')",
            )
            .bind(status.as_str())
            .bind(&at)
            .bind(&room)
            .bind(by_id)
            .bind(by_name)
            .execute(&mut *conn)
            .await?;
            // A closed consultation stays closed, whatever a node that has
            // not heard of the end yet asks for.
            let result = if done.rows_affected() == 1 { Ok(()) } else { Err(not_changed(&mut *conn, room).await?) };
            Outcome::Done(reply, result)
        }
        Write::Media { room, mode, reply } => {
            sqlx::query("UPDATE consultations SET media_mode = ? WHERE id = ?")
                .bind(mode.as_str())
                .bind(&room)
                .execute(&mut *conn)
                .await?;
            Outcome::Done(reply, Ok(()))
        }
        Write::Audit { entry, reply } => {
            sqlx::query("INSERT INTO audit_log (at, room, user_id, action, detail) VALUES (?, ?, ?, ?, ?)")
                .bind(format_time(entry.at))
                .bind(&entry.room)
                .bind(&entry.user)
                .bind(&entry.action)
                .bind(entry.detail.to_string())
                .execute(&mut *conn)
                .await?;
            Outcome::Done(reply, Ok(()))
        }
        Write::CheckIn { room, queue, at, reply } => {
            let checked = check_in(conn, &room, &queue, at).await?;
            Outcome::CheckedIn(reply, Ok(checked))
        }
        Write::Entry { room, state, at, call_in, reply } => {
            sqlx::query("UPDATE queue_entries SET state = ?, changed_at = ? WHERE room = ?")
                .bind(state.as_str())
                .bind(format_time(at))
                .bind(&room)
                .execute(&mut *conn)
                .await?;
            if call_in {
                outbox::enqueue_on::<sqlx::Sqlite>(conn, outbox, &room, NotifyKind::CallIn, at, &format_time(at))
                    .await?;
            }
            Outcome::Done(reply, Ok(()))
        }
    })
}

/// Puts a patient in their queue inside the writer's transaction: the same
/// ticket when they are waiting already, else the queue's next one of the
/// day. Batches apply their writes one after the other, so two check-ins
/// never draw one number.
async fn check_in(
    conn: &mut SqliteConnection,
    room: &str,
    queue: &QueueId,
    at: chrono::DateTime<Utc>,
) -> Result<CheckedIn, sqlx::Error> {
    let (clinic, name) = (queue.clinic_key(), queue.name());
    let existing: Option<(String, String, String)> =
        sqlx::query_as("SELECT ticket, checked_in_at, state FROM queue_entries WHERE room = ?")
            .bind(room)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((ticket, since, state)) = existing
        && state == EntryState::Waiting.as_str()
    {
        return Ok(CheckedIn { ticket, since });
    }
    let day = at.format("%Y-%m-%d").to_string();
    let today: Option<(String, i64)> =
        sqlx::query_as("SELECT letter, last FROM queue_days WHERE clinic = ? AND queue = ? AND day = ?")
            .bind(clinic)
            .bind(name)
            .bind(&day)
            .fetch_optional(&mut *conn)
            .await?;
    let (letter, last) = match today {
        Some(today) => today,
        None => {
            let queues: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue_days WHERE clinic = ? AND day = ?")
                .bind(clinic)
                .bind(&day)
                .fetch_one(&mut *conn)
                .await?;
            let letter = ticket_letter(queues);
            sqlx::query("INSERT INTO queue_days (queue, day, clinic, letter, last) VALUES (?, ?, ?, ?, 0)")
                .bind(name)
                .bind(&day)
                .bind(clinic)
                .bind(&letter)
                .execute(&mut *conn)
                .await?;
            (letter, 0)
        }
    };
    let number = next_number(last);
    sqlx::query("UPDATE queue_days SET last = ? WHERE clinic = ? AND queue = ? AND day = ?")
        .bind(number)
        .bind(clinic)
        .bind(name)
        .bind(&day)
        .execute(&mut *conn)
        .await?;
    let ticket = ticket(&letter, number);
    let since = format_time(at);
    sqlx::query(
        "INSERT INTO queue_entries (room, queue, ticket, state, checked_in_at, changed_at)
         VALUES (?1, ?2, ?3, 'waiting', ?4, ?4)
         ON CONFLICT (room) DO UPDATE SET queue = excluded.queue, ticket = excluded.ticket, state = 'waiting',
             checked_in_at = excluded.checked_in_at, changed_at = excluded.changed_at",
    )
    .bind(room)
    .bind(name)
    .bind(&ticket)
    .bind(&since)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE consultations SET status = 'waiting' WHERE id = ? AND status = 'scheduled'")
        .bind(room)
        .execute(&mut *conn)
        .await?;
    Ok(CheckedIn { ticket, since })
}

/// The identity of a message for idempotency.
type Key<'a> = (&'a str, &'a str, &'a str);

fn key(m: &NewMessage) -> Option<Key<'_>> {
    m.client_id.as_deref().map(|c| (m.room.as_str(), m.from.id.as_str(), c))
}

/// A short fingerprint of a (sender, client_id) pair. A match is confirmed
/// against the stored row, so a collision costs a lookup, never a wrong ack.
fn fingerprint(sender: &str, client_id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (sender, client_id).hash(&mut hasher);
    hasher.finish()
}

/// What the writer remembers of a room: its last `seq` and the rowid of its
/// newest message (the chain's tail, see [`chains`]), and which
/// (sender, client_id) pairs it has stored, by fingerprint. This replaces a
/// unique index on (room, sender, client_id): such an index puts a second
/// scattered page into every commit and halved the writer's throughput. The
/// writer can keep it because it is the only connection that stores
/// messages; the set is loaded from the table on a room's first write.
#[derive(Debug, Default)]
struct RoomMemory {
    last_seq: i64,
    last_rowid: Option<i64>,
    sent: HashMap<u64, i64>,
}

async fn remember_room(conn: &mut SqliteConnection, room: &str) -> Result<RoomMemory, sqlx::Error> {
    let mut memory = RoomMemory::default();
    let tail: Option<(i64, i64, i64)> = sqlx::query_as(chains::TAIL).bind(room).fetch_optional(&mut *conn).await?;
    let Some((_, last_rowid, last_seq)) = tail else { return Ok(memory) };
    memory.last_seq = last_seq;
    memory.last_rowid = Some(last_rowid);
    let rows = sqlx::query(chains::SENDERS).bind(room).fetch_all(&mut *conn).await?;
    for row in &rows {
        if let Some(client_id) = row.get::<Option<String>, _>("client_id") {
            memory.sent.insert(fingerprint(row.get("sender_id"), &client_id), row.get("seq"));
        }
    }
    Ok(memory)
}

/// The stored original of a resend, if there is one.
async fn original(
    conn: &mut SqliteConnection,
    memory: &RoomMemory,
    m: &NewMessage,
    client_id: &str,
) -> Result<Option<Appended>, sqlx::Error> {
    let Some(seq) = memory.sent.get(&fingerprint(&m.from.id, client_id)) else { return Ok(None) };
    let row =
        sqlx::query(chains::MESSAGE_AT).bind(&m.room).bind(seq - 1).bind(1_i64).fetch_optional(&mut *conn).await?;
    let same = |row: &SqliteRow| {
        row.get::<String, _>("sender_id") == m.from.id
            && row.get::<Option<String>, _>("client_id").as_deref() == Some(client_id)
    };
    let row = match row {
        Some(row) if same(&row) => Some(row),
        // Two pairs with one fingerprint: look the pair up the slow way.
        _ => {
            sqlx::query(chains::SENT).bind(&m.room).bind(&m.from.id).bind(client_id).fetch_optional(&mut *conn).await?
        }
    };
    Ok(row.map(|row| Appended { seq: row.get("seq"), id: row.get("id"), at: row.get("at"), duplicate: true }))
}

/// What the writer remembers between batches: the rooms it wrote to, and
/// the last rowid of the messages table (it assigns the rowids, so that it
/// can chain a batch's rows before inserting them). Forgotten whenever a
/// transaction fails.
#[derive(Debug, Default)]
struct WriterMemory {
    rooms: HashMap<String, RoomMemory>,
    last_rowid: Option<i64>,
}

impl WriterMemory {
    fn forget(&mut self) {
        self.rooms.clear();
        self.last_rowid = None;
    }
}

/// A new row of a batch: the message's index in the batch, its `seq`, `id`,
/// rowid, and the rowid of its room's previous message.
struct NewRow {
    index: usize,
    seq: i64,
    id: String,
    rowid: i64,
    prev: Option<i64>,
}

/// Stores `messages` with their rooms' next `seq`s. A message whose (room,
/// sender, client_id) exists already, in the database or earlier in the
/// same batch, is not stored again; it gets the original's `seq`, `id` and
/// `at`. Returns one result per message, in order, and whether the inserts
/// began a transaction, which they do when any message is new; with
/// `commit` they also commit it. What is read before the inserts (a room's
/// numbering and stored client ids, a resend's original) is read outside
/// the transaction: no other connection writes messages.
async fn append_all(
    conn: &mut SqliteConnection,
    memory: &mut WriterMemory,
    messages: &[NewMessage],
    at: &str,
    commit: bool,
) -> Result<(Vec<Appended>, bool), sqlx::Error> {
    let WriterMemory { rooms, last_rowid } = memory;
    for m in messages {
        if !rooms.contains_key(&m.room) {
            let memory = remember_room(conn, &m.room).await?;
            rooms.insert(m.room.clone(), memory);
        }
    }
    let mut results: Vec<Option<Appended>> = vec![None; messages.len()];
    // Resends within the batch point at their first copy.
    let mut first: HashMap<Key<'_>, usize> = HashMap::new();
    let mut copy_of: Vec<Option<usize>> = vec![None; messages.len()];
    let mut fresh: Vec<usize> = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if let Some(j) = key(m).map(|k| *first.entry(k).or_insert(i)).filter(|j| *j != i) {
            copy_of[i] = Some(j);
            continue;
        }
        let stored = match &m.client_id {
            Some(client_id) => original(conn, &rooms[&m.room], m, client_id).await?,
            None => None,
        };
        match stored {
            Some(stored) => results[i] = Some(stored),
            None => fresh.push(i),
        }
    }
    let ids = MessageIds::get();
    let before = match *last_rowid {
        Some(rowid) => rowid,
        None => sqlx::query_scalar("SELECT COALESCE(MAX(rowid), 0) FROM messages").fetch_one(&mut *conn).await?,
    };
    // Each room's next seq and tail as the batch's rows are numbered.
    let mut next: HashMap<&str, (i64, Option<i64>)> = HashMap::new();
    let mut rowid = before;
    let rows: Vec<NewRow> = fresh
        .iter()
        .map(|&index| {
            let room = messages[index].room.as_str();
            let (seq, tail) = next.entry(room).or_insert_with(|| (rooms[room].last_seq, rooms[room].last_rowid));
            rowid += 1;
            *seq += 1;
            let prev = tail.replace(rowid);
            NewRow { index, seq: *seq, id: ids.next(), rowid, prev }
        })
        .collect();
    let began = !rows.is_empty();
    insert_rows(conn, messages, &rows, before, at, commit).await?;
    // Only now is it certain that the rows are in the transaction; if the
    // transaction fails later, the caller forgets every room and the rowid.
    *last_rowid = Some(rowid);
    for NewRow { index, seq, id, rowid, .. } in rows {
        let m = &messages[index];
        let memory = rooms.get_mut(&m.room).expect("loaded above");
        memory.last_seq = memory.last_seq.max(seq);
        memory.last_rowid = Some(rowid);
        if let Some(client_id) = &m.client_id {
            memory.sent.insert(fingerprint(&m.from.id, client_id), seq);
        }
        results[index] = Some(Appended { seq, id, at: at.to_owned(), duplicate: false });
    }
    for (i, original) in copy_of.iter().enumerate() {
        if let Some(j) = original {
            let mut copy = results[*j].clone().expect("the first copy has a result");
            copy.duplicate = true;
            results[i] = Some(copy);
        }
    }
    Ok((results.into_iter().map(|r| r.expect("every message has a result")).collect(), began))
}

/// Rows per INSERT statement, largest first: a batch of n rows is inserted
/// with one statement per set bit of n (at most 1023), each a multi-row
/// VALUES list of that many rows. So there are ten statement texts, each
/// prepared once, and a batch of a hundred rows takes three statements.
///
/// The rows are bound as plain values, with no function in the statement,
/// and `OR ROLLBACK` decides what a conflict does (the writer's numbering
/// rules one out; any failure ends the whole batch anyway). Both matter:
/// a statement that writes many rows and could fail half-way (a function
/// that may raise, such as the JSON functions an earlier version unpacked
/// its rows with, or the default `ABORT` on a constraint) makes SQLite keep
/// a statement journal, a copy of every page it touches, so as to undo just
/// that statement; that journal cost about a tenth of the hub's CPU.
const INSERT_SIZES: [usize; 10] = [512, 256, 128, 64, 32, 16, 8, 4, 2, 1];

/// How a write transaction begins. IMMEDIATE takes the write lock up
/// front, so the transaction never has to upgrade a read lock, which
/// SQLite may refuse outright.
const BEGIN: &str = "BEGIN IMMEDIATE";

/// The INSERT statement for `rows` rows, preceded by [`BEGIN`] with
/// `begin`; with `last`, followed by [`chains::SET_TAILS`] and, with
/// `commit`, by `COMMIT`: sixty texts in all.
fn insert_messages_sql(rows: usize, begin: bool, last: bool, commit: bool) -> &'static str {
    const ENDS: [(bool, bool); 3] = [(false, false), (true, false), (true, true)];
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        let mut all = Vec::new();
        for &n in &INSERT_SIZES {
            for begin in [false, true] {
                for (last, commit) in ENDS {
                    let mut sql = if begin { format!("{BEGIN}; ") } else { String::new() };
                    sql.push_str(
                        "INSERT OR ROLLBACK INTO messages \
                         (rowid, prev, room, seq, id, sender_id, sender_name, sender_role, client_id, kind, text, at) \
                         VALUES ",
                    );
                    for row in 0..n {
                        if row > 0 {
                            sql.push(',');
                        }
                        sql.push_str("(?,?,?,?,?,?,?,?,?,?,?,?)");
                    }
                    if last {
                        sql.push_str("; ");
                        sql.push_str(chains::SET_TAILS);
                    }
                    if commit {
                        sql.push_str("; COMMIT");
                    }
                    all.push(sql);
                }
            }
        }
        all
    });
    assert!(last || !commit, "only the last statement commits");
    let i = INSERT_SIZES.iter().position(|&n| n == rows).expect("one of INSERT_SIZES");
    let end = ENDS.iter().position(|&e| e == (last, commit)).expect("one of ENDS");
    &all[6 * i + 3 * usize::from(begin) + end]
}

/// Inserts `rows` in a transaction that the first statement begins; the
/// last one sets the tails of the rooms written since rowid `before` and,
/// with `commit`, commits. Every statement is a hand-off to sqlx's SQLite
/// thread and back, so a batch of new messages alone is stored with as many
/// hand-offs as the set bits of its size, often one, instead of two more
/// for `BEGIN` and `COMMIT` and one for the tails.
async fn insert_rows(
    conn: &mut SqliteConnection,
    messages: &[NewMessage],
    rows: &[NewRow],
    before: i64,
    at: &str,
    commit: bool,
) -> Result<(), sqlx::Error> {
    let mut rest = rows;
    let mut first = true;
    while !rest.is_empty() {
        let size = *INSERT_SIZES.iter().find(|&&n| n <= rest.len()).expect("1 fits any non-empty rest");
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let last = rest.is_empty();
        let mut query = sqlx::query(insert_messages_sql(size, first, last, commit && last));
        first = false;
        for row in chunk {
            let m = &messages[row.index];
            query = query
                .bind(row.rowid)
                .bind(row.prev)
                .bind(m.room.as_str())
                .bind(row.seq)
                .bind(row.id.as_str())
                .bind(m.from.id.as_str())
                .bind(m.from.name.as_str())
                .bind(m.from.role.as_str())
                .bind(m.client_id.as_deref())
                .bind(m.kind.as_str())
                .bind(m.text.as_str())
                .bind(at);
        }
        if last {
            query = query.bind(before);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

const CONSULTATION_SELECT: &str = concat!(
    "SELECT c.id, c.status, c.clinic, c.queue, c.scheduled_at, c.media_mode,
        c.created_at, c.started_at, c.ended_at, c.ended_by_id, c.ended_by_name, c.payment_amount, c.payment_currency, c.payment_status,
        p.user_id AS patient_id, p.name AS patient_name, p.phone AS patient_phone, p.email AS patient_email, p.locale AS patient_locale,
        d.user_id AS doctor_id, d.name AS doctor_name,
        COALESCE((SELECT t.last_seq ",
    chains::tail_from!("c.id"),
    "), 0) AS last_seq
     FROM consultations c
     JOIN members p ON p.consultation_id = c.id AND p.role = 'patient'
     JOIN members d ON d.consultation_id = c.id AND d.role = 'doctor'
     WHERE c.id = ?"
);

#[async_trait]
impl RoomStore for SqliteStore {
    async fn load_room(&self, room: &str) -> Result<Option<RoomRecord>, StoreError> {
        Ok(self.consultation(room).await?.map(|c| c.room_record()))
    }

    async fn messages_after(&self, room: &str, after: i64, limit: u32) -> Result<Vec<MessageEvent>, StoreError> {
        let rows = sqlx::query_as::<_, MessageRow>(chains::MESSAGES_AFTER)
            .bind(room)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(MessageEvent::from).collect())
    }

    async fn last_messages(&self, room: &str, limit: u32) -> Result<Vec<MessageEvent>, StoreError> {
        let rows = sqlx::query_as::<_, MessageRow>(chains::LAST_MESSAGES)
            .bind(room)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(MessageEvent::from).collect())
    }

    async fn append(&self, message: NewMessage) -> Result<Appended, StoreError> {
        self.writes.append(message).await
    }

    async fn sent(&self, room: &str, sender: &str, client_id: &str) -> Result<Option<Appended>, StoreError> {
        let row: Option<(i64, String, String)> = sqlx::query_as(chains::SENT)
            .bind(room)
            .bind(sender)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(|(seq, id, at)| Appended { seq, id, at, duplicate: true }))
    }

    async fn read_markers(&self, room: &str) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(READ_MARKERS).bind(room).fetch_all(&self.pool).await.map_err(unavailable)
    }

    async fn set_read_marker(&self, room: &str, user: &str, seq: i64) -> Result<i64, StoreError> {
        self.writes.read_marker(room, user, seq).await
    }

    async fn set_status(
        &self,
        room: &str,
        status: RoomStatus,
        at: chrono::DateTime<Utc>,
        by: Option<Person>,
    ) -> Result<(), StoreError> {
        self.writes.status(room, status, at, by).await
    }

    async fn set_media_mode(&self, room: &str, mode: MediaMode) -> Result<(), StoreError> {
        self.writes.media(room, mode).await
    }

    fn audit(&self, entry: AuditEntry) {
        self.writes.audit(entry);
    }
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn check_in(&self, room: &str, queue: &QueueId, at: chrono::DateTime<Utc>) -> Result<CheckedIn, StoreError> {
        self.writes.check_in(room, queue, at).await
    }

    async fn set_entry_state(
        &self,
        room: &str,
        state: EntryState,
        at: chrono::DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.writes.entry_state(room, state, at, false).await
    }

    async fn admit_away(&self, room: &str, at: chrono::DateTime<Utc>) -> Result<(), StoreError> {
        self.writes.entry_state(room, EntryState::Admitted, at, true).await?;
        self.outbox.wake.notify_one();
        Ok(())
    }

    async fn load_queue(&self, queue: &QueueId) -> Result<Vec<StoredEntry>, StoreError> {
        load_queue_on(&self.pool, queue).await
    }

    async fn recent_lengths(&self, queue: &QueueId, limit: u32) -> Result<Vec<Duration>, StoreError> {
        let rows = sqlx::query_as(RECENT_ENDED)
            .bind(queue.name())
            .bind(queue.clinic_key())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        lengths(rows)
    }

    async fn serves(&self, queue: &QueueId, doctor: &str) -> Result<bool, StoreError> {
        counts_any(&self.pool, SERVES, &[queue.name(), queue.clinic_key(), doctor]).await
    }

    async fn queue_exists(&self, queue: &QueueId) -> Result<bool, StoreError> {
        counts_any(&self.pool, QUEUE_EXISTS, &[queue.name(), queue.clinic_key()]).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_consultation(&self, new: NewConsultation) -> Result<Consultation, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        let result: Result<(), sqlx::Error> = async {
            sqlx::query(BEGIN).execute(&mut *conn).await?;
            sqlx::query(
                "INSERT INTO consultations (id, status, clinic, queue, scheduled_at, media_mode, created_at,
                     payment_amount, payment_currency, payment_status)
                 VALUES (?, ?, ?, ?, ?, 'p2p', ?, ?, ?, ?)",
            )
            .bind(&new.id)
            .bind(if new.scheduled_at.is_some() { "scheduled" } else { "waiting" })
            .bind(&new.clinic)
            .bind(&new.queue)
            .bind(&new.scheduled_at)
            .bind(&new.created_at)
            .bind(new.payment.as_ref().map(|p| p.amount))
            .bind(new.payment.as_ref().map(|p| p.currency.clone()))
            .bind(new.payment.as_ref().map(|_| "unpaid"))
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO members (consultation_id, role, user_id, name, phone, email, locale)
                 VALUES (?, 'patient', ?, ?, ?, ?, ?)",
            )
            .bind(&new.id)
            .bind(&new.patient.id)
            .bind(&new.patient.name)
            .bind(&new.patient.phone)
            .bind(&new.patient.email)
            .bind(&new.patient.locale)
            .execute(&mut *conn)
            .await?;
            sqlx::query("INSERT INTO members (consultation_id, role, user_id, name) VALUES (?, 'doctor', ?, ?)")
                .bind(&new.id)
                .bind(&new.doctor.id)
                .bind(&new.doctor.name)
                .execute(&mut *conn)
                .await?;
            if let Some(due) = outbox::reminder_due(&self.outbox, new.scheduled_at.as_deref(), Utc::now()) {
                outbox::enqueue_on::<sqlx::Sqlite>(&mut conn, &self.outbox, &new.id, NotifyKind::Reminder, due, "")
                    .await?;
            }
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(())
        }
        .await;
        if let Err(err) = result {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(match err {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    StoreError::Conflict(format!("consultation {} exists already", new.id))
                }
                other => unavailable(other),
            });
        }
        drop(conn);
        self.outbox.wake.notify_one();
        self.consultation(&new.id).await?.ok_or_else(|| StoreError::Unavailable("created consultation vanished".into()))
    }

    async fn record_payment(&self, payment: NewPayment) -> Result<PaymentChange, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        sqlx::query(BEGIN).execute(&mut *conn).await.map_err(unavailable)?;
        let mut result = record_payment_on::<sqlx::Sqlite>(&mut conn, &payment, PAYMENT_OF).await;
        if let Ok(Some(PaymentStatus::Paid)) = result
            && let Err(err) = outbox::enqueue_on::<sqlx::Sqlite>(
                &mut conn,
                &self.outbox,
                &payment.room,
                NotifyKind::Receipt,
                Utc::now(),
                &payment.reference,
            )
            .await
        {
            result = Err(unavailable(err));
        }
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end).execute(&mut *conn).await.map_err(unavailable)?;
        self.outbox.wake.notify_one();
        result
    }

    async fn succeeded_payment(&self, room: &str) -> Result<Option<(String, String, Price)>, StoreError> {
        let row: Option<(String, String, i64, String)> =
            sqlx::query_as(SUCCEEDED_PAYMENT).bind(room).fetch_optional(&self.pool).await.map_err(unavailable)?;
        Ok(row.map(|(provider, reference, amount, currency)| (provider, reference, Price { amount, currency })))
    }

    async fn first_delivery(&self, provider: &str, id: &str, at: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(INSERT_DELIVERY)
            .bind(provider)
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn consultation(&self, id: &str) -> Result<Option<Consultation>, StoreError> {
        let row = sqlx::query_as::<_, ConsultationRow>(CONSULTATION_SELECT)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(Consultation::try_from).transpose()
    }

    async fn audit_log(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query_as::<_, AuditRow>(
            "SELECT id, at, room, user_id, action, detail FROM audit_log
             WHERE (?1 IS NULL OR room = ?1) AND (?2 IS NULL OR user_id = ?2) AND id > ?3
               AND (?5 IS NULL OR room IN (SELECT id FROM consultations WHERE clinic = ?5))
             ORDER BY id LIMIT ?4",
        )
        .bind(&query.room)
        .bind(&query.user)
        .bind(query.after.unwrap_or(0))
        .bind(i64::from(query.limit))
        .bind(&query.clinic)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(rows.into_iter().map(AuditRecord::from).collect())
    }

    fn notifications(&self) -> &dyn Notifications {
        &self.rows
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.writes.is_stopped() {
            return Err(StoreError::Unavailable("writer stopped".into()));
        }
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(unavailable)?;
        Ok(())
    }

    fn write_stats(&self) -> WriteStats {
        WriteStats { log: Some(self.catch_up.stats()), ..self.writes.stats() }
    }

    async fn close(&self) {
        self.writes.finish().await;
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use crate::store::writer::Answer;
    use telehub_signaling::{MessageKind, Sender};
    use tokio::sync::watch;

    use super::*;

    fn message(sender: &str, client_id: &str) -> NewMessage {
        NewMessage {
            room: "c-1".into(),
            from: Sender { id: sender.into(), name: sender.into(), role: "patient".into() },
            client_id: Some(client_id.into()),
            kind: MessageKind::Text,
            text: "hello".into(),
        }
    }

    /// A store on the database `t.db` in `dir`, made and migrated if new.
    async fn store_in(dir: &tempfile::TempDir) -> SqliteStore {
        let url = format!("sqlite://{}/t.db", dir.path().display());
        SqliteStore::connect(&url, WriteLimits::waiting(Duration::from_secs(1)), OutboxPolicy::off()).await.unwrap()
    }

    async fn connection(dir: &tempfile::TempDir) -> SqliteConnection {
        let store = store_in(dir).await;
        store.pool.close().await;
        connection_only(dir).await
    }

    /// Another connection to the database `connection` made.
    async fn connection_only(dir: &tempfile::TempDir) -> SqliteConnection {
        SqliteConnectOptions::from_str(&format!("sqlite://{}/t.db", dir.path().display()))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn resends_are_found_in_the_batch_in_storage_and_after_forgetting() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        let mut rooms = WriterMemory::default();
        let batch = [message("u1", "a"), message("u1", "b"), message("u1", "a"), message("u2", "a")];
        let (stored, _) = append_all(&mut conn, &mut rooms, &batch, "t", true).await.unwrap();
        let seqs: Vec<(i64, bool)> = stored.iter().map(|s| (s.seq, s.duplicate)).collect();
        assert_eq!(seqs, vec![(1, false), (2, false), (1, true), (3, false)]);
        assert_eq!(stored[2].id, stored[0].id);
        // A later batch, then one after the writer forgot the room.
        let batch = [message("u1", "b"), message("u1", "c")];
        let (again, _) = append_all(&mut conn, &mut rooms, &batch, "t", true).await.unwrap();
        assert_eq!((again[0].seq, again[0].duplicate, again[1].seq), (2, true, 4));
        rooms.forget();
        let batch = [message("u2", "a"), message("u2", "d")];
        let (after, _) = append_all(&mut conn, &mut rooms, &batch, "t", true).await.unwrap();
        assert_eq!((after[0].seq, after[0].duplicate, after[1].seq), (3, true, 5));
    }

    /// Whether `conn` is inside a transaction: a COMMIT outside one fails.
    async fn in_transaction(conn: &mut SqliteConnection) -> bool {
        sqlx::query("COMMIT").execute(&mut *conn).await.is_ok()
    }

    async fn stored_count(dir: &tempfile::TempDir) -> i64 {
        let mut other = connection_only(dir).await;
        sqlx::query_scalar("SELECT COUNT(*) FROM messages").fetch_one(&mut other).await.unwrap()
    }

    #[tokio::test]
    async fn the_inserts_open_the_transaction_and_commit_it_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        let mut rooms = WriterMemory::default();
        // Three rows take two statements (2 + 1): the first begins, the
        // last commits, and the rows are visible to another connection.
        let batch = [message("u1", "a"), message("u1", "b"), message("u2", "c")];
        let (_, began) = append_all(&mut conn, &mut rooms, &batch, "t", true).await.unwrap();
        assert!(began);
        assert_eq!(stored_count(&dir).await, 3, "committed");
        assert!(!in_transaction(&mut conn).await, "nothing left open");
        // Without `commit` the transaction stays open for the batch's other
        // writes: nobody else sees the row until it commits.
        let (_, began) = append_all(&mut conn, &mut rooms, &[message("u1", "d")], "t", false).await.unwrap();
        assert!(began);
        assert_eq!(stored_count(&dir).await, 3, "not committed yet");
        assert!(in_transaction(&mut conn).await, "the transaction was open");
        assert_eq!(stored_count(&dir).await, 4);
        // A batch of resends alone writes nothing and begins nothing.
        let (again, began) = append_all(&mut conn, &mut rooms, &[message("u1", "a")], "t", true).await.unwrap();
        assert!(again[0].duplicate && !began);
        assert!(!in_transaction(&mut conn).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_starts_over_while_writes_never_stop() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = Arc::new(
            SqliteStore::connect(&url, WriteLimits::waiting(Duration::from_secs(5)), OutboxPolicy::off())
                .await
                .unwrap(),
        );
        // Senders that each keep a message in flight, so that the writer
        // always has its next batch waiting: no pause in which a
        // checkpoint on another connection could catch up by itself.
        let stop = Arc::new(AtomicBool::new(false));
        let (progress, mut acked) = watch::channel(0u64);
        let progress = Arc::new(progress);
        let senders: Vec<_> = (0..32)
            .map(|i| {
                let (store, stop, progress) = (store.clone(), stop.clone(), progress.clone());
                tokio::spawn(async move {
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let mut m = message(&format!("u{i}"), &sent.to_string());
                        m.room = format!("c-{}", i % 8);
                        // Long texts make a checkpoint take a while, long
                        // enough that batches always commit while it copies.
                        m.text = "x".repeat(2000);
                        store.append(m).await.unwrap();
                        sent += 1;
                        progress.send_modify(|n| *n += 1);
                    }
                    sent
                })
            })
            .collect();
        // Checkpoints with 2,000 messages written between two: the log must
        // keep starting over, so that it never holds much more than what one
        // round writes. Without that it grows by a round's worth each time.
        let mut logged = Vec::new();
        for _ in 0..10 {
            logged.push(checkpoint_round(&store.pool, &store.catch_up).await.expect("the checkpoint runs"));
            let target = *acked.borrow() + 2000;
            acked.wait_for(|&n| n >= target).await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let mut sent = 0;
        for sender in senders {
            sent += sender.await.unwrap();
        }
        // logged[0] is before the first round, logged[1] after one round.
        let peak = logged.iter().copied().max().unwrap_or_default();
        assert!(peak < 3 * logged[1], "the log kept growing: {logged:?} frames");
        let log = store.write_stats().log.expect("SQLite reports its log");
        assert!(log.writer_checkpoints > 0, "the writer finished a checkpoint");
        assert!(log.writer_checkpoint_seconds > 0.0, "and its time was counted: {log:?}");
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages").fetch_one(&store.pool).await.unwrap();
        assert_eq!(stored as u64, sent, "every acknowledged message is stored");
    }

    #[tokio::test]
    async fn a_fingerprint_collision_is_checked_against_the_stored_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        let mut rooms = WriterMemory::default();
        append_all(&mut conn, &mut rooms, &[message("u1", "a"), message("u2", "z")], "t", true).await.unwrap();
        // Make u2/z's fingerprint point at u1/a's row, as a collision would.
        let memory = rooms.rooms.get_mut("c-1").unwrap();
        memory.sent.insert(fingerprint("u2", "z"), 1);
        let found = original(&mut conn, memory, &message("u2", "z"), "z").await.unwrap().unwrap();
        assert_eq!((found.seq, found.duplicate), (2, true), "the slow lookup finds the real original");
        // A new pair whose fingerprint collides with a stored one is new.
        memory.sent.insert(fingerprint("u3", "q"), 1);
        assert!(original(&mut conn, memory, &message("u3", "q"), "q").await.unwrap().is_none());
    }

    /// Messages of rooms `c-1` and `c-2`, interleaved in the table, through
    /// the writer in batches of several rooms: `n` of each, numbered by
    /// their text ("c-1 7").
    async fn interleaved(conn: &mut SqliteConnection, memory: &mut WriterMemory, n: usize) {
        let mut batch = Vec::new();
        for i in 0..n {
            for room in ["c-1", "c-2"] {
                let mut m = message("u1", &format!("{room}-{i}"));
                m.room = room.into();
                m.text = format!("{room} {}", i + 1);
                batch.push(m);
            }
            // Batches of 2 to 8 messages (1 to 4 of each room), so that a
            // batch holds several messages of a room and a room's chain
            // crosses batches.
            if batch.len() > i % 7 {
                append_all(conn, memory, &std::mem::take(&mut batch), "t", true).await.unwrap();
            }
        }
        append_all(conn, memory, &batch, "t", true).await.unwrap();
    }

    /// A database in `dir` with `n` messages in each of `c-1` and `c-2`
    /// ([`interleaved`]), and the writer's connection and memory after them.
    async fn interleaved_in(dir: &tempfile::TempDir, n: usize) -> (SqliteConnection, WriterMemory) {
        let mut conn = connection(dir).await;
        let mut memory = WriterMemory::default();
        interleaved(&mut conn, &mut memory, n).await;
        (conn, memory)
    }

    fn seqs(messages: &[MessageEvent], room: &str) -> Vec<i64> {
        for m in messages {
            assert_eq!(m.room, room);
            assert_eq!(m.text, format!("{room} {}", m.seq), "the row of its seq");
        }
        messages.iter().map(|m| m.seq).collect()
    }

    #[tokio::test]
    async fn reads_walk_a_rooms_chain_to_exactly_the_messages_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = interleaved_in(&dir, 200).await;
        let store = store_in(&dir).await;
        // Around the indexed messages (1, 65, 129, 193) and the ends.
        for after in [0, 1, 2, 63, 64, 65, 66, 100, 128, 129, 130, 192, 193, 199, 200, 250] {
            for limit in [1, 2, 10, 63, 64, 65, 500] {
                let got = store.messages_after("c-1", after, limit).await.unwrap();
                let want: Vec<i64> = (after + 1..=200.min(after + i64::from(limit))).collect();
                assert_eq!(seqs(&got, "c-1"), want, "after {after}, limit {limit}");
            }
        }
        for limit in [1, 2, 64, 65, 199, 200, 500] {
            let got = store.last_messages("c-2", limit).await.unwrap();
            let want: Vec<i64> = (201 - i64::from(limit).min(200)..=200).collect();
            assert_eq!(seqs(&got, "c-2"), want, "last {limit}");
        }
        assert!(store.messages_after("c-3", 0, 10).await.unwrap().is_empty(), "a room without messages");
        assert!(store.last_messages("c-3", 10).await.unwrap().is_empty());
        let sent = store.sent("c-2", "u1", "c-2-99").await.unwrap().expect("stored");
        assert_eq!(sent.seq, 100);
        assert!(store.sent("c-2", "u1", "c-1-99").await.unwrap().is_none(), "another room's client id");
        // The writer, started over, takes each room's numbering and client
        // ids from the tails and the chains.
        drop(conn);
        let again = message("u1", "c-1-4");
        let mut fresh = message("u1", "new");
        fresh.text = "c-1 201".into();
        let stored = store.append(again).await.unwrap();
        assert_eq!((stored.seq, stored.duplicate), (5, true), "a resend after a restart");
        let stored = store.append(fresh).await.unwrap();
        assert_eq!((stored.seq, stored.duplicate), (201, false), "numbering goes on after the tail");
        assert_eq!(seqs(&store.messages_after("c-1", 195, 10).await.unwrap(), "c-1"), (196..=201).collect::<Vec<_>>());
    }

    /// A batch of `messages` and a read marker, through the writer's
    /// batch path; the answers to the messages, in order, and the marker
    /// stored, if it was.
    async fn batch_with_a_marker(
        conn: &mut SqliteConnection,
        memory: &mut WriterMemory,
        messages: Vec<NewMessage>,
    ) -> (Vec<Result<Appended, StoreError>>, Option<i64>) {
        let mut batch = Vec::new();
        let mut answers = Vec::new();
        for message in messages {
            let (reply, answer) = tokio::sync::oneshot::channel();
            batch.push(Job::Append { message, reply: Answer::detached(reply) });
            answers.push(answer);
        }
        let (reply, marker) = tokio::sync::oneshot::channel();
        batch.push(Job::Write(Write::ReadMarker { room: "c-1".into(), user: "u1".into(), seq: 1, reply }));
        apply_batch(conn, memory, batch, &OutboxPolicy::off()).await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap());
        }
        // A write whose statement fails is dropped unanswered (the caller
        // reads that as unavailable), the others of its batch are answered.
        (results, marker.await.ok().and_then(Result::ok))
    }

    /// The messages `c-1 <seq>` and `c-2 <seq>` for each seq of `seqs`.
    fn in_both_rooms(seqs: std::ops::RangeInclusive<i64>) -> Vec<NewMessage> {
        let mut messages = Vec::new();
        for seq in seqs {
            for room in ["c-1", "c-2"] {
                let mut m = message("u1", &format!("{room}-late-{seq}"));
                m.room = room.into();
                m.text = format!("{room} {seq}");
                messages.push(m);
            }
        }
        messages
    }

    #[tokio::test]
    async fn a_batch_that_fails_after_its_inserts_leaves_the_chains_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, mut memory) = interleaved_in(&dir, 70).await;
        // The batch's messages insert (chained, the tails set) and then its
        // read marker fails, inside the same transaction.
        let mut other = connection_only(&dir).await;
        sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON read_markers BEGIN SELECT RAISE(ABORT, 'refused'); END")
            .execute(&mut other)
            .await
            .unwrap();
        let (failed, marker) = batch_with_a_marker(&mut conn, &mut memory, in_both_rooms(71..=73)).await;
        assert!(failed.iter().all(|r| matches!(r, Err(StoreError::Unavailable(_)))), "{failed:?}");
        assert_eq!(marker, None);
        assert_eq!(stored_count(&dir).await, 140, "rolled back");
        // The same numbers again, and the rooms' chains go on from their
        // last stored message, not from the rolled-back rows.
        sqlx::query("DROP TRIGGER refuse").execute(&mut other).await.unwrap();
        let (stored, marker) = batch_with_a_marker(&mut conn, &mut memory, in_both_rooms(71..=72)).await;
        let stored: Vec<(i64, bool)> = stored.into_iter().map(|r| r.map(|a| (a.seq, a.duplicate)).unwrap()).collect();
        assert_eq!(stored, vec![(71, false), (71, false), (72, false), (72, false)]);
        assert_eq!(marker, Some(1));
        let (more, _) = append_all(&mut conn, &mut memory, &in_both_rooms(73..=73), "t", true).await.unwrap();
        assert_eq!((more[0].seq, more[1].seq), (73, 73));
        let store = store_in(&dir).await;
        for room in ["c-1", "c-2"] {
            assert_eq!(seqs(&store.messages_after(room, 60, 100).await.unwrap(), room), (61..=73).collect::<Vec<_>>());
            assert_eq!(seqs(&store.last_messages(room, 5).await.unwrap(), room), (69..=73).collect::<Vec<_>>());
        }
        drop(conn);
        let mut next = message("u1", "after-restart");
        next.text = "c-1 74".into();
        assert_eq!(store.append(next).await.unwrap().seq, 74, "the tail the store reads is the stored one");
    }

    #[tokio::test]
    async fn a_database_from_before_the_chains_gets_them_when_it_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        // The schema as it was, and messages stored under it.
        let options = SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true);
        let mut conn = options.connect().await.unwrap();
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        let before: Vec<_> = migrator.migrations.iter().filter(|m| m.version < 20261204000007).cloned().collect();
        migrator.migrations = before.into();
        migrator.run(&mut conn).await.unwrap();
        for i in 0..150 {
            for room in ["c-1", "c-2"] {
                sqlx::query(
                    "INSERT INTO messages (room, seq, id, sender_id, sender_name, sender_role, client_id, kind, text, at)
                     VALUES (?, ?, ?, 'u1', 'u1', 'patient', ?, 'text', ?, 't')",
                )
                .bind(room)
                .bind(i + 1)
                .bind(format!("m-{room}-{i}"))
                .bind(format!("{room}-{i}"))
                .bind(format!("{room} {}", i + 1))
                .execute(&mut conn)
                .await
                .unwrap();
            }
        }
        sqlx::Connection::close(conn).await.unwrap();
        let store = store_in(&dir).await;
        assert_eq!(seqs(&store.messages_after("c-1", 60, 80).await.unwrap(), "c-1"), (61..=140).collect::<Vec<_>>());
        assert_eq!(seqs(&store.last_messages("c-2", 3).await.unwrap(), "c-2"), vec![148, 149, 150]);
        let mut fresh = message("u1", "new");
        fresh.room = "c-2".into();
        fresh.text = "c-2 151".into();
        assert_eq!(store.append(fresh).await.unwrap().seq, 151, "numbering goes on");
        assert_eq!(store.append(message("u1", "c-1-0")).await.unwrap().seq, 1, "a resend of a migrated message");
        assert_eq!(seqs(&store.last_messages("c-2", 2).await.unwrap(), "c-2"), vec![150, 151]);
    }
}
