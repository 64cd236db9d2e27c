//! `GET /v1/ws`: authenticates, then upgrades to a [`Session`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Deserialize;
use telehub_actors::{SessionRef, outbox};

use super::caller::bearer;
use super::error::ApiError;
use crate::app::AppState;
use crate::auth::TokenError;
use crate::session::Session;

#[derive(Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

/// A new session id: `s_` and 128 random bits in hex.
fn session_id() -> Arc<str> {
    format!("s_{}", uuid::Uuid::new_v4().simple()).into()
}

/// The token is checked before the upgrade, so a bad one gets a plain 401
/// with a JSON body that any HTTP client can read.
#[get("/v1/ws")]
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<AppState>,
    query: web::Query<WsQuery>,
) -> Result<HttpResponse, ApiError> {
    let token = query.token.as_deref().filter(|t| !t.is_empty()).or_else(|| bearer(&req));
    let claims = match token.ok_or(TokenError::Missing).and_then(|t| app.tokens.verify(t)) {
        Ok(claims) => claims,
        Err(err) => {
            app.metrics.upgrades_refused.inc();
            return Err(ApiError::unauthorized(err.to_string()));
        }
    };
    if app.shutdown.is_cancelled() {
        return Err(ApiError::new(telehub_signaling::ErrorCode::Unavailable, "shutting down: connect to another node"));
    }
    let (response, ws, stream) = actix_ws::handle(&req, body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = app.settings.max_frame_bytes;
    let stream = stream.max_frame_size(limit).aggregate_continuations().max_continuation_size(limit);
    let left = claims.exp - chrono::Utc::now().timestamp();
    let expires = Instant::now() + Duration::from_secs(u64::try_from(left.max(0)).unwrap_or(0));
    let (outbox, receiver) = outbox(app.settings.outbox_frames);
    let me = SessionRef { id: session_id(), identity: Arc::new(claims.identity()), outbox };
    let app = app.into_inner();
    app.metrics.sessions_total.inc();
    let tracker = app.sessions.clone();
    actix_web::rt::spawn(tracker.track_future(Session::new(me, app, expires).run(ws, stream, receiver)));
    Ok(response)
}
