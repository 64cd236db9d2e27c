//! `GET /v1/audit`: the audit trail.

use actix_web::{HttpRequest, HttpResponse, get, web};
use telehub_signaling::Role;

use super::caller::Caller;
use super::consultations::readable;
use super::error::{ApiError, ErrorBody};
use super::views::{AuditPage, AuditParams, AuditView};
use crate::app::AppState;
use crate::store::AuditQuery;

/// The audit trail: joins, leaves, admits, ends, media switches, API calls.
#[utoipa::path(
    operation_id = "list_audit",
    tag = "audit",
    params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = []), ("staff_token" = []))
)]
#[get("/v1/audit")]
pub async fn list(
    req: HttpRequest,
    app: web::Data<AppState>,
    query: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    let query = query.into_inner();
    // Staff read the trail of their clinic's consultations: of one they
    // name, or of all of them. A token narrowed to some consultations
    // (`rooms`) names one at a time.
    let mut clinic = None;
    if let Caller::Person(claims) = &caller {
        if claims.role != Role::Staff {
            return Err(ApiError::forbidden("only the API key or staff of the clinic may read the audit trail"));
        }
        match query.room.as_deref() {
            Some(room) => {
                readable(&app, &caller, room).await?;
            }
            None if claims.rooms.is_some() => {
                return Err(ApiError::forbidden("this token reaches some consultations only: name one (room=)"));
            }
            None => {
                let mine = claims.clinic.clone();
                clinic = Some(mine.ok_or_else(|| ApiError::forbidden("a staff token without a clinic reads nothing"))?);
            }
        }
    }
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request("limit must be 1 to 1000"));
    }
    let records = app
        .store
        .audit_log(AuditQuery { room: query.room, user: query.user, clinic, after: query.after, limit: limit + 1 })
        .await?;
    let more = records.len() > limit as usize;
    let entries: Vec<AuditView> = records.into_iter().take(limit as usize).map(AuditView::from).collect();
    let next_after = if more { entries.last().map(|e| e.id) } else { None };
    Ok(HttpResponse::Ok().json(AuditPage { entries, next_after }))
}
