//! `/v1/queues/{queue}`: a waiting room as a doctor sees it.

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Deserialize;
use telehub_actors::{QueueId, View};
use telehub_signaling::Role;
use tracing::instrument;
use utoipa::IntoParams;

use super::caller::Caller;
use super::consultations::check_id;
use super::error::{ApiError, ErrorBody};
use super::views::QueueView;
use crate::app::AppState;

/// Query of `GET /v1/queues/{queue}`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct QueueParams {
    /// The clinic whose queue it is; queues are scoped by clinic. The API
    /// key names it here (none: the queue of consultations without a
    /// clinic); a token's `clinic` claim names it for a person, and a
    /// different one here is 403.
    pub clinic: Option<String>,
}

/// The waiting patients of a queue, in order, with names. The clinic's
/// backend and the queue's doctors see every entry; staff see their clinic's
/// (a `rooms` claim narrows them to the listed consultations).
#[utoipa::path(
    tag = "queues",
    params(("queue" = String, Path, description = "queue name (by default the doctor's id)"), QueueParams),
    responses(
        (status = 200, body = QueueView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "no consultation is in the queue (of that clinic)", body = ErrorBody)
    ),
    security(("api_key" = []), ("staff_token" = []))
)]
#[get("/v1/queues/{queue}")]
#[instrument(skip(req, app, params), fields(queue = %queue))]
pub async fn get_queue(
    req: HttpRequest,
    app: web::Data<AppState>,
    queue: web::Path<String>,
    params: web::Query<QueueParams>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    check_id("queue", &queue)?;
    let asked = params.into_inner().clinic;
    if let Some(clinic) = &asked {
        check_id("clinic", clinic)?;
    }
    let (id, view) = match &caller {
        Caller::Backend => (QueueId::new(asked.as_deref(), &queue), View::Full),
        Caller::Person(claims) => {
            if asked.is_some() && asked != claims.clinic {
                return Err(ApiError::forbidden("a token reads the queues of its own clinic only"));
            }
            let id = QueueId::new(claims.clinic.as_deref(), &queue);
            let view = match (claims.role, &claims.clinic) {
                (Role::Staff, Some(clinic)) => View::staff(clinic, claims.rooms.as_deref()),
                // A doctor's own queue is theirs even before anyone is in it.
                (Role::Doctor, _) if *queue == claims.sub => return answer(&app, &id, View::Full).await,
                (Role::Doctor, _) if app.store.serves(&id, &claims.sub).await? => View::Full,
                (Role::Doctor, _) if !app.store.queue_exists(&id).await? => return Err(unknown(&id)),
                _ => return Err(ApiError::forbidden(format!("no access to queue {queue}"))),
            };
            (id, view)
        }
    };
    if !app.store.queue_exists(&id).await? {
        return Err(unknown(&id));
    }
    answer(&app, &id, view).await
}

fn unknown(queue: &QueueId) -> ApiError {
    ApiError::not_found(format!("no queue {queue}: no consultation is in it"))
}

/// The queue as `view` sees it.
async fn answer(app: &AppState, queue: &QueueId, view: View) -> Result<HttpResponse, ApiError> {
    let frame = app.rooms.queues().snapshot(queue, view).await?;
    let view = QueueView::from_frame(frame)
        .ok_or_else(|| ApiError::new(telehub_signaling::ErrorCode::Internal, "a queue answered with another frame"))?;
    Ok(HttpResponse::Ok().json(view))
}
