//! Chat: ack, broadcast in order, idempotent resends.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn two_users_chat_in_seq_order() {
    two_users_chat(spawn_app().await).await;
}

/// The same conversation with rooms on a pool of threads of their own
/// instead of their first session's HTTP worker.
#[tokio::test]
async fn rooms_on_dedicated_threads_chat_the_same() {
    two_users_chat(spawn_app_with(|s| s.room_threads = 2).await).await;
}

async fn two_users_chat(app: TestApp) {
    app.consultation("c-chat").await;
    let mut patient = app.patient("c-chat").await;
    let mut doctor = app.doctor("c-chat").await;
    patient.join("c-chat", None).await;
    doctor.join("c-chat", None).await;
    patient.recv_type("presence").await;

    let ack = patient.chat("c-chat", "m1", "  Hello doctor  ").await;
    assert_eq!(ack["seq"], 1);
    assert!(ack["id"].as_str().unwrap().starts_with("m_"));
    let own = patient.recv().await;
    assert_eq!(own["type"], "message");
    assert_eq!(own["text"], "Hello doctor", "text is trimmed");
    assert_eq!(own["client_id"], "m1");
    assert_eq!(own["id"], ack["id"]);
    assert_eq!(own["from"], json!({"id": "p-c-chat", "name": "Budi", "role": "patient"}));
    assert_eq!(own["kind"], "text");

    let seen = doctor.recv().await;
    assert_eq!(seen, own, "every session gets the same message");

    // Both send a burst; each session sees one gapless, increasing sequence.
    for i in 0..20 {
        patient
            .send(json!({"type": "chat", "room": "c-chat", "client_id": format!("p{i}"), "text": format!("p {i}")}))
            .await;
        doctor
            .send(json!({"type": "chat", "room": "c-chat", "client_id": format!("d{i}"), "text": format!("d {i}")}))
            .await;
    }
    for client in [&mut patient, &mut doctor] {
        let mut seqs = Vec::new();
        let mut acks = 0;
        while seqs.len() < 40 || acks < 20 {
            let frame = client.recv().await;
            match frame["type"].as_str().unwrap() {
                "message" => seqs.push(frame["seq"].as_i64().unwrap()),
                "ack" => acks += 1,
                other => panic!("unexpected {other}: {frame}"),
            }
        }
        assert_eq!(seqs, (2..=41).collect::<Vec<_>>());
        assert_eq!(acks, 20);
    }
}

#[tokio::test]
async fn a_resend_gets_the_original_ack_and_no_second_broadcast() {
    let app = spawn_app().await;
    app.consultation("c-idem").await;
    let mut patient = app.patient("c-idem").await;
    let mut doctor = app.doctor("c-idem").await;
    patient.join("c-idem", None).await;
    doctor.join("c-idem", None).await;
    patient.recv_type("presence").await;

    let first = patient.chat("c-idem", "same-id", "once").await;
    patient.recv_type("message").await;
    doctor.recv_type("message").await;

    let again = patient.chat("c-idem", "same-id", "once, again").await;
    for field in ["seq", "id", "at"] {
        assert_eq!(again[field], first[field], "{field}");
    }
    // The resend is not broadcast: the next thing either side sees is the
    // reply to its ping.
    patient.assert_quiet().await;
    doctor.assert_quiet().await;

    // The same client_id from another sender is another message.
    let other = doctor.chat("c-idem", "same-id", "mine").await;
    assert_eq!(other["seq"], 2);

    // Also over a new connection, after a reconnect.
    drop(patient);
    let mut patient = app.patient("c-idem").await;
    patient.join("c-idem", Some(2)).await;
    let resent = patient.chat("c-idem", "same-id", "after reconnect").await;
    assert_eq!(resent["seq"], first["seq"]);
    let (_, page) = app.get("/v1/consultations/c-idem/messages").await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn typing_and_read_markers_reach_the_others() {
    let app = spawn_app().await;
    app.consultation("c-typing").await;
    let mut patient = app.patient("c-typing").await;
    let mut doctor = app.doctor("c-typing").await;
    patient.join("c-typing", None).await;
    doctor.join("c-typing", None).await;
    patient.recv_type("presence").await;

    let ok = patient.request(json!({"type": "typing", "room": "c-typing", "active": true})).await;
    assert_eq!(ok["type"], "ok");
    let typing = doctor.recv().await;
    assert_eq!(
        typing,
        json!({"type": "typing", "room": "c-typing", "user": {"id": "p-c-typing", "name": "Budi"}, "active": true})
    );
    // Without a ref, success is silent.
    patient.send(json!({"type": "typing", "room": "c-typing", "active": false})).await;
    patient.assert_quiet().await;
    assert_eq!(doctor.recv().await["active"], false);

    for i in 0..3 {
        doctor.chat("c-typing", &format!("d{i}"), "hi").await;
    }
    let read = patient.request(json!({"type": "read", "room": "c-typing", "seq": 2})).await;
    assert_eq!(read["type"], "ok");
    assert_eq!(
        doctor.recv_type("read").await,
        json!({"type": "read", "room": "c-typing", "user": {"id": "p-c-typing"}, "seq": 2})
    );
    // A marker never moves back.
    patient.request(json!({"type": "read", "room": "c-typing", "seq": 1})).await;
    patient.request(json!({"type": "read", "room": "c-typing", "seq": 3})).await;
    assert_eq!(doctor.recv_type("read").await["seq"], 3);
    doctor.assert_quiet().await;
}

#[tokio::test]
async fn resends_in_one_burst_are_stored_once() {
    let app = spawn_app().await;
    app.consultation("c-burst").await;
    let mut patient = app.patient("c-burst").await;
    patient.join("c-burst", None).await;
    // Written back to back, these usually share one group-commit batch.
    for i in 0..5 {
        patient
            .send(
                json!({"type": "chat", "ref": format!("b{i}"), "room": "c-burst", "client_id": "dup", "text": "hello"}),
            )
            .await;
        patient.send(json!({"type": "chat", "ref": format!("u{i}"), "room": "c-burst", "client_id": format!("u{i}"), "text": "unique"})).await;
    }
    let mut dup_seqs = Vec::new();
    let mut messages = Vec::new();
    while dup_seqs.len() < 5 || messages.len() < 6 {
        let frame = patient.recv().await;
        match frame["type"].as_str().unwrap() {
            "ack" if frame["ref"].as_str().unwrap().starts_with('b') => dup_seqs.push(frame["seq"].as_i64().unwrap()),
            "ack" => {}
            "message" => messages.push(frame["seq"].as_i64().unwrap()),
            other => panic!("{other}"),
        }
    }
    assert!(dup_seqs.iter().all(|s| *s == dup_seqs[0]), "{dup_seqs:?}");
    assert_eq!(messages, (1..=6).collect::<Vec<_>>(), "one copy of the resent message and five others, gapless");
    patient.assert_quiet().await;
}

#[tokio::test]
async fn read_markers_come_back_in_joined_also_after_a_restart() {
    let app = spawn_app().await;
    let (mut doctor, mut patient) = app.pair("c-marks").await;
    for i in 0..3 {
        patient.chat("c-marks", &format!("m{i}"), "hello").await;
    }
    let read = doctor.request(json!({"type": "read", "room": "c-marks", "seq": 2})).await;
    assert_eq!(read["type"], "ok", "{read}");
    patient.recv_type("read").await;

    let mut again = app.patient("c-marks").await;
    let joined = again.join("c-marks", None).await;
    assert_eq!(joined["read"], json!([{"user": {"id": "d-c-marks"}, "seq": 2}]));

    drop((doctor, patient, again));
    let app = app.restart().await;
    let mut after = app.patient("c-marks").await;
    let joined = after.join("c-marks", None).await;
    assert_eq!(joined["read"], json!([{"user": {"id": "d-c-marks"}, "seq": 2}]), "loaded from storage");
    // A marker below the stored one does not move it back, even in a new room.
    let mut doctor = app.doctor("c-marks").await;
    doctor.join("c-marks", None).await;
    after.recv_type("presence").await;
    assert_eq!(doctor.request(json!({"type": "read", "room": "c-marks", "seq": 1})).await["type"], "ok");
    after.assert_quiet().await;
}
