//! Two nodes on one PostgreSQL database: what the store must hold when
//! several nodes write to one room. (Delivery across nodes needs the broker;
//! this is about what is stored and acknowledged.)

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::*;

/// A PostgreSQL server: the suite's, or one of this test's own.
pub struct Server {
    pub url: String,
    dir: Option<tempfile::TempDir>,
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh");

impl Server {
    /// The suite's server if it has one, else one started for this test.
    pub fn get() -> Server {
        match postgres_server() {
            Some(url) => Server { url, dir: None },
            None => Server::own(),
        }
    }

    /// A server of this test's own, which it may stop and start.
    pub(crate) fn own() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(SCRIPT).arg("start").arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "PostgreSQL did not start: {}", String::from_utf8_lossy(&out.stderr));
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Server { url, dir: Some(dir) }
    }

    pub(crate) fn run(&self, command: &str) {
        let dir = self.dir.as_ref().expect("only a server of this test's own is stopped and started");
        let status = std::process::Command::new(SCRIPT).arg(command).arg(dir.path()).status().unwrap();
        assert!(status.success(), "postgres.sh {command} failed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::process::Command::new(SCRIPT).arg("stop").arg(dir.path()).status();
        }
    }
}

/// A store on `database` outside any node, as a second node's writer.
async fn bare_store(database: &str) -> std::sync::Arc<dyn telehub::store::Store> {
    let limits = telehub::store::WriteLimits::waiting(std::time::Duration::from_secs(5));
    telehub::store::connect(database, limits, telehub::store::OutboxPolicy::off()).await.unwrap()
}

async fn node(database_url: &str) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    settings.database_url = database_url.to_owned();
    start(settings, dir).await
}

/// Sends `n` chat frames without waiting, then collects their acks.
async fn burst(client: &mut Client, room: &str, prefix: &str, n: usize) -> Vec<Value> {
    for i in 0..n {
        let frame = json!({"type": "chat", "ref": format!("{prefix}{i}"), "room": room, "client_id": format!("{prefix}{i}"), "text": format!("{prefix} {i}")});
        client.send(frame).await;
    }
    let mut acks = Vec::new();
    while acks.len() < n {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("ack") => acks.push(frame),
            Some("error") => panic!("refused: {frame}"),
            _ => {}
        }
    }
    acks
}

#[tokio::test]
async fn two_nodes_writing_to_one_room_get_gapless_unique_seqs_and_idempotent_resends() {
    let server = Server::get();
    let database = fresh_postgres_database(&server.url).await;
    let a = node(&database).await;
    let b = node(&database).await;
    a.consultation("c-pg").await;

    let mut patient = a.patient("c-pg").await;
    patient.join("c-pg", None).await;
    let mut doctor = b.doctor("c-pg").await;
    doctor.join("c-pg", None).await;
    // Both nodes write at once, each under its own group commit.
    let (from_a, from_b) = tokio::join!(burst(&mut patient, "c-pg", "p", 40), burst(&mut doctor, "c-pg", "d", 40));
    let mut seqs: Vec<i64> = from_a.iter().chain(&from_b).map(|ack| ack["seq"].as_i64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>(), "every ack has its own seq, with no gap");

    // What is stored is what was acknowledged, as either node reads it.
    for app in [&a, &b] {
        let (status, page) = app.get("/v1/consultations/c-pg/messages?after=0&limit=500").await;
        assert_eq!(status, 200, "{page}");
        let stored: Vec<(i64, String)> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["seq"].as_i64().unwrap(), m["client_id"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(stored.len(), 80);
        for ack in from_a.iter().chain(&from_b) {
            let client_id = ack["ref"].as_str().unwrap();
            assert!(stored.contains(&(ack["seq"].as_i64().unwrap(), client_id.to_owned())), "{ack}");
        }
    }

    // The patient resends through the other node: the original ack, nothing new.
    let mut again = b.patient("c-pg").await;
    again.join("c-pg", None).await;
    let resent = again.chat("c-pg", "p7", "p 7").await;
    let original = from_a.iter().find(|ack| ack["ref"] == "p7").unwrap();
    assert_eq!((&resent["seq"], &resent["id"]), (&original["seq"], &original["id"]));
    let next = again.chat("c-pg", "p-new", "after the resend").await;
    assert_eq!(next["seq"], 81, "the resend took no number");
    drop(server);
}

#[tokio::test]
async fn while_postgresql_is_down_chat_is_unavailable_and_nothing_is_acked() {
    let server = Server::own();
    let database = fresh_postgres_database(&server.url).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    settings.database_url = database;
    settings.database_busy_ms = 500;
    let app = start(settings, dir).await;
    let (mut doctor, mut patient) = app.pair("c-down").await;
    assert_eq!(patient.chat("c-down", "1", "before").await["seq"], 1);
    doctor.recv_type("message").await;
    patient.recv_type("message").await;

    server.run("pause");
    let refused =
        patient.request(json!({"type": "chat", "room": "c-down", "client_id": "2", "text": "while down"})).await;
    assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("unavailable")), "{refused}");
    // Nothing was stored, so nothing went out; the node still answers.
    doctor.assert_quiet().await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503, "not ready without its database");

    server.run("resume");
    // The same frame again: stored now, with the next number.
    let ack = patient.chat("c-down", "2", "while down").await;
    assert_eq!(ack["seq"], 2, "the refused attempt took no number");
    let seen = doctor.recv_type("message").await;
    assert_eq!((&seen["seq"], &seen["text"]), (&json!(2), &json!("while down")));
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
}

#[tokio::test]
async fn resends_in_one_batch_take_one_number_and_other_rooms_keep_theirs() {
    use telehub_actors::NewMessage;
    use telehub_signaling::{MessageKind, Sender};

    let server = Server::get();
    let database = fresh_postgres_database(&server.url).await;
    let app = node(&database).await;
    app.consultation("c-dup").await;
    app.consultation("c-other").await;
    let store = bare_store(&database).await;
    let message = |room: &str, client_id: &str| NewMessage {
        room: room.into(),
        from: Sender { id: "p-c-dup".into(), name: "Budi".into(), role: "patient".into() },
        client_id: Some(client_id.into()),
        kind: MessageKind::Text,
        text: "hello".into(),
    };
    // All queued at once, so the writer takes them in one or a few batches:
    // the same message ten times over, between messages of another room.
    let mut writes = Vec::new();
    for i in 0..10 {
        writes.push(store.append(message("c-dup", "same")));
        writes.push(store.append(message("c-other", &format!("o{i}"))));
    }
    let results: Vec<_> = futures_util::future::join_all(writes).await.into_iter().map(Result::unwrap).collect();
    let same: Vec<_> = results.iter().step_by(2).collect();
    assert!(same.iter().all(|r| (r.seq, &r.id) == (same[0].seq, &same[0].id)), "{same:?}");
    assert_eq!(same.iter().filter(|r| !r.duplicate).count(), 1, "one original, nine resends");
    assert_eq!(same[0].seq, 1);
    let other: Vec<i64> = results.iter().skip(1).step_by(2).map(|r| r.seq).collect();
    assert_eq!(other, (1..=10).collect::<Vec<_>>());
    let ack = app.patient("c-dup").await.join("c-dup", None).await;
    assert_eq!(ack["seq"], 1, "one message stored");
    drop(server);
}

#[tokio::test]
async fn a_resend_stored_by_another_node_while_waiting_for_the_lock_gets_the_original() {
    use sqlx::Connection;
    use telehub_actors::NewMessage;
    use telehub_signaling::{MessageKind, Sender};

    let server = Server::get();
    let database = fresh_postgres_database(&server.url).await;
    let app = node(&database).await;
    app.consultation("c-race").await;
    let store = bare_store(&database).await;
    // Another node's writer, by hand: it holds the room's row and stores
    // the message first.
    let mut other = sqlx::PgConnection::connect(&database).await.unwrap();
    for statement in [
        "BEGIN",
        "SELECT last_seq FROM consultations WHERE id = 'c-race' FOR NO KEY UPDATE",
        "INSERT INTO messages (room, seq, id, sender_id, sender_name, sender_role, client_id, kind, text, at)
         VALUES ('c-race', 1, 'm-first', 'p-c-race', 'Budi', 'patient', 'same', 'text', 'hello',
                 '2026-12-02T00:00:00.000Z')",
        "UPDATE consultations SET last_seq = 1 WHERE id = 'c-race'",
    ] {
        sqlx::query(statement).execute(&mut other).await.unwrap();
    }
    // This node's writer takes the same message (the client resent it
    // here) and waits for the row.
    let message = NewMessage {
        room: "c-race".into(),
        from: Sender { id: "p-c-race".into(), name: "Budi".into(), role: "patient".into() },
        client_id: Some("same".into()),
        kind: MessageKind::Text,
        text: "hello".into(),
    };
    let resend = tokio::spawn(async move { store.append(message).await });
    let mut watcher = sqlx::PgConnection::connect(&database).await.unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the writer never waited for the room's row");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let stored = resend.await.unwrap().expect("the resend is answered, not refused");
    assert_eq!((stored.seq, stored.id.as_str(), stored.duplicate), (1, "m-first", true));
    let joined = app.patient("c-race").await.join("c-race", None).await;
    assert_eq!(joined["seq"], 1, "stored once");
    drop(server);
}
