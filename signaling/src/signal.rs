//! The payload of a `signal` frame: one session description, one ICE
//! candidate, or a `bye`.
//!
//! The hub never interprets media, but it does refuse what cannot be media:
//! an offer or answer must parse as SDP, so a broken client fails at its own
//! end instead of confusing its peer.

use serde::{Deserialize, Serialize};

use crate::FrameError;

/// The `data` of a signal. On the wire it holds exactly one of its fields;
/// [`SignalData::kind`] checks that and tells which.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Candidate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bye: Option<bool>,
}

/// A session description, as `RTCSessionDescriptionInit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    #[serde(rename = "type")]
    pub kind: DescriptionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
}

/// The `type` of a session description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DescriptionKind {
    Offer,
    Answer,
    Pranswer,
    Rollback,
}

/// A trickled ICE candidate, as `RTCIceCandidateInit` in snake_case. An empty
/// `candidate` string is the end-of-candidates marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mline_index: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// Which of the three things a valid signal carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Description(DescriptionKind),
    Candidate,
    Bye,
}

impl SignalData {
    /// Checks that exactly one field is set and that an offer or answer
    /// carries parseable SDP, and tells which kind of signal this is.
    pub fn kind(&self) -> Result<SignalKind, FrameError> {
        let set = usize::from(self.description.is_some())
            + usize::from(self.candidate.is_some())
            + usize::from(self.bye.is_some());
        if set != 1 {
            return Err(FrameError::Malformed("data must hold exactly one of description, candidate, bye".into()));
        }
        if let Some(description) = &self.description {
            match description.kind {
                DescriptionKind::Offer | DescriptionKind::Answer => {
                    let sdp = description.sdp.as_deref().unwrap_or("");
                    parse_sdp(sdp)?;
                }
                DescriptionKind::Pranswer => {
                    if let Some(sdp) = description.sdp.as_deref() {
                        parse_sdp(sdp)?;
                    }
                }
                DescriptionKind::Rollback => {}
            }
            return Ok(SignalKind::Description(description.kind));
        }
        if self.candidate.is_some() {
            return Ok(SignalKind::Candidate);
        }
        match self.bye {
            Some(true) => Ok(SignalKind::Bye),
            _ => Err(FrameError::Malformed("bye must be true".into())),
        }
    }
}

/// Parses SDP with webrtc-rs's parser, which is what a real peer would do
/// with it. Browsers write CRLF line ends; bare LF is accepted too.
fn parse_sdp(sdp: &str) -> Result<(), FrameError> {
    if sdp.trim().is_empty() {
        return Err(FrameError::Sdp("empty".into()));
    }
    let mut reader = std::io::Cursor::new(sdp.as_bytes());
    sdp::SessionDescription::unmarshal(&mut reader).map(|_| ()).map_err(|err| FrameError::Sdp(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const OFFER: &str = "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n";

    fn description(kind: DescriptionKind, sdp: Option<&str>) -> SignalData {
        SignalData { description: Some(Description { kind, sdp: sdp.map(str::to_owned) }), ..SignalData::default() }
    }

    #[test]
    fn a_real_offer_parses() {
        let data = description(DescriptionKind::Offer, Some(OFFER));
        assert_eq!(data.kind(), Ok(SignalKind::Description(DescriptionKind::Offer)));
    }

    #[test]
    fn garbage_sdp_is_refused() {
        for sdp in ["", "hello", "v=0\r\nthis is not sdp\r\n", "x=1\r\n"] {
            let data = description(DescriptionKind::Answer, Some(sdp));
            assert!(matches!(data.kind(), Err(FrameError::Sdp(_))), "{sdp:?} accepted");
        }
        let missing = description(DescriptionKind::Offer, None);
        assert!(matches!(missing.kind(), Err(FrameError::Sdp(_))));
    }

    #[test]
    fn rollback_needs_no_sdp() {
        let data = description(DescriptionKind::Rollback, None);
        assert_eq!(data.kind(), Ok(SignalKind::Description(DescriptionKind::Rollback)));
    }

    #[test]
    fn exactly_one_field() {
        assert!(SignalData::default().kind().is_err());
        let two = SignalData {
            bye: Some(true),
            candidate: Some(Candidate {
                candidate: String::new(),
                sdp_mid: None,
                sdp_mline_index: None,
                username_fragment: None,
            }),
            ..SignalData::default()
        };
        assert!(two.kind().is_err());
        let bye = SignalData { bye: Some(true), ..SignalData::default() };
        assert_eq!(bye.kind(), Ok(SignalKind::Bye));
        let not_bye = SignalData { bye: Some(false), ..SignalData::default() };
        assert!(not_bye.kind().is_err());
    }
}
