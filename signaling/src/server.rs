//! Frames the hub sends to a client.

use serde::{Deserialize, Serialize};

use crate::{
    ErrorCode, IceServer, MediaMode, MessageKind, Peer, RoomStatus, Sender, SignalData, UserId, UserInfo, UserRef,
};

/// One frame from the hub. Replies to a client frame carry its `ref`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame of every connection.
    Welcome {
        session: String,
        user: UserInfo,
        heartbeat_ms: u64,
        node: String,
        protocol: u32,
        /// `false` when the hub has video calls off (before any `join`, so a
        /// page need not ask for the camera). Absent (true) otherwise.
        #[serde(default = "yes", skip_serializing_if = "is_yes")]
        video: bool,
    },
    /// Reply to `join`.
    Joined {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
        status: RoomStatus,
        /// The last `seq` stored in the room.
        seq: i64,
        peers: Vec<Peer>,
        history: Vec<HistoryItem>,
        history_complete: bool,
        media: MediaInfo,
        /// Every user's read marker in the room, so that read receipts
        /// survive a reload (an extension of the contract).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        read: Vec<ReadMarker>,
    },
    /// A session joined or left a room.
    Presence { room: String, event: PresenceEvent, peer: Peer },
    /// Reply to `leave`.
    Left {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
    },
    /// The sender's chat message is stored.
    Ack {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
        seq: i64,
        id: String,
        at: String,
    },
    /// A stored chat message, live or replayed.
    Message(MessageEvent),
    /// Someone started or stopped typing.
    Typing { room: String, user: UserRef, active: bool },
    /// Someone's read marker moved.
    Read { room: String, user: UserId, seq: i64 },
    /// Relayed WebRTC signaling.
    Signal { room: String, from: String, user: UserInfo, data: SignalData },
    /// The room's media mode, with this session's own Jitsi credentials.
    MediaMode {
        room: String,
        mode: MediaMode,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jitsi: Option<JitsiInfo>,
    },
    /// The consultation ended.
    Ended { room: String, by: UserRef, at: String },
    /// A patient's place in the waiting room.
    Queue {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        queue: String,
        room: String,
        ticket: String,
        position: u32,
        ahead: u32,
        eta_s: u64,
    },
    /// The whole queue, as the watcher's role may see it.
    QueueState {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        queue: String,
        entries: Vec<QueueEntry>,
    },
    /// For displays: a ticket is called in.
    Called { queue: String, ticket: String, at: String },
    /// For the patient: the doctor admitted them.
    Admitted { room: String },
    /// For the room and the queue's watchers: the consultation's payment
    /// state changed (it was paid, or refunded).
    Payment { room: String, status: crate::PaymentStatus },
    /// Success of a frame that has no reply of its own.
    Ok {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// Reply to `ping`.
    Pong {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// A refused frame, or a problem of the connection.
    Error {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_ms: Option<u64>,
        /// On a notice without `ref`: the room it is about.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// On a notice without `ref`: the queue it is about.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<String>,
    },
    /// The node is shutting down: reconnect after `retry_ms`, to any node.
    Goaway { retry_ms: u64 },
}

impl ServerFrame {
    /// An `error` frame.
    pub fn error(reference: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error { reference, code, message: message.into(), retry_ms: None, room: None, queue: None }
    }

    /// Serializes the frame. Serializing these types cannot fail: every map
    /// key is a string and no value is a float.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

/// A chat message as clients see it, live and in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEvent {
    pub room: String,
    pub seq: i64,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub from: Sender,
    pub kind: MessageKind,
    pub text: String,
    pub at: String,
}

/// One entry of `joined.history`: the same object as a live `message` frame,
/// `type` included, so clients handle both with one code path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HistoryItem {
    Message(MessageEvent),
}

/// Whether a presence event is a join or a leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceEvent {
    Join,
    Leave,
}

/// The media part of `joined`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaInfo {
    pub mode: MediaMode,
    pub ice_servers: Vec<IceServer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitsi: Option<JitsiInfo>,
    /// `false` when the hub has video calls off: clients show chat only.
    /// Absent (true) otherwise.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub video: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// Where and how this session joins the Jitsi meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JitsiInfo {
    pub domain: String,
    pub room: String,
    pub url: String,
    pub jwt: String,
}

/// How far a user has read a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMarker {
    pub user: UserId,
    pub seq: i64,
}

/// One waiting patient, as a doctor or staff member sees them; a display
/// sees only `ticket` and `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub ticket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<UserRef>,
    pub since: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Candidate, PeerState, Role};

    /// Parses `json`, compares with `expected`, and checks that serializing
    /// `expected` gives back the same JSON object.
    fn check(json: &str, expected: ServerFrame) {
        let parsed: ServerFrame = serde_json::from_str(json).expect(json);
        assert_eq!(parsed, expected, "{json}");
        let original: serde_json::Value = serde_json::from_str(json).unwrap();
        let written: serde_json::Value = serde_json::from_str(&expected.to_json()).unwrap();
        assert_eq!(written, original, "{json}");
    }

    fn r(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    fn ana() -> UserInfo {
        UserInfo { id: "u42".into(), name: "Ana".into(), role: Role::Doctor }
    }

    fn message() -> MessageEvent {
        MessageEvent {
            room: "c-1001".into(),
            seq: 58,
            id: "m_1".into(),
            client_id: r("6f1e"),
            from: Sender { id: "u7".into(), name: "Budi".into(), role: "patient".into() },
            kind: MessageKind::Text,
            text: "Hello doctor".into(),
            at: "2026-11-24T10:15:00.123Z".into(),
        }
    }

    #[test]
    fn welcome() {
        check(
            r#"{"type":"welcome","session":"s_3f9c","user":{"id":"u42","name":"Ana","role":"doctor"},"heartbeat_ms":25000,"node":"node-a","protocol":1}"#,
            ServerFrame::Welcome {
                session: "s_3f9c".into(),
                user: ana(),
                heartbeat_ms: 25000,
                node: "node-a".into(),
                protocol: 1,
                video: true,
            },
        );
    }

    #[test]
    fn joined() {
        check(
            r#"{"type":"joined","ref":"1","room":"c-1001","status":"active","seq":58,
                "peers":[{"session":"s_1","user":{"id":"u42","name":"Ana","role":"doctor"},"state":"online","since":"2026-11-24T10:15:00.123Z"}],
                "history":[{"type":"message","room":"c-1001","seq":58,"id":"m_1","client_id":"6f1e","from":{"id":"u7","name":"Budi","role":"patient"},"kind":"text","text":"Hello doctor","at":"2026-11-24T10:15:00.123Z"}],
                "history_complete":true,
                "media":{"mode":"p2p","ice_servers":[{"urls":["stun:stun.example.org:3478"]},{"urls":["turn:turn.example.org:3478?transport=udp"],"username":"1700000000:u42","credential":"c2VjcmV0"}]},
                "read":[{"user":{"id":"u7"},"seq":57}]}"#,
            ServerFrame::Joined {
                reference: r("1"),
                room: "c-1001".into(),
                status: RoomStatus::Active,
                seq: 58,
                peers: vec![Peer {
                    session: "s_1".into(),
                    user: ana(),
                    state: Some(PeerState::Online),
                    since: r("2026-11-24T10:15:00.123Z"),
                }],
                history: vec![HistoryItem::Message(message())],
                history_complete: true,
                media: MediaInfo {
                    mode: MediaMode::P2p,
                    ice_servers: vec![
                        IceServer { urls: vec!["stun:stun.example.org:3478".into()], username: None, credential: None },
                        IceServer {
                            urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
                            username: r("1700000000:u42"),
                            credential: r("c2VjcmV0"),
                        },
                    ],
                    jitsi: None,
                    video: true,
                },
                read: vec![ReadMarker { user: UserId { id: "u7".into() }, seq: 57 }],
            },
        );
    }

    #[test]
    fn presence() {
        check(
            r#"{"type":"presence","room":"c-1001","event":"leave","peer":{"session":"s_1","user":{"id":"u42","name":"Ana","role":"doctor"}}}"#,
            ServerFrame::Presence {
                room: "c-1001".into(),
                event: PresenceEvent::Leave,
                peer: Peer { session: "s_1".into(), user: ana(), state: None, since: None },
            },
        );
    }

    #[test]
    fn left_ack_message() {
        check(
            r#"{"type":"left","ref":"2","room":"c-1001"}"#,
            ServerFrame::Left { reference: r("2"), room: "c-1001".into() },
        );
        check(
            r#"{"type":"ack","ref":"7","room":"c-1001","seq":58,"id":"m_1","at":"2026-11-24T10:15:00.123Z"}"#,
            ServerFrame::Ack {
                reference: r("7"),
                room: "c-1001".into(),
                seq: 58,
                id: "m_1".into(),
                at: "2026-11-24T10:15:00.123Z".into(),
            },
        );
        check(
            r#"{"type":"message","room":"c-1001","seq":58,"id":"m_1","client_id":"6f1e","from":{"id":"u7","name":"Budi","role":"patient"},"kind":"text","text":"Hello doctor","at":"2026-11-24T10:15:00.123Z"}"#,
            ServerFrame::Message(message()),
        );
    }

    #[test]
    fn typing_read_signal() {
        check(
            r#"{"type":"typing","room":"c-1001","user":{"id":"u7","name":"Budi"},"active":true}"#,
            ServerFrame::Typing {
                room: "c-1001".into(),
                user: UserRef { id: "u7".into(), name: "Budi".into() },
                active: true,
            },
        );
        check(
            r#"{"type":"read","room":"c-1001","user":{"id":"u7"},"seq":58}"#,
            ServerFrame::Read { room: "c-1001".into(), user: UserId { id: "u7".into() }, seq: 58 },
        );
        check(
            r#"{"type":"signal","room":"c-1001","from":"s_a","user":{"id":"u42","name":"Ana","role":"doctor"},"data":{"candidate":{"candidate":"","sdp_mid":"0"}}}"#,
            ServerFrame::Signal {
                room: "c-1001".into(),
                from: "s_a".into(),
                user: ana(),
                data: SignalData {
                    candidate: Some(Candidate {
                        candidate: String::new(),
                        sdp_mid: r("0"),
                        sdp_mline_index: None,
                        username_fragment: None,
                    }),
                    ..SignalData::default()
                },
            },
        );
    }

    #[test]
    fn media_mode_and_ended() {
        check(
            r#"{"type":"media_mode","room":"c-1001","mode":"jitsi","reason":"ice_failed","jitsi":{"domain":"meet.example.org","room":"c-1001","url":"https://meet.example.org/c-1001?jwt=x","jwt":"x"}}"#,
            ServerFrame::MediaMode {
                room: "c-1001".into(),
                mode: MediaMode::Jitsi,
                reason: "ice_failed".into(),
                jitsi: Some(JitsiInfo {
                    domain: "meet.example.org".into(),
                    room: "c-1001".into(),
                    url: "https://meet.example.org/c-1001?jwt=x".into(),
                    jwt: "x".into(),
                }),
            },
        );
        check(
            r#"{"type":"media_mode","room":"c-1001","mode":"p2p","reason":"requested"}"#,
            ServerFrame::MediaMode {
                room: "c-1001".into(),
                mode: MediaMode::P2p,
                reason: "requested".into(),
                jitsi: None,
            },
        );
        check(
            r#"{"type":"ended","room":"c-1001","by":{"id":"u42","name":"Ana"},"at":"2026-11-24T10:15:00.123Z"}"#,
            ServerFrame::Ended {
                room: "c-1001".into(),
                by: UserRef { id: "u42".into(), name: "Ana".into() },
                at: "2026-11-24T10:15:00.123Z".into(),
            },
        );
    }

    #[test]
    fn waiting_room() {
        check(
            r#"{"type":"queue","ref":"3","queue":"q-ana","room":"c-1001","ticket":"A-012","position":3,"ahead":2,"eta_s":600}"#,
            ServerFrame::Queue {
                reference: r("3"),
                queue: "q-ana".into(),
                room: "c-1001".into(),
                ticket: "A-012".into(),
                position: 3,
                ahead: 2,
                eta_s: 600,
            },
        );
        check(
            r#"{"type":"queue_state","ref":"4","queue":"q-ana","entries":[{"ticket":"A-012","room":"c-1001","patient":{"id":"u7","name":"Budi"},"since":"2026-11-24T10:15:00.123Z","online":true,"paid":true},{"ticket":"A-013","since":"2026-11-24T10:16:00.000Z"}]}"#,
            ServerFrame::QueueState {
                reference: r("4"),
                queue: "q-ana".into(),
                entries: vec![
                    QueueEntry {
                        ticket: "A-012".into(),
                        room: r("c-1001"),
                        patient: Some(UserRef { id: "u7".into(), name: "Budi".into() }),
                        since: "2026-11-24T10:15:00.123Z".into(),
                        online: Some(true),
                        paid: Some(true),
                    },
                    QueueEntry {
                        ticket: "A-013".into(),
                        room: None,
                        patient: None,
                        since: "2026-11-24T10:16:00.000Z".into(),
                        online: None,
                        paid: None,
                    },
                ],
            },
        );
        check(
            r#"{"type":"called","queue":"q-ana","ticket":"A-012","at":"2026-11-24T10:15:00.123Z"}"#,
            ServerFrame::Called {
                queue: "q-ana".into(),
                ticket: "A-012".into(),
                at: "2026-11-24T10:15:00.123Z".into(),
            },
        );
        check(r#"{"type":"admitted","room":"c-1001"}"#, ServerFrame::Admitted { room: "c-1001".into() });
        check(
            r#"{"type":"payment","room":"c-1001","status":"paid"}"#,
            ServerFrame::Payment { room: "c-1001".into(), status: crate::PaymentStatus::Paid },
        );
    }

    #[test]
    fn ok_pong_error_goaway() {
        check(r#"{"type":"ok","ref":"9"}"#, ServerFrame::Ok { reference: r("9") });
        check(r#"{"type":"pong"}"#, ServerFrame::Pong { reference: None });
        check(
            r#"{"type":"error","ref":"7","code":"forbidden","message":"not a member of c-1001"}"#,
            ServerFrame::error(r("7"), ErrorCode::Forbidden, "not a member of c-1001"),
        );
        check(
            r#"{"type":"error","code":"rate_limited","message":"slow down","retry_ms":250}"#,
            ServerFrame::Error {
                reference: None,
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
                retry_ms: Some(250),
                room: None,
                queue: None,
            },
        );
        check(
            r#"{"type":"error","code":"unavailable","message":"c-1 restarted: join again","room":"c-1"}"#,
            ServerFrame::Error {
                reference: None,
                code: ErrorCode::Unavailable,
                message: "c-1 restarted: join again".into(),
                retry_ms: None,
                room: Some("c-1".into()),
                queue: None,
            },
        );
        check(
            r#"{"type":"error","code":"unavailable","message":"queue q-ana restarted: watch again","queue":"q-ana"}"#,
            ServerFrame::Error {
                reference: None,
                code: ErrorCode::Unavailable,
                message: "queue q-ana restarted: watch again".into(),
                retry_ms: None,
                room: None,
                queue: Some("q-ana".into()),
            },
        );
        check(r#"{"type":"goaway","retry_ms":1000}"#, ServerFrame::Goaway { retry_ms: 1000 });
    }

    #[test]
    fn every_error_code_has_its_wire_name_and_status() {
        use ErrorCode::*;
        for (code, name, status) in [
            (BadRequest, "bad_request", 400),
            (Unauthorized, "unauthorized", 401),
            (Forbidden, "forbidden", 403),
            (NotFound, "not_found", 404),
            (Conflict, "conflict", 409),
            (TooLarge, "too_large", 413),
            (RateLimited, "rate_limited", 429),
            (Unavailable, "unavailable", 503),
            (Internal, "internal", 500),
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::Value::String(name.into()));
            assert_eq!(code.as_str(), name);
            assert_eq!(code.http_status(), status);
        }
    }
}
