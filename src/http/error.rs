//! HTTP errors: the protocol's error codes with their statuses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use telehub_actors::{Refusal, StoreError};
use telehub_signaling::ErrorCode;
use utoipa::ToSchema;

/// An error answered as `{"error":{"code","message"}}`, with `retry_ms`
/// (and a `Retry-After` header) when trying again later will pass.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_ms: Option<u64>,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The code and message of an error.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// One of the protocol's codes: bad_request, unauthorized, forbidden,
    /// not_found, conflict, too_large, rate_limited, unavailable, internal.
    #[schema(example = "not_found")]
    pub code: String,
    pub message: String,
    /// When to try again: with `rate_limited`, and with `unavailable` from
    /// a node that is overloaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_ms: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), retry_ms: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError { code: r.code, message: r.message, retry_ms: r.retry_ms }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
            StoreError::Unavailable(message) => {
                tracing::warn!(%message, "storage unavailable");
                ApiError::new(ErrorCode::Unavailable, "storage unavailable, retry")
            }
            StoreError::Overloaded { retry_ms } => ApiError {
                retry_ms: Some(retry_ms),
                ..ApiError::new(ErrorCode::Unavailable, format!("storage is overloaded: retry in {retry_ms} ms"))
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(ms) = self.retry_ms {
            response.insert_header(("Retry-After", ms.div_ceil(1000).to_string()));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_owned(),
                message: self.message.clone(),
                retry_ms: self.retry_ms,
            },
        })
    }
}

/// Turns actix's own extractor errors (bad JSON, bad query) into the
/// protocol's `bad_request` body.
///
/// Every route that reads a `web::Json` body needs a caller (the public
/// ones read [`super::body::OptionalJson`] or a raw body), so a caller who
/// does not authenticate is told that first: `401`, whatever the body.
pub fn json_error(err: actix_web::error::JsonPayloadError, req: &actix_web::HttpRequest) -> actix_web::Error {
    if let Some(app) = req.app_data::<actix_web::web::Data<crate::app::AppState>>()
        && let Err(unknown) = super::caller::Caller::from_request(req, app)
    {
        return unknown.into();
    }
    body_error(err).into()
}

/// What is wrong with a JSON body: too large, or not what was asked for.
pub(crate) fn body_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError;
    match &err {
        JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::new(ErrorCode::TooLarge, format!("body over {limit} bytes"))
        }
        _ => ApiError::bad_request(err.to_string()),
    }
}

/// Like [`json_error`], for query strings.
pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::bad_request(err.to_string()).into()
}

/// Like [`json_error`], for form bodies (Twilio's callbacks).
pub fn form_error(err: actix_web::error::UrlencodedError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    use actix_web::error::UrlencodedError;
    let api = match &err {
        UrlencodedError::Overflow { limit, .. } => {
            ApiError::new(ErrorCode::TooLarge, format!("body over {limit} bytes"))
        }
        _ => ApiError::bad_request(err.to_string()),
    };
    api.into()
}

/// Like [`json_error`], for path segments.
pub fn path_error(err: actix_web::error::PathError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::bad_request(err.to_string()).into()
}
