//! Bad input gets the documented answer, and the node keeps serving.

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

/// A pair that keeps chatting, to show the node still serves others.
async fn still_serving(app: &TestApp, room: &str, n: &str) {
    let mut patient = app.patient(room).await;
    patient.join(room, None).await;
    patient.chat(room, n, "still here").await;
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_the_connection_stays() {
    let app = spawn_app().await;
    app.consultation("c-bad").await;
    let mut patient = app.patient("c-bad").await;
    patient.join("c-bad", None).await;

    patient.send_raw(Message::Text("this is not json".into())).await;
    let reply = patient.recv().await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "bad_request");
    assert!(reply.get("ref").is_none());

    for (frame, what) in [
        (json!({"type": "shout", "ref": "u1"}), "unknown type"),
        (json!({"type": "chat", "ref": "u2", "room": "c-bad", "text": "no client id"}), "missing field"),
        (json!({"type": "read", "ref": "u3", "room": "c-bad", "seq": "five"}), "wrong type"),
        (json!({"ref": "u4", "room": "c-bad"}), "no type"),
        (json!({"type": "chat", "ref": "u5", "room": "c-bad", "client_id": "x", "text": "   "}), "blank text"),
    ] {
        patient.send(frame).await;
        let reply = patient.recv().await;
        assert_eq!(reply["code"], "bad_request", "{what}: {reply}");
        assert!(reply["ref"].as_str().unwrap().starts_with('u'), "{what}: the ref comes back");
    }
    patient.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(patient.recv().await["code"], "bad_request");

    let long = "x".repeat(4001);
    let reply = patient.request(json!({"type": "chat", "room": "c-bad", "client_id": "long", "text": long})).await;
    assert_eq!(reply["code"], "too_large");

    // The connection still works.
    patient.chat("c-bad", "fine", "fine").await;
    still_serving(&app, "c-bad", "other").await;
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let app = spawn_app().await;
    app.consultation("c-big").await;
    let mut patient = app.patient("c-big").await;
    patient.join("c-big", None).await;
    let huge = json!({"type": "chat", "room": "c-big", "client_id": "big", "text": "y".repeat(70 * 1024)});
    // The server may close before the whole frame is written.
    let _ = patient.ws.send(Message::Text(huge.to_string().into())).await;
    assert_eq!(patient.closed().await, Some(1009));
    still_serving(&app, "c-big", "after").await;
}

#[tokio::test]
async fn an_oversized_message_in_fragments_closes_with_1009() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let app = spawn_app().await;
    app.consultation("c-frag").await;
    let mut patient = app.patient("c-frag").await;
    patient.join("c-frag", None).await;
    // Each fragment is well under the limit; together they are over it.
    let text = json!({"type": "chat", "room": "c-frag", "client_id": "big", "text": "y".repeat(70 * 1024)}).to_string();
    let pieces: Vec<&[u8]> = text.as_bytes().chunks(8 * 1024).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
        let frame = Frame::message(piece.to_vec(), opcode, i + 1 == pieces.len());
        // The server may close before the last fragment is written.
        if patient.ws.send(Message::Frame(frame)).await.is_err() {
            break;
        }
    }
    assert_eq!(patient.closed().await, Some(1009));
    still_serving(&app, "c-frag", "after").await;
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let expired = token_with(json!({"sub": "u", "name": "U", "role": "patient", "exp": now - 3600}), SECRET);
    let just_expired = token_with(json!({"sub": "u", "name": "U", "role": "patient", "exp": now - 5}), SECRET);
    let foreign =
        token_with(json!({"sub": "u", "name": "U", "role": "patient", "exp": now + 3600}), "some-other-secret-1234");
    let b64 = |s: &str| {
        use std::fmt::Write;
        // base64url without padding, by hand, to build an unsigned token.
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in s.as_bytes().chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                write!(out, "{}", A[((n >> (18 - 6 * i)) & 63) as usize] as char).unwrap();
            }
        }
        out
    };
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&json!({"sub": "u", "name": "U", "role": "doctor", "exp": now + 3600}).to_string())
    );
    let no_role = token_with(json!({"sub": "u", "name": "U", "exp": now + 3600}), SECRET);
    for (token, what) in [
        (expired, "expired"),
        (just_expired, "expired a few seconds ago"),
        (foreign, "other secret"),
        (none, "alg none"),
        (no_role, "no role"),
        ("garbage".into(), "garbage"),
    ] {
        let (status, body) = refused_upgrade(&app.ws_url(&token)).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}: {body}");
    }
    let (status, body) = refused_upgrade(&format!("ws://{}/v1/ws", app.addr)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    app.consultation("c-tok").await;
    still_serving(&app, "c-tok", "ok").await;
}

#[tokio::test]
async fn the_token_may_come_in_the_authorization_header() {
    let app = spawn_app().await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/v1/ws", app.addr).into_client_request().unwrap();
    let bearer = format!("Bearer {}", token("p-1", "Budi", "patient", 60));
    request.headers_mut().insert("Authorization", bearer.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    use futures_util::StreamExt;
    let Some(Ok(Message::Text(welcome))) = ws.next().await else { panic!("no welcome") };
    let welcome: serde_json::Value = serde_json::from_str(&welcome).unwrap();
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["user"], json!({"id": "p-1", "name": "Budi", "role": "patient"}));
    assert_eq!(welcome["node"], "test-node");
    assert_eq!(welcome["protocol"], 1);
    assert!(welcome["session"].as_str().unwrap().starts_with("s_"));
}

#[tokio::test]
async fn a_session_is_closed_when_its_token_expires() {
    let app = spawn_app().await;
    let mut client = Client::connect(&app, &token("p-1", "Budi", "patient", 1)).await;
    let error = client.recv().await;
    assert_eq!(error["code"], "unauthorized");
    assert_eq!(client.closed().await, Some(4001));
}

#[tokio::test]
async fn the_rate_limit_answers_rate_limited_then_closes_abusers() {
    let app = spawn_app_with(|s| {
        s.rate_per_s = 2.0;
        s.rate_burst = 5.0;
    })
    .await;
    let mut client = Client::connect(&app, &token("p-1", "Budi", "patient", 600)).await;
    for i in 0..8 {
        client.send(json!({"type": "ping", "ref": format!("p{i}")})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    for _ in 0..8 {
        let reply = client.recv().await;
        match reply["type"].as_str().unwrap() {
            "pong" => pongs += 1,
            "error" => {
                assert_eq!(reply["code"], "rate_limited");
                assert!(reply["retry_ms"].as_u64().unwrap() > 0);
                limited += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(pongs, 5, "the burst passes");
    assert_eq!(limited, 3);
    // Keep hammering: the abuse budget runs out and the session is closed.
    for i in 0..40 {
        if client
            .ws
            .send(Message::Text(json!({"type": "ping", "ref": format!("x{i}")}).to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(client.closed().await, Some(4008));
}

#[tokio::test]
async fn repeated_garbage_closes_with_4008() {
    let app = spawn_app().await;
    let mut client = Client::connect(&app, &token("p-1", "Budi", "patient", 600)).await;
    for _ in 0..30 {
        if client.ws.send(Message::Text("{".into())).await.is_err() {
            break;
        }
    }
    assert_eq!(client.closed().await, Some(4008));
}
