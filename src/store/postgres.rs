//! The store of a cluster: PostgreSQL, shared by every node.
//!
//! Reads go through a pool. Writes go through one writer connection per
//! node that group-commits like the SQLite writer (see [`super::writer`]),
//! but no node's memory sees every write here, so the database itself keeps
//! the invariants:
//! - a consultation row carries its last `seq`; a batch takes the row's lock
//!   (`SELECT … FOR UPDATE`, rooms in sorted order so that two nodes never
//!   wait on each other in a cycle), numbers its messages after it and
//!   stores the new value in the same transaction: gapless and unique
//!   whichever node writes, and a rolled-back batch takes no number;
//! - a resend is found under that same lock through the unique index on
//!   (room, sender, client_id), so two nodes storing one resend at once
//!   cannot both store it.
//!
//! When the database goes away the writer drops its connection and opens a
//! new one for the next batch; the batch in between fails with
//! `unavailable` and nothing of it is stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use telehub_actors::{
    Appended, AuditEntry, CheckedIn, EntryState, NewMessage, Person, QueueId, QueueStore, RoomRecord, RoomStore,
    StoreError, StoredEntry,
};
use telehub_signaling::{MediaMode, MessageEvent, PaymentStatus, RoomStatus, format_time};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::outbox::{self, Notifications, NotifyKind, Outbox, OutboxPolicy};
use super::rows::{
    AuditRow, ConsultationRow, INSERT_DELIVERY, LAST_MESSAGES, MESSAGES_AFTER, MessageIds, MessageRow, PAYMENT_OF,
    QUEUE_EXISTS, READ_MARKERS, RECENT_ENDED, SENT, SERVES, SUCCEEDED_PAYMENT, counts_any, lengths, load_queue_on,
    next_number, record_payment_on, ticket, ticket_letter,
};
use super::writer::{Job, Outcome, Write, WriterCounts, Writes, next_batch};
use super::{
    AuditQuery, AuditRecord, Consultation, NewConsultation, NewPayment, PaymentChange, Price, Store, WriteLimits,
    WriteStats, unavailable,
};

/// Most jobs in one transaction.
const MAX_BATCH: usize = 1024;

/// PostgreSQL storage.
pub struct PostgresStore {
    pool: PgPool,
    writes: Writes,
    outbox: Arc<OutboxPolicy>,
    /// The outbox's rows.
    rows: Outbox<sqlx::Postgres>,
}

impl PostgresStore {
    /// Connects and migrates. `limits.busy` bounds how long a statement may
    /// wait for a lock or a connection.
    pub async fn connect(url: &str, limits: WriteLimits, outbox: Arc<OutboxPolicy>) -> anyhow::Result<Self> {
        let busy = limits.busy;
        let options: PgConnectOptions = url.parse()?;
        let options = options
            .options([("lock_timeout", format!("{}", busy.as_millis())), ("statement_timeout", "30000".into())])
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(busy.max(Duration::from_secs(1)))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        info!(host = ?options.get_host(), "postgres store open");
        let writes = Writes::start(limits.max_pending_messages, {
            let outbox = outbox.clone();
            |rx, counts| run_writer(options, rx, outbox, counts)
        });
        // Nodes claim notifications side by side: each skips the rows
        // another is claiming at that moment.
        let rows = Outbox::new(pool.clone(), &format!("{} FOR UPDATE SKIP LOCKED", outbox::DUE));
        Ok(PostgresStore { pool, writes, outbox, rows })
    }
}

/// The writer task: batches, applies, commits, replies; reconnects after
/// the database went away.
async fn run_writer(
    options: PgConnectOptions,
    mut rx: mpsc::Receiver<Job>,
    outbox: Arc<OutboxPolicy>,
    counts: Arc<WriterCounts>,
) {
    let mut conn: Option<PgConnection> = None;
    while let Some(batch) = next_batch(&mut rx, MAX_BATCH).await {
        let (jobs, started) = (batch.len(), std::time::Instant::now());
        if conn.is_none() {
            match connect_writer(&options).await {
                Ok(c) => conn = Some(c),
                Err(err) => {
                    warn!(error = %err, "the writer cannot reach the database");
                    fail_all(batch, unavailable(err));
                    counts.batch(jobs, started.elapsed(), false);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let committed = apply_batch(c, batch, &outbox).await;
        counts.batch(jobs, started.elapsed(), committed);
        if !committed {
            // The connection may be broken; the next batch opens a new one.
            if let Some(old) = conn.take() {
                let _ = old.close().await;
            }
        }
    }
}

/// The writer's connection. Its statements are the same few with new
/// arrays every time: a generic plan, made once, serves them all.
async fn connect_writer(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    let mut conn = options.connect().await?;
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut conn).await?;
    Ok(conn)
}

fn fail_all(batch: Vec<Job>, err: StoreError) {
    for job in batch {
        match job {
            Job::Append { reply, .. } => drop(reply.send(Err(err.clone()))),
            Job::Write(write) => write.fail(err.clone()),
        }
    }
}

/// Applies one batch in one transaction; returns whether it committed.
async fn apply_batch(conn: &mut PgConnection, batch: Vec<Job>, outbox: &OutboxPolicy) -> bool {
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
        // A second try when another node stored one of the batch's
        // messages while this statement waited for a room's lock: the
        // statement's snapshot, taken before the wait, did not show it as
        // a resend, and its insert broke the unique index. The retry finds
        // it. Nothing else of the batch has run yet.
        for attempt in 0..2 {
            if !only_messages {
                sqlx::query("BEGIN").execute(&mut *conn).await?;
            }
            // Alone, the statement is a transaction of its own: one round trip.
            match append_all(conn, &messages, &format_time(Utc::now())).await {
                Ok(stored) => {
                    appended = stored;
                    break;
                }
                Err(err) if attempt == 0 && is_resend_race(&err) => {
                    debug!("a resend was stored by another node meanwhile; trying the batch again");
                    if !only_messages {
                        sqlx::query("ROLLBACK").execute(&mut *conn).await?;
                    }
                }
                Err(err) => return Err(err),
            }
        }
        if only_messages {
            return Ok(());
        }
        for job in jobs.by_ref() {
            outcomes.push(apply_write(conn, job, outbox).await?);
        }
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            for (reply, stored) in replies.into_iter().zip(appended) {
                let _ = reply.send(stored);
            }
            outcomes.into_iter().for_each(Outcome::send);
            true
        }
        Err(err) => {
            error!(error = %err, "write batch failed, rolled back");
            if !only_messages {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            }
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

/// Whether `err` is the unique index on (room, sender, client_id) refusing
/// a message that another node stored first.
fn is_resend_race(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.code().as_deref() == Some("23505") && db.constraint() == Some("messages_by_client_id"))
}

/// Numbers and inserts a batch of messages in one statement, one round
/// trip whatever the batch holds:
///
/// 1. `locked` locks the consultation rows of the batch's rooms in id order
///    (so two nodes' batches never wait on each other in a cycle) and reads
///    their `last_seq` as of the lock, that is, after any batch that held it.
///    It probes the key once per room: written as `id IN (…)`, the generic
///    plan (which guesses ten rooms) scans the whole table instead while it
///    holds a few thousand consultations, a third of the statement's time.
///    The lock is `FOR NO KEY UPDATE`, the one the update of `last_seq`
///    takes anyway: it does not hold back rows that only reference the
///    consultation (members, queue entries);
/// 2. `originals` finds resends through the unique (room, sender,
///    client_id) index, one probe per message;
/// 3. `fresh` numbers the other messages of rooms still open after their
///    room's `last_seq`, in batch order; `inserted` stores them and `moved`
///    advances `last_seq`;
/// 4. `refused` are the other messages of rooms that have ended. A node
///    that has not heard of an end (another node's, while Redis was down)
///    still takes chat for the room; the lock orders this batch after the
///    end's update, so the check here is the one that counts.
///
/// Every input row comes back once, by `ord`: with its `seq`, `id` and `at`
/// and whether it was a resend, or with no `seq` when it was refused.
const APPEND: &str = "
WITH input AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[]) WITH ORDINALITY
        AS t(room, sender_id, sender_name, sender_role, client_id, kind, text, id, ord)
), locked AS (
    SELECT c.id, c.last_seq, c.status IN ('ended', 'cancelled') AS closed
    FROM (SELECT DISTINCT room FROM input ORDER BY room) r
    CROSS JOIN LATERAL (SELECT id, last_seq, status FROM consultations WHERE id = r.room FOR NO KEY UPDATE) c
), originals AS (
    SELECT i.ord, m.seq, m.id, m.at FROM input i
    CROSS JOIN LATERAL (
        SELECT seq, id, at FROM messages
        WHERE room = i.room AND sender_id = i.sender_id AND client_id = i.client_id LIMIT 1
    ) m
), fresh AS (
    SELECT i.*, l.last_seq + row_number() OVER (PARTITION BY i.room ORDER BY i.ord) AS seq
    FROM input i JOIN locked l ON l.id = i.room
    WHERE NOT l.closed AND i.ord NOT IN (SELECT ord FROM originals)
), refused AS (
    SELECT i.ord FROM input i JOIN locked l ON l.id = i.room
    WHERE l.closed AND i.ord NOT IN (SELECT ord FROM originals)
), inserted AS (
    INSERT INTO messages (room, seq, id, sender_id, sender_name, sender_role, client_id, kind, text, at)
    SELECT room, seq, id, sender_id, sender_name, sender_role, client_id, kind, text, $9 FROM fresh
), moved AS (
    UPDATE consultations c SET last_seq = f.seq
    FROM (SELECT room, max(seq) AS seq FROM fresh GROUP BY room) f WHERE c.id = f.room
)
SELECT ord, seq, id, $9 AS at, FALSE AS duplicate FROM fresh
UNION ALL
SELECT ord, seq, id, at, TRUE FROM originals
UNION ALL
SELECT ord, NULL, NULL, NULL, FALSE FROM refused
ORDER BY ord";

/// A row of [`APPEND`]: `ord`, then `seq`, `id` and `at` (none of them for
/// a refused message), and whether it was a resend.
type AppendRow = (i64, Option<i64>, Option<String>, Option<String>, bool);

/// Stores `messages` with their rooms' next `seq`s ([`APPEND`]); a resend
/// (in the table, or earlier in the batch) gets the original's `seq`, `id`
/// and `at`, and a new message to a consultation that has ended a
/// `Conflict`. One result per message, in order.
async fn append_all(
    conn: &mut PgConnection,
    messages: &[NewMessage],
    at: &str,
) -> Result<Vec<Result<Appended, StoreError>>, sqlx::Error> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    // A resend of a message earlier in this batch is answered with that
    // message's result; only the first of each key goes to the database.
    let mut first: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut unique: Vec<&NewMessage> = Vec::with_capacity(messages.len());
    let mut slot = Vec::with_capacity(messages.len());
    for m in messages {
        let key = m.client_id.as_deref().map(|c| (m.room.as_str(), m.from.id.as_str(), c));
        match key.and_then(|k| first.get(&k)) {
            Some(&earlier) => slot.push((earlier, true)),
            None => {
                if let Some(k) = key {
                    first.insert(k, unique.len());
                }
                slot.push((unique.len(), false));
                unique.push(m);
            }
        }
    }
    let ids = MessageIds::get();
    let column = |f: fn(&NewMessage) -> String| unique.iter().map(|m| f(m)).collect::<Vec<String>>();
    let rows: Vec<AppendRow> = sqlx::query_as(APPEND)
        .bind(column(|m| m.room.clone()))
        .bind(column(|m| m.from.id.clone()))
        .bind(column(|m| m.from.name.clone()))
        .bind(column(|m| m.from.role.clone()))
        .bind(unique.iter().map(|m| m.client_id.clone()).collect::<Vec<Option<String>>>())
        .bind(column(|m| m.kind.as_str().to_owned()))
        .bind(column(|m| m.text.clone()))
        .bind(unique.iter().map(|_| ids.next()).collect::<Vec<String>>())
        .bind(at)
        .fetch_all(&mut *conn)
        .await?;
    if rows.len() != unique.len() {
        // A room without a consultation row (it cannot happen: rooms append
        // only to consultations they loaded) would drop out of `fresh`.
        return Err(sqlx::Error::Protocol(format!("{} of {} messages stored", rows.len(), unique.len())));
    }
    let stored: Vec<Result<Appended, StoreError>> = rows
        .into_iter()
        .zip(&unique)
        .map(|((_, seq, id, at, duplicate), m)| match (seq, id, at) {
            (Some(seq), Some(id), Some(at)) => Ok(Appended { seq, id, at, duplicate }),
            _ => Err(StoreError::Conflict(format!("{} has ended", m.room))),
        })
        .collect();
    Ok(slot
        .into_iter()
        .map(|(i, again)| stored[i].clone().map(|first| Appended { duplicate: first.duplicate || again, ..first }))
        .collect())
}

/// Why a status update changed no row: no such consultation, or one that
/// has ended already.
async fn not_changed(conn: &mut PgConnection, room: String) -> Result<StoreError, sqlx::Error> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM consultations WHERE id = $1").bind(&room).fetch_optional(conn).await?;
    Ok(match status {
        Some(status) => StoreError::Conflict(format!("{room} is {status} already")),
        None => StoreError::NotFound(room),
    })
}

async fn apply_write(conn: &mut PgConnection, write: Write, outbox: &OutboxPolicy) -> Result<Outcome, sqlx::Error> {
    let now = Utc::now();
    Ok(match write {
        Write::ReadMarker { room, user, seq, reply } => {
            let marker: i64 = sqlx::query_scalar(
                "INSERT INTO read_markers (room, user_id, seq, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (room, user_id) DO UPDATE
                     SET seq = GREATEST(read_markers.seq, excluded.seq), updated_at = excluded.updated_at
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
            let (by_id, by_name) = by.map(|p| (p.id, p.name)).unzip();
            let done = sqlx::query(
                "UPDATE consultations SET status = $1,
                    started_at = CASE WHEN $1 = 'active' THEN COALESCE(started_at, $2) ELSE started_at END,
                    ended_at = CASE WHEN $1 IN ('ended', 'cancelled') THEN $2 ELSE ended_at END,
                    ended_by_id = CASE WHEN $1 IN ('ended', 'cancelled') THEN $4 ELSE ended_by_id END,
                    ended_by_name = CASE WHEN $1 IN ('ended', 'cancelled') THEN $5 ELSE ended_by_name END
                 WHERE id = $3 AND status NOT IN ('ended', 'cancelled')",
            )
            .bind(status.as_str())
            .bind(format_time(at))
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
            sqlx::query("UPDATE consultations SET media_mode = $1 WHERE id = $2")
                .bind(mode.as_str())
                .bind(&room)
                .execute(&mut *conn)
                .await?;
            Outcome::Done(reply, Ok(()))
        }
        Write::Audit { entry, reply } => {
            sqlx::query("INSERT INTO audit_log (at, room, user_id, action, detail) VALUES ($1, $2, $3, $4, $5)")
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
            sqlx::query("UPDATE queue_entries SET state = $1, changed_at = $2 WHERE room = $3")
                .bind(state.as_str())
                .bind(format_time(at))
                .bind(&room)
                .execute(&mut *conn)
                .await?;
            if call_in {
                outbox::enqueue_on::<sqlx::Postgres>(conn, outbox, &room, NotifyKind::CallIn, at, &format_time(at))
                    .await?;
            }
            Outcome::Done(reply, Ok(()))
        }
    })
}

/// Puts a patient in their queue inside the writer's transaction. The
/// day's counter row is locked while a number is drawn, and a clinic's new
/// queue of the day takes its letter under a lock of that clinic and day,
/// so nodes checking patients in at once never draw the same ticket.
async fn check_in(
    conn: &mut PgConnection,
    room: &str,
    queue: &QueueId,
    at: chrono::DateTime<Utc>,
) -> Result<CheckedIn, sqlx::Error> {
    let (clinic, name) = (queue.clinic_key(), queue.name());
    let existing: Option<(String, String, String)> =
        sqlx::query_as("SELECT ticket, checked_in_at, state FROM queue_entries WHERE room = $1 FOR UPDATE")
            .bind(room)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((ticket, since, state)) = existing
        && state == EntryState::Waiting.as_str()
    {
        return Ok(CheckedIn { ticket, since });
    }
    let day = at.format("%Y-%m-%d").to_string();
    let lock_key = format!("telehub-queue-day:{clinic}:{day}");
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(&lock_key).execute(&mut *conn).await?;
    let today: Option<(String, i32)> =
        sqlx::query_as("SELECT letter, last FROM queue_days WHERE clinic = $1 AND queue = $2 AND day = $3 FOR UPDATE")
            .bind(clinic)
            .bind(name)
            .bind(&day)
            .fetch_optional(&mut *conn)
            .await?;
    let (letter, last) = match today {
        Some((letter, last)) => (letter, i64::from(last)),
        None => {
            let queues: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue_days WHERE clinic = $1 AND day = $2")
                .bind(clinic)
                .bind(&day)
                .fetch_one(&mut *conn)
                .await?;
            let letter = ticket_letter(queues);
            sqlx::query("INSERT INTO queue_days (queue, day, clinic, letter, last) VALUES ($1, $2, $3, $4, 0)")
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
    sqlx::query("UPDATE queue_days SET last = $1 WHERE clinic = $2 AND queue = $3 AND day = $4")
        .bind(i32::try_from(number).unwrap_or(1))
        .bind(clinic)
        .bind(name)
        .bind(&day)
        .execute(&mut *conn)
        .await?;
    let ticket = ticket(&letter, number);
    let since = format_time(at);
    sqlx::query(
        "INSERT INTO queue_entries (room, queue, ticket, state, checked_in_at, changed_at)
         VALUES ($1, $2, $3, 'waiting', $4, $4)
         ON CONFLICT (room) DO UPDATE SET queue = excluded.queue, ticket = excluded.ticket, state = 'waiting',
             checked_in_at = excluded.checked_in_at, changed_at = excluded.changed_at",
    )
    .bind(room)
    .bind(name)
    .bind(&ticket)
    .bind(&since)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE consultations SET status = 'waiting' WHERE id = $1 AND status = 'scheduled'")
        .bind(room)
        .execute(&mut *conn)
        .await?;
    Ok(CheckedIn { ticket, since })
}

const CONSULTATION_SELECT: &str = "SELECT c.id, c.status, c.clinic, c.queue, c.scheduled_at, c.media_mode,
        c.created_at, c.started_at, c.ended_at, c.ended_by_id, c.ended_by_name, c.last_seq, c.payment_amount, c.payment_currency, c.payment_status,
        p.user_id AS patient_id, p.name AS patient_name, p.phone AS patient_phone, p.email AS patient_email, p.locale AS patient_locale,
        d.user_id AS doctor_id, d.name AS doctor_name
     FROM consultations c
     JOIN members p ON p.consultation_id = c.id AND p.role = 'patient'
     JOIN members d ON d.consultation_id = c.id AND d.role = 'doctor'
     WHERE c.id = $1";

#[async_trait]
impl RoomStore for PostgresStore {
    async fn load_room(&self, room: &str) -> Result<Option<RoomRecord>, StoreError> {
        Ok(self.consultation(room).await?.map(|c| c.room_record()))
    }

    async fn messages_after(&self, room: &str, after: i64, limit: u32) -> Result<Vec<MessageEvent>, StoreError> {
        let rows = sqlx::query_as::<_, MessageRow>(MESSAGES_AFTER)
            .bind(room)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(MessageEvent::from).collect())
    }

    async fn last_messages(&self, room: &str, limit: u32) -> Result<Vec<MessageEvent>, StoreError> {
        let rows = sqlx::query_as::<_, MessageRow>(LAST_MESSAGES)
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
        let row: Option<(i64, String, String)> = sqlx::query_as(SENT)
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
impl QueueStore for PostgresStore {
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
impl Store for PostgresStore {
    async fn create_consultation(&self, new: NewConsultation) -> Result<Consultation, StoreError> {
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO consultations (id, status, clinic, queue, scheduled_at, media_mode, created_at,
                     payment_amount, payment_currency, payment_status)
                 VALUES ($1, $2, $3, $4, $5, 'p2p', $6, $7, $8, $9)",
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
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO members (consultation_id, role, user_id, name, phone, email, locale)
                 VALUES ($1, 'patient', $2, $3, $4, $5, $8), ($1, 'doctor', $6, $7, NULL, NULL, NULL)",
            )
            .bind(&new.id)
            .bind(&new.patient.id)
            .bind(&new.patient.name)
            .bind(&new.patient.phone)
            .bind(&new.patient.email)
            .bind(&new.doctor.id)
            .bind(&new.doctor.name)
            .bind(&new.patient.locale)
            .execute(&mut *tx)
            .await?;
            if let Some(due) = outbox::reminder_due(&self.outbox, new.scheduled_at.as_deref(), Utc::now()) {
                outbox::enqueue_on::<sqlx::Postgres>(&mut tx, &self.outbox, &new.id, NotifyKind::Reminder, due, "")
                    .await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(err) = result {
            return Err(match err {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    StoreError::Conflict(format!("consultation {} exists already", new.id))
                }
                other => unavailable(other),
            });
        }
        self.outbox.wake.notify_one();
        self.consultation(&new.id).await?.ok_or_else(|| StoreError::Unavailable("created consultation vanished".into()))
    }

    async fn record_payment(&self, payment: NewPayment) -> Result<PaymentChange, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let change =
            record_payment_on::<sqlx::Postgres>(&mut tx, &payment, &format!("{PAYMENT_OF} FOR UPDATE")).await?;
        if change == Some(PaymentStatus::Paid) {
            outbox::enqueue_on::<sqlx::Postgres>(
                &mut tx,
                &self.outbox,
                &payment.room,
                NotifyKind::Receipt,
                Utc::now(),
                &payment.reference,
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        self.outbox.wake.notify_one();
        Ok(change)
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
             WHERE ($1::text IS NULL OR room = $1) AND ($2::text IS NULL OR user_id = $2) AND id > $3
               AND ($5::text IS NULL OR room IN (SELECT id FROM consultations WHERE clinic = $5))
             ORDER BY id LIMIT $4",
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
        self.writes.stats()
    }

    async fn close(&self) {
        self.writes.finish().await;
        self.pool.close().await;
    }
}
