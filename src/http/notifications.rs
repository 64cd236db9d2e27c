//! Notifications over HTTP: their states for a clinic's backend, and
//! Twilio's status callbacks. What sends them is [`crate::notify`].

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::Utc;
use serde::Deserialize;
use tracing::{info, instrument};

use super::caller::Caller;
use super::consultations::find;
use super::error::{ApiError, ErrorBody};
use super::views::{NotificationView, WebhookAck};
use crate::app::AppState;
use crate::notify::twilio;
use crate::store::{Channel, NotifyState, Reported};

/// Where Twilio reports on the messages the hub sent.
pub const TWILIO_CALLBACK: &str = "/v1/webhooks/twilio";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct NotificationsQuery {
    /// The consultation.
    pub room: String,
}

/// The notifications of a consultation, oldest first, each with where it
/// stands: `pending` (due at `due_at`, perhaps for a retry), `sending`,
/// `sent`, `delivered`, `undelivered`, `failed` (with `last_error`) or
/// `skipped`.
#[utoipa::path(
    operation_id = "list_notifications",
    tag = "notifications",
    params(NotificationsQuery),
    responses(
        (status = 200, body = [NotificationView]),
        (status = 403, description = "not staff of the clinic", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("api_key" = []), ("staff_token" = []))
)]
#[get("/v1/notifications")]
#[instrument(skip(req, app, query), fields(room = %query.room))]
pub async fn list(
    req: HttpRequest,
    app: web::Data<AppState>,
    query: web::Query<NotificationsQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    let consultation = find(&app, &query.room).await?;
    caller.require_staff_of(&consultation)?;
    let list = app.store.notifications().of_room(&consultation.id).await?;
    Ok(HttpResponse::Ok().json(list.into_iter().map(NotificationView::from).collect::<Vec<_>>()))
}

/// Twilio's status callback for an SMS the hub sent. The
/// `X-Twilio-Signature` is checked against the hub's public URL (400 and
/// nothing changes when it does not match). `delivered`, `undelivered` and
/// `failed` move a sent message on; a report that arrives late never moves
/// one back, and one that arrives before the send's SID is recorded is kept
/// and applied when it is.
#[utoipa::path(
    tag = "notifications",
    request_body(content = String, description = "Twilio's form: MessageSid, MessageStatus, ErrorCode, …",
        content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "handled, or nothing to change", body = WebhookAck),
        (status = 400, description = "bad signature, or no MessageSid", body = ErrorBody),
        (status = 403, description = "SMS is disabled or Twilio is not configured", body = ErrorBody),
    )
)]
#[post("/v1/webhooks/twilio")]
#[instrument(skip_all)]
pub async fn twilio_status(
    req: HttpRequest,
    app: web::Data<AppState>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let Some(token) = app.settings.twilio_auth_token.as_deref().filter(|_| app.settings.sms_on()) else {
        return Err(ApiError::forbidden("SMS is disabled on this hub (TELEHUB_ENABLE_SMS, Twilio settings)"));
    };
    let params = form.into_inner();
    // The URL Twilio called: the one the hub gave it, with this query.
    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let url = format!("{}{}{query}", app.public_url, req.uri().path());
    let header = req.headers().get("X-Twilio-Signature").and_then(|v| v.to_str().ok());
    if !twilio::verify(token, header, &url, &params) {
        return Err(ApiError::bad_request("X-Twilio-Signature does not sign this request"));
    }
    let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let Some(sid) = field("MessageSid").or_else(|| field("SmsSid")) else {
        return Err(ApiError::bad_request("the callback has no MessageSid"));
    };
    let status = field("MessageStatus").or_else(|| field("SmsStatus")).unwrap_or("");
    let state = match status {
        "delivered" | "read" => Some(NotifyState::Delivered),
        "undelivered" => Some(NotifyState::Undelivered),
        "failed" => Some(NotifyState::Failed),
        // queued, accepted, sending, sent: the message is `sent` already.
        _ => None,
    };
    let outcome = match state {
        Some(state) => {
            let error = field("ErrorCode").filter(|c| !c.is_empty()).map(|c| format!("Twilio error {c}"));
            match app.store.notifications().reported(Channel::Sms, sid, state, error, Utc::now()).await? {
                Reported::Moved => format!("{sid} is {}", state.as_str()),
                Reported::Unchanged => format!("{sid} unchanged"),
                Reported::Kept => format!("{sid} is not known yet: kept until its send is recorded"),
            }
        }
        None => format!("{sid}: {status} changes nothing"),
    };
    info!(%sid, %status, %outcome, "Twilio status callback");
    Ok(HttpResponse::Ok().json(WebhookAck { received: true, duplicate: false, outcome }))
}
