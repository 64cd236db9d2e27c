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

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use telehub_actors::{
    Appended, AuditEntry, CheckedIn, EntryState, NewMessage, QueueStore, RoomRecord, RoomStore, StoreError, StoredEntry,
};
use telehub_signaling::{MediaMode, MessageEvent, RoomStatus, format_time};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::rows::{
    AuditRow, ConsultationRow, EntryRow, LAST_MESSAGES, LOAD_QUEUE, MESSAGES_AFTER, MessageIds, MessageRow,
    READ_MARKERS, RECENT_ENDED, SERVES, lengths, next_number, ticket, ticket_letter,
};
use super::writer::{Job, Outcome, Write, Writes, next_batch};
use super::{AuditQuery, AuditRecord, Consultation, NewConsultation, Store, unavailable};

/// Most jobs in one transaction.
const MAX_BATCH: usize = 1024;

/// PostgreSQL storage.
pub struct PostgresStore {
    pool: PgPool,
    writes: Writes,
}

impl PostgresStore {
    /// Connects and migrates. `busy` bounds how long a statement may wait
    /// for a lock or a connection.
    pub async fn connect(url: &str, busy: Duration) -> anyhow::Result<Self> {
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
        let writes = Writes::start(|rx| run_writer(options, rx));
        Ok(PostgresStore { pool, writes })
    }
}

/// The writer task: batches, applies, commits, replies; reconnects after
/// the database went away.
async fn run_writer(options: PgConnectOptions, mut rx: mpsc::Receiver<Job>) {
    let mut conn: Option<PgConnection> = None;
    while let Some(batch) = next_batch(&mut rx, MAX_BATCH).await {
        if conn.is_none() {
            match options.connect().await {
                Ok(c) => conn = Some(c),
                Err(err) => {
                    warn!(error = %err, "the writer cannot reach the database");
                    fail_all(batch, unavailable(err));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        if !apply_batch(c, batch).await {
            // The connection may be broken; the next batch opens a new one.
            if let Some(old) = conn.take() {
                let _ = old.close().await;
            }
        }
    }
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
async fn apply_batch(conn: &mut PgConnection, batch: Vec<Job>) -> bool {
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
    let mut jobs = others.into_iter();
    let mut appended = Vec::new();
    let result: Result<(), sqlx::Error> = async {
        sqlx::query("BEGIN").execute(&mut *conn).await?;
        appended = append_all(conn, &messages, &format_time(Utc::now())).await?;
        for job in jobs.by_ref() {
            outcomes.push(apply_write(conn, job).await?);
        }
        sqlx::query("COMMIT").execute(&mut *conn).await?;
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

/// Stores `messages` with their rooms' next `seq`s inside the open
/// transaction; a resend (in the table, or earlier in the batch) gets the
/// original's `seq`, `id` and `at`. One result per message, in order.
///
/// Four statements whatever the batch holds: lock the rooms' rows (in id
/// order, so that two nodes' batches never wait on each other in a cycle)
/// and read their last `seq`s, find the originals of resends, insert the
/// new rows, and move the rooms' `last_seq`.
async fn append_all(conn: &mut PgConnection, messages: &[NewMessage], at: &str) -> Result<Vec<Appended>, sqlx::Error> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let mut rooms: Vec<&str> = messages.iter().map(|m| m.room.as_str()).collect();
    rooms.sort_unstable();
    rooms.dedup();
    let locked: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, last_seq FROM consultations WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&rooms)
            .fetch_all(&mut *conn)
            .await?;
    let mut last: HashMap<String, i64> = locked.into_iter().collect();

    // Originals of resends, stored or in this batch, by (room, sender, client_id).
    let keyed: Vec<&NewMessage> = messages.iter().filter(|m| m.client_id.is_some()).collect();
    let mut originals: HashMap<(String, String, String), Appended> = HashMap::new();
    if !keyed.is_empty() {
        let rows: Vec<(String, String, String, i64, String, String)> = sqlx::query_as(
            // LATERAL with LIMIT 1 keeps this one unique-index probe per
            // key: the planner cannot turn it into a scan of all messages.
            "SELECT k.room, k.sender_id, k.client_id, m.seq, m.id, m.at
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS k(room, sender_id, client_id)
             CROSS JOIN LATERAL (
                 SELECT seq, id, at FROM messages
                 WHERE room = k.room AND sender_id = k.sender_id AND client_id = k.client_id LIMIT 1
             ) m",
        )
        .bind(keyed.iter().map(|m| m.room.as_str()).collect::<Vec<_>>())
        .bind(keyed.iter().map(|m| m.from.id.as_str()).collect::<Vec<_>>())
        .bind(keyed.iter().map(|m| m.client_id.as_deref().unwrap_or_default()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        for (room, sender, client_id, seq, id, at) in rows {
            originals.insert((room, sender, client_id), Appended { seq, id, at, duplicate: true });
        }
    }

    let ids = MessageIds::get();
    let mut rows = NewRows::default();
    let mut results = Vec::with_capacity(messages.len());
    for m in messages {
        let key = m.client_id.as_ref().map(|c| (m.room.clone(), m.from.id.clone(), c.clone()));
        if let Some(original) = key.as_ref().and_then(|k| originals.get(k)) {
            results.push(Appended { duplicate: true, ..original.clone() });
            continue;
        }
        // Rooms append only to consultations they loaded, so every room is
        // among the locked rows; were one missing, it would count from 1.
        let seq = last.entry(m.room.clone()).or_insert(0);
        *seq += 1;
        let stored = Appended { seq: *seq, id: ids.next(), at: at.to_owned(), duplicate: false };
        rows.push(m, &stored);
        if let Some(key) = key {
            originals.insert(key, stored.clone());
        }
        results.push(stored);
    }
    if rows.is_empty() {
        return Ok(results);
    }
    let moved: Vec<(String, i64)> = {
        let mut moved: BTreeMap<&str, i64> = BTreeMap::new();
        for (room, seq) in rows.room.iter().zip(&rows.seq) {
            moved.insert(room, *seq);
        }
        moved.into_iter().map(|(room, seq)| (room.to_owned(), seq)).collect()
    };
    rows.insert(conn).await?;
    let (ids, seqs): (Vec<String>, Vec<i64>) = moved.into_iter().unzip();
    sqlx::query(
        "UPDATE consultations c SET last_seq = v.seq
         FROM UNNEST($1::text[], $2::bigint[]) AS v(id, seq) WHERE c.id = v.id",
    )
    .bind(ids)
    .bind(seqs)
    .execute(&mut *conn)
    .await?;
    Ok(results)
}

/// New message rows as columns, for one `INSERT … SELECT FROM UNNEST`.
#[derive(Default)]
struct NewRows {
    room: Vec<String>,
    seq: Vec<i64>,
    id: Vec<String>,
    sender_id: Vec<String>,
    sender_name: Vec<String>,
    sender_role: Vec<String>,
    client_id: Vec<Option<String>>,
    kind: Vec<String>,
    text: Vec<String>,
    at: Vec<String>,
}

impl NewRows {
    fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    fn push(&mut self, m: &NewMessage, stored: &Appended) {
        self.room.push(m.room.clone());
        self.seq.push(stored.seq);
        self.id.push(stored.id.clone());
        self.sender_id.push(m.from.id.clone());
        self.sender_name.push(m.from.name.clone());
        self.sender_role.push(m.from.role.clone());
        self.client_id.push(m.client_id.clone());
        self.kind.push(m.kind.as_str().to_owned());
        self.text.push(m.text.clone());
        self.at.push(stored.at.clone());
    }

    async fn insert(self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO messages (room, seq, id, sender_id, sender_name, sender_role, client_id, kind, text, at)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                                  $7::text[], $8::text[], $9::text[], $10::text[])",
        )
        .bind(self.room)
        .bind(self.seq)
        .bind(self.id)
        .bind(self.sender_id)
        .bind(self.sender_name)
        .bind(self.sender_role)
        .bind(self.client_id)
        .bind(self.kind)
        .bind(self.text)
        .bind(self.at)
        .execute(conn)
        .await?;
        Ok(())
    }
}

async fn apply_write(conn: &mut PgConnection, write: Write) -> Result<Outcome, sqlx::Error> {
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
        Write::Status { room, status, at, reply } => {
            let done = sqlx::query(
                "UPDATE consultations SET status = $1,
                    started_at = CASE WHEN $1 = 'active' THEN COALESCE(started_at, $2) ELSE started_at END,
                    ended_at = CASE WHEN $1 IN ('ended', 'cancelled') THEN $2 ELSE ended_at END
                 WHERE id = $3",
            )
            .bind(status.as_str())
            .bind(format_time(at))
            .bind(&room)
            .execute(&mut *conn)
            .await?;
            let result = if done.rows_affected() == 1 { Ok(()) } else { Err(StoreError::NotFound(room)) };
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
        Write::CheckIn { room, queue, clinic, at, reply } => {
            let checked = check_in(conn, &room, &queue, clinic.as_deref(), at).await?;
            Outcome::CheckedIn(reply, Ok(checked))
        }
        Write::Entry { room, state, at, reply } => {
            sqlx::query("UPDATE queue_entries SET state = $1, changed_at = $2 WHERE room = $3")
                .bind(state.as_str())
                .bind(format_time(at))
                .bind(&room)
                .execute(&mut *conn)
                .await?;
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
    queue: &str,
    clinic: Option<&str>,
    at: chrono::DateTime<Utc>,
) -> Result<CheckedIn, sqlx::Error> {
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
    let lock_key = format!("telehub-queue-day:{}:{day}", clinic.unwrap_or(""));
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(&lock_key).execute(&mut *conn).await?;
    let today: Option<(String, i32)> =
        sqlx::query_as("SELECT letter, last FROM queue_days WHERE queue = $1 AND day = $2 FOR UPDATE")
            .bind(queue)
            .bind(&day)
            .fetch_optional(&mut *conn)
            .await?;
    let (letter, last) = match today {
        Some((letter, last)) => (letter, i64::from(last)),
        None => {
            let queues: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM queue_days WHERE clinic IS NOT DISTINCT FROM $1 AND day = $2")
                    .bind(clinic)
                    .bind(&day)
                    .fetch_one(&mut *conn)
                    .await?;
            let letter = ticket_letter(queues);
            sqlx::query("INSERT INTO queue_days (queue, day, clinic, letter, last) VALUES ($1, $2, $3, $4, 0)")
                .bind(queue)
                .bind(&day)
                .bind(clinic)
                .bind(&letter)
                .execute(&mut *conn)
                .await?;
            (letter, 0)
        }
    };
    let number = next_number(last);
    sqlx::query("UPDATE queue_days SET last = $1 WHERE queue = $2 AND day = $3")
        .bind(i32::try_from(number).unwrap_or(1))
        .bind(queue)
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
    .bind(queue)
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
        c.created_at, c.started_at, c.ended_at, c.last_seq,
        p.user_id AS patient_id, p.name AS patient_name, p.phone AS patient_phone, p.email AS patient_email,
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

    async fn read_markers(&self, room: &str) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(READ_MARKERS).bind(room).fetch_all(&self.pool).await.map_err(unavailable)
    }

    async fn set_read_marker(&self, room: &str, user: &str, seq: i64) -> Result<i64, StoreError> {
        self.writes.read_marker(room, user, seq).await
    }

    async fn set_status(&self, room: &str, status: RoomStatus, at: chrono::DateTime<Utc>) -> Result<(), StoreError> {
        self.writes.status(room, status, at).await
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
    async fn check_in(
        &self,
        room: &str,
        queue: &str,
        clinic: Option<&str>,
        at: chrono::DateTime<Utc>,
    ) -> Result<CheckedIn, StoreError> {
        self.writes.check_in(room, queue, clinic, at).await
    }

    async fn set_entry_state(
        &self,
        room: &str,
        state: EntryState,
        at: chrono::DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.writes.entry_state(room, state, at).await
    }

    async fn load_queue(&self, queue: &str) -> Result<Vec<StoredEntry>, StoreError> {
        let rows =
            sqlx::query_as::<_, EntryRow>(LOAD_QUEUE).bind(queue).fetch_all(&self.pool).await.map_err(unavailable)?;
        rows.into_iter().map(StoredEntry::try_from).collect()
    }

    async fn recent_lengths(&self, queue: &str, limit: u32) -> Result<Vec<Duration>, StoreError> {
        let rows = sqlx::query_as(RECENT_ENDED)
            .bind(queue)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        lengths(rows)
    }

    async fn serves(&self, queue: &str, doctor: &str) -> Result<bool, StoreError> {
        let found: i64 =
            sqlx::query_scalar(SERVES).bind(queue).bind(doctor).fetch_one(&self.pool).await.map_err(unavailable)?;
        Ok(found > 0)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_consultation(&self, new: NewConsultation) -> Result<Consultation, StoreError> {
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO consultations (id, status, clinic, queue, scheduled_at, media_mode, created_at)
                 VALUES ($1, $2, $3, $4, $5, 'p2p', $6)",
            )
            .bind(&new.id)
            .bind(if new.scheduled_at.is_some() { "scheduled" } else { "waiting" })
            .bind(&new.clinic)
            .bind(&new.queue)
            .bind(&new.scheduled_at)
            .bind(&new.created_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO members (consultation_id, role, user_id, name, phone, email)
                 VALUES ($1, 'patient', $2, $3, $4, $5), ($1, 'doctor', $6, $7, NULL, NULL)",
            )
            .bind(&new.id)
            .bind(&new.patient.id)
            .bind(&new.patient.name)
            .bind(&new.patient.phone)
            .bind(&new.patient.email)
            .bind(&new.doctor.id)
            .bind(&new.doctor.name)
            .execute(&mut *tx)
            .await?;
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
        self.consultation(&new.id).await?.ok_or_else(|| StoreError::Unavailable("created consultation vanished".into()))
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
             ORDER BY id LIMIT $4",
        )
        .bind(&query.room)
        .bind(&query.user)
        .bind(query.after.unwrap_or(0))
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(rows.into_iter().map(AuditRecord::from).collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.writes.is_stopped() {
            return Err(StoreError::Unavailable("writer stopped".into()));
        }
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(unavailable)?;
        Ok(())
    }

    async fn close(&self) {
        self.writes.finish().await;
        self.pool.close().await;
    }
}
