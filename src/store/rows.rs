//! What both stores read from their tables, and small helpers they share.
//!
//! The rows derive `sqlx::FromRow`, so the SQLite and PostgreSQL stores map
//! the same columns to the same types with one piece of code. Times are
//! RFC 3339 strings in both.

use chrono::{DateTime, Utc};
use telehub_actors::{EntryState, Person, QueueId, StoreError, StoredEntry};
use telehub_signaling::{MessageEvent, MessageKind, PaymentStatus, Sender};

use super::{AuditRecord, Consultation, Contact, PaymentState, Price};

/// The columns of [`MessageRow`], for SELECT lists.
macro_rules! message_columns {
    () => {
        "room, seq, id, sender_id, sender_name, sender_role, client_id, kind, text, at"
    };
}
pub(crate) use message_columns;

// Reads that both stores make with the same SQL: sqlx binds `$n` on SQLite
// as on PostgreSQL, and counts and seqs are 64-bit integers in both.

/// Up to `$3` messages of room `$1` after seq `$2`, in order.
pub(crate) const MESSAGES_AFTER: &str =
    concat!("SELECT ", message_columns!(), " FROM messages WHERE room = $1 AND seq > $2 ORDER BY seq LIMIT $3");

/// The message of sender `$2` with client id `$3` in room `$1`, if stored.
pub(crate) const SENT: &str =
    "SELECT seq, id, at FROM messages WHERE room = $1 AND sender_id = $2 AND client_id = $3 LIMIT 1";

/// The last `$2` messages of room `$1`, in order.
pub(crate) const LAST_MESSAGES: &str = concat!(
    "SELECT * FROM (SELECT ",
    message_columns!(),
    " FROM messages WHERE room = $1 ORDER BY seq DESC LIMIT $2) newest ORDER BY seq"
);

/// Every user's read marker in room `$1`.
pub(crate) const READ_MARKERS: &str = "SELECT user_id, seq FROM read_markers WHERE room = $1";

/// The entries of queue `$1` of clinic `$2` (`''` for none) that it starts
/// from (see `QueueStore::load_queue`).
pub(crate) const LOAD_QUEUE: &str = "SELECT e.room, e.ticket, e.state, e.checked_in_at, e.changed_at, c.clinic,
        c.payment_status,
        p.user_id AS patient_id, p.name AS patient_name
     FROM queue_entries e
     JOIN consultations c ON c.id = e.room
     JOIN members p ON p.consultation_id = e.room AND p.role = 'patient'
     WHERE e.queue = $1 AND COALESCE(c.clinic, '') = $2
       AND ((e.state = 'waiting' AND c.status IN ('scheduled', 'waiting'))
         OR (e.state = 'admitted' AND c.status = 'active'))
     ORDER BY e.checked_in_at, e.ticket";

/// A consultation's price and payment status (`FOR UPDATE` is appended on
/// PostgreSQL).
pub(crate) const PAYMENT_OF: &str =
    "SELECT payment_amount, payment_currency, payment_status FROM consultations WHERE id = $1";
/// A known payment transaction's status.
pub(crate) const TRANSACTION_STATUS: &str =
    "SELECT status FROM payment_transactions WHERE provider = $1 AND reference = $2";
pub(crate) const INSERT_TRANSACTION: &str = "INSERT INTO payment_transactions
        (id, room, provider, reference, amount, currency, status, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)";
pub(crate) const UPDATE_TRANSACTION: &str =
    "UPDATE payment_transactions SET status = $1, updated_at = $2 WHERE provider = $3 AND reference = $4";
pub(crate) const SET_PAYMENT_STATUS: &str = "UPDATE consultations SET payment_status = $1 WHERE id = $2";
/// The newest succeeded payment of a consultation: provider, reference,
/// amount and currency.
pub(crate) const SUCCEEDED_PAYMENT: &str = "SELECT provider, reference, amount, currency FROM payment_transactions
     WHERE room = $1 AND status = 'succeeded' ORDER BY updated_at DESC LIMIT 1";
/// Notes a webhook delivery; no row is inserted for one seen before.
pub(crate) const INSERT_DELIVERY: &str =
    "INSERT INTO webhook_events (provider, id, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

/// What [`PAYMENT_OF`] reads, as the consultation's payment state.
pub(crate) fn payment_state(
    room: &str,
    row: Option<(Option<i64>, Option<String>, Option<String>)>,
) -> Result<PaymentState, StoreError> {
    match row {
        None => Err(StoreError::NotFound(format!("consultation {room}"))),
        Some((Some(amount), Some(currency), Some(status))) => Ok(PaymentState {
            price: Price { amount, currency },
            status: status.parse().map_err(StoreError::Unavailable)?,
        }),
        Some(_) => Err(StoreError::Conflict(format!("{room} has no price: nothing to pay"))),
    }
}

/// A new payment transaction's id.
pub(crate) fn payment_id() -> String {
    format!("pay_{}", uuid::Uuid::new_v4().simple())
}

/// Start and end of the last `$3` ended consultations of queue `$1` of
/// clinic `$2` (`''` for none).
pub(crate) const RECENT_ENDED: &str = "SELECT started_at, ended_at FROM consultations
     WHERE queue = $1 AND COALESCE(clinic, '') = $2
       AND status = 'ended' AND started_at IS NOT NULL AND ended_at IS NOT NULL
     ORDER BY ended_at DESC LIMIT $3";

/// 1 when doctor `$3` has a consultation in queue `$1` of clinic `$2`
/// (`''` for none), else 0.
pub(crate) const SERVES: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM consultations c
     JOIN members d ON d.consultation_id = c.id AND d.role = 'doctor'
     WHERE c.queue = $1 AND COALESCE(c.clinic, '') = $2 AND d.user_id = $3 LIMIT 1) found";

/// 1 when a consultation is in queue `$1` of clinic `$2` (`''` for none),
/// else 0.
pub(crate) const QUEUE_EXISTS: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM consultations
     WHERE queue = $1 AND COALESCE(clinic, '') = $2 LIMIT 1) found";

/// Runs a `SELECT COUNT(*)` over text parameters (such as [`SERVES`] and
/// [`QUEUE_EXISTS`]): whether it counted any.
pub(crate) async fn counts_any<DB>(pool: &sqlx::Pool<DB>, sql: &str, params: &[&str]) -> Result<bool, StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e sqlx::Pool<DB>: sqlx::Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
{
    let mut query = sqlx::query_scalar::<DB, i64>(sql);
    for param in params {
        query = query.bind(*param);
    }
    let found = query.fetch_one(pool).await.map_err(super::unavailable)?;
    Ok(found > 0)
}

/// The entries `queue` starts from ([`LOAD_QUEUE`]), on either store.
pub(crate) async fn load_queue_on<DB>(pool: &sqlx::Pool<DB>, queue: &QueueId) -> Result<Vec<StoredEntry>, StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e sqlx::Pool<DB>: sqlx::Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> EntryRow: sqlx::FromRow<'r, DB::Row>,
{
    let rows = sqlx::query_as::<DB, EntryRow>(LOAD_QUEUE)
        .bind(queue.name())
        .bind(queue.clinic_key())
        .fetch_all(pool)
        .await
        .map_err(super::unavailable)?;
    rows.into_iter().map(StoredEntry::try_from).collect()
}

/// The lengths of consultations from their (start, end) times.
pub(crate) fn lengths(rows: Vec<(String, String)>) -> Result<Vec<std::time::Duration>, StoreError> {
    rows.iter()
        .map(|(started, ended)| Ok((parse_time(ended)? - parse_time(started)?).to_std().unwrap_or_default()))
        .collect()
}

/// One line of the audit trail as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    at: String,
    room: Option<String>,
    user_id: Option<String>,
    action: String,
    detail: String,
}

impl From<AuditRow> for AuditRecord {
    fn from(row: AuditRow) -> Self {
        AuditRecord {
            id: row.id,
            at: row.at,
            room: row.room,
            user: row.user_id,
            action: row.action,
            // Stored as JSON text; anything else is shown as the text it is.
            detail: serde_json::from_str(&row.detail).unwrap_or(serde_json::Value::String(row.detail)),
        }
    }
}

/// One stored chat message.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MessageRow {
    room: String,
    seq: i64,
    id: String,
    sender_id: String,
    sender_name: String,
    sender_role: String,
    client_id: Option<String>,
    kind: String,
    text: String,
    at: String,
}

impl From<MessageRow> for MessageEvent {
    fn from(row: MessageRow) -> Self {
        MessageEvent {
            room: row.room,
            seq: row.seq,
            id: row.id,
            client_id: row.client_id,
            from: Sender { id: row.sender_id, name: row.sender_name, role: row.sender_role },
            kind: if row.kind == "system" { MessageKind::System } else { MessageKind::Text },
            text: row.text,
            at: row.at,
        }
    }
}

/// A consultation with its patient and doctor (and, from the query, its
/// last `seq`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ConsultationRow {
    id: String,
    status: String,
    clinic: Option<String>,
    queue: String,
    scheduled_at: Option<String>,
    media_mode: String,
    created_at: String,
    started_at: Option<String>,
    ended_at: Option<String>,
    ended_by_id: Option<String>,
    ended_by_name: Option<String>,
    patient_id: String,
    patient_name: String,
    patient_phone: Option<String>,
    patient_email: Option<String>,
    patient_locale: Option<String>,
    doctor_id: String,
    doctor_name: String,
    last_seq: i64,
    payment_amount: Option<i64>,
    payment_currency: Option<String>,
    payment_status: Option<String>,
}

impl TryFrom<ConsultationRow> for Consultation {
    type Error = StoreError;

    fn try_from(row: ConsultationRow) -> Result<Self, StoreError> {
        Ok(Consultation {
            id: row.id,
            status: row.status.parse().map_err(StoreError::Unavailable)?,
            patient: Contact {
                id: row.patient_id,
                name: row.patient_name,
                phone: row.patient_phone,
                email: row.patient_email,
                locale: row.patient_locale,
            },
            doctor: Person { id: row.doctor_id, name: row.doctor_name },
            clinic: row.clinic,
            queue: row.queue,
            scheduled_at: row.scheduled_at,
            media_mode: row.media_mode.parse().map_err(StoreError::Unavailable)?,
            created_at: row.created_at,
            started_at: row.started_at,
            ended_at: row.ended_at,
            ended_by: match (row.ended_by_id, row.ended_by_name) {
                (Some(id), Some(name)) => Some(Person { id, name }),
                _ => None,
            },
            last_seq: row.last_seq,
            payment: match (row.payment_amount, row.payment_currency, row.payment_status) {
                (Some(amount), Some(currency), Some(status)) => Some(PaymentState {
                    price: Price { amount, currency },
                    status: status.parse().map_err(StoreError::Unavailable)?,
                }),
                _ => None,
            },
        })
    }
}

/// A waiting-room entry with its consultation's clinic and patient.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EntryRow {
    room: String,
    ticket: String,
    state: String,
    checked_in_at: String,
    changed_at: String,
    clinic: Option<String>,
    payment_status: Option<String>,
    patient_id: String,
    patient_name: String,
}

impl TryFrom<EntryRow> for StoredEntry {
    type Error = StoreError;

    fn try_from(row: EntryRow) -> Result<Self, StoreError> {
        Ok(StoredEntry {
            room: row.room,
            ticket: row.ticket,
            clinic: row.clinic,
            patient: Person { id: row.patient_id, name: row.patient_name },
            since: row.checked_in_at,
            state: row.state.parse::<EntryState>().map_err(StoreError::Unavailable)?,
            changed_at: parse_time(&row.changed_at)?,
            paid: row.payment_status.is_none_or(|s| s == "paid"),
        })
    }
}

pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|err| StoreError::Unavailable(format!("bad stored time {text:?}: {err}")))
}

/// The letter of a clinic's `n`th queue of the day (from 0): A to Z, then
/// round again.
pub(crate) fn ticket_letter(n: i64) -> String {
    let n = u8::try_from(n.rem_euclid(26)).unwrap_or(0);
    char::from(b'A' + n).to_string()
}

/// A ticket from its letter and number.
pub(crate) fn ticket(letter: &str, number: i64) -> String {
    format!("{letter}-{number:03}")
}

/// The next ticket number of a day after `last`: 1 to 999, then 1 again.
pub(crate) fn next_number(last: i64) -> i64 {
    last % 999 + 1
}

/// Message ids: a random prefix per process and a counter. Unique without
/// a system call per message, which a random UUID per message would cost.
pub(crate) struct MessageIds {
    prefix: u64,
    counter: std::sync::atomic::AtomicU64,
}

impl MessageIds {
    pub(crate) fn get() -> &'static MessageIds {
        static IDS: std::sync::OnceLock<MessageIds> = std::sync::OnceLock::new();
        IDS.get_or_init(|| MessageIds { prefix: rand::random(), counter: std::sync::atomic::AtomicU64::new(0) })
    }

    pub(crate) fn next(&self) -> String {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("m_{:016x}{:010x}", self.prefix, n)
    }
}

/// [`Store::record_payment`](super::Store::record_payment) inside an open
/// transaction on `conn`, for either database. `payment_of` is
/// [`PAYMENT_OF`], with `FOR UPDATE` where the database has it.
pub(crate) async fn record_payment_on<DB>(
    conn: &mut DB::Connection,
    payment: &super::NewPayment,
    payment_of: &str,
) -> Result<super::PaymentChange, StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'r> (Option<i64>, Option<String>, Option<String>): sqlx::FromRow<'r, DB::Row>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    use super::{TxStatus, consultation_after, unavailable};
    let row: Option<(Option<i64>, Option<String>, Option<String>)> =
        sqlx::query_as(payment_of).bind(payment.room.as_str()).fetch_optional(&mut *conn).await.map_err(unavailable)?;
    let state = payment_state(&payment.room, row)?;
    let known: Option<(String,)> = sqlx::query_as(TRANSACTION_STATUS)
        .bind(payment.provider.as_str())
        .bind(payment.reference.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    let status = match known {
        Some((old,)) => {
            let status = old.parse::<TxStatus>().map_err(StoreError::Unavailable)?.then(payment.status);
            sqlx::query(UPDATE_TRANSACTION)
                .bind(status.as_str())
                .bind(payment.at.as_str())
                .bind(payment.provider.as_str())
                .bind(payment.reference.as_str())
                .execute(&mut *conn)
                .await
                .map_err(unavailable)?;
            status
        }
        // Staff confirm a transfer for what is owed; one more for a
        // consultation paid (or refunded) already is a mistake to report,
        // not money to record. A card paid twice is recorded: it was taken.
        None if payment.provider == super::BANK_TRANSFER && state.status != PaymentStatus::Unpaid => {
            return Err(StoreError::Conflict(format!(
                "{} is {} already: a transfer under another reference is not recorded",
                payment.room,
                state.status.as_str()
            )));
        }
        None => {
            sqlx::query(INSERT_TRANSACTION)
                .bind(payment_id())
                .bind(payment.room.as_str())
                .bind(payment.provider.as_str())
                .bind(payment.reference.as_str())
                .bind(payment.price.amount)
                .bind(payment.price.currency.as_str())
                .bind(payment.status.as_str())
                .bind(payment.at.as_str())
                .execute(&mut *conn)
                .await
                .map_err(unavailable)?;
            payment.status
        }
    };
    let change = consultation_after(&state, &payment.price, status)?;
    if let Some(next) = change {
        sqlx::query(SET_PAYMENT_STATUS)
            .bind(next.as_str())
            .bind(payment.room.as_str())
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
    }
    Ok(change)
}
