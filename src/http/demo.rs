//! Demo mode: the launcher page and `POST /v1/demo/consultation`.
//!
//! Demo mode runs only on loopback without a configured secret. It lets a
//! person try a consultation (waiting room, call, chat, display) in a few
//! browser tabs with nothing set up.

use actix_web::{HttpResponse, get, post, web};
use telehub_actors::AuditEntry;

use super::body::OptionalJson;
use super::consultations::{check_id, create_consultation, new_consultation_id};
use super::error::{ApiError, ErrorBody};
use super::tokens::sign;
use super::views::*;
use crate::app::AppState;

fn demo_only(app: &AppState) -> Result<(), ApiError> {
    if app.demo { Ok(()) } else { Err(ApiError::not_found("demo mode is off")) }
}

/// The launcher.
#[get("/")]
pub async fn index(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    demo_only(&app)?;
    super::pages::launcher(&app)
}

/// Demo mode only: create a consultation and a link for each side.
#[utoipa::path(
    operation_id = "create_demo_consultation",
    tag = "demo",
    request_body(content = Option<DemoRequest>, description = "optional: the names to show, and a demo doctor to add a patient for"),
    responses(
        (status = 201, body = DemoResponse),
        (status = 400, body = ErrorBody),
        (status = 404, description = "demo mode is off", body = ErrorBody)
    )
)]
#[post("/v1/demo/consultation")]
pub async fn create(app: web::Data<AppState>, body: OptionalJson<DemoRequest>) -> Result<HttpResponse, ApiError> {
    demo_only(&app)?;
    let request = body.0.unwrap_or_default();
    let id = new_consultation_id();
    let suffix = &id[2..8];
    let patient_name = request.patient_name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "Budi".into());
    let doctor_name = request.doctor_name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| "Dr. Ana".into());
    let doctor_id = match request.doctor_id {
        Some(doctor) if doctor.starts_with("demo-doctor-") => {
            check_id("doctor_id", &doctor)?;
            doctor
        }
        Some(_) => return Err(ApiError::bad_request("doctor_id must be the doctor of a demo consultation")),
        None => format!("demo-doctor-{suffix}"),
    };
    let consultation = create_consultation(
        &app,
        CreateConsultation {
            id: Some(id.clone()),
            patient: PatientIn {
                id: format!("demo-patient-{suffix}"),
                name: patient_name.clone(),
                phone: None,
                email: None,
                locale: None,
            },
            doctor: PersonIn { id: doctor_id.clone(), name: doctor_name.clone() },
            clinic: Some("demo".into()),
            queue: None,
            scheduled_at: None,
            payment: None,
        },
    )
    .await?;
    // The patient's token names this consultation only; the doctor's and
    // the display's reach the doctor's queue and its consultations.
    let token = |sub: String, name: String, role: &str, rooms: Option<Vec<String>>| -> Result<String, ApiError> {
        let request =
            TokenRequest { sub, name, role: role.into(), clinic: Some("demo".into()), rooms, ttl_s: Some(12 * 3600) };
        Ok(sign(&app, request)?.token)
    };
    let queue = consultation.queue.clone();
    let link = |url: String, token: String| DemoLink { url: format!("{url}#token={token}"), token };
    let patient = link(
        format!("/patient?room={id}"),
        token(consultation.patient.id.clone(), patient_name, "patient", Some(vec![id.clone()]))?,
    );
    let doctor = link(format!("/doctor?queue={queue}"), token(doctor_id.clone(), doctor_name, "doctor", None)?);
    let display = link(
        format!("/display?queue={queue}"),
        token(format!("demo-display-{suffix}"), "Waiting-room display".into(), "display", None)?,
    );
    // On the trail like the API's own creations: who made it is the demo.
    app.store.audit(AuditEntry {
        at: chrono::Utc::now(),
        room: Some(id.clone()),
        user: Some("demo".into()),
        action: "demo.create".into(),
        detail: serde_json::json!({ "doctor": doctor_id }),
    });
    Ok(HttpResponse::Created().json(DemoResponse { consultation: consultation.into(), patient, doctor, display }))
}
