//! Size limits of client frames and their fields.

use crate::{ClientFrame, FrameError};

/// The limits a hub enforces on what clients send. Both the hub and clients
/// that want to fail early use the same checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest text frame in bytes; larger frames close the socket with 1009.
    pub max_frame_bytes: usize,
    /// Longest chat text in characters, after trimming.
    pub max_text_chars: usize,
    /// Longest identifier (room, session, client_id, queue) in bytes.
    pub max_id_bytes: usize,
    /// Longest `ref` in bytes.
    pub max_ref_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame_bytes: 64 * 1024, max_text_chars: 4000, max_id_bytes: 128, max_ref_bytes: 64 }
    }
}

impl Limits {
    /// Checks every field of a parsed frame against the limits, and returns
    /// the frame with chat text trimmed as it will be stored.
    pub fn validate(&self, frame: ClientFrame) -> Result<ClientFrame, FrameError> {
        if let Some(r) = frame.reference() {
            self.check_len("ref", r, self.max_ref_bytes)?;
        }
        if let Some(room) = frame.room() {
            self.check_id("room", room)?;
        }
        match frame {
            ClientFrame::Chat { reference, room, client_id, text } => {
                self.check_id("client_id", &client_id)?;
                let text = self.chat_text(&text)?;
                Ok(ClientFrame::Chat { reference, room, client_id, text })
            }
            ClientFrame::Join { since: Some(since), .. } if since < 0 => {
                Err(FrameError::Malformed("since must not be negative".into()))
            }
            ClientFrame::Read { seq, .. } if seq < 0 => Err(FrameError::Malformed("seq must not be negative".into())),
            ClientFrame::Signal { ref to, ref data, .. } => {
                self.check_id("to", to)?;
                data.kind()?;
                Ok(frame)
            }
            ClientFrame::Watch { ref queue, .. } => {
                self.check_id("queue", queue)?;
                Ok(frame)
            }
            ClientFrame::Media { event: None, mode: None, .. } => {
                Err(FrameError::Malformed("media needs an event or a mode".into()))
            }
            ClientFrame::Media { event: Some(_), mode: Some(_), .. } => {
                Err(FrameError::Malformed("media takes an event or a mode, not both".into()))
            }
            other => Ok(other),
        }
    }

    /// Trims chat text and checks its length; used for system messages too.
    pub fn chat_text(&self, text: &str) -> Result<String, FrameError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(FrameError::Empty("text"));
        }
        if trimmed.chars().count() > self.max_text_chars {
            return Err(FrameError::TooLarge { field: "text", limit: self.max_text_chars });
        }
        Ok(trimmed.to_owned())
    }

    fn check_id(&self, field: &'static str, value: &str) -> Result<(), FrameError> {
        if value.is_empty() {
            return Err(FrameError::Empty(field));
        }
        self.check_len(field, value, self.max_id_bytes)
    }

    fn check_len(&self, field: &'static str, value: &str, limit: usize) -> Result<(), FrameError> {
        if value.len() > limit {
            return Err(FrameError::TooLarge { field, limit });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(text: &str) -> ClientFrame {
        ClientFrame::Chat { reference: None, room: "c-1".into(), client_id: "x".into(), text: text.into() }
    }

    #[test]
    fn chat_text_is_trimmed_and_bounded() {
        let limits = Limits { max_text_chars: 5, ..Limits::default() };
        match limits.validate(chat("  héllo  ")).unwrap() {
            ClientFrame::Chat { text, .. } => assert_eq!(text, "héllo"),
            other => panic!("{other:?}"),
        }
        assert_eq!(limits.validate(chat("   ")), Err(FrameError::Empty("text")));
        let err = limits.validate(chat("123456")).unwrap_err();
        assert_eq!(err, FrameError::TooLarge { field: "text", limit: 5 });
        assert_eq!(err.code(), crate::ErrorCode::TooLarge);
    }

    #[test]
    fn ids_are_bounded() {
        let limits = Limits::default();
        let long = "r".repeat(129);
        let frame = ClientFrame::Leave { reference: None, room: long };
        assert!(matches!(limits.validate(frame), Err(FrameError::TooLarge { field: "room", .. })));
        let empty = ClientFrame::Leave { reference: None, room: String::new() };
        assert_eq!(limits.validate(empty), Err(FrameError::Empty("room")));
    }

    #[test]
    fn negative_sequence_numbers_are_refused() {
        let limits = Limits::default();
        let join = ClientFrame::Join { reference: None, room: "c".into(), since: Some(-1) };
        assert!(limits.validate(join).is_err());
        let read = ClientFrame::Read { reference: None, room: "c".into(), seq: -5 };
        assert!(limits.validate(read).is_err());
    }
}
