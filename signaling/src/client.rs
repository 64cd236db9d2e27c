//! Frames a client sends to the hub.

use serde::{Deserialize, Serialize};

use crate::{MediaMode, SignalData};

/// One frame from a client. Every variant may carry a `ref`, echoed in the
/// reply so the client can match replies to requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Enter a room; `since` is the last `seq` the client has seen.
    Join {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<i64>,
    },
    /// Leave a room.
    Leave {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
    },
    /// Send a chat message, idempotent by `client_id`.
    Chat {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
        client_id: String,
        text: String,
    },
    /// Start or stop the typing indicator.
    Typing {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
        active: bool,
    },
    /// Move the sender's read marker to `seq`.
    Read {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
        seq: i64,
    },
    /// Relay WebRTC signaling to one session of the room.
    Signal {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
        to: String,
        data: SignalData,
    },
    /// Report a media event (`ice_failed`) or ask for a media mode.
    Media {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<MediaEvent>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<MediaMode>,
    },
    /// A patient enters the waiting room of their consultation.
    Checkin {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
    },
    /// Doctor, staff or display: follow a queue.
    Watch {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        queue: String,
    },
    /// Doctor or staff: admit the patient of a consultation. Staff may
    /// admit an unpaid one with `override_payment` (audited).
    Admit {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        override_payment: bool,
    },
    /// Doctor or staff: end the consultation.
    End {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        room: String,
    },
    /// Application-level ping, answered with `pong`.
    Ping {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
}

/// A media event reported by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaEvent {
    IceFailed,
}

/// Reads only the `ref` of a frame, so that a frame that fails to parse
/// as a whole can still be answered with its `ref`.
#[derive(Debug, Deserialize)]
pub struct RefOnly {
    #[serde(rename = "ref", default)]
    pub reference: Option<serde_json::Value>,
}

impl RefOnly {
    /// The `ref` of a raw frame if it has a string one.
    pub fn of(raw: &str) -> Option<String> {
        serde_json::from_str::<RefOnly>(raw).ok().and_then(|r| r.reference).and_then(|v| v.as_str().map(str::to_owned))
    }
}

impl ClientFrame {
    /// The frame's `ref`, if any.
    pub fn reference(&self) -> Option<&str> {
        match self {
            ClientFrame::Join { reference, .. }
            | ClientFrame::Leave { reference, .. }
            | ClientFrame::Chat { reference, .. }
            | ClientFrame::Typing { reference, .. }
            | ClientFrame::Read { reference, .. }
            | ClientFrame::Signal { reference, .. }
            | ClientFrame::Media { reference, .. }
            | ClientFrame::Checkin { reference, .. }
            | ClientFrame::Watch { reference, .. }
            | ClientFrame::Admit { reference, .. }
            | ClientFrame::End { reference, .. }
            | ClientFrame::Ping { reference } => reference.as_deref(),
        }
    }

    /// The room the frame is about, if it is about one.
    pub fn room(&self) -> Option<&str> {
        match self {
            ClientFrame::Join { room, .. }
            | ClientFrame::Leave { room, .. }
            | ClientFrame::Chat { room, .. }
            | ClientFrame::Typing { room, .. }
            | ClientFrame::Read { room, .. }
            | ClientFrame::Signal { room, .. }
            | ClientFrame::Media { room, .. }
            | ClientFrame::Checkin { room, .. }
            | ClientFrame::Admit { room, .. }
            | ClientFrame::End { room, .. } => Some(room),
            ClientFrame::Watch { .. } | ClientFrame::Ping { .. } => None,
        }
    }

    /// The wire name of the frame's type, for logs and metrics.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientFrame::Join { .. } => "join",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::Chat { .. } => "chat",
            ClientFrame::Typing { .. } => "typing",
            ClientFrame::Read { .. } => "read",
            ClientFrame::Signal { .. } => "signal",
            ClientFrame::Media { .. } => "media",
            ClientFrame::Checkin { .. } => "checkin",
            ClientFrame::Watch { .. } => "watch",
            ClientFrame::Admit { .. } => "admit",
            ClientFrame::End { .. } => "end",
            ClientFrame::Ping { .. } => "ping",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Candidate, Description, DescriptionKind};

    /// Parses `json`, compares with `expected`, then checks that serializing
    /// and parsing again gives the same frame.
    fn check(json: &str, expected: ClientFrame) {
        let parsed: ClientFrame = serde_json::from_str(json).expect(json);
        assert_eq!(parsed, expected, "{json}");
        let again: ClientFrame = serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
        assert_eq!(again, expected);
        let original: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), original, "{json}");
    }

    fn r(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn join() {
        check(
            r#"{"type":"join","ref":"1","room":"c-1001","since":41}"#,
            ClientFrame::Join { reference: r("1"), room: "c-1001".into(), since: Some(41) },
        );
        check(
            r#"{"type":"join","room":"c-1"}"#,
            ClientFrame::Join { reference: None, room: "c-1".into(), since: None },
        );
    }

    #[test]
    fn leave() {
        check(
            r#"{"type":"leave","ref":"2","room":"c-1001"}"#,
            ClientFrame::Leave { reference: r("2"), room: "c-1001".into() },
        );
    }

    #[test]
    fn chat() {
        check(
            r#"{"type":"chat","ref":"7","room":"c-1001","client_id":"6f1e","text":"Hello doctor"}"#,
            ClientFrame::Chat {
                reference: r("7"),
                room: "c-1001".into(),
                client_id: "6f1e".into(),
                text: "Hello doctor".into(),
            },
        );
    }

    #[test]
    fn typing() {
        check(
            r#"{"type":"typing","room":"c-1001","active":true}"#,
            ClientFrame::Typing { reference: None, room: "c-1001".into(), active: true },
        );
    }

    #[test]
    fn read() {
        check(
            r#"{"type":"read","room":"c-1001","seq":58}"#,
            ClientFrame::Read { reference: None, room: "c-1001".into(), seq: 58 },
        );
    }

    #[test]
    fn signal() {
        check(
            r#"{"type":"signal","room":"c-1001","to":"s_b","data":{"description":{"type":"offer","sdp":"v=0"}}}"#,
            ClientFrame::Signal {
                reference: None,
                room: "c-1001".into(),
                to: "s_b".into(),
                data: SignalData {
                    description: Some(Description { kind: DescriptionKind::Offer, sdp: r("v=0") }),
                    ..SignalData::default()
                },
            },
        );
        check(
            r#"{"type":"signal","room":"c-1001","to":"s_b","data":{"candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdp_mid":"0","sdp_mline_index":0}}}"#,
            ClientFrame::Signal {
                reference: None,
                room: "c-1001".into(),
                to: "s_b".into(),
                data: SignalData {
                    candidate: Some(Candidate {
                        candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
                        sdp_mid: r("0"),
                        sdp_mline_index: Some(0),
                        username_fragment: None,
                    }),
                    ..SignalData::default()
                },
            },
        );
        check(
            r#"{"type":"signal","ref":"s","room":"c-1001","to":"s_b","data":{"bye":true}}"#,
            ClientFrame::Signal {
                reference: r("s"),
                room: "c-1001".into(),
                to: "s_b".into(),
                data: SignalData { bye: Some(true), ..SignalData::default() },
            },
        );
    }

    #[test]
    fn media() {
        check(
            r#"{"type":"media","room":"c-1001","event":"ice_failed"}"#,
            ClientFrame::Media {
                reference: None,
                room: "c-1001".into(),
                event: Some(MediaEvent::IceFailed),
                mode: None,
            },
        );
        check(
            r#"{"type":"media","room":"c-1001","mode":"jitsi"}"#,
            ClientFrame::Media { reference: None, room: "c-1001".into(), event: None, mode: Some(MediaMode::Jitsi) },
        );
    }

    #[test]
    fn waiting_room() {
        check(
            r#"{"type":"checkin","ref":"3","room":"c-1001"}"#,
            ClientFrame::Checkin { reference: r("3"), room: "c-1001".into() },
        );
        check(
            r#"{"type":"watch","ref":"4","queue":"q-ana"}"#,
            ClientFrame::Watch { reference: r("4"), queue: "q-ana".into() },
        );
        check(
            r#"{"type":"admit","ref":"5","room":"c-1001"}"#,
            ClientFrame::Admit { reference: r("5"), room: "c-1001".into(), override_payment: false },
        );
        check(
            r#"{"type":"admit","ref":"6","room":"c-1001","override_payment":true}"#,
            ClientFrame::Admit { reference: r("6"), room: "c-1001".into(), override_payment: true },
        );
    }

    #[test]
    fn end_and_ping() {
        check(
            r#"{"type":"end","ref":"9","room":"c-1001"}"#,
            ClientFrame::End { reference: r("9"), room: "c-1001".into() },
        );
        check(r#"{"type":"ping"}"#, ClientFrame::Ping { reference: None });
    }

    #[test]
    fn bad_frames_do_not_parse_but_keep_their_ref() {
        for bad in [
            r#"{"type":"nope","ref":"x"}"#,
            r#"{"type":"chat","ref":"x","room":"c"}"#,
            r#"{"type":"read","ref":"x","room":"c","seq":"one"}"#,
            r#"{"type":"signal","ref":"x","room":"c","to":"s","data":{"sdp":"v=0"}}"#,
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
            assert_eq!(RefOnly::of(bad).as_deref(), Some("x"));
        }
        assert_eq!(RefOnly::of("not json"), None);
        assert_eq!(RefOnly::of(r#"{"ref":5}"#), None);
    }
}
