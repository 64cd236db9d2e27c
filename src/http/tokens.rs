//! `POST /v1/tokens`: client tokens for backends that do not sign JWTs.

use actix_web::{HttpRequest, HttpResponse, post, web};
use telehub_signaling::Role;
use tracing::instrument;

use super::caller::Caller;
use super::consultations::{audit, check_id, check_name};
use super::error::{ApiError, ErrorBody};
use super::views::{TokenRequest, TokenResponse};
use crate::app::AppState;
use crate::auth::Claims;

/// Longest token lifetime the hub signs.
const MAX_TTL_S: u64 = 7 * 24 * 3600;

/// Signs a client token with the hub's secret.
pub fn sign(app: &AppState, request: TokenRequest) -> Result<TokenResponse, ApiError> {
    check_id("sub", &request.sub)?;
    if let Some(clinic) = &request.clinic {
        check_id("clinic", clinic)?;
    }
    for room in request.rooms.iter().flatten() {
        check_id("rooms", room)?;
    }
    let role: Role = request.role.parse().map_err(ApiError::bad_request)?;
    let name = check_name("name", &request.name)?;
    let ttl = request.ttl_s.unwrap_or(3600);
    if ttl == 0 || ttl > MAX_TTL_S {
        return Err(ApiError::bad_request(format!("ttl_s must be 1 to {MAX_TTL_S}")));
    }
    let now = chrono::Utc::now().timestamp();
    let exp = now + i64::try_from(ttl).unwrap_or(0);
    let claims = Claims {
        sub: request.sub,
        name,
        role,
        exp,
        iat: Some(now),
        nbf: None,
        clinic: request.clinic,
        rooms: request.rooms,
    };
    let token = app.tokens.issue(&claims).ok_or_else(|| {
        ApiError::new(
            telehub_signaling::ErrorCode::Conflict,
            "this hub verifies tokens with a public key and cannot sign them",
        )
    })?;
    Ok(TokenResponse { token, exp })
}

/// Sign a client token.
#[utoipa::path(
    operation_id = "create_token",
    tag = "tokens",
    request_body = TokenRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "the hub holds no signing key (RS256/ES256)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[post("/v1/tokens")]
#[instrument(skip_all)]
pub async fn create(
    req: HttpRequest,
    app: web::Data<AppState>,
    body: web::Json<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::from_request(&req, &app)?;
    caller.require_backend()?;
    let request = body.into_inner();
    let detail = serde_json::json!({ "sub": request.sub, "role": request.role });
    let token = sign(&app, request)?;
    audit(&app, &caller, None, "api.token", detail);
    Ok(HttpResponse::Ok().json(token))
}
