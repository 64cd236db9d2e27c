//! A session that cannot keep up is closed with 4009; the room flows on.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_slow_consumer_is_closed_and_the_room_keeps_flowing() {
    let app = spawn_app_with(|s| {
        s.outbox_frames = 16;
        s.rate_per_s = 100_000.0;
        s.rate_burst = 100_000.0;
    })
    .await;
    app.consultation("c-slow").await;
    let mut doctor = app.doctor("c-slow").await;
    doctor.join("c-slow", None).await;
    let mut slow = app.patient("c-slow").await;
    slow.join("c-slow", None).await;
    let slow_session = slow.session.clone();
    doctor.recv_type("presence").await;

    // The slow patient never reads. The doctor chats with big messages until
    // the hub drops the patient; every message is still acked to the doctor.
    let text = "z".repeat(4000);
    let mut sent = 0;
    let mut dropped = false;
    while !dropped {
        assert!(sent < 20_000, "the slow consumer was never dropped");
        sent += 1;
        doctor.send(json!({"type": "chat", "ref": format!("r{sent}"), "room": "c-slow", "client_id": format!("m{sent}"), "text": text})).await;
        loop {
            let frame = doctor.recv().await;
            match frame["type"].as_str().unwrap() {
                "ack" => break,
                "presence" => {
                    assert_eq!(frame["event"], "leave");
                    assert_eq!(frame["peer"]["session"], slow_session.as_str());
                    dropped = true;
                }
                "message" => {}
                other => panic!("unexpected {other}: {frame}"),
            }
        }
    }
    // The room keeps flowing for everyone else.
    let mut patient = app.patient("c-slow").await;
    let joined = patient.join("c-slow", Some(sent)).await;
    assert_eq!(joined["seq"], sent);
    let ack = doctor.chat("c-slow", "after", "after the slow one").await;
    assert_eq!(ack["seq"], sent + 1);
    assert_eq!(patient.recv_type("message").await["seq"], sent + 1);
    // The slow client, once it reads, finds the close with 4009.
    assert_eq!(slow.closed().await, Some(4009));
}
