//! The Telehub wire protocol, version 1.
//!
//! Everything a client and the hub say to each other over the WebSocket is a
//! value of [`ClientFrame`] (client to hub) or [`ServerFrame`] (hub to client),
//! one JSON object per text frame, tagged by its `type`. This crate owns those
//! types, their validation ([`Limits`], SDP parsing) and the small pieces of
//! protocol logic that both ends must agree on, such as which peer of a pair is
//! the polite one in perfect negotiation. It has no runtime, no actors and no
//! storage, so the server, the load tester and tests all build on it.

mod client;
mod error;
mod limits;
mod negotiation;
mod server;
mod signal;
mod types;

pub use client::{ClientFrame, MediaEvent, RefOnly};
pub use error::{ErrorCode, FrameError};
pub use limits::Limits;
pub use negotiation::{is_polite, polite_of};
pub use server::{HistoryItem, JitsiInfo, MediaInfo, MessageEvent, PresenceEvent, QueueEntry, ReadMarker, ServerFrame};
pub use signal::{Candidate, Description, DescriptionKind, SignalData, SignalKind};
pub use types::{
    IceServer, MediaMode, MessageKind, PaymentStatus, Peer, PeerState, Role, RoomStatus, Sender, UserId, UserInfo,
    UserRef,
};

/// The protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Formats a timestamp the way the protocol writes times: RFC 3339, UTC,
/// millisecond precision, with a `Z` suffix.
pub fn format_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
