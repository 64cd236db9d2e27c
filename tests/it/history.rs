//! Reconnects with `since`: nothing lost, nothing doubled, also across a
//! restart of the node on the same database.

use serde_json::json;

use crate::helpers::*;

fn seqs(joined: &serde_json::Value) -> Vec<i64> {
    joined["history"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn reconnect_with_since_replays_what_was_missed() {
    let app = spawn_app().await;
    app.consultation("c-hist").await;
    let mut doctor = app.doctor("c-hist").await;
    doctor.join("c-hist", None).await;
    let mut patient = app.patient("c-hist").await;
    patient.join("c-hist", None).await;
    for i in 1..=3 {
        doctor.chat("c-hist", &format!("a{i}"), &format!("before {i}")).await;
    }
    // The patient has seen up to 3, then drops.
    for _ in 0..3 {
        patient.recv_type("message").await;
    }
    drop(patient);
    for i in 4..=8 {
        doctor.chat("c-hist", &format!("a{i}"), &format!("missed {i}")).await;
    }
    let mut patient = app.patient("c-hist").await;
    let joined = patient.join("c-hist", Some(3)).await;
    assert_eq!(seqs(&joined), vec![4, 5, 6, 7, 8]);
    assert_eq!(joined["seq"], 8);
    assert_eq!(joined["history_complete"], true);
    assert_eq!(joined["history"][0]["type"], "message");
    assert_eq!(joined["history"][0]["text"], "missed 4");
    // Live messages continue right after the history.
    doctor.chat("c-hist", "a9", "live").await;
    assert_eq!(patient.recv_type("message").await["seq"], 9);
    // A join without since gets the latest messages.
    let mut fresh = app.patient("c-hist").await;
    assert_eq!(seqs(&fresh.join("c-hist", None).await), (1..=9).collect::<Vec<_>>());
}

#[tokio::test]
async fn history_survives_a_restart_of_the_node() {
    let app = spawn_app().await;
    app.consultation("c-restart").await;
    let mut doctor = app.doctor("c-restart").await;
    doctor.join("c-restart", None).await;
    for i in 1..=60 {
        doctor.send(json!({"type": "chat", "room": "c-restart", "client_id": format!("m{i}"), "text": format!("message {i}")})).await;
    }
    let mut acked = 0;
    while acked < 60 {
        if doctor.recv().await["type"] == "ack" {
            acked += 1;
        }
    }
    drop(doctor);
    let app = app.restart().await;

    let mut patient = app.patient("c-restart").await;
    let joined = patient.join("c-restart", Some(10)).await;
    assert_eq!(seqs(&joined), (11..=60).collect::<Vec<_>>());
    assert_eq!(joined["history_complete"], true);
    // Without since: the last 50.
    let mut other = app.patient("c-restart").await;
    let joined = other.join("c-restart", None).await;
    assert_eq!(seqs(&joined), (11..=60).collect::<Vec<_>>());
    assert_eq!(joined["history_complete"], false, "messages 1 to 10 were not sent");
    // seq continues where it stopped, with no gap.
    let ack = patient.chat("c-restart", "after", "after restart").await;
    assert_eq!(ack["seq"], 61);
    // A resend of a message from before the restart is still recognised.
    let mut doctor = app.doctor("c-restart").await;
    doctor.join("c-restart", Some(61)).await;
    let resent = doctor.chat("c-restart", "m5", "message 5").await;
    assert_eq!(resent["seq"], 5);
}

#[tokio::test]
async fn long_gaps_are_paged() {
    let app = spawn_app_with(|s| {
        s.rate_per_s = 10_000.0;
        s.rate_burst = 10_000.0;
    })
    .await;
    app.consultation("c-page").await;
    let mut doctor = app.doctor("c-page").await;
    doctor.join("c-page", None).await;
    // In rounds of 100, reading as it goes, as a real client would.
    for round in 0..6 {
        let range = (round * 100)..((round + 1) * 100).min(520);
        let count = range.len();
        for i in range {
            doctor.send(json!({"type": "chat", "room": "c-page", "client_id": format!("m{i}"), "text": "x"})).await;
        }
        let mut acked = 0;
        while acked < count {
            if doctor.recv().await["type"] == "ack" {
                acked += 1;
            }
        }
    }
    let app = app.restart().await;
    let mut patient = app.patient("c-page").await;
    let joined = patient.join("c-page", Some(0)).await;
    assert_eq!(seqs(&joined), (1..=500).collect::<Vec<_>>());
    assert_eq!(joined["history_complete"], false);
    // A second join of the same room pages on, without a presence event.
    let next = patient.join("c-page", Some(500)).await;
    assert_eq!(seqs(&next), (501..=520).collect::<Vec<_>>());
    assert_eq!(next["history_complete"], true);
    // And over HTTP.
    let (status, page) = app.get("/v1/consultations/c-page/messages?after=495&limit=10").await;
    assert_eq!(status, 200);
    let page_seqs: Vec<i64> = page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(page_seqs, (496..=505).collect::<Vec<_>>());
    assert_eq!(page["next_after"], 505);
}

/// The rooms gauge of `/metrics`.
async fn rooms_running(app: &TestApp) -> i64 {
    app.metric("telehub_rooms").await.expect("rooms gauge") as i64
}

#[tokio::test]
async fn an_empty_room_stops_and_comes_back_where_it_was() {
    let app = spawn_app_with(|s| s.room_idle_s = 0).await;
    app.consultation("c-idle").await;
    let mut patient = app.patient("c-idle").await;
    patient.join("c-idle", None).await;
    patient.chat("c-idle", "1", "first").await;
    assert_eq!(rooms_running(&app).await, 1);
    let left = patient.request(json!({"type": "leave", "room": "c-idle"})).await;
    assert_eq!(left["type"], "left");
    // The room stops once it is empty; wait for the gauge to say so.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while rooms_running(&app).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the empty room never stopped");
        tokio::task::yield_now().await;
    }
    // A new room actor loads the consultation again: history and seq go on.
    let joined = patient.join("c-idle", Some(0)).await;
    assert_eq!(joined["seq"], 1);
    assert_eq!(joined["history"][0]["text"], "first");
    assert_eq!(patient.chat("c-idle", "2", "second").await["seq"], 2);
    assert_eq!(patient.chat("c-idle", "1", "first").await["seq"], 1, "idempotent across room restarts");
}
