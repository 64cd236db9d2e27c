//! `/v1/consultations`: create, read, transcript, system messages,
//! presence, end.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::Utc;
use telehub_actors::{AuditEntry, Person};
use telehub_signaling::{UserRef, format_time};
use tracing::instrument;

use super::caller::Caller;
use super::error::{ApiError, ErrorBody};
use super::views::*;
use crate::app::AppState;
use crate::store::{Consultation, Contact, NewConsultation, Price};

/// Largest transcript page.
const MAX_PAGE: u32 = 500;

/// Checks an id used in URLs, room names and Jitsi room names.
pub fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("{what} must be 1 to 128 letters, digits, '-', '_' or '.'")))
    }
}

pub(crate) fn check_name(what: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request(format!("{what} must be 1 to 200 characters")));
    }
    Ok(name.to_owned())
}

/// A new random consultation id.
/// A phone number for SMS must be E.164: `+`, then 7 to 15 digits.
fn check_phone(phone: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(phone) = phone.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()) else { return Ok(None) };
    let digits = phone.strip_prefix('+').unwrap_or("");
    if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return Err(ApiError::bad_request(format!("patient.phone {phone:?} is not an E.164 number (+628123456789)")));
    }
    Ok(Some(phone))
}

/// An email address: something, `@`, a domain; the SMTP server has the
/// last word.
fn check_email(email: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(email) = email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()) else { return Ok(None) };
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@') && !domain.starts_with('.')
        })
        && !email.contains(char::is_whitespace);
    if !valid {
        return Err(ApiError::bad_request(format!("patient.email {email:?} is not an email address")));
    }
    Ok(Some(email))
}

/// A BCP 47 language tag such as `id` or `en-US`.
fn check_locale(locale: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(locale) = locale.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()) else { return Ok(None) };
    let valid = locale.len() <= 35
        && locale.split(['-', '_']).all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !valid {
        return Err(ApiError::bad_request(format!("patient.locale {locale:?} is not a language tag (id, en-US)")));
    }
    Ok(Some(locale))
}

pub fn new_consultation_id() -> String {
    format!("c-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Loads a consultation, or answers 404 (400 for an id no consultation can have).
pub(crate) async fn find(app: &AppState, id: &str) -> Result<Consultation, ApiError> {
    check_id("consultation id", id)?;
    app.store.consultation(id).await?.ok_or_else(|| ApiError::not_found(format!("no consultation {id}")))
}

/// Loads a consultation the caller may read.
pub(crate) async fn readable(app: &AppState, caller: &Caller, id: &str) -> Result<Consultation, ApiError> {
    let consultation = find(app, id).await?;
    caller.may_read(&consultation)?;
    Ok(consultation)
}

pub(crate) fn audit(app: &AppState, caller: &Caller, room: Option<&str>, action: &str, detail: serde_json::Value) {
    let store = app.store.clone();
    let entry = AuditEntry {
        at: Utc::now(),
        room: room.map(str::to_owned),
        user: Some(caller.audit_user()),
        action: action.into(),
        detail,
    };
    store.audit(entry);
}

/// Creates a consultation from validated input.
pub async fn create_consultation(app: &AppState, body: CreateConsultation) -> Result<Consultation, ApiError> {
    let payment = match body.payment {
        Some(_) if !app.settings.enable_payments => {
            return Err(ApiError::bad_request("payments are disabled on this hub (TELEHUB_ENABLE_PAYMENTS=false)"));
        }
        Some(p) => {
            if p.amount <= 0 {
                return Err(ApiError::bad_request("payment.amount must be positive (in the currency's smallest unit)"));
            }
            if p.currency.len() != 3 || !p.currency.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(ApiError::bad_request("payment.currency must be an ISO 4217 code such as idr or usd"));
            }
            Some(Price { amount: p.amount, currency: p.currency.to_ascii_lowercase() })
        }
        None => None,
    };
    let id = match body.id {
        Some(id) => {
            check_id("id", &id)?;
            id
        }
        None => new_consultation_id(),
    };
    check_id("patient.id", &body.patient.id)?;
    check_id("doctor.id", &body.doctor.id)?;
    let queue = body.queue.unwrap_or_else(|| body.doctor.id.clone());
    check_id("queue", &queue)?;
    if let Some(clinic) = &body.clinic {
        check_id("clinic", clinic)?;
    }
    let scheduled_at = match body.scheduled_at {
        Some(at) => {
            let at = chrono::DateTime::parse_from_rfc3339(&at)
                .map_err(|e| ApiError::bad_request(format!("scheduled_at is not an RFC 3339 time: {e}")))?
                .with_timezone(&Utc);
            // In UTC it must still have a four-digit year, or it could not be written back as RFC 3339.
            if !(0..=9999).contains(&chrono::Datelike::year(&at)) {
                return Err(ApiError::bad_request("scheduled_at is outside the years 0000 to 9999 in UTC"));
            }
            Some(format_time(at))
        }
        None => None,
    };
    let new = NewConsultation {
        id,
        patient: Contact {
            id: body.patient.id,
            name: check_name("patient.name", &body.patient.name)?,
            phone: check_phone(body.patient.phone)?,
            email: check_email(body.patient.email)?,
            locale: check_locale(body.patient.locale)?,
        },
        doctor: Person { id: body.doctor.id, name: check_name("doctor.name", &body.doctor.name)? },
        clinic: body.clinic,
        queue,
        scheduled_at,
        created_at: format_time(Utc::now()),
        payment,
    };
    Ok(app.store.create_consultation(new).await?)
}

/// Create a consultation.
#[utoipa::path(
    operation_id = "create_consultation",
    tag = "consultations",
    request_body = CreateConsultation,
    responses(
        (status = 201, description = "created", body = ConsultationView),
        (status = 400, description = "invalid input", body = ErrorBody),
        (status = 401, description = "no or bad API key", body = ErrorBody),
        (status = 409, description = "the id exists already", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/v1/consultations")]
#[instrument(skip_all)]
pub async fn create(
    req: HttpRequest,
    app: web::Data<AppState>,
    body: web::Json<CreateConsultation>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    caller.require_backend()?;
    let consultation = create_consultation(&app, body.into_inner()).await?;
    audit(&app, &caller, Some(&consultation.id), "api.create", serde_json::json!({}));
    Ok(HttpResponse::Created().json(ConsultationView::from(consultation)))
}

/// A consultation: status, members, queue, media mode, timestamps, last `seq`.
#[utoipa::path(
    tag = "consultations",
    params(("id" = String, Path, description = "consultation id")),
    responses(
        (status = 200, body = ConsultationView),
        (status = 404, body = ErrorBody),
    ),
    security(("api_key" = []), ("staff_token" = []))
)]
#[get("/v1/consultations/{id}")]
#[instrument(skip(req, app), fields(room = %id))]
pub async fn get_one(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    let mut consultation = readable(&app, &caller, &id).await?;
    // A running room knows a newer status and mode than the last write may
    // show, for instance while an end is being stored.
    if let Some(live) = app.rooms.live_record(&id).await {
        consultation.status = live.status;
        consultation.media_mode = live.media_mode;
        consultation.last_seq = consultation.last_seq.max(live.last_seq);
    }
    Ok(HttpResponse::Ok().json(ConsultationView::from(consultation)))
}

/// A page of the transcript, in `seq` order.
#[utoipa::path(
    tag = "consultations",
    params(("id" = String, Path, description = "consultation id"), MessagesQuery),
    responses((status = 200, body = MessagesPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("staff_token" = []))
)]
#[get("/v1/consultations/{id}/messages")]
#[instrument(skip(req, app, query), fields(room = %id))]
pub async fn messages(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<MessagesQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("after must not be negative"));
    }
    readable(&app, &caller, &id).await?;
    let mut page = app.store.messages_after(&id, after, limit + 1).await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_after = if more { page.last().map(|m| m.seq) } else { None };
    Ok(HttpResponse::Ok().json(MessagesPage {
        room: id.into_inner(),
        messages: page.into_iter().map(MessageView::from).collect(),
        next_after,
    }))
}

/// Post a `system` message: stored and broadcast like chat.
#[utoipa::path(
    tag = "consultations",
    params(("id" = String, Path, description = "consultation id")),
    request_body = SystemMessageIn,
    responses(
        (status = 201, body = MessageView),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the consultation has ended", body = ErrorBody),
        (status = 413, description = "text over the limit", body = ErrorBody),
        (status = 503, description = "storage unavailable: nothing stored", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/v1/consultations/{id}/messages")]
#[instrument(skip(req, app, body), fields(room = %id))]
pub async fn post_message(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<SystemMessageIn>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    caller.require_backend()?;
    check_id("consultation id", &id)?;
    let text = app.limits.chat_text(&body.text).map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    let message = app.rooms.post_system(&id, &app.settings.system_name, &text).await?;
    audit(&app, &caller, Some(&id), "api.message", serde_json::json!({ "seq": message.seq }));
    Ok(HttpResponse::Created().json(MessageView::from(message)))
}

/// The sessions in the room now.
#[utoipa::path(
    tag = "consultations",
    params(("id" = String, Path, description = "consultation id")),
    responses((status = 200, body = PresenceView), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("staff_token" = []))
)]
#[get("/v1/consultations/{id}/presence")]
#[instrument(skip(req, app), fields(room = %id))]
pub async fn presence(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    readable(&app, &caller, &id).await?;
    let node = &app.settings.node_id;
    let present = app.rooms.presence(&id).await.map_err(ApiError::from)?;
    let sessions =
        present.into_iter().map(|p| PresenceEntry::from_peer(p.peer, p.node.as_deref().unwrap_or(node))).collect();
    Ok(HttpResponse::Ok().json(PresenceView { room: id.into_inner(), sessions }))
}

/// End the consultation, as a doctor's `end` would.
#[utoipa::path(
    tag = "consultations",
    params(("id" = String, Path, description = "consultation id")),
    responses(
        (status = 200, body = EndedView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "ended already", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/v1/consultations/{id}/end")]
#[instrument(skip(req, app), fields(room = %id))]
pub async fn end(req: HttpRequest, app: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    caller.require_backend()?;
    check_id("consultation id", &id)?;
    let by = UserRef { id: "system".into(), name: app.settings.system_name.clone() };
    app.rooms.end(&id, None, by).await?;
    audit(&app, &caller, Some(&id), "api.end", serde_json::json!({}));
    Ok(HttpResponse::Ok().json(EndedView { room: id.into_inner(), status: "ended".into() }))
}
