//! A room or queue that stops under its members, as after a bug in the
//! hub. A room's members are told at once, and their next frame for it is
//! refused with `unavailable`; they join again with `since`, and nothing
//! acknowledged is lost. A queue's followers follow it again by themselves,
//! from its stored line, and see only a fresh update; should that fail
//! (storage down), they are told to do it.

use std::sync::Arc;

use serde_json::{Value, json};
use telehub_actors::QueueId;

use crate::helpers::*;
use crate::postgres::Server;
use crate::waiting_room::{check_in, clinic_client, doctor, patient, place, queued, state_with, tickets, watch};

#[tokio::test]
async fn a_room_that_stops_under_its_members_is_joined_again_and_loses_nothing() {
    room_fault(spawn_app().await).await;
}

/// The same with rooms on a pool of threads of their own.
#[tokio::test]
async fn a_room_on_a_dedicated_thread_that_stops_is_joined_again_the_same() {
    room_fault(spawn_app_with(|s| s.room_threads = 2).await).await;
}

async fn room_fault(app: TestApp) {
    let room = "c-fault";
    let (mut doctor, mut patient) = app.pair(room).await;
    let ack = patient.chat(room, "m1", "before the fault").await;
    let before = ack["seq"].as_i64().unwrap();
    assert_eq!(doctor.recv_type("message").await["seq"], before);
    let (mut other_doctor, mut other_patient) = app.pair("c-bystander").await;

    assert!(app.rooms.crash(room).await, "the room was running");

    // Each member is told at once, even one who sends nothing.
    for member in [&mut patient, &mut doctor] {
        let notice = member.recv_type("error").await;
        assert_eq!(
            notice,
            json!({"type": "error", "code": "unavailable", "message": format!("{room} restarted: join again"), "room": room})
        );
    }
    // And the next frame for the room, which may have left before the
    // client heard, says the same.
    let refused =
        patient.request(json!({"type": "chat", "room": room, "client_id": "m2", "text": "after the fault"})).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert_eq!(refused["message"], format!("{room} restarted: join again"));
    let refused = doctor.request(json!({"type": "typing", "room": room, "active": true})).await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    // The session has let go of the room: it is no longer joined.
    let again = patient.request(json!({"type": "read", "room": room, "seq": before})).await;
    assert_eq!(again["code"], "forbidden", "{again}");

    // Another room of the node goes on, its sessions untouched.
    other_patient.chat("c-bystander", "b1", "still here").await;
    assert_eq!(other_doctor.recv_type("message").await["text"], "still here");

    // Joining again starts the room afresh from storage: the history is
    // whole, `seq` goes on, and the refused message, sent again with its
    // `client_id`, is stored once.
    let joined = doctor.join(room, Some(0)).await;
    assert_eq!(joined["seq"], before, "{joined}");
    let history: Vec<&str> =
        joined["history"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(history, ["before the fault"]);
    let joined = patient.join(room, Some(before)).await;
    assert_eq!(joined["history"], json!([]), "nothing after {before} was stored");
    let peers: Vec<&str> = joined["peers"].as_array().unwrap().iter().map(|p| p["session"].as_str().unwrap()).collect();
    assert_eq!(peers, [doctor.session.as_str()], "the doctor once, no ghost from before the fault");
    let ack = patient.chat(room, "m2", "after the fault").await;
    assert_eq!(ack["seq"], before + 1);
    let message = doctor.recv_type("message").await;
    assert_eq!((message["seq"].as_i64(), message["text"].as_str()), (Some(before + 1), Some("after the fault")));
    let resent = patient.chat(room, "m2", "after the fault").await;
    assert_eq!(resent["seq"], before + 1, "a resend gets the original ack");
    doctor.assert_quiet().await;
}

/// A notice without `ref` of `unavailable`.
fn notice(frame: &Value, message: &str) {
    assert_eq!(
        (&frame["type"], &frame["code"], &frame["message"]),
        (&json!("error"), &json!("unavailable"), &json!(message)),
        "{frame}"
    );
    assert!(frame.get("ref").is_none(), "{frame}");
}

#[tokio::test]
async fn a_queue_that_stops_under_its_followers_is_followed_again_by_itself() {
    queue_fault(spawn_app().await).await;
}

#[tokio::test]
async fn a_queue_on_a_dedicated_thread_that_stops_is_followed_again_the_same() {
    queue_fault(spawn_app_with(|s| s.room_threads = 2).await).await;
}

async fn queue_fault(app: TestApp) {
    for room in ["c-q1", "c-q2"] {
        queued(&app, room, "k1").await;
    }
    let mut p1 = patient(&app, "c-q1").await;
    let mut p2 = patient(&app, "c-q2").await;
    assert_eq!(check_in(&mut p1, "c-q1").await["ticket"], "A-001");
    assert_eq!(check_in(&mut p2, "c-q2").await["ticket"], "A-002");
    let mut doctor = doctor(&app).await;
    let mut display = clinic_client(&app, "display", "k1").await;
    assert_eq!(tickets(&watch(&mut doctor, "q-ana").await), ["A-001", "A-002"]);
    assert_eq!(tickets(&watch(&mut display, "q-ana").await), ["A-001", "A-002"]);

    assert!(app.rooms.queues().crash(&QueueId::new(Some("k1"), "q-ana")).await, "the queue was running");

    // Nobody has to do anything: each follower gets a fresh update from
    // the queue started again from storage, and the patients come back
    // online in it (the doctor may hear of the line before they do).
    loop {
        let seen = doctor.recv_type("queue_state").await;
        assert_eq!(tickets(&seen), ["A-001", "A-002"], "the same line, from storage: {seen}");
        assert!(seen.get("ref").is_none());
        if seen["entries"].as_array().unwrap().iter().all(|e| e["online"] == true) {
            break;
        }
    }
    assert_eq!(tickets(&display.recv_type("queue_state").await), ["A-001", "A-002"]);
    let again = p1.recv_type("queue").await;
    assert_eq!((&again["ticket"], &again["position"]), (&json!("A-001"), &json!(1)), "{again}");
    assert_eq!(place(&mut p2, 2).await["ticket"], "A-002");

    // The new queue holds them all: an admission calls the ticket on the
    // display, moves the second patient up and updates the doctor.
    doctor.join("c-q1", None).await;
    assert_eq!(doctor.request(json!({"type": "admit", "room": "c-q1"})).await["type"], "ok");
    assert_eq!(p1.recv_type("admitted").await["room"], "c-q1");
    assert_eq!(display.recv_type("called").await["ticket"], "A-001");
    assert_eq!(tickets(&state_with(&mut display, 1).await), ["A-002"]);
    assert_eq!(place(&mut p2, 1).await["ahead"], 0);
    assert_eq!(tickets(&state_with(&mut doctor, 1).await), ["A-002"]);
    // Nothing more is on its way to the second patient.
    p2.assert_quiet().await;
}

/// The queue stops while its storage is down too: it cannot be followed
/// again now, so each follower is told, and follows it again once storage
/// is back.
#[tokio::test]
async fn followers_of_a_queue_that_stops_while_storage_is_down_are_told_to_follow_it_again() {
    let server = Server::own();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    settings.database_url = fresh_postgres_database(&server.url).await;
    settings.database_busy_ms = 500;
    let app = start(settings, dir).await;
    queued(&app, "c-d1", "k1").await;
    let mut p1 = patient(&app, "c-d1").await;
    check_in(&mut p1, "c-d1").await;
    let mut display = clinic_client(&app, "display", "k1").await;
    watch(&mut display, "q-ana").await;

    server.run("pause");
    assert!(app.rooms.queues().crash(&QueueId::new(Some("k1"), "q-ana")).await);
    // (Skipping updates of the queue from before its fault.)
    notice(&display.recv_type("error").await, "queue q-ana restarted: watch again");
    let told = p1.recv_type("error").await;
    notice(&told, "the queue of c-d1 restarted: check in again");
    assert_eq!(told["room"], "c-d1");
    // The node still serves them.
    display.assert_quiet().await;

    server.run("resume");
    let board = watch(&mut display, "q-ana").await;
    assert_eq!(tickets(&board), ["A-001"], "the line was kept in storage");
    let again = check_in(&mut p1, "c-d1").await;
    assert_eq!((&again["ticket"], &again["position"]), (&json!("A-001"), &json!(1)));
    assert_eq!(state_with(&mut display, 1).await["entries"][0]["ticket"], "A-001");
}
