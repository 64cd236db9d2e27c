//! A room that stops under its members, as after a bug in the hub: each
//! member's next frame for it is refused with `unavailable`, they join
//! again with `since`, and nothing acknowledged is lost.

use serde_json::json;

use crate::helpers::*;

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

    // Each member's next frame for the room says why and what to do.
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
