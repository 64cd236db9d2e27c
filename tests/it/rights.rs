//! Every right of the protocol, allowed and denied.

use serde_json::{Value, json};

use crate::helpers::*;

async fn as_user(app: &TestApp, sub: &str, role: &str, clinic: &str) -> Client {
    let claims =
        json!({"sub": sub, "name": sub, "role": role, "clinic": clinic, "exp": chrono::Utc::now().timestamp() + 600});
    Client::connect(app, &token_with(claims, SECRET)).await
}

fn code(reply: &Value) -> &str {
    if reply["type"] == "error" { reply["code"].as_str().unwrap() } else { reply["type"].as_str().unwrap() }
}

#[tokio::test]
async fn patient_rights() {
    let app = spawn_app().await;
    app.consultation("c-r1").await;
    app.consultation("c-r2").await;
    let mut patient = app.patient("c-r1").await;
    let mut doctor = app.doctor("c-r1").await;
    doctor.join("c-r1", None).await;
    // Allowed: join own, chat, typing, read, signal, report an ICE failure.
    assert_eq!(code(&patient.request(json!({"type": "join", "room": "c-r1"})).await), "joined");
    assert_eq!(
        code(&patient.request(json!({"type": "chat", "room": "c-r1", "client_id": "a", "text": "hi"})).await),
        "ack"
    );
    assert_eq!(code(&patient.request(json!({"type": "typing", "room": "c-r1", "active": true})).await), "ok");
    assert_eq!(code(&patient.request(json!({"type": "read", "room": "c-r1", "seq": 1})).await), "ok");
    assert_eq!(
        code(
            &patient
                .request(json!({"type": "signal", "room": "c-r1", "to": doctor.session, "data": {"bye": true}}))
                .await
        ),
        "ok"
    );
    // Denied: another patient's room, admit, end, switching media, watching queues.
    assert_eq!(code(&patient.request(json!({"type": "join", "room": "c-r2"})).await), "forbidden");
    assert_eq!(
        code(&patient.request(json!({"type": "chat", "room": "c-r2", "client_id": "b", "text": "hi"})).await),
        "forbidden"
    );
    assert_eq!(code(&patient.request(json!({"type": "admit", "room": "c-r1"})).await), "forbidden");
    assert_eq!(code(&patient.request(json!({"type": "end", "room": "c-r1"})).await), "forbidden");
    assert_eq!(code(&patient.request(json!({"type": "media", "room": "c-r1", "mode": "jitsi"})).await), "forbidden");
    assert_eq!(code(&patient.request(json!({"type": "watch", "queue": "d-c-r1"})).await), "forbidden");
    assert_eq!(code(&patient.request(json!({"type": "join", "room": "c-missing"})).await), "not_found");
    // An ICE failure report moves the room to Jitsi for everyone.
    assert_eq!(code(&patient.request(json!({"type": "media", "room": "c-r1", "event": "ice_failed"})).await), "ok");
    let mode = doctor.recv_type("media_mode").await;
    assert_eq!(mode["mode"], "jitsi");
    assert_eq!(mode["reason"], "ice_failed");
}

#[tokio::test]
async fn doctor_rights() {
    let app = spawn_app().await;
    app.consultation("c-d1").await;
    app.consultation("c-d2").await;
    let mut doctor = app.doctor("c-d1").await;
    let mut patient = app.patient("c-d1").await;
    patient.join("c-d1", None).await;
    // Admit and media work without joining.
    assert_eq!(code(&doctor.request(json!({"type": "admit", "room": "c-d1"})).await), "ok");
    assert_eq!(patient.recv_type("admitted").await, json!({"type": "admitted", "room": "c-d1"}));
    assert_eq!(code(&doctor.request(json!({"type": "admit", "room": "c-d1"})).await), "conflict", "active already");
    assert_eq!(code(&doctor.request(json!({"type": "join", "room": "c-d1"})).await), "joined");
    assert_eq!(
        code(
            &doctor
                .request(json!({"type": "signal", "room": "c-d1", "to": patient.session, "data": {"bye": true}}))
                .await
        ),
        "ok"
    );
    assert_eq!(code(&doctor.request(json!({"type": "media", "room": "c-d1", "mode": "jitsi"})).await), "ok");
    assert_eq!(patient.recv_type("media_mode").await["reason"], "requested");
    assert_eq!(code(&doctor.request(json!({"type": "media", "room": "c-d1", "mode": "p2p"})).await), "ok");
    assert_eq!(patient.recv_type("media_mode").await["mode"], "p2p");
    // Not assigned to c-d2.
    for frame in [
        json!({"type": "join", "room": "c-d2"}),
        json!({"type": "admit", "room": "c-d2"}),
        json!({"type": "end", "room": "c-d2"}),
        json!({"type": "media", "room": "c-d2", "mode": "jitsi"}),
    ] {
        assert_eq!(code(&doctor.request(frame.clone()).await), "forbidden", "{frame}");
    }
    assert_eq!(code(&doctor.request(json!({"type": "checkin", "room": "c-d1"})).await), "forbidden");
    assert_eq!(code(&doctor.request(json!({"type": "end", "room": "c-d1"})).await), "ok");
}

#[tokio::test]
async fn staff_rights() {
    let app = spawn_app().await;
    app.consultation("c-s1").await;
    let mut staff = as_user(&app, "s1", "staff", "k1").await;
    let mut patient = app.patient("c-s1").await;
    patient.join("c-s1", None).await;
    assert_eq!(code(&staff.request(json!({"type": "join", "room": "c-s1"})).await), "joined");
    assert_eq!(
        code(
            &staff
                .request(json!({"type": "chat", "room": "c-s1", "client_id": "s", "text": "from the front desk"}))
                .await
        ),
        "ack"
    );
    // No media for staff.
    assert_eq!(
        code(
            &staff
                .request(json!({"type": "signal", "room": "c-s1", "to": patient.session, "data": {"bye": true}}))
                .await
        ),
        "forbidden"
    );
    assert_eq!(
        code(&staff.request(json!({"type": "media", "room": "c-s1", "event": "ice_failed"})).await),
        "forbidden"
    );
    assert_eq!(code(&staff.request(json!({"type": "media", "room": "c-s1", "mode": "jitsi"})).await), "ok");
    assert_eq!(code(&staff.request(json!({"type": "admit", "room": "c-s1"})).await), "ok");
    // Another clinic's staff has no rights here.
    let mut other = as_user(&app, "s2", "staff", "k2").await;
    assert_eq!(code(&other.request(json!({"type": "join", "room": "c-s1"})).await), "forbidden");
    assert_eq!(code(&other.request(json!({"type": "end", "room": "c-s1"})).await), "forbidden");
    assert_eq!(code(&staff.request(json!({"type": "end", "room": "c-s1"})).await), "ok");
}

#[tokio::test]
async fn display_rights() {
    let app = spawn_app().await;
    app.consultation("c-x1").await;
    let mut display = as_user(&app, "screen-1", "display", "k1").await;
    for frame in [
        json!({"type": "join", "room": "c-x1"}),
        json!({"type": "chat", "room": "c-x1", "client_id": "x", "text": "hi"}),
        json!({"type": "admit", "room": "c-x1"}),
        json!({"type": "end", "room": "c-x1"}),
        json!({"type": "media", "room": "c-x1", "mode": "jitsi"}),
        json!({"type": "checkin", "room": "c-x1"}),
    ] {
        assert_eq!(code(&display.request(frame.clone()).await), "forbidden", "{frame}");
    }
}

#[tokio::test]
async fn a_rooms_claim_narrows_and_grants() {
    let app = spawn_app().await;
    app.consultation("c-claim").await;
    app.consultation("c-other").await;
    let claims = json!({"sub": "guest-1", "name": "Guest", "role": "patient", "rooms": ["c-claim"], "exp": chrono::Utc::now().timestamp() + 600});
    let mut guest = Client::connect(&app, &token_with(claims, SECRET)).await;
    assert_eq!(code(&guest.request(json!({"type": "join", "room": "c-claim"})).await), "joined");
    assert_eq!(code(&guest.request(json!({"type": "join", "room": "c-other"})).await), "forbidden");
}
