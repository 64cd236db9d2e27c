//! The HTTP side: the API for clinic backends, the WebSocket upgrade, health
//! and metrics, the OpenAPI document and, in demo mode, the demo pages.

pub mod audit;
pub mod body;
pub mod caller;
pub mod consultations;
pub mod demo;
pub mod error;
pub mod health;
pub mod limit;
pub mod notifications;
pub mod openapi;
pub mod pages;
pub mod payments;
pub mod queues;
pub mod tokens;
pub mod views;
pub mod ws;

use actix_web::web;

/// Largest JSON body the API reads.
const MAX_BODY: usize = 64 * 1024;

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(MAX_BODY).error_handler(error::json_error))
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(web::FormConfig::default().limit(MAX_BODY).error_handler(error::form_error))
        .app_data(web::PathConfig::default().error_handler(error::path_error))
        .service(ws::upgrade)
        .service(consultations::create)
        .service(consultations::get_one)
        .service(consultations::messages)
        .service(consultations::post_message)
        .service(consultations::presence)
        .service(consultations::end)
        .service(payments::confirm)
        .service(payments::stripe)
        .service(payments::checkout)
        .service(payments::intent)
        .service(payments::refund)
        .service(notifications::list)
        .service(notifications::twilio_status)
        .service(queues::get_queue)
        .service(tokens::create)
        .service(audit::list)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(openapi::document)
        .service(pages::patient)
        .service(pages::doctor)
        .service(pages::display)
        .service(pages::asset)
        .service(pages::sdk)
        .service(demo::create)
        .service(demo::index)
        .default_service(web::to(not_found));
}

async fn not_found() -> Result<actix_web::HttpResponse, error::ApiError> {
    Err(error::ApiError::not_found("no such route"))
}
