//! The JSON shapes of the HTTP API, with their OpenAPI schemas.

use serde::{Deserialize, Serialize};
use telehub_signaling::{MessageEvent, Peer};
use utoipa::{IntoParams, ToSchema};

use crate::store::{AuditRecord, Consultation};

/// A patient in a request or response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientIn {
    #[schema(example = "u7")]
    pub id: String,
    #[schema(example = "Budi")]
    pub name: String,
    /// E.164 phone number, for SMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// BCP 47 language tag: the language of the SMS and emails the patient
    /// gets (`id` Indonesian; anything else English).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "id")]
    pub locale: Option<String>,
}

/// A doctor in a request or response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonIn {
    #[schema(example = "u42")]
    pub id: String,
    #[schema(example = "Ana")]
    pub name: String,
}

/// The amount to collect before the consultation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentIn {
    #[schema(minimum = 1)]
    pub amount: i64,
    pub currency: String,
}

/// A consultation's price and payment state.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentStateView {
    pub amount: i64,
    /// ISO 4217, lowercase.
    pub currency: String,
    /// unpaid, paid or refunded.
    pub status: String,
}

/// `POST /v1/consultations/{id}/payments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BankTransferIn {
    /// `bank_transfer`.
    pub method: String,
    /// The transfer's reference; one payment per reference.
    pub reference: String,
    /// In the currency's smallest unit; must cover the price.
    #[schema(minimum = 1)]
    pub amount: i64,
    /// The consultation's currency by default.
    pub currency: Option<String>,
}

/// The answer to a payment confirmation.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    pub room: String,
    pub amount: i64,
    pub currency: String,
    /// unpaid, paid or refunded.
    pub status: String,
}

/// A Stripe Checkout Session to send the patient to.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutView {
    pub id: String,
    /// Stripe's hosted payment page.
    pub url: Option<String>,
}

/// A Stripe PaymentIntent for Stripe Elements.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntentView {
    pub id: String,
    /// What Stripe.js needs to confirm the payment in the browser.
    pub client_secret: Option<String>,
}

/// The answer to a webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    pub received: bool,
    /// The event was handled before.
    pub duplicate: bool,
    /// What the hub did with it.
    pub outcome: String,
}

/// `POST /v1/consultations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConsultation {
    /// The consultation id (letters, digits, `-`, `_`, `.`); made up if absent.
    #[schema(example = "c-1001")]
    pub id: Option<String>,
    pub patient: PatientIn,
    pub doctor: PersonIn,
    pub clinic: Option<String>,
    /// The waiting-room queue; the doctor's id by default.
    pub queue: Option<String>,
    /// RFC 3339 time.
    pub scheduled_at: Option<String>,
    /// The price to pay before the patient may be admitted (when payments
    /// are enabled): amount in the currency's smallest unit, ISO 4217 code.
    pub payment: Option<PaymentIn>,
}

/// A consultation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsultationView {
    pub id: String,
    /// scheduled, waiting, active, ended or cancelled.
    pub status: String,
    pub patient: PatientIn,
    pub doctor: PersonIn,
    pub clinic: Option<String>,
    pub queue: String,
    pub scheduled_at: Option<String>,
    /// p2p or jitsi.
    pub media_mode: String,
    /// The price and whether it is paid; `null` when nothing is owed.
    pub payment: Option<PaymentStateView>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Who ended it: a user, or `{"id": "system", "name": "No-show"}` for a
    /// patient who never came; `null` while it has not ended (and for
    /// consultations ended before this was recorded).
    pub ended_by: Option<PersonIn>,
    /// The last `seq` stored in the room.
    pub last_seq: i64,
    pub members: Vec<MemberView>,
}

/// A member of a consultation.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub id: String,
    pub name: String,
    pub role: String,
}

impl From<Consultation> for ConsultationView {
    fn from(c: Consultation) -> Self {
        let members = vec![
            MemberView { id: c.patient.id.clone(), name: c.patient.name.clone(), role: "patient".into() },
            MemberView { id: c.doctor.id.clone(), name: c.doctor.name.clone(), role: "doctor".into() },
        ];
        ConsultationView {
            id: c.id,
            status: c.status.as_str().into(),
            patient: PatientIn {
                id: c.patient.id,
                name: c.patient.name,
                phone: c.patient.phone,
                email: c.patient.email,
                locale: c.patient.locale,
            },
            doctor: PersonIn { id: c.doctor.id, name: c.doctor.name },
            clinic: c.clinic,
            queue: c.queue,
            scheduled_at: c.scheduled_at,
            media_mode: c.media_mode.as_str().into(),
            payment: c.payment.map(|p| PaymentStateView {
                amount: p.price.amount,
                currency: p.price.currency,
                status: p.status.as_str().into(),
            }),
            created_at: c.created_at,
            started_at: c.started_at,
            ended_at: c.ended_at,
            ended_by: c.ended_by.map(|p| PersonIn { id: p.id, name: p.name }),
            last_seq: c.last_seq,
            members,
        }
    }
}

/// The author of a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct SenderView {
    pub id: String,
    pub name: String,
    /// patient, doctor, staff or system.
    pub role: String,
}

/// A stored chat message, as in the `message` frame.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub room: String,
    pub seq: i64,
    pub id: String,
    pub client_id: Option<String>,
    pub from: SenderView,
    /// text or system.
    pub kind: String,
    pub text: String,
    pub at: String,
}

impl From<MessageEvent> for MessageView {
    fn from(m: MessageEvent) -> Self {
        MessageView {
            room: m.room,
            seq: m.seq,
            id: m.id,
            client_id: m.client_id,
            from: SenderView { id: m.from.id, name: m.from.name, role: m.from.role },
            kind: m.kind.as_str().into(),
            text: m.text,
            at: m.at,
        }
    }
}

/// Query of `GET /v1/consultations/{id}/messages`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct MessagesQuery {
    /// Only messages with `seq` greater than this (default 0).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// At most this many (default 100, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A page of the transcript.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagesPage {
    pub room: String,
    pub messages: Vec<MessageView>,
    /// Pass as `after` for the next page; `null` when this was the last.
    pub next_after: Option<i64>,
}

/// `POST /v1/consultations/{id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemMessageIn {
    pub text: String,
}

/// A session in a room.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresenceEntry {
    pub session: String,
    pub user: UserView,
    pub since: Option<String>,
    /// The node that holds the session.
    pub node: String,
}

/// A user as the hub shows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub role: String,
}

impl PresenceEntry {
    pub fn from_peer(peer: Peer, node: &str) -> Self {
        PresenceEntry {
            session: peer.session,
            user: UserView { id: peer.user.id, name: peer.user.name, role: peer.user.role.as_str().into() },
            since: peer.since,
            node: node.to_owned(),
        }
    }
}

/// `GET /v1/consultations/{id}/presence`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresenceView {
    pub room: String,
    pub sessions: Vec<PresenceEntry>,
}

/// `POST /v1/consultations/{id}/end`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndedView {
    pub room: String,
    pub status: String,
}

/// `POST /v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub sub: String,
    pub name: String,
    /// patient, doctor, staff or display.
    pub role: String,
    pub clinic: Option<String>,
    pub rooms: Option<Vec<String>>,
    /// Lifetime in seconds (default 3600, at most 604800).
    #[schema(minimum = 1, maximum = 604800)]
    pub ttl_s: Option<u64>,
}

/// A signed client token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub token: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditParams {
    pub room: Option<String>,
    pub user: Option<String>,
    /// Only entries with an id greater than this.
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: String,
    pub room: Option<String>,
    pub user: Option<String>,
    /// join, leave, admit, end, media, api.create, api.message, api.end, api.token…
    pub action: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditRecord> for AuditView {
    fn from(r: AuditRecord) -> Self {
        AuditView { id: r.id, at: r.at, room: r.room, user: r.user, action: r.action, detail: r.detail }
    }
}

/// A page of the audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditView>,
    pub next_after: Option<i64>,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    pub status: String,
    pub node: String,
}

/// `POST /v1/demo/consultation`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DemoRequest {
    pub patient_name: Option<String>,
    pub doctor_name: Option<String>,
    /// A doctor of an earlier demo consultation (`demo-doctor-…`): the new
    /// patient joins that doctor's waiting room.
    pub doctor_id: Option<String>,
}

/// One side of a demo consultation.
#[derive(Debug, Serialize, ToSchema)]
pub struct DemoLink {
    /// The page to open, token included.
    pub url: String,
    pub token: String,
}

/// A demo consultation and the links of its patient, its doctor and the
/// doctor's waiting-room display.
#[derive(Debug, Serialize, ToSchema)]
pub struct DemoResponse {
    pub consultation: ConsultationView,
    pub patient: DemoLink,
    pub doctor: DemoLink,
    pub display: DemoLink,
}

/// One waiting patient in `GET /v1/queues/{queue}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueEntryView {
    /// The ticket the patient and the displays see, e.g. `A-012`.
    pub ticket: String,
    pub room: String,
    pub patient: UserRefView,
    /// When the patient checked in.
    pub since: String,
    /// Whether a session of the patient is connected.
    pub online: bool,
    /// Whether nothing is owed before the consultation.
    pub paid: bool,
}

/// A user's id and name.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserRefView {
    pub id: String,
    pub name: String,
}

/// `GET /v1/queues/{queue}`: the waiting patients in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    pub queue: String,
    pub entries: Vec<QueueEntryView>,
}

impl QueueView {
    /// The view of a `queue_state` frame with names (not a display's).
    pub fn from_frame(frame: telehub_signaling::ServerFrame) -> Option<Self> {
        let telehub_signaling::ServerFrame::QueueState { queue, entries, .. } = frame else { return None };
        let entries = entries
            .into_iter()
            .filter_map(|e| {
                let patient = e.patient?;
                Some(QueueEntryView {
                    ticket: e.ticket,
                    room: e.room?,
                    patient: UserRefView { id: patient.id, name: patient.name },
                    since: e.since,
                    online: e.online.unwrap_or(false),
                    paid: e.paid.unwrap_or(true),
                })
            })
            .collect();
        Some(QueueView { queue, entries })
    }
}

/// A notification and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: String,
    pub room: String,
    /// call_in, reminder or receipt.
    pub kind: String,
    /// sms or email.
    pub channel: String,
    /// The phone number or email address.
    pub to: String,
    pub locale: String,
    /// pending, sending, sent, delivered, undelivered, failed or skipped.
    pub state: String,
    /// Tries so far.
    pub attempts: u32,
    pub max_attempts: u32,
    /// When it is (or was) due: its first try, or its next retry.
    pub due_at: String,
    /// Why the last try failed, or why it was skipped.
    pub last_error: Option<String>,
    /// Twilio's message SID, or the email's Message-ID.
    pub provider_ref: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub sent_at: Option<String>,
}

impl From<crate::store::Notification> for NotificationView {
    fn from(n: crate::store::Notification) -> Self {
        NotificationView {
            id: n.id,
            room: n.room,
            kind: n.kind.as_str().into(),
            channel: n.channel.as_str().into(),
            to: n.recipient,
            locale: n.locale,
            state: n.state.as_str().into(),
            attempts: n.attempts,
            max_attempts: n.max_attempts,
            due_at: n.due_at,
            last_error: n.last_error,
            provider_ref: n.provider_ref,
            created_at: n.created_at,
            updated_at: n.updated_at,
            sent_at: n.sent_at,
        }
    }
}
