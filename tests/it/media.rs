//! Media configuration: TURN credentials in `joined`, and the Jitsi fallback
//! with a token of its own for every session.

use serde_json::{Value, json};
use telehub::config::Settings;

use crate::helpers::*;

fn with_media(s: &mut Settings) {
    s.ice_urls = vec!["stun:127.0.0.1:3478".into(), "turn:127.0.0.1:3478?transport=udp".into()];
    s.turn_secret = Some("north".into());
    s.turn_ttl_s = 3600;
    s.jitsi_domain = Some("meet.example.org".into());
    s.jitsi_app_id = Some("telehub".into());
    s.jitsi_app_secret = Some("jitsi-secret".into());
}

/// The claims of a Jitsi token, checked against the configured secret,
/// issuer and audience.
fn jitsi_claims(jwt: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["jitsi"]);
    validation.set_issuer(&["telehub"]);
    let key = jsonwebtoken::DecodingKey::from_secret(b"jitsi-secret");
    jsonwebtoken::decode::<Value>(jwt, &key, &validation).expect("a valid Jitsi token").claims
}

#[tokio::test]
async fn joined_carries_turn_credentials_for_the_user() {
    let app = spawn_app_with(with_media).await;
    app.consultation("c-m1").await;
    let mut patient = app.patient("c-m1").await;
    let joined = patient.join("c-m1", None).await;
    let servers = joined["media"]["ice_servers"].as_array().unwrap();
    assert_eq!(servers[0], json!({"urls": ["stun:127.0.0.1:3478"]}));
    assert_eq!(servers[1]["urls"], json!(["turn:127.0.0.1:3478?transport=udp"]));
    let username = servers[1]["username"].as_str().unwrap();
    let (expires, user) = username.split_once(':').unwrap();
    assert_eq!(user, "p-c-m1");
    let expires: i64 = expires.parse().unwrap();
    let left = expires - chrono::Utc::now().timestamp();
    assert!((3500..=3600).contains(&left), "valid for the configured hour, not {left} s");
    let (_, credential) = telehub::media::turn_credentials("north", "p-c-m1", expires);
    assert_eq!(servers[1]["credential"], credential);
}

#[tokio::test]
async fn ice_failure_moves_everyone_to_jitsi_with_their_own_token() {
    let app = spawn_app_with(with_media).await;
    let (mut doctor, mut patient) = app.pair("C-M2").await;
    // Without a `ref` success is silent, and `media_mode` is the next frame.
    patient.send(json!({"type": "media", "room": "C-M2", "event": "ice_failed"})).await;
    for (client, id, moderator) in [(&mut doctor, "d-C-M2", true), (&mut patient, "p-C-M2", false)] {
        let mode = client.recv_type("media_mode").await;
        assert_eq!((&mode["mode"], &mode["reason"]), (&json!("jitsi"), &json!("ice_failed")));
        let jitsi = &mode["jitsi"];
        assert_eq!((&jitsi["domain"], &jitsi["room"]), (&json!("meet.example.org"), &json!("_c-_m2")));
        let jwt = jitsi["jwt"].as_str().unwrap();
        assert_eq!(jitsi["url"], format!("https://meet.example.org/_c-_m2?jwt={jwt}"));
        let claims = jitsi_claims(jwt);
        assert_eq!((&claims["sub"], &claims["room"]), (&json!("meet.example.org"), &json!("_c-_m2")));
        assert_eq!(claims["context"]["user"]["id"], id);
        assert_eq!(claims["context"]["user"]["moderator"], moderator, "doctors only are moderators");
        assert!(claims["exp"].as_i64().unwrap() > chrono::Utc::now().timestamp());
    }
    // The doctor switches back; a later joiner learns the mode in `joined`.
    doctor.send(json!({"type": "media", "room": "C-M2", "mode": "p2p"})).await;
    let back = patient.recv_type("media_mode").await;
    assert_eq!((&back["mode"], &back["reason"]), (&json!("p2p"), &json!("requested")));
    assert!(back.get("jitsi").is_none());
    doctor.send(json!({"type": "media", "room": "C-M2", "mode": "jitsi"})).await;
    patient.recv_type("media_mode").await;
    let mut second = app.patient("C-M2").await;
    let joined = second.join("C-M2", None).await;
    assert_eq!(joined["media"]["mode"], "jitsi");
    assert_eq!(jitsi_claims(joined["media"]["jitsi"]["jwt"].as_str().unwrap())["context"]["user"]["id"], "p-C-M2");
}

#[tokio::test]
async fn staff_run_the_room_but_get_no_call_credentials() {
    let app = spawn_app_with(with_media).await;
    let (mut doctor, mut patient) = app.pair("c-m4").await;
    let mut staff = Client::connect(&app, &token("s-k1", "Sri", "staff", 600)).await;
    let joined = staff.join("c-m4", None).await;
    assert_eq!(joined["media"]["ice_servers"], json!([]), "no TURN credentials for staff: {joined}");
    // Staff may switch the room to Jitsi; the members get their access,
    // the staff member does not.
    staff.send(json!({"type": "media", "room": "c-m4", "mode": "jitsi"})).await;
    for client in [&mut doctor, &mut patient] {
        let mode = client.recv_type("media_mode").await;
        assert!(mode["jitsi"]["jwt"].is_string(), "{mode}");
    }
    let mode = staff.recv_type("media_mode").await;
    assert_eq!(mode["mode"], "jitsi");
    assert!(mode.get("jitsi").is_none(), "no Jitsi token for staff: {mode}");
    let mut later = Client::connect(&app, &token("s2-k1", "Rina", "staff", 600)).await;
    let joined = later.join("c-m4", None).await;
    assert_eq!(joined["media"]["mode"], "jitsi");
    assert!(joined["media"].get("jitsi").is_none(), "{joined}");
    let mut second = app.patient("c-m4").await;
    assert!(second.join("c-m4", None).await["media"]["jitsi"]["jwt"].is_string(), "members still get theirs");
}

#[tokio::test]
async fn a_call_beyond_the_mesh_limit_moves_to_jitsi() {
    let app = spawn_app_with(|s| {
        with_media(s);
        s.mesh_limit = 2;
    })
    .await;
    let (mut doctor, _patient) = app.pair("c-m3").await;
    // A second session of the patient makes three callers.
    let mut again = app.patient("c-m3").await;
    again.join("c-m3", None).await;
    let mode = doctor.recv_type("media_mode").await;
    assert_eq!((&mode["mode"], &mode["reason"]), (&json!("jitsi"), &json!("mesh_limit")));
    assert_eq!(again.recv_type("media_mode").await["mode"], "jitsi");
}

#[tokio::test]
async fn with_video_off_the_room_is_chat_only_and_says_so() {
    let app = spawn_app_with(|s| {
        with_media(s);
        s.enable_video = false;
    })
    .await;
    let (mut doctor, mut patient) = app.pair("c-m9").await;
    assert_eq!(patient.welcome["video"], false, "{}", patient.welcome);
    let joined = doctor.join("c-m9", None).await;
    assert_eq!(joined["media"]["video"], false, "{joined}");
    assert_eq!(joined["media"]["ice_servers"], json!([]), "no TURN credentials handed out");

    let offer = json!({"type": "signal", "room": "c-m9", "to": patient.session,
                       "data": {"candidate": {"candidate": "candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host", "sdpMid": "0"}}});
    for frame in [
        offer,
        json!({"type": "media", "room": "c-m9", "event": "ice_failed"}),
        json!({"type": "media", "room": "c-m9", "mode": "jitsi"}),
    ] {
        let reply = doctor.request(frame).await;
        assert_eq!((&reply["type"], &reply["code"]), (&json!("error"), &json!("forbidden")), "{reply}");
        assert!(reply["message"].as_str().unwrap().contains("TELEHUB_ENABLE_VIDEO"), "{reply}");
    }
    // Chat is untouched, and nothing reached the patient but the message.
    doctor.chat("c-m9", "v1", "chat still works").await;
    let message = patient.recv_type("message").await;
    assert_eq!(message["text"], "chat still works");
    patient.assert_quiet().await;

    // With video on (the default) neither frame says anything of it.
    let on = spawn_app_with(with_media).await;
    on.consultation("c-m10").await;
    let mut p = on.patient("c-m10").await;
    assert!(p.welcome.get("video").is_none(), "{}", p.welcome);
    let joined = p.join("c-m10", None).await;
    assert!(joined["media"].get("video").is_none(), "{joined}");
}
