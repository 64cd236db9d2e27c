//! The notification outbox, as both stores keep it.
//!
//! A notification is queued by [`enqueue_on`] inside the transaction of the
//! event that causes it, so an admission, a scheduled consultation or a
//! payment that is stored always has its notifications stored too, and one
//! that rolls back has none. The worker in [`crate::notify`] then claims due
//! rows ([`claim`]), sends them and records what happened ([`finish`]).
//! A claim is a lease: the row is `sending`, owned by one node until
//! `lease_until`. On PostgreSQL the claim skips rows that another node is
//! claiming at that moment (`FOR UPDATE SKIP LOCKED`), so with several nodes
//! each row goes to exactly one of them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use telehub_actors::StoreError;
use telehub_signaling::format_time;

use super::unavailable;

/// Why a patient is told something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyKind {
    /// The doctor admitted a patient who is not on the page.
    CallIn,
    /// A scheduled consultation starts soon.
    Reminder,
    /// A payment was received.
    Receipt,
}

/// How a patient is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sms,
    Email,
}

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyState {
    /// Waiting for its due time (its first try, or a retry).
    Pending,
    /// Claimed by a node, which is sending it.
    Sending,
    /// Accepted by the provider (Twilio queued it; the SMTP server took it).
    Sent,
    /// Twilio reports it reached the handset.
    Delivered,
    /// Twilio reports it did not reach the handset.
    Undelivered,
    /// Refused for good, or out of tries; `last_error` says why.
    Failed,
    /// No longer relevant when it came due (the consultation ended, say).
    Skipped,
}

macro_rules! names {
    ($ty:ty { $($variant:ident = $name:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }
        }
        impl std::str::FromStr for $ty {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($name => Ok(Self::$variant),)*
                    other => Err(StoreError::Unavailable(format!(
                        concat!("unknown ", stringify!($ty), " {:?} in storage"), other
                    ))),
                }
            }
        }
    };
}

names!(NotifyKind { CallIn = "call_in", Reminder = "reminder", Receipt = "receipt" });
names!(Channel { Sms = "sms", Email = "email" });
names!(NotifyState {
    Pending = "pending",
    Sending = "sending",
    Sent = "sent",
    Delivered = "delivered",
    Undelivered = "undelivered",
    Failed = "failed",
    Skipped = "skipped",
});

/// Which notifications a store queues: the channels that are on (enabled
/// and configured), and how. Shared with the worker, which the store wakes
/// after it queued something.
#[derive(Debug, Default)]
pub struct OutboxPolicy {
    pub sms: bool,
    pub email: bool,
    /// How long before `scheduled_at` a reminder is due; `None`: no reminders.
    pub reminder_lead: Option<chrono::Duration>,
    pub max_attempts: u32,
    /// Notified when a notification may be due now.
    pub wake: tokio::sync::Notify,
}

impl OutboxPolicy {
    /// Nothing is ever queued.
    pub fn off() -> Arc<OutboxPolicy> {
        Arc::new(OutboxPolicy { max_attempts: 1, ..OutboxPolicy::default() })
    }

    /// The channels that `kind` goes out on. A receipt is an email: an SMS
    /// that says "paid" tells the patient nothing the page did not.
    fn channels(&self, kind: NotifyKind) -> impl Iterator<Item = Channel> + '_ {
        let sms = self.sms && kind != NotifyKind::Receipt;
        [(Channel::Sms, sms), (Channel::Email, self.email)].into_iter().filter(|(_, on)| *on).map(|(c, _)| c)
    }
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: String,
    pub room: String,
    pub kind: String,
    pub channel: String,
    pub recipient: String,
    pub locale: String,
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub due_at: String,
    pub last_error: Option<String>,
    pub provider_ref: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub sent_at: Option<String>,
}

/// A notification as the worker and the API see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub room: String,
    pub kind: NotifyKind,
    pub channel: Channel,
    pub recipient: String,
    pub locale: String,
    pub state: NotifyState,
    /// Tries so far, this one included while `sending`.
    pub attempts: u32,
    pub max_attempts: u32,
    pub due_at: String,
    pub last_error: Option<String>,
    pub provider_ref: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub sent_at: Option<String>,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = StoreError;

    fn try_from(row: NotificationRow) -> Result<Self, StoreError> {
        Ok(Notification {
            kind: row.kind.parse()?,
            channel: row.channel.parse()?,
            state: row.state.parse()?,
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            max_attempts: u32::try_from(row.max_attempts).unwrap_or(1),
            id: row.id,
            room: row.room,
            recipient: row.recipient,
            locale: row.locale,
            due_at: row.due_at,
            last_error: row.last_error,
            provider_ref: row.provider_ref,
            created_at: row.created_at,
            updated_at: row.updated_at,
            sent_at: row.sent_at,
        })
    }
}

/// What a try of a claimed notification came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The provider took it, under this id.
    Sent { provider_ref: String },
    /// It failed for now; try again at `at`.
    Retry { error: String, at: DateTime<Utc> },
    /// It failed for good.
    Failed { error: String },
    /// Not sent: it no longer applies.
    Skipped { why: String },
    /// Not tried (the node is stopping): back to `pending`, the try not
    /// counted.
    Released,
}

/// The columns of [`NotificationRow`].
macro_rules! notification_columns {
    () => {
        "id, room, kind, channel, recipient, locale, state, attempts, max_attempts, due_at, last_error, \
         provider_ref, created_at, updated_at, sent_at"
    };
}

/// Queues one notification per channel of the consultation's patient that
/// has a contact: `$1` id, `$2` room, `$3` kind, `$4` channel, `$5` max
/// attempts, `$6` due at, `$7` dedup key, `$8` now. A notification with the
/// same dedup key exists already: nothing happens.
const ENQUEUE: &str = "INSERT INTO notifications
        (id, room, kind, channel, recipient, locale, state, attempts, max_attempts, due_at, dedup,
         created_at, updated_at)
     SELECT $1, consultation_id, $3, $4, CASE WHEN $4 = 'sms' THEN phone ELSE email END,
         COALESCE(locale, 'en'), 'pending', 0, $5, $6, $7, $8, $8
     FROM members
     WHERE consultation_id = $2 AND role = 'patient'
       AND (CASE WHEN $4 = 'sms' THEN phone ELSE email END) IS NOT NULL
     ON CONFLICT (dedup) DO NOTHING";

/// Due rows, and rows whose claim lapsed (their node stopped mid-send),
/// oldest first: `$1` now, `$2` limit. PostgreSQL appends `FOR UPDATE SKIP
/// LOCKED`.
pub(crate) const DUE: &str = "SELECT id FROM notifications
     WHERE (state = 'pending' AND due_at <= $1) OR (state = 'sending' AND lease_until < $1)
     ORDER BY due_at LIMIT $2";

/// The statement that claims the rows of `due` (a [`DUE`] query, perhaps
/// with row locks) for a node: `$1` lease until, `$2` node, `$3` now, `$4`
/// limit. Made once per store.
fn claim_sql(due: &str) -> String {
    let due = due.replace("$1", "$3").replace("$2", "$4");
    format!(
        "UPDATE notifications SET state = 'sending', attempts = attempts + 1, lease_until = $1, claimed_by = $2,
             updated_at = $3
         WHERE id IN ({due})
         RETURNING {}",
        notification_columns!()
    )
}

/// Records a try's result, if the row is still this node's claim. The last
/// error stays when a later try has none, so a message sent on its second
/// try still shows why the first failed.
const FINISH: &str = "UPDATE notifications SET state = $1, due_at = COALESCE($2, due_at),
        last_error = COALESCE($3, last_error), provider_ref = COALESCE($4, provider_ref),
        sent_at = COALESCE($5, sent_at), attempts = attempts - $9, lease_until = NULL, updated_at = $6
     WHERE id = $7 AND state = 'sending' AND claimed_by = $8";

const OF_ROOM: &str =
    concat!("SELECT ", notification_columns!(), " FROM notifications WHERE room = $1 ORDER BY created_at, id");

/// A provider's report on a sent message: only a `sent` one moves, so a
/// late or repeated report never takes a state back.
const REPORTED: &str = "UPDATE notifications SET state = $1, last_error = COALESCE($2, last_error), updated_at = $3
     WHERE channel = $4 AND provider_ref = $5 AND state = 'sent'";

/// Whether any notification has that reference yet.
const KNOWN_REF: &str = "SELECT COUNT(*) FROM notifications WHERE channel = $1 AND provider_ref = $2";

/// A report that moved no sent message: the provider can report on a
/// message before its answer to the send (with the reference) has been
/// recorded. Only the first report of a reference is kept, as only the
/// first moves a sent message.
const KEEP_REPORT: &str = "INSERT INTO notification_reports (channel, provider_ref, state, last_error, reported_at)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel, provider_ref) DO NOTHING";

/// Kept reports are of no use once their message would have been sent
/// long ago (they were about someone else's message, say).
const PRUNE_REPORTS: &str = "DELETE FROM notification_reports WHERE reported_at < $1";

/// How long a report on an unknown reference is kept.
const KEEP_REPORTS_FOR: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// Applies a kept report to the `sent` notification it is about, matched
/// by the WHERE clause that follows. Both sides run it after their own
/// write (the send after recording the reference, the report after
/// keeping itself), so whichever comes second finds the other's row.
macro_rules! apply_kept_report {
    ($where:literal) => {
        concat!(
            "UPDATE notifications SET
               state = (SELECT r.state FROM notification_reports r
                        WHERE r.channel = notifications.channel AND r.provider_ref = notifications.provider_ref),
               last_error = COALESCE((SELECT r.last_error FROM notification_reports r
                        WHERE r.channel = notifications.channel AND r.provider_ref = notifications.provider_ref), last_error),
               updated_at = $1
             WHERE state = 'sent' AND EXISTS (SELECT 1 FROM notification_reports r
                        WHERE r.channel = notifications.channel AND r.provider_ref = notifications.provider_ref) AND ",
            $where
        )
    };
}
const APPLY_KEPT_BY_ID: &str = apply_kept_report!("id = $2");
const APPLY_KEPT_BY_REF: &str = apply_kept_report!("channel = $2 AND provider_ref = $3");

/// What a provider's report came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// The sent message moved to the reported state.
    Moved,
    /// The message had been reported on already: nothing changed.
    Unchanged,
    /// No message has that reference yet: the report is kept and applied
    /// when the send that gets the reference is recorded.
    Kept,
}

/// When the reminder of a consultation scheduled at `scheduled_at` is due:
/// the policy's lead time before it, or at once when that has passed;
/// `None` without reminders, or when the consultation's time has passed.
pub(crate) fn reminder_due(
    policy: &OutboxPolicy,
    scheduled_at: Option<&str>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let lead = policy.reminder_lead?;
    let at = DateTime::parse_from_rfc3339(scheduled_at?).ok()?.with_timezone(&Utc);
    (at > now).then(|| (at - lead).max(now))
}

/// The outbox's rows: what the worker and the API do with them.
#[async_trait::async_trait]
pub trait Notifications: Send + Sync {
    /// Claims up to `limit` due notifications for `node` until `lease_until`.
    async fn claim(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError>;
    /// Records what a try of a claimed notification came to; `false` when
    /// the claim was no longer `node`'s.
    async fn finish(&self, id: &str, node: &str, attempt: Attempt, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Every notification of a consultation, oldest first.
    async fn of_room(&self, room: &str) -> Result<Vec<Notification>, StoreError>;
    /// A provider's report on a sent message, also one that comes before
    /// the send's reference is recorded.
    async fn reported(
        &self,
        channel: Channel,
        reference: &str,
        state: NotifyState,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Reported, StoreError>;
}

/// The outbox of one database: its pool and its claim statement.
pub(crate) struct Outbox<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
    claim: String,
}

impl<DB: sqlx::Database> Outbox<DB> {
    /// `due` is [`DUE`], with whatever row locks the database needs.
    pub(crate) fn new(pool: sqlx::Pool<DB>, due: &str) -> Self {
        Outbox { pool, claim: claim_sql(due) }
    }
}

/// [`Notifications`] for an [`Outbox`] of each database, written once.
macro_rules! notifications_for {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl Notifications for Outbox<$db> {
            async fn claim(
                &self,
                node: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                limit: u32,
            ) -> Result<Vec<Notification>, StoreError> {
                claim(&self.pool, &self.claim, node, now, lease_until, limit).await
            }

            async fn finish(
                &self,
                id: &str,
                node: &str,
                attempt: Attempt,
                now: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                finish(&self.pool, id, node, attempt, now).await
            }

            async fn of_room(&self, room: &str) -> Result<Vec<Notification>, StoreError> {
                of_room(&self.pool, room).await
            }

            async fn reported(
                &self,
                channel: Channel,
                reference: &str,
                state: NotifyState,
                error: Option<String>,
                now: DateTime<Utc>,
            ) -> Result<Reported, StoreError> {
                reported(&self.pool, channel, reference, state, error, now).await
            }
        }
    };
}

notifications_for!(sqlx::Sqlite);
notifications_for!(sqlx::Postgres);

/// What the outbox needs of a database beyond sqlx's traits: its query
/// results have a row count under a name of their own.
pub(crate) trait OutboxDb: sqlx::Database {
    fn affected(result: &Self::QueryResult) -> u64;
}

impl OutboxDb for sqlx::Sqlite {
    fn affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

impl OutboxDb for sqlx::Postgres {
    fn affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

/// Queues `kind` for the patient of `room` on every channel that is on,
/// inside the caller's transaction. `key` tells one event from another of
/// the same kind (an admission from a later one); the same key is never
/// queued twice. Returns how many rows were queued.
pub(crate) async fn enqueue_on<DB>(
    conn: &mut DB::Connection,
    policy: &OutboxPolicy,
    room: &str,
    kind: NotifyKind,
    due: DateTime<Utc>,
    key: &str,
) -> Result<u64, sqlx::Error>
where
    DB: OutboxDb,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let now = format_time(Utc::now());
    let mut queued = 0;
    for channel in policy.channels(kind) {
        let done = sqlx::query(ENQUEUE)
            .bind(uuid::Uuid::now_v7().simple().to_string())
            .bind(room)
            .bind(kind.as_str())
            .bind(channel.as_str())
            .bind(i64::from(policy.max_attempts))
            .bind(format_time(due))
            .bind(format!("{}:{room}:{}:{key}", kind.as_str(), channel.as_str()))
            .bind(now.as_str())
            .execute(&mut *conn)
            .await?;
        queued += DB::affected(&done);
    }
    Ok(queued)
}

/// Claims up to `limit` due notifications for `node` until `lease_until`
/// with `sql`, the store's [`claim_sql`].
async fn claim<'p, DB>(
    pool: &'p sqlx::Pool<DB>,
    sql: &str,
    node: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Notification>, StoreError>
where
    DB: OutboxDb,
    &'p sqlx::Pool<DB>: sqlx::Executor<'p, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> NotificationRow: sqlx::FromRow<'r, DB::Row>,
{
    let rows: Vec<NotificationRow> = sqlx::query_as(sql)
        .bind(format_time(lease_until))
        .bind(node.to_owned())
        .bind(format_time(now))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(unavailable)?;
    rows.into_iter().map(Notification::try_from).collect()
}

/// Records what a try of notification `id`, claimed by `node`, came to.
/// `false`: the claim was no longer this node's (it lapsed and another
/// node took the row), so nothing was recorded.
async fn finish<'p, DB>(
    pool: &'p sqlx::Pool<DB>,
    id: &str,
    node: &str,
    attempt: Attempt,
    now: DateTime<Utc>,
) -> Result<bool, StoreError>
where
    DB: OutboxDb,
    &'p sqlx::Pool<DB>: sqlx::Executor<'p, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let now = format_time(now);
    let now_text = now.clone();
    let uncounted = i64::from(attempt == Attempt::Released);
    let (state, due, error, reference, sent) = match attempt {
        Attempt::Sent { provider_ref } => (NotifyState::Sent, None, None, Some(provider_ref), Some(now.clone())),
        Attempt::Retry { error, at } => (NotifyState::Pending, Some(format_time(at)), Some(error), None, None),
        Attempt::Failed { error } => (NotifyState::Failed, None, Some(error), None, None),
        Attempt::Skipped { why } => (NotifyState::Skipped, None, Some(why), None, None),
        Attempt::Released => (NotifyState::Pending, None, None, None, None),
    };
    let done = sqlx::query(FINISH)
        .bind(state.as_str().to_owned())
        .bind(due)
        .bind(error)
        .bind(reference)
        .bind(sent)
        .bind(now)
        .bind(id.to_owned())
        .bind(node.to_owned())
        .bind(uncounted)
        .execute(pool)
        .await
        .map_err(unavailable)?;
    let recorded = DB::affected(&done) == 1;
    if recorded && state == NotifyState::Sent {
        // The send is recorded either way; if this fails, the message
        // stays `sent` until Twilio reports on it again.
        let applied = sqlx::query(APPLY_KEPT_BY_ID).bind(now_text).bind(id.to_owned()).execute(pool).await;
        if let Err(err) = applied {
            tracing::warn!(notification = %id, error = %err, "a report kept for this send was not applied");
        }
    }
    Ok(recorded)
}

/// Every notification of `room`, oldest first.
async fn of_room<'p, DB>(pool: &'p sqlx::Pool<DB>, room: &str) -> Result<Vec<Notification>, StoreError>
where
    DB: OutboxDb,
    &'p sqlx::Pool<DB>: sqlx::Executor<'p, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> NotificationRow: sqlx::FromRow<'r, DB::Row>,
{
    let rows: Vec<NotificationRow> =
        sqlx::query_as(OF_ROOM).bind(room.to_owned()).fetch_all(pool).await.map_err(unavailable)?;
    rows.into_iter().map(Notification::try_from).collect()
}

/// Records a provider's report that a sent message reached `state`
/// (delivered, undelivered, failed). A report on a reference no message
/// has yet is kept until the send that gets it is recorded.
async fn reported<'p, DB>(
    pool: &'p sqlx::Pool<DB>,
    channel: Channel,
    reference: &str,
    state: NotifyState,
    error: Option<String>,
    now: DateTime<Utc>,
) -> Result<Reported, StoreError>
where
    DB: OutboxDb,
    &'p sqlx::Pool<DB>: sqlx::Executor<'p, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let (channel, reference, at) = (channel.as_str().to_owned(), reference.to_owned(), format_time(now));
    let done = sqlx::query(REPORTED)
        .bind(state.as_str().to_owned())
        .bind(error.clone())
        .bind(at.clone())
        .bind(channel.clone())
        .bind(reference.clone())
        .execute(pool)
        .await
        .map_err(unavailable)?;
    if DB::affected(&done) == 1 {
        return Ok(Reported::Moved);
    }
    // Not a sent message (yet): keep the report, then apply it, in case
    // the send was recorded meanwhile (the send applies it otherwise).
    sqlx::query(PRUNE_REPORTS).bind(format_time(now - KEEP_REPORTS_FOR)).execute(pool).await.map_err(unavailable)?;
    sqlx::query(KEEP_REPORT)
        .bind(channel.clone())
        .bind(reference.clone())
        .bind(state.as_str().to_owned())
        .bind(error)
        .bind(at.clone())
        .execute(pool)
        .await
        .map_err(unavailable)?;
    let applied = sqlx::query(APPLY_KEPT_BY_REF)
        .bind(at)
        .bind(channel.clone())
        .bind(reference.clone())
        .execute(pool)
        .await
        .map_err(unavailable)?;
    if DB::affected(&applied) == 1 {
        return Ok(Reported::Moved);
    }
    let (known,): (i64,) =
        sqlx::query_as(KNOWN_REF).bind(channel).bind(reference).fetch_one(pool).await.map_err(unavailable)?;
    Ok(if known > 0 { Reported::Unchanged } else { Reported::Kept })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_emails_only() {
        let policy = OutboxPolicy { sms: true, email: true, ..OutboxPolicy::default() };
        assert_eq!(policy.channels(NotifyKind::CallIn).collect::<Vec<_>>(), [Channel::Sms, Channel::Email]);
        assert_eq!(policy.channels(NotifyKind::Receipt).collect::<Vec<_>>(), [Channel::Email]);
        let sms_only = OutboxPolicy { sms: true, ..OutboxPolicy::default() };
        assert_eq!(sms_only.channels(NotifyKind::Receipt).count(), 0);
    }

    #[test]
    fn reminders_fall_due_a_lead_before_and_never_for_the_past() {
        let policy = OutboxPolicy { reminder_lead: Some(chrono::Duration::minutes(15)), ..OutboxPolicy::default() };
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap().with_timezone(&Utc);
        let due = |at: &str| reminder_due(&policy, Some(at), now).map(format_time);
        assert_eq!(due("2026-12-01T11:00:00Z").as_deref(), Some("2026-12-01T10:45:00.000Z"));
        assert_eq!(due("2026-12-01T10:05:00Z").as_deref(), Some("2026-12-01T10:00:00.000Z"), "late: at once");
        assert_eq!(due("2026-12-01T09:00:00Z"), None, "past: none");
        assert_eq!(reminder_due(&OutboxPolicy::default(), Some("2026-12-01T11:00:00Z"), now), None);
    }

    #[test]
    fn names_round_trip() {
        for state in [
            NotifyState::Pending,
            NotifyState::Sending,
            NotifyState::Sent,
            NotifyState::Delivered,
            NotifyState::Undelivered,
            NotifyState::Failed,
            NotifyState::Skipped,
        ] {
            assert_eq!(state.as_str().parse::<NotifyState>(), Ok(state));
        }
        assert!("lost".parse::<NotifyState>().is_err());
        assert_eq!("call_in".parse::<NotifyKind>(), Ok(NotifyKind::CallIn));
    }

    #[test]
    fn the_claim_renumbers_the_due_query() {
        let sql = claim_sql(&format!("{DUE} FOR UPDATE SKIP LOCKED"));
        assert!(sql.contains("due_at <= $3) OR (state = 'sending' AND lease_until < $3)"), "{sql}");
        assert!(sql.contains("LIMIT $4 FOR UPDATE SKIP LOCKED"), "{sql}");
    }
}
