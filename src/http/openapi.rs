//! The OpenAPI document, generated from the handlers and views so that it
//! cannot drift from the code.

use actix_web::{HttpResponse, get};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::views::*;
use super::{audit, consultations, demo, health, notifications, payments, queues, tokens};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Telehub HTTP API",
        description = "For clinic backends. Authenticate with `Authorization: Bearer <api key>`; a staff token of the clinic may read. Errors are `{\"error\":{\"code\",\"message\"}}` with the WebSocket protocol's codes."
    ),
    paths(
        consultations::create,
        consultations::get_one,
        consultations::messages,
        consultations::post_message,
        consultations::presence,
        consultations::end,
        payments::confirm,
        payments::stripe,
        payments::checkout,
        payments::intent,
        payments::refund,
        notifications::list,
        notifications::twilio_status,
        queues::get_queue,
        tokens::create,
        audit::list,
        health::healthz,
        health::readyz,
        health::metrics,
        demo::create,
    ),
    components(schemas(ErrorBody, ErrorDetail, CreateConsultation, ConsultationView, MessageView, MessagesPage, TokenRequest, TokenResponse, AuditPage, DemoResponse, QueueView, BankTransferIn, PaymentView, PaymentStateView, WebhookAck, CheckoutView, IntentView, NotificationView)),
    modifiers(&Security)
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("the hub's API key")).build(),
            ),
        );
        components.add_security_scheme(
            "staff_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("a staff client token of the clinic"))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document.
#[get("/v1/openapi.json")]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
