//! The HTTP API's rate limit: a token bucket per caller.
//!
//! A caller is its credential (the API key or a valid client token,
//! hashed) or, without one or with one that does not check out, its
//! address. Behind a proxy every anonymous request comes
//! from the proxy's address, which is why credentials come first: the
//! routes that matter carry one. Over the limit a request is answered 429
//! `rate_limited` with `retry_ms` and a `Retry-After` header, and the
//! handler never runs. Health checks, metrics, the pages and the WebSocket
//! upgrade (which has limits of its own) are not counted.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use telehub_signaling::ErrorCode;

use crate::app::AppState;
use crate::http::caller::Caller;
use crate::http::error::ApiError;
use crate::ratelimit::TokenBucket;

/// Buckets kept before idle ones are swept.
const SWEEP_AT: usize = 10_000;

/// Token buckets by caller.
pub struct HttpLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<u64, TokenBucket>>,
}

impl HttpLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        HttpLimiter { rate, burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `caller`, or says how long until one is there.
    pub fn check(&self, caller: u64, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= SWEEP_AT {
            // A bucket that has refilled completely is the same as no bucket.
            let full = Duration::from_secs_f64(self.burst / self.rate);
            buckets.retain(|_, bucket| now.saturating_duration_since(bucket.last_used()) < full);
        }
        buckets.entry(caller).or_insert_with(|| TokenBucket::new(self.rate, self.burst, now)).take(now)
    }
}

/// Whom a request is counted against. Only a credential that checks out
/// (the API key, or a valid token) has a bucket of its own: a made-up
/// one counts against the address, as no credential does, or every new
/// string would be a fresh bucket.
fn caller_key(req: &ServiceRequest, app: &AppState) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match super::caller::bearer(req.request()) {
        Some(credential) if Caller::from_request(req.request(), app).is_ok() => {
            ("credential", credential).hash(&mut hasher)
        }
        _ => ("address", req.peer_addr().map(|a| a.ip())).hash(&mut hasher),
    }
    hasher.finish()
}

/// Whether the limit counts requests to `path` (the OpenAPI document lists
/// 429 for these).
pub(crate) fn counted(path: &str) -> bool {
    path.starts_with("/v1/") && path != "/v1/ws" && path != "/v1/openapi.json"
}

/// The middleware.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let app = req.app_data::<web::Data<AppState>>().cloned();
    if let Some(app) = app
        && counted(req.path())
        && let Err(wait) = app.http_limiter.check(caller_key(&req, &app), Instant::now())
    {
        let retry_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let response = ApiError {
            retry_ms: Some(retry_ms),
            ..ApiError::new(ErrorCode::RateLimited, "too many requests, retry later")
        }
        .error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_has_its_own_bucket() {
        let limiter = HttpLimiter::new(1.0, 2.0);
        let now = Instant::now();
        assert!(limiter.check(1, now).is_ok());
        assert!(limiter.check(1, now).is_ok());
        let wait = limiter.check(1, now).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO, "{wait:?}");
        assert!(limiter.check(2, now).is_ok(), "another caller is not held back");
        assert!(limiter.check(1, now + Duration::from_secs(1)).is_ok(), "a token came back");
    }

    #[test]
    fn only_the_api_is_counted() {
        assert!(counted("/v1/consultations"));
        assert!(!counted("/v1/ws"));
        assert!(!counted("/healthz"));
        assert!(!counted("/sdk/telehub.js"));
    }
}
