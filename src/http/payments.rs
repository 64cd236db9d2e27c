//! Payments over HTTP: staff confirm a bank transfer, Stripe sends
//! webhooks. What either does is in [`crate::payments`].

use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::Utc;
use telehub_signaling::{ErrorCode, PaymentStatus, format_time};
use tracing::{info, instrument, warn};

use super::body::RawBody;
use super::caller::Caller;
use super::consultations::{audit, find};
use super::error::{ApiError, ErrorBody};
use super::views::{BankTransferIn, CheckoutView, IntentView, PaymentView, WebhookAck};
use crate::app::AppState;
use crate::payments::{StripeAction, apply, read_stripe_event, verify_stripe};
use crate::store::{BANK_TRANSFER, Consultation, NewPayment, Price, TxStatus};

fn payments_enabled(app: &AppState) -> Result<(), ApiError> {
    if app.settings.enable_payments {
        Ok(())
    } else {
        Err(ApiError::forbidden("payments are disabled on this hub (TELEHUB_ENABLE_PAYMENTS=false)"))
    }
}

/// Confirm a bank transfer for a consultation (staff of its clinic, or the
/// backend). The consultation is paid at once and its room and queue hear
/// of it; a transfer already recorded under this reference changes nothing.
#[utoipa::path(
    tag = "payments",
    params(("id" = String, Path, description = "consultation id")),
    request_body = BankTransferIn,
    responses(
        (status = 200, description = "recorded; the consultation's payment state", body = PaymentView),
        (status = 400, body = ErrorBody),
        (status = 403, description = "not staff of the clinic, or payments disabled", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "nothing to pay, paid already under another reference, or the amount does not cover the price", body = ErrorBody),
    ),
    security(("api_key" = []), ("staff_token" = []))
)]
#[post("/v1/consultations/{id}/payments")]
#[instrument(skip(req, app, body), fields(room = %id))]
pub async fn confirm(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<BankTransferIn>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    payments_enabled(&app)?;
    let consultation = find(&app, &id).await?;
    caller.require_staff_of(&consultation)?;
    let body = body.into_inner();
    if body.method != "bank_transfer" {
        return Err(ApiError::bad_request(format!("method {:?}: only bank_transfer is confirmed here", body.method)));
    }
    let reference = body.reference.trim().to_owned();
    if reference.is_empty() || reference.len() > 200 {
        return Err(ApiError::bad_request("reference must be 1 to 200 characters"));
    }
    if body.amount <= 0 {
        return Err(ApiError::bad_request("amount must be positive (in the currency's smallest unit)"));
    }
    let Some(owed) = consultation.payment.as_ref() else {
        return Err(ApiError::new(ErrorCode::Conflict, format!("{} has no price: nothing to pay", consultation.id)));
    };
    let currency = body.currency.map(|c| c.to_ascii_lowercase()).unwrap_or_else(|| owed.price.currency.clone());
    let payment = NewPayment {
        room: consultation.id.clone(),
        provider: BANK_TRANSFER.into(),
        reference: reference.clone(),
        price: Price { amount: body.amount, currency },
        status: TxStatus::Succeeded,
        at: format_time(Utc::now()),
    };
    let detail = serde_json::json!({ "method": "bank_transfer", "reference": reference, "amount": body.amount });
    let change = apply(&app, payment).await?;
    audit(&app, &caller, Some(&consultation.id), "payment", detail);
    let status = change.unwrap_or(owed.status);
    Ok(HttpResponse::Ok().json(PaymentView {
        room: consultation.id,
        amount: owed.price.amount,
        currency: owed.price.currency.clone(),
        status: status.as_str().into(),
    }))
}

/// Stripe's webhook. The signature is checked over the raw body (400 and
/// nothing changes when it does not match or is older than five minutes);
/// a redelivered event changes nothing again.
#[utoipa::path(
    tag = "payments",
    request_body(content = String, description = "the event, as Stripe sends it", content_type = "application/json"),
    responses(
        (status = 200, description = "handled (or ignored: not an event the hub acts on)", body = WebhookAck),
        (status = 400, description = "bad signature, stale timestamp or not an event", body = ErrorBody),
        (status = 403, description = "payments disabled, or no webhook secret configured", body = ErrorBody),
    )
)]
#[post("/v1/webhooks/stripe")]
#[instrument(skip_all)]
pub async fn stripe(
    req: HttpRequest,
    app: web::Data<AppState>,
    RawBody(body): RawBody,
) -> Result<HttpResponse, ApiError> {
    payments_enabled(&app)?;
    let Some(secret) = app.settings.stripe_webhook_secret.as_deref() else {
        return Err(ApiError::forbidden("no Stripe webhook secret is configured (TELEHUB_STRIPE_WEBHOOK_SECRET)"));
    };
    let header = req.headers().get("Stripe-Signature").and_then(|v| v.to_str().ok());
    verify_stripe(secret, header, &body, Utc::now().timestamp())
        .map_err(|err| ApiError::bad_request(format!("invalid Stripe signature: {err}")))?;
    let event: serde_json::Value =
        serde_json::from_slice(&body).map_err(|err| ApiError::bad_request(format!("not a JSON event: {err}")))?;
    let (event_id, action) = read_stripe_event(&event).map_err(ApiError::bad_request)?;
    // Recording is idempotent (one transaction per reference, whose state
    // never moves back), so a redelivery that races this one is harmless;
    // the delivery is noted once it was handled, so a failure is retried.
    let outcome = match action {
        StripeAction::Ignore(why) => why,
        StripeAction::Record(payment) => {
            let room = payment.room.clone();
            match apply(&app, payment).await {
                Ok(Some(status)) => format!("{room} is {}", status.as_str()),
                Ok(None) => format!("recorded; {room} unchanged"),
                // Retrying would not help: acknowledge, and say why.
                Err(err) if matches!(err.code, ErrorCode::NotFound | ErrorCode::Conflict) => {
                    warn!(%room, error = %err.message, "Stripe payment not applied");
                    format!("not applied: {}", err.message)
                }
                Err(err) => return Err(err),
            }
        }
    };
    let first = app.store.first_delivery("stripe", &event_id, &format_time(Utc::now())).await?;
    info!(event = %event_id, first, %outcome, "Stripe webhook");
    Ok(HttpResponse::Ok().json(WebhookAck { received: true, duplicate: !first, outcome }))
}

/// Stripe's API, or why it cannot be used.
fn stripe_api(app: &AppState) -> Result<&crate::payments::StripeApi, ApiError> {
    payments_enabled(app)?;
    app.stripe
        .as_deref()
        .ok_or_else(|| ApiError::forbidden("Stripe is not configured on this hub (TELEHUB_STRIPE_SECRET_KEY)"))
}

/// The consultation's price, if it is still owed.
fn owed(consultation: &Consultation) -> Result<&Price, ApiError> {
    match &consultation.payment {
        None => Err(ApiError::new(ErrorCode::Conflict, format!("{} has no price: nothing to pay", consultation.id))),
        Some(p) if p.status != PaymentStatus::Unpaid => {
            Err(ApiError::new(ErrorCode::Conflict, format!("{} is {} already", consultation.id, p.status.as_str())))
        }
        Some(p) => Ok(&p.price),
    }
}

fn stripe_failed(err: crate::payments::StripeFailure) -> ApiError {
    warn!(error = %err, "Stripe call failed");
    ApiError::new(ErrorCode::Unavailable, format!("{err}; nothing was charged, retry"))
}

/// Start a Stripe Checkout for an unpaid consultation; the answer's `url`
/// is where to send the patient. Calling again makes no second session (the
/// idempotency key is the consultation and its price).
#[utoipa::path(
    tag = "payments",
    params(("id" = String, Path, description = "consultation id")),
    responses(
        (status = 200, body = CheckoutView),
        (status = 403, description = "not the patient or staff of the clinic; payments or Stripe not configured", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "no price, or paid already", body = ErrorBody),
        (status = 503, description = "Stripe did not answer", body = ErrorBody),
    ),
    security(("api_key" = []), ("staff_token" = []))
)]
#[post("/v1/consultations/{id}/checkout")]
#[instrument(skip(req, app), fields(room = %id))]
pub async fn checkout(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    let api = stripe_api(&app)?;
    let consultation = find(&app, &id).await?;
    caller.require_payer_of(&consultation)?;
    let price = owed(&consultation)?;
    let (Some(success), Some(cancel)) = (&app.settings.payment_success_url, &app.settings.payment_cancel_url) else {
        return Err(ApiError::forbidden(
            "Checkout needs TELEHUB_PAYMENT_SUCCESS_URL and TELEHUB_PAYMENT_CANCEL_URL on this hub",
        ));
    };
    let item = format!("Consultation with {}", consultation.doctor.name);
    let session = api.checkout(&consultation.id, &item, price, success, cancel).await.map_err(stripe_failed)?;
    audit(&app, &caller, Some(&consultation.id), "payment.checkout", serde_json::json!({ "session": session.id }));
    Ok(HttpResponse::Ok().json(CheckoutView { id: session.id, url: session.url }))
}

/// Make a Stripe PaymentIntent for an unpaid consultation, for clinics that
/// take the card with Stripe Elements on their own page. The intent names
/// the consultation in `metadata.consultation`; its webhooks pay it.
#[utoipa::path(
    tag = "payments",
    params(("id" = String, Path, description = "consultation id")),
    responses(
        (status = 200, body = IntentView),
        (status = 403, description = "not the patient or staff of the clinic; payments or Stripe not configured", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "no price, or paid already", body = ErrorBody),
        (status = 503, description = "Stripe did not answer", body = ErrorBody),
    ),
    security(("api_key" = []), ("staff_token" = []))
)]
#[post("/v1/consultations/{id}/payment_intent")]
#[instrument(skip(req, app), fields(room = %id))]
pub async fn intent(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    let api = stripe_api(&app)?;
    let consultation = find(&app, &id).await?;
    caller.require_payer_of(&consultation)?;
    let price = owed(&consultation)?.clone();
    let intent = api.intent(&consultation.id, &price).await.map_err(stripe_failed)?;
    // Known from now on, as pending: its webhooks move it on.
    let pending = NewPayment {
        room: consultation.id.clone(),
        provider: "stripe".into(),
        reference: intent.id.clone(),
        price,
        status: TxStatus::Pending,
        at: format_time(Utc::now()),
    };
    apply(&app, pending).await?;
    audit(&app, &caller, Some(&consultation.id), "payment.intent", serde_json::json!({ "intent": intent.id }));
    Ok(HttpResponse::Ok().json(IntentView { id: intent.id, client_secret: intent.client_secret }))
}

/// Refund a consultation paid through Stripe, in full (staff of the clinic,
/// or the backend): for a consultation that was cancelled, or that the
/// clinic decides to give back. Its payment turns `refunded`, and the room
/// and the queue hear. Payments by bank transfer are given back by
/// transfer, outside the hub.
#[utoipa::path(
    tag = "payments",
    params(("id" = String, Path, description = "consultation id")),
    responses(
        (status = 200, description = "refunded; the consultation's payment state", body = PaymentView),
        (status = 403, description = "not staff of the clinic; payments or Stripe not configured", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "not paid, or not paid through Stripe", body = ErrorBody),
        (status = 503, description = "Stripe did not answer", body = ErrorBody),
    ),
    security(("api_key" = []), ("staff_token" = []))
)]
#[post("/v1/consultations/{id}/refund")]
#[instrument(skip(req, app), fields(room = %id))]
pub async fn refund(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    let api = stripe_api(&app)?;
    let consultation = find(&app, &id).await?;
    caller.require_staff_of(&consultation)?;
    let Some(state) = consultation.payment.as_ref().filter(|p| p.status == PaymentStatus::Paid) else {
        return Err(ApiError::new(ErrorCode::Conflict, format!("{} is not paid: nothing to refund", consultation.id)));
    };
    let Some((provider, reference, paid)) = app.store.succeeded_payment(&consultation.id).await? else {
        return Err(ApiError::new(ErrorCode::Conflict, format!("{} has no recorded payment", consultation.id)));
    };
    if provider != "stripe" {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("{} was paid by {provider}: give it back the same way, outside the hub", consultation.id),
        ));
    }
    let done = api.refund(&consultation.id, &reference).await.map_err(stripe_failed)?;
    let refunded = NewPayment {
        room: consultation.id.clone(),
        provider,
        reference: reference.clone(),
        price: paid,
        status: TxStatus::Refunded,
        at: format_time(Utc::now()),
    };
    let change = apply(&app, refunded).await?;
    let detail = serde_json::json!({ "intent": reference, "refund": done.id, "stripe_status": done.status });
    audit(&app, &caller, Some(&consultation.id), "payment.refund", detail);
    let status = change.unwrap_or(PaymentStatus::Refunded);
    Ok(HttpResponse::Ok().json(PaymentView {
        room: consultation.id.clone(),
        amount: state.price.amount,
        currency: state.price.currency.clone(),
        status: status.as_str().into(),
    }))
}
