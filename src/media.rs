//! Media credentials: TURN in coturn's `use-auth-secret` scheme, and Jitsi
//! tokens for the fallback.
//!
//! Both are made per session, because both name the user they were issued
//! to: a TURN username is `<expiry>:<user id>` with an HMAC-SHA1 password
//! that coturn can check without asking anyone (the TURN REST API draft);
//! a Jitsi token is an HS256 JWT in the format of Jitsi's Prosody token
//! authentication, where doctors are moderators.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde::Serialize;
use telehub_actors::MediaPolicy;
use telehub_signaling::{IceServer, JitsiInfo, Role, UserInfo};

use crate::config::Settings;

/// The configured media: STUN/TURN servers, TURN secret, Jitsi deployment.
#[derive(Clone)]
pub struct ConfiguredMedia {
    stun: Vec<String>,
    turn: Vec<String>,
    turn_secret: Option<String>,
    turn_ttl_s: u64,
    jitsi: Option<JitsiConfig>,
    mesh_limit: usize,
    /// Video calls are on (`enable_video`); off, no session gets ICE
    /// servers or Jitsi access.
    video: bool,
}

#[derive(Clone)]
struct JitsiConfig {
    domain: String,
    app_id: String,
    secret: jsonwebtoken::EncodingKey,
    audience: String,
    ttl_s: u64,
}

impl ConfiguredMedia {
    pub fn new(settings: &Settings) -> Self {
        let (turn, stun) = settings.ice_urls.iter().cloned().partition(|url| is_turn(url));
        let jitsi = match (&settings.jitsi_domain, &settings.jitsi_app_id, &settings.jitsi_app_secret) {
            (Some(domain), Some(app_id), Some(secret)) => Some(JitsiConfig {
                domain: domain.clone(),
                app_id: app_id.clone(),
                secret: jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
                audience: settings.jitsi_audience.clone(),
                ttl_s: settings.jitsi_ttl_s,
            }),
            _ => None,
        };
        ConfiguredMedia {
            stun,
            turn,
            turn_secret: settings.turn_secret.clone(),
            turn_ttl_s: settings.turn_ttl_s,
            jitsi: jitsi.filter(|_| settings.enable_video),
            // Without video there is no call to move out of the mesh.
            mesh_limit: if settings.enable_video { settings.mesh_limit } else { usize::MAX },
            video: settings.enable_video,
        }
    }
}

fn is_turn(url: &str) -> bool {
    url.starts_with("turn:") || url.starts_with("turns:")
}

/// TURN credentials for `user` valid until `expires` (unix seconds), as
/// coturn checks them with `use-auth-secret`.
pub fn turn_credentials(secret: &str, user: &str, expires: i64) -> (String, String) {
    let username = format!("{expires}:{user}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    (username, BASE64.encode(mac.finalize().into_bytes()))
}

/// The claims of a Jitsi token.
#[derive(Debug, Serialize)]
struct JitsiClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    room: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    context: JitsiContext<'a>,
}

#[derive(Debug, Serialize)]
struct JitsiContext<'a> {
    user: JitsiUser<'a>,
}

/// Jitsi rejects a user whose fields are not all strings, so the optional
/// ones are empty strings rather than absent or null.
#[derive(Debug, Serialize)]
struct JitsiUser<'a> {
    id: &'a str,
    name: &'a str,
    avatar: &'a str,
    email: &'a str,
    moderator: bool,
    /// What Jitsi's token affiliation plugin reads.
    affiliation: &'a str,
}

/// The Jitsi meeting of a consultation. Jitsi compares room names
/// lowercased, so `C-1` and `c-1` would share one meeting; the name is
/// therefore lowercase and one-to-one: a capital becomes `_` and its small
/// letter, `_` becomes `__`, and any byte but a small letter, a digit, `-`
/// or `.` becomes `_.` and two hex digits. Ids that are lowercase already
/// and have no `_` keep their name.
pub fn jitsi_room_name(id: &str) -> String {
    let mut name = String::with_capacity(id.len());
    for byte in id.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' => name.push(char::from(byte)),
            b'A'..=b'Z' => {
                name.push('_');
                name.push(char::from(byte.to_ascii_lowercase()));
            }
            b'_' => name.push_str("__"),
            other => name.push_str(&format!("_.{other:02x}")),
        }
    }
    name
}

impl MediaPolicy for ConfiguredMedia {
    fn ice_servers(&self, user: &UserInfo) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !self.video {
            return servers;
        }
        if !self.stun.is_empty() {
            servers.push(IceServer { urls: self.stun.clone(), username: None, credential: None });
        }
        if !self.turn.is_empty() {
            let (username, credential) = match &self.turn_secret {
                Some(secret) => {
                    let expires = Utc::now().timestamp() + i64::try_from(self.turn_ttl_s).unwrap_or(i64::MAX / 2);
                    let (u, c) = turn_credentials(secret, &user.id, expires);
                    (Some(u), Some(c))
                }
                None => (None, None),
            };
            servers.push(IceServer { urls: self.turn.clone(), username, credential });
        }
        servers
    }

    fn jitsi(&self, room: &str, user: &UserInfo) -> Option<JitsiInfo> {
        let jitsi = self.jitsi.as_ref()?;
        let now = Utc::now().timestamp();
        let moderator = user.role == Role::Doctor;
        let room = jitsi_room_name(room);
        let claims = JitsiClaims {
            iss: &jitsi.app_id,
            aud: &jitsi.audience,
            sub: &jitsi.domain,
            room: room.clone(),
            iat: now,
            nbf: now - 10,
            exp: now + i64::try_from(jitsi.ttl_s).unwrap_or(i64::MAX / 2),
            context: JitsiContext {
                user: JitsiUser {
                    id: &user.id,
                    name: &user.name,
                    avatar: "",
                    email: "",
                    moderator,
                    affiliation: if moderator { "owner" } else { "member" },
                },
            },
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let jwt = match jsonwebtoken::encode(&header, &claims, &jitsi.secret) {
            Ok(jwt) => jwt,
            Err(err) => {
                tracing::error!(error = %err, "Jitsi token not made");
                return None;
            }
        };
        let url = format!("https://{}/{}?jwt={}", jitsi.domain, room, jwt);
        Some(JitsiInfo { domain: jitsi.domain.clone(), room, url, jwt })
    }

    fn mesh_limit(&self) -> usize {
        self.mesh_limit
    }

    fn video(&self) -> bool {
        self.video
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            ice_urls: vec!["stun:127.0.0.1:3478".into(), "turn:127.0.0.1:3478?transport=udp".into()],
            turn_secret: Some("north".into()),
            jitsi_domain: Some("meet.example.org".into()),
            jitsi_app_id: Some("telehub".into()),
            jitsi_app_secret: Some("jitsi-secret".into()),
            ..Settings::default()
        }
    }

    fn user(role: Role) -> UserInfo {
        UserInfo { id: "u42".into(), name: "Ana".into(), role }
    }

    #[test]
    fn turn_credentials_follow_the_rest_api_scheme() {
        // Computed independently: base64(HMAC-SHA1("north", "1700000000:u42")), as coturn does.
        let (username, credential) = turn_credentials("north", "u42", 1_700_000_000);
        assert_eq!(username, "1700000000:u42");
        assert_eq!(credential, "VWMkvu0W3bd/wLtjmXcDVT5+4Vo=");
    }

    #[test]
    fn stun_servers_carry_no_credentials_and_turn_servers_fresh_ones() {
        let media = ConfiguredMedia::new(&settings());
        let servers = media.ice_servers(&user(Role::Patient));
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["stun:127.0.0.1:3478"]);
        assert!(servers[0].username.is_none() && servers[0].credential.is_none());
        let username = servers[1].username.as_deref().unwrap();
        let (expires, who) = username.split_once(':').unwrap();
        assert_eq!(who, "u42");
        let expires: i64 = expires.parse().unwrap();
        let ttl = expires - Utc::now().timestamp();
        assert!((86_000..=86_400).contains(&ttl), "{ttl}");
        assert_eq!(servers[1].credential.as_deref(), Some(turn_credentials("north", "u42", expires).1.as_str()));
    }

    #[test]
    fn jitsi_room_names_are_lowercase_and_never_shared() {
        assert_eq!(jitsi_room_name("c-1001.a"), "c-1001.a");
        assert_eq!(jitsi_room_name("C-1001"), "_c-1001");
        assert_eq!(jitsi_room_name("c_1"), "c__1");
        assert_eq!(jitsi_room_name("c 1"), "c_.201");
        // Ids that differ only in case, or in how `_` reads, get meetings of their own.
        let ids = ["C-X1", "c-x1", "c-X1", "_c-_x1", "__c-__x1", "c_.201", "c 1", "c__1", "c_1"];
        let names: std::collections::HashSet<String> = ids.iter().map(|id| jitsi_room_name(id)).collect();
        assert_eq!(names.len(), ids.len(), "{names:?}");
        assert!(names.iter().all(|name| *name == name.to_lowercase()));
    }

    #[test]
    fn jitsi_tokens_name_the_room_and_make_doctors_moderators() {
        let media = ConfiguredMedia::new(&settings());
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["jitsi"]);
        validation.set_issuer(&["telehub"]);
        let key = jsonwebtoken::DecodingKey::from_secret(b"jitsi-secret");
        for (role, moderator) in [(Role::Doctor, true), (Role::Patient, false)] {
            let info = media.jitsi("c-1001", &user(role)).unwrap();
            assert_eq!(info.room, "c-1001");
            assert_eq!(info.url, format!("https://meet.example.org/c-1001?jwt={}", info.jwt));
            let claims = jsonwebtoken::decode::<serde_json::Value>(&info.jwt, &key, &validation).unwrap().claims;
            assert_eq!(claims["sub"], "meet.example.org");
            assert_eq!(claims["room"], "c-1001");
            assert_eq!(claims["context"]["user"]["id"], "u42");
            assert_eq!(claims["context"]["user"]["email"], "");
            assert_eq!(claims["context"]["user"]["moderator"], moderator);
        }
    }

    #[test]
    fn without_a_deployment_there_is_no_jitsi() {
        let media = ConfiguredMedia::new(&Settings { jitsi_domain: None, ..settings() });
        assert!(media.jitsi("c-1", &user(Role::Doctor)).is_none());
    }
}
