//! Client tokens: checking them, and issuing them for `POST /v1/tokens`.
//!
//! Only the configured algorithm is accepted. jsonwebtoken does not know
//! `alg: none` at all, and its validation refuses any algorithm that is not
//! in the list, so a token cannot pick a weaker algorithm than the hub's.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use telehub_actors::Identity;
use telehub_signaling::{Role, UserInfo};

use crate::config::Settings;

/// The claims of a client token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub name: String,
    pub role: Role,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clinic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
}

impl Claims {
    /// The identity rooms check rights against.
    pub fn identity(&self) -> Identity {
        Identity {
            user: UserInfo { id: self.sub.clone(), name: self.name.clone(), role: self.role },
            clinic: self.clinic.clone(),
            rooms: self.rooms.clone(),
        }
    }
}

/// Why a token was refused; the message is safe to show the client.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("missing token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Keys and rules for client tokens.
pub struct TokenKeys {
    algorithm: Algorithm,
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
}

impl TokenKeys {
    /// Keys from the settings; `secret` is the HS256 secret in use (the
    /// configured one, or demo mode's random one).
    pub fn new(settings: &Settings, secret: Option<&str>) -> anyhow::Result<TokenKeys> {
        let (algorithm, decoding, encoding) = match settings.jwt_algorithm.as_str() {
            "HS256" => {
                let secret = secret.ok_or_else(|| anyhow::anyhow!("HS256 needs a jwt_secret"))?;
                anyhow::ensure!(secret.len() >= 16, "jwt_secret must be at least 16 bytes");
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret.as_bytes()),
                    Some(EncodingKey::from_secret(secret.as_bytes())),
                )
            }
            alg @ ("RS256" | "ES256") => {
                let key =
                    settings.jwt_public_key.as_deref().ok_or_else(|| anyhow::anyhow!("{alg} needs jwt_public_key"))?;
                let pem = if key.contains("-----BEGIN") {
                    key.to_owned()
                } else {
                    std::fs::read_to_string(key)
                        .map_err(|e| anyhow::anyhow!("cannot read jwt_public_key {key}: {e}"))?
                };
                if alg == "RS256" {
                    (Algorithm::RS256, DecodingKey::from_rsa_pem(pem.as_bytes())?, None)
                } else {
                    (Algorithm::ES256, DecodingKey::from_ec_pem(pem.as_bytes())?, None)
                }
            }
            other => anyhow::bail!("unsupported jwt_algorithm {other}"),
        };
        let mut validation = Validation::new(algorithm);
        // The leeway allows for a backend's clock running a little ahead
        // (`nbf`, `iat`); `exp` is checked strictly in `verify`.
        validation.leeway = 30;
        validation.validate_nbf = true;
        // `aud` is not a claim of the protocol; a backend that sets one
        // anyway (some JWT libraries do) is not refused for it.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(TokenKeys { algorithm, decoding, encoding, validation })
    }

    /// Checks a token's signature, algorithm and times.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let claims = decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims).map_err(
            |err| match err.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidAlgorithm => TokenError::Invalid("algorithm not accepted".into()),
                ErrorKind::InvalidSignature => TokenError::Invalid("bad signature".into()),
                ErrorKind::ImmatureSignature => TokenError::Invalid("token not valid yet".into()),
                ErrorKind::MissingRequiredClaim(claim) => TokenError::Invalid(format!("missing claim {claim}")),
                ErrorKind::Json(e) => TokenError::Invalid(format!("bad claims: {e}")),
                _ => TokenError::Invalid("malformed token".into()),
            },
        )?;
        // jsonwebtoken does not look at `iat`; a token issued in the future
        // (beyond the clock-skew leeway) is refused like an early `nbf`.
        let now = chrono::Utc::now().timestamp();
        // An expired token is refused as expired, without the leeway: a
        // socket opened on one would only be closed again at once (4001).
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.iat.is_some_and(|iat| iat > now + i64::try_from(self.validation.leeway).unwrap_or(0)) {
            return Err(TokenError::Invalid("token issued in the future".into()));
        }
        Ok(claims)
    }

    /// Signs claims, if the hub holds a signing key (HS256 only).
    pub fn issue(&self, claims: &Claims) -> Option<String> {
        let key = self.encoding.as_ref()?;
        encode(&Header::new(self.algorithm), claims, key).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> TokenKeys {
        TokenKeys::new(&Settings::default(), Some(secret)).unwrap()
    }

    fn claims(exp_in: i64) -> Claims {
        Claims {
            sub: "u1".into(),
            name: "Ana".into(),
            role: Role::Doctor,
            exp: chrono::Utc::now().timestamp() + exp_in,
            iat: None,
            nbf: None,
            clinic: None,
            rooms: None,
        }
    }

    #[test]
    fn round_trip() {
        let k = keys("0123456789abcdef-secret");
        let token = k.issue(&claims(60)).unwrap();
        assert_eq!(k.verify(&token).unwrap().sub, "u1");
    }

    #[test]
    fn refuses_expired_foreign_and_unsigned_tokens() {
        let k = keys("0123456789abcdef-secret");
        assert!(matches!(k.verify(&k.issue(&claims(-3600)).unwrap()), Err(TokenError::Expired)));
        // Within jsonwebtoken's clock-skew leeway, but expired all the same.
        assert!(matches!(k.verify(&k.issue(&claims(-5)).unwrap()), Err(TokenError::Expired)));
        let other = keys("another-secret-of-16b").issue(&claims(60)).unwrap();
        assert!(matches!(k.verify(&other), Err(TokenError::Invalid(_))));
        // alg: none, with an empty signature.
        use base64_helper::b64;
        let none =
            format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&serde_json::to_string(&claims(60)).unwrap()));
        assert!(matches!(k.verify(&none), Err(TokenError::Invalid(_))));
        // Issued an hour from now.
        let future = Claims { iat: Some(chrono::Utc::now().timestamp() + 3600), ..claims(7200) };
        assert!(matches!(k.verify(&k.issue(&future).unwrap()), Err(TokenError::Invalid(_))));
        // HS384 is not the configured algorithm.
        let hs384 =
            encode(&Header::new(Algorithm::HS384), &claims(60), &EncodingKey::from_secret(b"0123456789abcdef-secret"))
                .unwrap();
        assert!(matches!(k.verify(&hs384), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn an_audience_claim_is_not_refused() {
        let k = keys("0123456789abcdef-secret");
        let mut with_aud = serde_json::to_value(claims(60)).unwrap();
        with_aud["aud"] = "telehub".into();
        let token =
            encode(&Header::new(Algorithm::HS256), &with_aud, &EncodingKey::from_secret(b"0123456789abcdef-secret"))
                .unwrap();
        assert_eq!(k.verify(&token).unwrap().sub, "u1");
    }

    /// Base64url without padding, for hand-made tokens.
    mod base64_helper {
        pub fn b64(s: &str) -> String {
            const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let bytes = s.as_bytes();
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
                for i in 0..=chunk.len() {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }
}
