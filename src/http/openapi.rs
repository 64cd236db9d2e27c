//! The OpenAPI document, generated from the handlers and views so that it
//! cannot drift from the code.

use actix_web::{HttpResponse, get};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::Ref;
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
    modifiers(&Security, &CommonAnswers)
)]
pub struct ApiDoc;

/// Answers that the handlers do not list one by one: 401 on every route
/// that takes a credential, 400 on every route with a consultation id,
/// 429 on every route the rate limit counts.
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            for operation in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch] {
                let Some(operation) = operation.as_mut() else { continue };
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    answer(
                        operation,
                        "401",
                        "no credential, or neither the API key nor a valid token (`unauthorized`)",
                    );
                }
                if path.contains("/v1/consultations/{id}") {
                    answer(operation, "400", "an id no consultation can have (`bad_request`), or a bad request");
                }
                if super::limit::counted(path) {
                    answer(operation, "429", "over the rate limit (`rate_limited`): retry after `retry_ms`");
                }
            }
        }
    }
}

/// Adds an error answer with `status` unless the handler lists its own.
fn answer(operation: &mut Operation, status: &str, description: &str) {
    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
        let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
        ResponseBuilder::new().description(description).content("application/json", body).build().into()
    });
}

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
