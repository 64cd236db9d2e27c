//! A stand-in hub for the tests of the scenarios: just enough of the HTTP
//! API (consultations, tokens) and of the WebSocket protocol (welcome,
//! join, chat with ack and broadcast, and for the tests also replay after
//! `since`; check-in, watch, admit with `called` for displays) to drive a
//! run end to end, with faults to inject so the checks can be seen to catch
//! them.
//!
//! It is not the real hub and says nothing about its behaviour; it shows
//! that the load tester measures, verifies and exits as it should, and,
//! run as `telehub-loadtest baseline`, what a bare tokio-tungstenite relay
//! does under the chat scenario on the same machine (no storage, no rights,
//! no outbox limits): the floor against which the hub's costs are read.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Misbehaviour to inject.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Never deliver messages whose seq is a multiple of this to the
    /// second member of a room (acks still go out).
    pub drop_every: Option<i64>,
    /// Deliver every message twice to the second member of a room.
    pub duplicate: bool,
    /// Answer every this-many-th HTTP call `429 rate_limited`, as the hub's
    /// rate limit would.
    pub throttle_every: Option<usize>,
    /// Leave the first message after `since` out of a rejoin's history.
    pub replay_skips_first: bool,
    /// Show displays the queue as a doctor sees it: rooms and names.
    pub leak_names: bool,
    /// Never send displays `called`.
    pub drop_called: bool,
    /// Take chat frames in and never answer or deliver them.
    pub swallow_chat: bool,
    /// Never pass typing indicators on.
    pub drop_typing: bool,
    /// Never pass read receipts on.
    pub drop_reads: bool,
    /// Store every chat message twice, under two seqs (acking the first),
    /// as a hub that lost track of `client_id` would.
    pub store_twice: bool,
    /// Refuse every this-many-th chat frame with `unavailable` and a
    /// `retry_ms` of 1, storing nothing, as an overloaded hub sheds load;
    /// a message is refused once at most, so its next send is stored.
    pub shed_every: Option<usize>,
}

type Outbox = mpsc::UnboundedSender<String>;

#[derive(Default)]
struct Room {
    seq: i64,
    members: Vec<Outbox>,
    /// Every message, for replay (only when the state keeps history).
    history: Vec<Value>,
}

/// A consultation as created over HTTP: where its patient waits.
struct Consultation {
    queue: String,
}

/// One patient waiting in a queue.
struct Entry {
    room: String,
    ticket: String,
    patient: Value,
    session: Outbox,
}

#[derive(Default)]
struct Queue {
    tickets: u32,
    waiting: Vec<Entry>,
    /// Watching sessions, and whether each is a display.
    watchers: Vec<(Outbox, bool)>,
}

impl Queue {
    /// The `queue_state` frame for a watcher; a display sees tickets only
    /// (unless the fault leaks more).
    fn state(&self, name: &str, display: bool, faults: Faults, reference: &Value) -> String {
        let entries: Vec<Value> = self
            .waiting
            .iter()
            .map(|e| {
                if display && !faults.leak_names {
                    json!({"ticket": e.ticket, "since": AT})
                } else {
                    json!({"ticket": e.ticket, "room": e.room, "patient": e.patient, "since": AT, "online": true, "paid": true})
                }
            })
            .collect();
        let mut frame = json!({"type": "queue_state", "queue": name, "entries": entries});
        if !reference.is_null() {
            frame["ref"] = reference.clone();
        }
        frame.to_string()
    }

    /// Tells every watcher the queue as it now is.
    fn announce(&self, name: &str, faults: Faults) {
        for (watcher, display) in &self.watchers {
            let _ = watcher.send(self.state(name, *display, faults, &Value::Null));
        }
    }
}

/// The one timestamp the mock puts everywhere.
const AT: &str = "2026-01-01T00:00:00.000Z";

#[derive(Default)]
struct State {
    /// Keep every message for replay after `since`; off for the baseline,
    /// which stores nothing.
    replay: bool,
    rooms: Mutex<HashMap<String, Room>>,
    consultations_by_id: Mutex<HashMap<String, Consultation>>,
    queues: Mutex<HashMap<String, Queue>>,
    /// Every session's outgoing frames, by session id, for signals.
    by_session: Mutex<HashMap<String, mpsc::UnboundedSender<String>>>,
    consultations: AtomicUsize,
    sessions: AtomicUsize,
    http_calls: AtomicUsize,
    /// Chat frames taken in, and the (sender, client_id) of those refused.
    chats: AtomicUsize,
    shed: Mutex<HashSet<(String, String)>>,
}

/// A running mock hub.
#[cfg(test)]
pub struct MockHub {
    pub url: String,
}

/// Serves as the baseline until the process is stopped.
pub async fn run(bind: &str) -> anyhow::Result<bool> {
    let listener = TcpListener::bind(bind).await?;
    eprintln!("baseline broadcast server on http://{}", listener.local_addr()?);
    let state = Arc::new(State::default());
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream, Arc::clone(&state), Faults::default()));
    }
}

#[cfg(test)]
impl MockHub {
    pub async fn start(faults: Faults) -> MockHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State { replay: true, ..State::default() });
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&state), faults));
            }
        });
        MockHub { url }
    }
}

/// Serves one TCP connection: a WebSocket upgrade or plain HTTP calls.
async fn serve(stream: TcpStream, state: Arc<State>, faults: Faults) {
    // Without this, Nagle holds back the second of two small frames until
    // the client's next send carries the ACK, and latency looks like one
    // send period.
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 16];
    let Ok(n) = stream.peek(&mut first).await else { return };
    if first[..n].starts_with(b"GET /v1/ws") {
        websocket(stream, state, faults).await;
    } else {
        http(stream, state, faults).await;
    }
}

/// Answers keep-alive HTTP/1.1 requests until the client hangs up.
async fn http(stream: TcpStream, state: Arc<State>, faults: Faults) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            let content_length = header.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("content-length"));
            if let Some((_, value)) = content_length {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let call = state.http_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let throttled = faults.throttle_every.is_some_and(|n| call.is_multiple_of(n));
        let (status, answer) = if throttled {
            ("429 Too Many Requests", json!({"error": {"code": "rate_limited", "message": "slow down", "retry_ms": 1}}))
        } else if request_line.starts_with("POST /v1/consultations ") {
            let n = state.consultations.fetch_add(1, Ordering::SeqCst);
            let id = format!("c-{n}");
            let queue = body["queue"].as_str().or(body["doctor"]["id"].as_str()).unwrap_or("q").to_owned();
            state.consultations_by_id.lock().unwrap().insert(id.clone(), Consultation { queue });
            ("201 Created", json!({"id": id, "patient": body["patient"], "doctor": body["doctor"]}))
        } else if request_line.starts_with("POST /v1/tokens ") {
            let token = format!(
                "{}~{}~{}~{}",
                body["sub"].as_str().unwrap_or(""),
                body["role"].as_str().unwrap_or(""),
                body["clinic"].as_str().unwrap_or(""),
                body["name"].as_str().unwrap_or("")
            );
            ("200 OK", json!({"token": token, "exp": 0}))
        } else {
            ("404 Not Found", json!({"error": {"code": "not_found", "message": "no such route"}}))
        };
        let answer = answer.to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.get_mut().write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One WebSocket session.
async fn websocket(stream: TcpStream, state: Arc<State>, faults: Faults) {
    let mut token = String::new();
    // The error type is tungstenite's, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |request: &tokio_tungstenite::tungstenite::handshake::server::Request, response| {
        let query = request.uri().query().unwrap_or("");
        token = query.strip_prefix("token=").unwrap_or("").replace("%7E", "~").replace("+", " ").replace("%20", " ");
        Ok(response)
    };
    // Chat frames are small: 4 KiB reads, as the load tester's own
    // clients do, instead of tungstenite's 128 KiB buffer, so that the
    // relay's memory per session is what a minimal server needs.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await else {
        return;
    };
    let mut parts = token.splitn(4, '~');
    let (id, role, clinic, name) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
    });
    let session = format!("s_{}", state.sessions.fetch_add(1, Ordering::SeqCst));
    state.by_session.lock().unwrap().insert(session.clone(), tx.clone());
    let user = json!({"id": id, "name": name, "role": role});
    let _ = tx.send(json!({"type": "welcome", "session": session, "user": user, "heartbeat_ms": 25000, "node": "mock", "protocol": 1}).to_string());
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else { continue };
        let room_id = frame["room"].as_str().unwrap_or("").to_owned();
        let reference = frame["ref"].clone();
        match frame["type"].as_str() {
            Some("join") => {
                let mut rooms = state.rooms.lock().unwrap();
                let room = rooms.entry(room_id.clone()).or_default();
                room.members.push(tx.clone());
                let history: Vec<&Value> = match frame["since"].as_i64() {
                    Some(since) => room
                        .history
                        .iter()
                        .filter(|m| m["seq"].as_i64().is_some_and(|seq| seq > since))
                        .skip(usize::from(faults.replay_skips_first))
                        .collect(),
                    None => room.history.iter().rev().take(50).rev().collect(),
                };
                let _ = tx.send(
                    json!({"type": "joined", "ref": reference, "room": room_id, "status": "active", "seq": room.seq,
                           "peers": [], "history": history, "history_complete": true, "media": {"mode": "p2p", "ice_servers": []}})
                    .to_string(),
                );
            }
            Some("chat") => {
                if faults.swallow_chat {
                    continue;
                }
                if let Some(n) = faults.shed_every
                    && (state.chats.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(n)
                    && state.shed.lock().unwrap().insert((id.clone(), frame["client_id"].to_string()))
                {
                    let _ = tx.send(
                        json!({"type": "error", "ref": reference, "code": "unavailable",
                        "message": "overloaded", "retry_ms": 1})
                        .to_string(),
                    );
                    continue;
                }
                let mut rooms = state.rooms.lock().unwrap();
                let Some(room) = rooms.get_mut(&room_id) else { continue };
                let copies = if faults.store_twice { 2 } else { 1 };
                for copy in 0..copies {
                    room.seq += 1;
                    let seq = room.seq;
                    let at = AT;
                    if copy == 0 {
                        let _ = tx.send(json!({"type": "ack", "ref": reference, "room": room_id, "seq": seq, "id": format!("m_{seq}"), "at": at}).to_string());
                    }
                    let message = json!({"type": "message", "room": room_id, "seq": seq, "id": format!("m_{seq}"), "client_id": frame["client_id"],
                        "from": user, "kind": "text", "text": frame["text"], "at": at});
                    if state.replay {
                        room.history.push(message.clone());
                    }
                    let message = message.to_string();
                    for (i, member) in room.members.iter().enumerate() {
                        let second = i == 1;
                        if second && faults.drop_every.is_some_and(|n| seq % n == 0) {
                            continue;
                        }
                        let _ = member.send(message.clone());
                        if second && faults.duplicate {
                            let _ = member.send(message.clone());
                        }
                    }
                }
            }
            // Just enough of the waiting room, signaling and the rest for
            // the consultation scenario.
            Some("checkin") => {
                let queue_name = queue_of(&state, &room_id);
                let mut queues = state.queues.lock().unwrap();
                let queue = queues.entry(queue_name.clone()).or_default();
                queue.tickets += 1;
                let ticket = format!("A-{:03}", queue.tickets);
                let ahead = queue.waiting.len();
                let patient = json!({"id": id, "name": name});
                queue.waiting.push(Entry {
                    room: room_id.clone(),
                    ticket: ticket.clone(),
                    patient,
                    session: tx.clone(),
                });
                let _ = tx.send(
                    json!({"type": "queue", "ref": reference, "queue": queue_name, "room": room_id, "ticket": ticket,
                           "position": ahead + 1, "ahead": ahead, "eta_s": 0})
                    .to_string(),
                );
                queue.announce(&queue_name, faults);
            }
            Some("watch") => {
                let queue_name = frame["queue"].as_str().unwrap_or("").to_owned();
                let display = role == "display";
                if role == "patient" || (display && clinic.is_empty()) {
                    let _ = tx.send(
                        json!({"type": "error", "ref": reference, "code": "forbidden", "message": "may not watch"})
                            .to_string(),
                    );
                    continue;
                }
                let mut queues = state.queues.lock().unwrap();
                let queue = queues.entry(queue_name.clone()).or_default();
                queue.watchers.push((tx.clone(), display));
                let _ = tx.send(queue.state(&queue_name, display, faults, &reference));
            }
            Some("admit") => {
                let queue_name = queue_of(&state, &room_id);
                let mut queues = state.queues.lock().unwrap();
                let queue = queues.entry(queue_name.clone()).or_default();
                if let Some(at) = queue.waiting.iter().position(|e| e.room == room_id) {
                    let entry = queue.waiting.remove(at);
                    let _ = entry.session.send(json!({"type": "admitted", "room": room_id}).to_string());
                    let called =
                        json!({"type": "called", "queue": queue_name, "ticket": entry.ticket, "at": AT}).to_string();
                    for (watcher, display) in &queue.watchers {
                        if *display && !faults.drop_called {
                            let _ = watcher.send(called.clone());
                        }
                    }
                    queue.announce(&queue_name, faults);
                }
                let _ = tx.send(json!({"type": "ok", "ref": reference}).to_string());
            }
            Some("signal") => {
                let to = frame["to"].as_str().unwrap_or("");
                let target = state.by_session.lock().unwrap().get(to).cloned();
                let relayed =
                    json!({"type": "signal", "room": room_id, "from": session, "user": user, "data": frame["data"]});
                if let Some(target) = target {
                    let _ = target.send(relayed.to_string());
                }
            }
            Some(kind @ ("typing" | "read" | "end")) => {
                if (kind == "typing" && faults.drop_typing) || (kind == "read" && faults.drop_reads) {
                    continue;
                }
                let event = match kind {
                    "typing" => {
                        json!({"type": "typing", "room": room_id, "user": {"id": id, "name": name}, "active": frame["active"]})
                    }
                    "read" => json!({"type": "read", "room": room_id, "user": {"id": id}, "seq": frame["seq"]}),
                    _ => {
                        json!({"type": "ended", "room": room_id, "by": {"id": id, "name": name}, "at": "2026-01-01T00:00:00.000Z"})
                    }
                };
                if kind == "end" {
                    let _ = tx.send(json!({"type": "ok", "ref": reference}).to_string());
                }
                let rooms = state.rooms.lock().unwrap();
                for member in rooms.get(&room_id).map(|r| r.members.as_slice()).unwrap_or_default() {
                    if kind == "end" || !member.same_channel(&tx) {
                        let _ = member.send(event.to_string());
                    }
                }
            }
            _ => {
                let _ = tx.send(
                    json!({"type": "error", "ref": reference, "code": "bad_request", "message": "not in the mock"})
                        .to_string(),
                );
            }
        }
    }
}

/// The queue of a consultation: as created, or `q` for one the mock did not
/// create.
fn queue_of(state: &State, room: &str) -> String {
    state.consultations_by_id.lock().unwrap().get(room).map_or_else(|| "q".to_owned(), |c| c.queue.clone())
}
