//! Demo mode: the pages and `POST /v1/demo/consultation`.
//!
//! Demo mode runs only on loopback without a configured secret. It lets a
//! person try a consultation in two browser tabs with nothing set up.

use actix_web::{HttpResponse, get, post, web};

use super::consultations::{create_consultation, new_consultation_id};
use super::error::{ApiError, ErrorBody};
use super::tokens::sign;
use super::views::*;
use crate::app::AppState;

const INDEX_HTML: &str = include_str!("../../web/demo/index.html");
const ROOM_HTML: &str = include_str!("../../web/demo/room.html");
const APP_JS: &str = include_str!("../../web/demo/app.js");
const STYLE_CSS: &str = include_str!("../../web/demo/style.css");

fn demo_only(app: &AppState) -> Result<(), ApiError> {
    if app.demo { Ok(()) } else { Err(ApiError::not_found("demo mode is off")) }
}

fn page(app: &AppState, content_type: &str, body: &'static str) -> Result<HttpResponse, ApiError> {
    demo_only(app)?;
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body))
}

#[get("/")]
pub async fn index(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    page(&app, "text/html; charset=utf-8", INDEX_HTML)
}

#[get("/demo/room")]
pub async fn room(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    page(&app, "text/html; charset=utf-8", ROOM_HTML)
}

#[get("/demo/app.js")]
pub async fn app_js(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    page(&app, "text/javascript; charset=utf-8", APP_JS)
}

#[get("/demo/style.css")]
pub async fn style_css(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    page(&app, "text/css; charset=utf-8", STYLE_CSS)
}

/// Demo mode only: create a consultation and a link for each side.
#[utoipa::path(
    tag = "demo",
    request_body = DemoRequest,
    responses((status = 201, body = DemoResponse), (status = 404, description = "demo mode is off", body = ErrorBody))
)]
#[post("/v1/demo/consultation")]
pub async fn create(app: web::Data<AppState>, body: Option<web::Json<DemoRequest>>) -> Result<HttpResponse, ApiError> {
    demo_only(&app)?;
    let request = body.map(web::Json::into_inner).unwrap_or_default();
    let id = new_consultation_id();
    let suffix = &id[2..8];
    let patient_name = request.patient_name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "Budi".into());
    let doctor_name = request.doctor_name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "Dr. Ana".into());
    let consultation = create_consultation(
        &app,
        CreateConsultation {
            id: Some(id.clone()),
            patient: PatientIn {
                id: format!("demo-patient-{suffix}"),
                name: patient_name.clone(),
                phone: None,
                email: None,
            },
            doctor: PersonIn { id: format!("demo-doctor-{suffix}"), name: doctor_name.clone() },
            clinic: Some("demo".into()),
            queue: None,
            scheduled_at: None,
            payment: None,
        },
    )
    .await?;
    let link = |sub: String, name: String, role: &str| -> Result<DemoLink, ApiError> {
        let token = sign(
            &app,
            TokenRequest {
                sub,
                name,
                role: role.into(),
                clinic: Some("demo".into()),
                rooms: Some(vec![id.clone()]),
                ttl_s: Some(12 * 3600),
            },
        )?
        .token;
        Ok(DemoLink { url: format!("/demo/room?room={id}&token={token}"), token })
    };
    let patient = link(consultation.patient.id.clone(), patient_name, "patient")?;
    let doctor = link(consultation.doctor.id.clone(), doctor_name, "doctor")?;
    Ok(HttpResponse::Created().json(DemoResponse { consultation: consultation.into(), patient, doctor }))
}
