//! `/v1/queues/{queue}`: a waiting room as a doctor sees it.

use actix_web::{HttpRequest, HttpResponse, get, web};
use telehub_signaling::Role;
use tracing::instrument;

use super::caller::Caller;
use super::consultations::check_id;
use super::error::{ApiError, ErrorBody};
use super::views::QueueView;
use crate::app::AppState;

/// The waiting patients of a queue, in order, with names. The clinic's
/// backend and the queue's doctors see every entry; staff see their clinic's.
#[utoipa::path(
    tag = "queues",
    params(("queue" = String, Path, description = "queue name (by default the doctor's id)")),
    responses((status = 200, body = QueueView), (status = 403, body = ErrorBody)),
    security(("api_key" = []), ("staff_token" = []))
)]
#[get("/v1/queues/{queue}")]
#[instrument(skip(req, app), fields(queue = %queue))]
pub async fn get_queue(
    req: HttpRequest,
    app: web::Data<AppState>,
    queue: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_id("queue", &queue)?;
    let caller = Caller::from_request(&req, &app)?;
    let queues = app.rooms.queues();
    let frame = match &caller {
        Caller::Backend => queues.snapshot(&queue).await?,
        Caller::Person(claims) => match (claims.role, &claims.clinic) {
            (Role::Staff, Some(clinic)) => queues.snapshot_for_clinic(&queue, clinic).await?,
            (Role::Doctor, _) if *queue == claims.sub || app.store.serves(&queue, &claims.sub).await? => {
                queues.snapshot(&queue).await?
            }
            _ => return Err(ApiError::forbidden(format!("no access to queue {queue}"))),
        },
    };
    let view = QueueView::from_frame(frame)
        .ok_or_else(|| ApiError::new(telehub_signaling::ErrorCode::Internal, "a queue answered with another frame"))?;
    Ok(HttpResponse::Ok().json(view))
}
