//! Who is calling the HTTP API: the clinic's backend (API key) or a person
//! with a client token.

use actix_web::HttpRequest;
use telehub_signaling::Role;

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::{Claims, TokenError};
use crate::store::Consultation;

/// An authenticated caller.
#[derive(Debug)]
pub enum Caller {
    /// The clinic's backend, with the API key: may do everything.
    Backend,
    /// A client token (staff, or a member of a consultation): may read.
    Person(Claims),
}

/// The bearer token of a request, from `Authorization: Bearer …`.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Whether a token's `rooms` claim lets it reach `room` (no claim: every room).
fn listed(claims: &Claims, room: &str) -> bool {
    claims.rooms.as_ref().is_none_or(|rooms| rooms.iter().any(|r| r == room))
}

/// Compares secrets in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Caller {
    /// Authenticates a request.
    pub fn from_request(req: &HttpRequest, app: &AppState) -> Result<Caller, ApiError> {
        let Some(token) = bearer(req) else {
            return Err(ApiError::unauthorized("missing Authorization: Bearer header"));
        };
        if let Some(key) = &app.api_key
            && constant_time_eq(token.as_bytes(), key.as_bytes())
        {
            return Ok(Caller::Backend);
        }
        match app.tokens.verify(token) {
            Ok(claims) => Ok(Caller::Person(claims)),
            Err(TokenError::Expired) => Err(ApiError::unauthorized("token expired")),
            Err(_) => Err(ApiError::unauthorized("invalid API key or token")),
        }
    }

    /// Only the clinic's backend may change things.
    pub fn require_backend(&self) -> Result<(), ApiError> {
        match self {
            Caller::Backend => Ok(()),
            Caller::Person(_) => Err(ApiError::forbidden("this needs the API key")),
        }
    }

    /// The clinic's backend, or staff of the consultation's clinic (a
    /// `rooms` claim narrows them to the listed consultations).
    pub fn require_staff_of(&self, consultation: &Consultation) -> Result<(), ApiError> {
        match self {
            Caller::Backend => Ok(()),
            Caller::Person(claims)
                if claims.role == Role::Staff
                    && claims.clinic.is_some()
                    && claims.clinic == consultation.clinic
                    && listed(claims, &consultation.id) =>
            {
                Ok(())
            }
            Caller::Person(_) => {
                Err(ApiError::forbidden(format!("only staff of its clinic may do this to {}", consultation.id)))
            }
        }
    }

    /// The backend, staff of the clinic, or the consultation's own patient
    /// may start paying for it.
    pub fn require_payer_of(&self, consultation: &Consultation) -> Result<(), ApiError> {
        match self {
            Caller::Person(claims) if claims.role == Role::Patient => {
                let listed = listed(claims, &consultation.id);
                if listed && claims.sub == consultation.patient.id {
                    Ok(())
                } else {
                    Err(ApiError::forbidden(format!("only its own patient may pay for {}", consultation.id)))
                }
            }
            _ => self.require_staff_of(consultation),
        }
    }

    /// Staff of the consultation's clinic, or its own patient or doctor,
    /// may read it.
    pub fn may_read(&self, consultation: &Consultation) -> Result<(), ApiError> {
        let Caller::Person(claims) = self else { return Ok(()) };
        // The same membership rule as rooms use (`telehub_actors::may`): a
        // `rooms` claim narrows, and for patients and doctors it also grants.
        let listed = listed(claims, &consultation.id);
        let granted = claims.rooms.is_some();
        let allowed = listed
            && match claims.role {
                Role::Staff => claims.clinic.is_some() && claims.clinic == consultation.clinic,
                Role::Patient => granted || consultation.patient.id == claims.sub,
                Role::Doctor => granted || consultation.doctor.id == claims.sub,
                Role::Display => false,
            };
        if allowed { Ok(()) } else { Err(ApiError::forbidden(format!("no access to {}", consultation.id))) }
    }

    /// The user id for the audit trail.
    pub fn audit_user(&self) -> String {
        match self {
            Caller::Backend => "api".into(),
            Caller::Person(claims) => claims.sub.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_whole_secrets() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
