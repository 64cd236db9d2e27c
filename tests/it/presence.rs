//! Presence: join and leave, one entry per session, also when a socket
//! vanishes without a close frame or stops answering pings.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn join_and_leave_are_seen_by_the_others() {
    let app = spawn_app().await;
    app.consultation("c-pres").await;
    let mut doctor = app.doctor("c-pres").await;
    let joined = doctor.join("c-pres", None).await;
    assert_eq!(joined["peers"], json!([]));
    assert_eq!(joined["status"], "waiting");
    assert_eq!(joined["media"]["mode"], "p2p");

    let mut patient = app.patient("c-pres").await;
    let joined = patient.join("c-pres", None).await;
    let peers = joined["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["session"], doctor.session.as_str());
    assert_eq!(peers[0]["user"], json!({"id": "d-c-pres", "name": "Ana", "role": "doctor"}));
    assert_eq!(peers[0]["state"], "online");

    let presence = doctor.recv().await;
    assert_eq!(presence["type"], "presence");
    assert_eq!(presence["event"], "join");
    assert_eq!(presence["peer"]["session"], patient.session.as_str());

    // A second session of the same user is a second peer.
    let mut patient2 = app.patient("c-pres").await;
    let joined = patient2.join("c-pres", None).await;
    assert_eq!(joined["peers"].as_array().unwrap().len(), 2);
    assert_eq!(doctor.recv().await["peer"]["session"], patient2.session.as_str());
    let (_, presence_view) = app.get("/v1/consultations/c-pres/presence").await;
    assert_eq!(presence_view["sessions"].as_array().unwrap().len(), 3);

    let left = patient.request(json!({"type": "leave", "room": "c-pres"})).await;
    assert_eq!(left["type"], "left");
    assert_eq!(left["room"], "c-pres");
    let leave = doctor.recv().await;
    assert_eq!(leave["event"], "leave");
    assert_eq!(leave["peer"]["session"], patient.session.as_str());
    // After leaving, chat needs a new join.
    let refused = patient.request(json!({"type": "chat", "room": "c-pres", "client_id": "x", "text": "hi"})).await;
    assert_eq!(refused["code"], "forbidden");
}

#[tokio::test]
async fn a_dropped_socket_leaves_the_room() {
    let app = spawn_app().await;
    let (mut doctor, patient) = app.pair("c-drop").await;
    let session = patient.session.clone();
    // Drop the TCP connection without a close frame.
    let stream = patient.ws.into_inner();
    drop(stream);
    let leave = doctor.recv().await;
    assert_eq!(leave["type"], "presence");
    assert_eq!(leave["event"], "leave");
    assert_eq!(leave["peer"]["session"], session.as_str());
}

#[tokio::test]
async fn a_silent_peer_is_dropped_by_the_heartbeat() {
    let app = spawn_app_with(|s| s.heartbeat_ms = 200).await;
    let (mut doctor, patient) = app.pair("c-hb").await;
    // The patient stops reading, so it never answers a ping; the doctor
    // keeps reading (its client answers pings) and must stay.
    let session = patient.session.clone();
    let leave = doctor.recv_type("presence").await;
    assert_eq!(leave["event"], "leave");
    assert_eq!(leave["peer"]["session"], session.as_str());
    doctor.assert_quiet().await;
    drop(patient);
}
