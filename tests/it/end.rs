//! Ending a consultation.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn end_tells_everyone_and_makes_the_room_read_only() {
    let app = spawn_app().await;
    let (mut doctor, mut patient) = app.pair("c-end").await;
    let original = patient.chat("c-end", "1", "thank you doctor").await;
    doctor.recv_type("message").await;
    patient.recv_type("message").await;

    // The doctor gets both `ended` and the `ok` of its request.
    doctor.send(json!({"type": "end", "ref": "e", "room": "c-end"})).await;
    let (first, second) = (doctor.recv().await, doctor.recv().await);
    let mut types = [first["type"].as_str().unwrap(), second["type"].as_str().unwrap()];
    types.sort_unstable();
    assert_eq!(types, ["ended", "ok"]);
    let from_doctor = if first["type"] == "ended" { first } else { second };
    for ended in [from_doctor, patient.recv_type("ended").await] {
        assert_eq!(ended["room"], "c-end");
        assert_eq!(ended["by"], json!({"id": "d-c-end", "name": "Ana"}));
        assert!(ended["at"].as_str().unwrap().ends_with('Z'));
    }
    let refused =
        patient.request(json!({"type": "chat", "room": "c-end", "client_id": "2", "text": "one more thing"})).await;
    assert_eq!(refused["code"], "conflict");
    // A message stored before the end, sent again (its ack was lost), gets
    // its original ack, and nobody gets it twice.
    let again =
        patient.request(json!({"type": "chat", "room": "c-end", "client_id": "1", "text": "thank you doctor"})).await;
    assert_eq!(again["type"], "ack", "{again}");
    for field in ["seq", "id", "at"] {
        assert_eq!(again[field], original[field], "{field}");
    }
    let refused =
        patient.request(json!({"type": "signal", "room": "c-end", "to": doctor.session, "data": {"bye": true}})).await;
    assert_eq!(refused["code"], "conflict");
    let refused = doctor.request(json!({"type": "media", "room": "c-end", "mode": "jitsi"})).await;
    assert_eq!(refused["code"], "conflict");
    let refused = doctor.request(json!({"type": "end", "room": "c-end"})).await;
    assert_eq!(refused["code"], "conflict");

    // History stays readable, over WebSocket and HTTP, also after a restart.
    let app = app.restart().await;
    let mut patient = app.patient("c-end").await;
    let joined = patient.join("c-end", None).await;
    assert_eq!(joined["status"], "ended");
    assert_eq!(joined["history"][0]["text"], "thank you doctor");
    assert_eq!(joined["history"].as_array().unwrap().len(), 1, "the resend was not stored again");
    let again =
        patient.request(json!({"type": "chat", "room": "c-end", "client_id": "1", "text": "thank you doctor"})).await;
    assert_eq!((&again["type"], &again["seq"]), (&json!("ack"), &original["seq"]), "after a restart too");
    let (status, consultation) = app.get("/v1/consultations/c-end").await;
    assert_eq!(status, 200);
    assert_eq!(consultation["status"], "ended");
    assert!(consultation["ended_at"].is_string());
    assert_eq!(consultation["ended_by"], json!({"id": "d-c-end", "name": "Ana"}));
    let (status, _) = app.post("/v1/consultations/c-end/end", json!({})).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn the_backend_can_end_a_consultation() {
    let app = spawn_app().await;
    app.consultation("c-end2").await;
    let mut patient = app.patient("c-end2").await;
    patient.join("c-end2", None).await;
    let (status, body) = app.post("/v1/consultations/c-end2/end", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let ended = patient.recv_type("ended").await;
    assert_eq!(ended["by"]["id"], "system");
    let (status, body) = app.post("/v1/consultations/c-end2/messages", json!({"text": "too late"})).await;
    assert_eq!(status, 409, "{body}");
}
