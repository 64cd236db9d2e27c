//! A database that cannot be written: `unavailable`, never a false ack, the
//! node stays up, and chat works again once the database is back.

use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::*;

/// SQLite's own lock; a PostgreSQL that goes away has its own test.
#[tokio::test]
async fn a_locked_database_answers_unavailable_and_recovers() {
    let app = spawn_sqlite_app_with(|s| s.database_busy_ms = 200).await;
    app.consultation("c-db").await;
    let mut patient = app.patient("c-db").await;
    patient.join("c-db", None).await;
    let mut doctor = app.doctor("c-db").await;
    doctor.join("c-db", None).await;
    patient.recv_type("presence").await;
    assert_eq!(patient.chat("c-db", "1", "before").await["seq"], 1);
    doctor.recv_type("message").await;
    patient.recv_type("message").await;

    // Another process takes the write lock of the database file and holds it.
    let mut locker = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut locker).await.unwrap();

    let refused =
        patient.request(json!({"type": "chat", "room": "c-db", "client_id": "2", "text": "while locked"})).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "unavailable");
    assert!(app.metric("telehub_store_failed_batches_total").await >= Some(1.0), "the rolled-back batch is counted");
    // Nothing was stored, so nothing was broadcast.
    doctor.assert_quiet().await;
    // The node still serves: reads, joins and pings work.
    let mut other = app.patient("c-db").await;
    assert_eq!(other.join("c-db", None).await["seq"], 1);
    let (status, body) = app.post("/v1/consultations/c-db/messages", json!({"text": "system while locked"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")));
    // Checking in stores a ticket: refused the same way, nothing half done.
    let checkin = other.request(json!({"type": "checkin", "room": "c-db"})).await;
    assert_eq!((checkin["type"].as_str(), checkin["code"].as_str()), (Some("error"), Some("unavailable")), "{checkin}");

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    drop(locker);

    // The client retries with the same client_id: stored now, with the next
    // seq and no gap where the failed attempt was.
    let ack = patient.chat("c-db", "2", "while locked").await;
    assert_eq!(ack["seq"], 2);
    assert_eq!(doctor.recv_type("message").await["seq"], 2);
    let (_, page) = app.get("/v1/consultations/c-db/messages").await;
    let seqs: Vec<i64> = page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2]);
}

/// More messages waiting for storage than `max_pending_messages`: the
/// excess is refused at once with `unavailable` and a `retry_ms`, before it
/// is queued; the others are stored when storage catches up, and a refused
/// message sent again is stored after them.
#[tokio::test]
async fn messages_past_the_pending_limit_are_refused_at_once_and_can_be_sent_again() {
    let app = spawn_sqlite_app_with(|s| {
        s.database_busy_ms = 60_000;
        s.max_pending_messages = 3;
    })
    .await;
    let (mut doctor, mut patient) = app.pair("c-full").await;
    // Another process holds the write lock: the writer waits, messages pile up.
    let mut locker = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut locker).await.unwrap();
    for i in 1..=3 {
        patient.send(json!({"type": "chat", "ref": format!("m{i}"), "room": "c-full", "client_id": i.to_string(), "text": format!("message {i}")})).await;
    }
    eventually("three messages are pending", || async {
        app.metric("telehub_store_pending_messages").await == Some(3.0)
    })
    .await;
    let refused =
        patient.request(json!({"type": "chat", "room": "c-full", "client_id": "4", "text": "message 4"})).await;
    assert_eq!((&refused["type"], &refused["code"]), (&json!("error"), &json!("unavailable")), "{refused}");
    let retry_ms = refused["retry_ms"].as_u64().unwrap_or(0);
    assert!((250..500).contains(&retry_ms), "spread from 250 to 500 ms: {refused}");
    // A system message over HTTP is refused the same way: 503, with when
    // to try again in the body and in `Retry-After`.
    let response = app
        .http
        .post(app.url("/v1/consultations/c-full/messages"))
        .bearer_auth(API_KEY)
        .json(&json!({"text": "the doctor is running late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!((250..500).contains(&body["error"]["retry_ms"].as_u64().unwrap_or(0)), "{body}");
    assert_eq!(app.metric("telehub_store_shed_messages_total").await, Some(2.0));

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    drop(locker);
    // The three waiting are stored in order; the refused one, sent again
    // with its client_id, comes after them.
    let mut acked = Vec::new();
    while acked.len() < 3 {
        let frame = patient.recv_type("ack").await;
        acked.push((frame["ref"].as_str().unwrap().to_owned(), frame["seq"].as_i64().unwrap()));
    }
    acked.sort();
    assert_eq!(acked, [("m1".to_owned(), 1), ("m2".to_owned(), 2), ("m3".to_owned(), 3)]);
    assert_eq!(patient.chat("c-full", "4", "message 4").await["seq"], 4);
    for seq in 1..=4 {
        assert_eq!(doctor.recv_type("message").await["seq"], seq);
    }
    assert_eq!(app.metric("telehub_store_pending_messages").await, Some(0.0));
}

/// The writer's counts on `/metrics`: every acknowledged message is a write
/// of a committed batch, batches hold one write or more, and nothing failed.
#[tokio::test]
async fn metrics_count_the_group_commits() {
    let app = spawn_app().await;
    app.consultation("c-metrics").await;
    let mut patient = app.patient("c-metrics").await;
    patient.join("c-metrics", None).await;
    let before = app.metric("telehub_store_writes_total").await.expect("writes counted");
    for i in 0..20 {
        assert_eq!(patient.chat("c-metrics", &i.to_string(), "hello").await["seq"], i + 1);
    }
    let writes = app.metric("telehub_store_writes_total").await.unwrap();
    let batches = app.metric("telehub_store_batches_total").await.unwrap();
    assert!(writes - before >= 20.0, "{before} then {writes}");
    assert!((1.0..=writes).contains(&batches), "{batches} batches of {writes} writes");
    assert_eq!(app.metric("telehub_store_failed_batches_total").await, Some(0.0));
    assert!(app.metric("telehub_store_busy_seconds_total").await > Some(0.0));
    assert!(app.metric("telehub_store_queued_writes").await.is_some());
    let sqlite = app.db_url.starts_with("sqlite:");
    for series in [
        "telehub_sqlite_log_frames",
        "telehub_sqlite_writer_checkpoints_total",
        "telehub_sqlite_writer_checkpoint_seconds_total",
    ] {
        assert_eq!(app.metric(series).await.is_some(), sqlite, "{series} on {}", app.db_url);
    }
}
