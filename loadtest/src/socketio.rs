//! The Socket.IO 4 wire protocol, as much of it as the chat and idle
//! scenarios need to drive the Socket.IO peer of the benchmark suite
//! (`loadtest/peers/socketio`) exactly as they drive the hub: over the same
//! hand-made TCP sockets and the same tokio-tungstenite configuration.
//!
//! Socket.IO runs on Engine.IO 4, whose packets over a WebSocket are text
//! frames led by one digit: `0` open (with the ping settings), `2` ping,
//! `3` pong, `4` message. A Socket.IO packet rides in a message: `40`
//! connect (with the auth object), `41` disconnect, `42` event, `43` ack,
//! `44` connect error; an event that wants an ack puts its id between the
//! type and the JSON array (`4217["chat",{…}]`, answered by `4317[{…}]`).
//!
//! The peer's events mirror the hub's frames: a `chat` event acked with the
//! message's `room`, `seq`, `id` and `at`, and a `message` event with the
//! same object as the hub's `message` frame. Translating them into
//! [`ServerFrame`]s lets the scenarios measure and verify both servers with
//! one code path. No Rust crate fits: the Socket.IO clients open their own
//! connections, so they could not bind the run's source addresses or share
//! the hub clients' socket settings, and the comparison would not be fair.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use telehub_signaling::{ClientFrame, ErrorCode, MessageEvent, ServerFrame};

/// The Engine.IO pong, the answer to a ping (`2`).
pub const PONG: &str = "3";

/// Whether a text frame is an Engine.IO ping.
pub fn is_ping(text: &str) -> bool {
    text == "2"
}

/// The ack id of a `join` event. Chat events use their `ref`, the
/// scheduled send time in µs since the start of the run, which is never 0.
const JOIN_ACK: u64 = 0;

/// What one text frame from the peer means to a scenario.
// Boxing the frame would cost an allocation for every frame received, and
// an `Incoming` lives only until the frame is handled.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Incoming {
    /// A frame of the hub's protocol, translated.
    Frame(ServerFrame),
    /// An Engine.IO ping: answer with [`PONG`] or be disconnected.
    Ping,
    /// The server ended the connection (`41`, or an Engine.IO close `1`).
    Closed(String),
    /// Nothing a scenario measures (a pong, an unknown event).
    Other,
    /// A frame that does not parse.
    Unparsable,
}

/// The Socket.IO connect packet carrying the token as its auth object.
pub fn connect_packet(token: &str) -> String {
    format!("40{}", json!({ "token": token }))
}

/// The `join` event for `room`, with the ack id that [`join_reply`] looks for.
pub fn join_packet(room: &str) -> String {
    format!("42{JOIN_ACK}{}", json!(["join", { "room": room }]))
}

/// A session id from the answer to the connect packet: `Ok(Some(sid))`
/// once connected, `Ok(None)` for frames before it, `Err` for a refusal.
pub fn connected(text: &str) -> Result<Option<String>, String> {
    #[derive(Deserialize)]
    struct Connected {
        sid: String,
    }
    #[derive(Deserialize)]
    struct Refused {
        message: String,
    }
    if let Some(body) = text.strip_prefix("40") {
        let connected: Connected = serde_json::from_str(body).map_err(|err| format!("bad connect answer: {err}"))?;
        return Ok(Some(connected.sid));
    }
    if let Some(body) = text.strip_prefix("44") {
        let refused = serde_json::from_str::<Refused>(body).map(|r| r.message).unwrap_or_else(|_| body.to_owned());
        return Err(format!("connect refused: {refused}"));
    }
    Ok(None)
}

/// The body of an ack: the stored message's place, or an error code.
#[derive(Debug, Deserialize)]
struct AckBody {
    room: Option<String>,
    seq: Option<i64>,
    id: Option<String>,
    at: Option<String>,
    error: Option<String>,
}

/// The room's last `seq` from the ack of [`join_packet`]: `Ok(Some(seq))`,
/// `Ok(None)` for any other frame, `Err` for a refused join.
pub fn join_reply(text: &str) -> Result<Option<i64>, String> {
    let Some(body) = text.strip_prefix(&format!("43{JOIN_ACK}")).filter(|b| b.starts_with('[')) else {
        return Ok(None);
    };
    let (ack,): (AckBody,) = serde_json::from_str(body).map_err(|err| format!("bad join ack: {err}"))?;
    match (ack.error, ack.seq) {
        (Some(code), _) => Err(format!("join refused: {code}")),
        (None, Some(seq)) => Ok(Some(seq)),
        (None, None) => Err("join ack without a seq".into()),
    }
}

/// The peer's event for a hub frame. Only chat has one (with its `ref`,
/// which must be a number, as the ack id).
pub fn encode(frame: &ClientFrame) -> anyhow::Result<String> {
    match frame {
        ClientFrame::Chat { reference, room, client_id, text } => {
            let id = match reference.as_deref().map(str::parse::<u64>) {
                Some(Ok(id)) if id != JOIN_ACK => id,
                _ => anyhow::bail!("a chat event's ref must be a number above 0 to serve as its ack id"),
            };
            let event = json!(["chat", { "room": room, "client_id": client_id, "text": text }]);
            Ok(format!("42{id}{event}"))
        }
        _ => anyhow::bail!("the Socket.IO peer has only chat; this frame has no equivalent there"),
    }
}

/// What a text frame from the peer means.
pub fn decode(text: &str) -> Incoming {
    if is_ping(text) {
        return Incoming::Ping;
    }
    match text.as_bytes().first() {
        Some(b'1') => return Incoming::Closed("engine.io close".into()),
        Some(b'4') => {}
        Some(_) => return Incoming::Other,
        None => return Incoming::Unparsable,
    }
    if let Some(body) = text.strip_prefix("42") {
        if !body.starts_with(r#"["message","#) {
            return Incoming::Other;
        }
        return match serde_json::from_str::<(IgnoredAny, MessageEvent)>(body) {
            Ok((_, message)) => Incoming::Frame(ServerFrame::Message(message)),
            Err(_) => Incoming::Unparsable,
        };
    }
    if let Some(rest) = text.strip_prefix("43") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (id, body) = rest.split_at(digits);
        let Ok((ack,)) = serde_json::from_str::<(AckBody,)>(body) else { return Incoming::Unparsable };
        let reference = Some(id.to_owned());
        if let Some(code) = ack.error {
            let parsed = serde_json::from_value(json!(code)).unwrap_or(ErrorCode::Internal);
            return Incoming::Frame(ServerFrame::Error {
                reference,
                code: parsed,
                message: code,
                retry_ms: None,
                room: None,
                queue: None,
            });
        }
        return match (ack.room, ack.seq, ack.id, ack.at) {
            (Some(room), Some(seq), Some(id), Some(at)) => {
                Incoming::Frame(ServerFrame::Ack { reference, room, seq, id, at })
            }
            _ => Incoming::Unparsable,
        };
    }
    if text.starts_with("41") {
        return Incoming::Closed("socket.io disconnect".into());
    }
    Incoming::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    // Frames as the Socket.IO 4 server (socket.io-parser, engine.io-parser)
    // writes them.

    #[test]
    fn a_chat_frame_becomes_an_event_with_its_ref_as_ack_id() {
        let frame = ClientFrame::Chat {
            reference: Some("1234".into()),
            room: "r-1".into(),
            client_id: "s-1".into(),
            text: "t=1234 hi".into(),
        };
        assert_eq!(encode(&frame).unwrap(), r#"421234["chat",{"client_id":"s-1","room":"r-1","text":"t=1234 hi"}]"#);
        let no_ref = ClientFrame::Chat { reference: None, room: "r".into(), client_id: "c".into(), text: "x".into() };
        assert!(encode(&no_ref).is_err());
        let zero = ClientFrame::Chat {
            reference: Some("0".into()),
            room: "r".into(),
            client_id: "c".into(),
            text: "x".into(),
        };
        assert!(encode(&zero).is_err(), "0 is the join's ack id");
        let typing = ClientFrame::Typing { reference: None, room: "r".into(), active: true };
        assert!(encode(&typing).is_err());
    }

    #[test]
    fn acks_and_messages_become_hub_frames() {
        let ack = decode(r#"431234[{"room":"r-1","seq":7,"id":"r-1:7","at":"2026-12-01T10:00:00.000Z"}]"#);
        let Incoming::Frame(ServerFrame::Ack { reference, room, seq, .. }) = ack else { panic!("{ack:?}") };
        assert_eq!((reference.as_deref(), room.as_str(), seq), (Some("1234"), "r-1", 7));

        let message = decode(
            r#"42["message",{"room":"r-1","seq":7,"id":"r-1:7","client_id":"s-1","from":{"id":"p-1","name":"Patient 1","role":"patient"},"kind":"text","text":"t=1 x","at":"2026-12-01T10:00:00.000Z"}]"#,
        );
        let Incoming::Frame(ServerFrame::Message(message)) = message else { panic!("{message:?}") };
        assert_eq!((message.seq, message.from.role.as_str(), message.text.as_str()), (7, "patient", "t=1 x"));

        let refused = decode(r#"4399[{"error":"forbidden"}]"#);
        let Incoming::Frame(ServerFrame::Error { reference, code, .. }) = refused else { panic!("{refused:?}") };
        assert_eq!((reference.as_deref(), code), (Some("99"), ErrorCode::Forbidden));
    }

    #[test]
    fn engine_io_packets_are_told_apart() {
        assert!(matches!(decode("2"), Incoming::Ping));
        assert!(matches!(decode("3"), Incoming::Other));
        assert!(matches!(decode("41"), Incoming::Closed(_)));
        assert!(matches!(decode("1"), Incoming::Closed(_)));
        assert!(matches!(decode(r#"42["other",{}]"#), Incoming::Other));
        assert!(matches!(decode(r#"42["message",{"seq":"x"}]"#), Incoming::Unparsable));
        assert!(matches!(decode("431[not json"), Incoming::Unparsable));
        assert!(matches!(decode(""), Incoming::Unparsable));
    }

    #[test]
    fn the_handshake_yields_the_sid_and_the_joins_seq() {
        assert_eq!(connect_packet("a.b"), r#"40{"token":"a.b"}"#);
        assert_eq!(connected(r#"0{"sid":"e","upgrades":[],"pingInterval":25000}"#), Ok(None));
        assert_eq!(connected(r#"40{"sid":"AbC"}"#), Ok(Some("AbC".into())));
        assert_eq!(connected(r#"44{"message":"unauthorized"}"#), Err("connect refused: unauthorized".into()));
        assert_eq!(join_packet("r-1"), r#"420["join",{"room":"r-1"}]"#);
        assert_eq!(join_reply(r#"430[{"room":"r-1","seq":3}]"#), Ok(Some(3)));
        assert_eq!(join_reply(r#"4301[{"room":"r-1","seq":3}]"#), Ok(None), "the ack of chat 1, not the join");
        assert_eq!(join_reply(r#"430[{"error":"bad_request"}]"#), Err("join refused: bad_request".into()));
        assert_eq!(join_reply("2"), Ok(None));
    }
}
