//! Notifications: SMS and email that call a patient in, remind them of a
//! scheduled consultation and confirm a payment.
//!
//! The store queues them in its outbox (see [`crate::store::outbox`]) in
//! the transaction of the event that causes them. The [`Worker`] of each
//! node claims due ones, renders them in the patient's language
//! ([`templates`]), sends them through Twilio ([`twilio`]) or SMTP
//! ([`email`]) and records the outcome: `sent`, a retry after an
//! exponential backoff, or `failed` after the last try or a permanent
//! refusal. A claim is a lease, so a node that dies mid-send leaves the row
//! to be claimed again once the lease lapses: a notification is sent at
//! least once, and twice only when a node dies between the provider taking
//! it and the outcome being stored.

pub mod email;
pub mod templates;
pub mod twilio;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use telehub_signaling::{PaymentStatus, Role, RoomStatus};
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::app::Metrics;
use crate::auth::{Claims, TokenKeys};
use crate::config::Settings;
use crate::store::{Attempt, Channel, Consultation, Notification, NotifyKind, OutboxPolicy, Store};

/// How long a claim holds: longer than any one send may take (each has a
/// 20 s timeout).
const LEASE: Duration = Duration::from_secs(60);
/// Notifications claimed at a time.
const CLAIM: u32 = 16;
/// The longest wait between tries.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Why a send failed, and whether trying again could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub message: String,
    pub permanent: bool,
}

impl SendError {
    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), permanent: true }
    }

    pub fn transient(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), permanent: false }
    }
}

/// The outbox policy that `settings` make: the channels that are on.
pub fn policy(settings: &Settings) -> Arc<OutboxPolicy> {
    Arc::new(OutboxPolicy {
        sms: settings.sms_on(),
        email: settings.email_on(),
        reminder_lead: (settings.reminder_lead_s > 0).then(|| {
            // More than a year ahead is as good as "at once".
            chrono::Duration::seconds(i64::try_from(settings.reminder_lead_s.min(366 * 86_400)).unwrap_or(0))
        }),
        max_attempts: settings.notify_max_attempts,
        wake: tokio::sync::Notify::new(),
    })
}

/// The wait before try `attempts + 1`: the base, doubled for every try
/// after the first, at most an hour.
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    base.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// One node's sender of due notifications.
pub struct Worker {
    store: Arc<dyn Store>,
    policy: Arc<OutboxPolicy>,
    node: String,
    sms: Option<twilio::Twilio>,
    email: Option<email::Mailer>,
    tokens: Arc<TokenKeys>,
    public_url: String,
    backoff: Duration,
    poll: Duration,
    link_ttl_s: i64,
    metrics: Arc<Metrics>,
}

impl Worker {
    /// The worker of a node whose address is `public_url`.
    pub fn new(
        settings: &Settings,
        store: Arc<dyn Store>,
        policy: Arc<OutboxPolicy>,
        tokens: Arc<TokenKeys>,
        public_url: &str,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Worker> {
        let sms = match (&settings.twilio_account_sid, &settings.twilio_auth_token, &settings.twilio_from) {
            (Some(sid), Some(token), Some(from)) if settings.enable_sms => Some(twilio::Twilio::new(
                &settings.twilio_api_base,
                sid,
                token,
                from,
                format!("{public_url}{}", crate::http::notifications::TWILIO_CALLBACK),
            )?),
            _ => None,
        };
        let email = match (&settings.smtp_url, &settings.mail_from) {
            (Some(url), Some(from)) if settings.enable_email => Some(email::Mailer::new(url, from)?),
            _ => None,
        };
        info!(sms = sms.is_some(), email = email.is_some(), "notifications");
        Ok(Worker {
            store,
            policy,
            node: settings.node_id.clone(),
            sms,
            email,
            tokens,
            public_url: public_url.to_owned(),
            backoff: Duration::from_millis(settings.notify_backoff_ms),
            poll: Duration::from_millis(settings.notify_poll_ms),
            link_ttl_s: i64::try_from(settings.notify_link_ttl_s).unwrap_or(86_400),
            metrics,
        })
    }

    /// Sends due notifications until `shutdown`; a send under way when
    /// it comes is finished and recorded first.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.sms.is_none() && self.email.is_none() {
            // Nothing is queued on such a node; it need not look.
            return shutdown.cancelled().await;
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.policy.wake.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
            }
            self.drain(&shutdown).await;
        }
    }

    /// Claims and sends until nothing is due.
    async fn drain(&self, shutdown: &CancellationToken) {
        loop {
            let now = Utc::now();
            let lease = chrono::Duration::from_std(LEASE).expect("a short lease");
            let batch = match self.store.notifications().claim(&self.node, now, now + lease, CLAIM).await {
                Ok(batch) => batch,
                Err(err) => {
                    warn!(error = %err, "notifications not claimed");
                    return;
                }
            };
            if batch.is_empty() {
                return;
            }
            let mut batch = batch.into_iter();
            for notification in batch.by_ref() {
                let id = notification.id.clone();
                let attempt = self.attempt(notification).await;
                self.record(&id, attempt).await;
                if shutdown.is_cancelled() {
                    break;
                }
            }
            // Claimed but not tried: give them back untouched.
            for rest in batch {
                self.record(&rest.id, Attempt::Released).await;
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    async fn record(&self, id: &str, attempt: Attempt) {
        let counts = &self.metrics.notifications;
        match &attempt {
            Attempt::Sent { .. } => counts.sent.inc(),
            Attempt::Retry { .. } => counts.retried.inc(),
            Attempt::Failed { .. } => counts.failed.inc(),
            Attempt::Skipped { .. } => counts.skipped.inc(),
            Attempt::Released => {}
        }
        match self.store.notifications().finish(id, &self.node, attempt, Utc::now()).await {
            Ok(true) => {}
            Ok(false) => warn!(notification = %id, "the claim lapsed before the outcome was stored"),
            // The lease runs out and the row is tried again: at least once.
            Err(err) => warn!(notification = %id, error = %err, "notification outcome not stored"),
        }
    }

    /// One try of a claimed notification.
    #[instrument(skip_all, fields(notification = %n.id, room = %n.room, kind = n.kind.as_str(), channel = n.channel.as_str()))]
    async fn attempt(&self, n: Notification) -> Attempt {
        let consultation = match self.store.consultation(&n.room).await {
            Ok(Some(c)) => c,
            Ok(None) => return Attempt::Failed { error: format!("consultation {} is gone", n.room) },
            Err(err) => return self.failed_try(&n, format!("consultation not read: {err}")),
        };
        if let Some(why) = stale(n.kind, &consultation) {
            return Attempt::Skipped { why };
        }
        let facts_link = self.link(&consultation);
        let paid = match n.kind {
            NotifyKind::Receipt => match self.store.succeeded_payment(&n.room).await {
                Ok(Some((_, _, price))) => Some(price),
                Ok(None) => None,
                Err(err) => return self.failed_try(&n, format!("payment not read: {err}")),
            },
            _ => None,
        };
        let facts = templates::Facts {
            patient: &consultation.patient.name,
            doctor: &consultation.doctor.name,
            link: &facts_link,
            scheduled_at: consultation.scheduled_at.as_deref(),
            paid: paid.as_ref().map(|p| (p.amount, p.currency.as_str())),
        };
        let text = templates::render(n.kind, n.channel, templates::Language::of(&n.locale), &facts);
        let sent = match n.channel {
            Channel::Sms => match &self.sms {
                Some(sms) => sms.send(&n.recipient, &text.body).await,
                None => Err(SendError::permanent("this node does not send SMS (TELEHUB_ENABLE_SMS, Twilio settings)")),
            },
            Channel::Email => match &self.email {
                Some(mail) => mail.send(&n.id, &n.recipient, &text.subject, &text.body).await,
                None => {
                    Err(SendError::permanent("this node does not send email (TELEHUB_ENABLE_EMAIL, SMTP settings)"))
                }
            },
        };
        match sent {
            Ok(provider_ref) => {
                info!(attempts = n.attempts, %provider_ref, "notification sent");
                Attempt::Sent { provider_ref }
            }
            Err(err) if err.permanent => {
                warn!(error = %err.message, "notification refused for good");
                Attempt::Failed { error: err.message }
            }
            Err(err) => self.failed_try(&n, err.message),
        }
    }

    /// A try that may pass later: a retry after the backoff, or `failed`
    /// when it was the last.
    fn failed_try(&self, n: &Notification, error: String) -> Attempt {
        if n.attempts >= n.max_attempts {
            warn!(%error, attempts = n.attempts, "notification failed: no tries left");
            return Attempt::Failed { error };
        }
        let wait = backoff(self.backoff, n.attempts);
        warn!(%error, attempts = n.attempts, retry_in_ms = wait.as_millis() as u64, "notification will be retried");
        let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
        Attempt::Retry { error, at }
    }

    /// Where the patient joins: the patient page with a token for this
    /// consultation alone, or without one when the hub cannot sign tokens
    /// (RS256/ES256: the clinic's own page hands them out).
    fn link(&self, c: &Consultation) -> String {
        let page = format!("{}/patient?room={}", self.public_url, c.id);
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: c.patient.id.clone(),
            name: c.patient.name.clone(),
            role: Role::Patient,
            exp: now + self.link_ttl_s,
            iat: Some(now),
            nbf: None,
            clinic: c.clinic.clone(),
            rooms: Some(vec![c.id.clone()]),
        };
        match self.tokens.issue(&claims) {
            Some(token) => format!("{page}#token={token}"),
            None => page,
        }
    }
}

/// Why a notification no longer applies, if it does not.
fn stale(kind: NotifyKind, c: &Consultation) -> Option<String> {
    let over = matches!(c.status, RoomStatus::Ended | RoomStatus::Cancelled);
    match kind {
        NotifyKind::CallIn if over => Some(format!("the consultation is {} already", c.status.as_str())),
        NotifyKind::Reminder if c.status != RoomStatus::Scheduled && c.status != RoomStatus::Waiting => {
            Some(format!("the consultation is {} already", c.status.as_str()))
        }
        NotifyKind::Receipt if c.payment.as_ref().is_some_and(|p| p.status == PaymentStatus::Refunded) => {
            Some("the payment was refunded".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use telehub_actors::Person;
    use telehub_signaling::MediaMode;

    use super::*;
    use crate::store::{Contact, PaymentState, Price};

    fn consultation(status: RoomStatus, payment: Option<PaymentStatus>) -> Consultation {
        Consultation {
            id: "c-1".into(),
            status,
            patient: Contact { id: "p".into(), name: "Budi".into(), phone: None, email: None, locale: None },
            doctor: Person { id: "d".into(), name: "Ana".into() },
            clinic: None,
            queue: "q".into(),
            scheduled_at: None,
            media_mode: MediaMode::P2p,
            created_at: "2026-12-01T10:00:00.000Z".into(),
            started_at: None,
            ended_at: None,
            ended_by: None,
            last_seq: 0,
            payment: payment
                .map(|status| PaymentState { price: Price { amount: 100, currency: "idr".into() }, status }),
        }
    }

    #[test]
    fn notifications_that_no_longer_apply_are_skipped() {
        use NotifyKind::*;
        use RoomStatus::*;
        for (kind, status, skipped) in [
            (CallIn, Active, false),
            (CallIn, Ended, true),
            (CallIn, Cancelled, true),
            (Reminder, Scheduled, false),
            (Reminder, Waiting, false),
            (Reminder, Active, true),
            (Reminder, Ended, true),
        ] {
            assert_eq!(stale(kind, &consultation(status, None)).is_some(), skipped, "{kind:?} when {status:?}");
        }
        assert!(stale(Receipt, &consultation(Ended, Some(PaymentStatus::Paid))).is_none(), "a receipt still holds");
        assert!(stale(Receipt, &consultation(Active, Some(PaymentStatus::Refunded))).is_some());
    }

    #[test]
    fn the_backoff_doubles_and_stops_at_an_hour() {
        let base = Duration::from_secs(30);
        assert_eq!(backoff(base, 1), Duration::from_secs(30));
        assert_eq!(backoff(base, 2), Duration::from_secs(60));
        assert_eq!(backoff(base, 3), Duration::from_secs(120));
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
    }
}
