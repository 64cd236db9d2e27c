//! Small value types shared by client and server frames.

use serde::{Deserialize, Serialize};

/// What a token's holder is allowed to be in a consultation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patient,
    Doctor,
    Staff,
    Display,
}

impl Role {
    /// The lowercase wire name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Staff => "staff",
            Role::Display => "display",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "patient" => Ok(Role::Patient),
            "doctor" => Ok(Role::Doctor),
            "staff" => Ok(Role::Staff),
            "display" => Ok(Role::Display),
            other => Err(format!("unknown role {other:?}")),
        }
    }
}

/// A user as the hub shows them to others: id, display name and role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// A user by id and name only (typing indicators, `ended`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub id: String,
    pub name: String,
}

/// A user by id only (read markers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserId {
    pub id: String,
}

/// The author of a chat message: a user, or the hub itself for `system`
/// messages, whose role is then `"system"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    pub id: String,
    pub name: String,
    pub role: String,
}

/// One session in a room. A user with two sessions is two peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub session: String,
    pub user: UserInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PeerState>,
    /// When the session joined the room (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// Whether a peer's session is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    Online,
}

/// The lifecycle of a consultation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomStatus {
    Scheduled,
    Waiting,
    Active,
    Ended,
    Cancelled,
}

impl RoomStatus {
    /// The lowercase wire (and storage) name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomStatus::Scheduled => "scheduled",
            RoomStatus::Waiting => "waiting",
            RoomStatus::Active => "active",
            RoomStatus::Ended => "ended",
            RoomStatus::Cancelled => "cancelled",
        }
    }

    /// Ended and cancelled rooms are read-only.
    pub fn is_closed(self) -> bool {
        matches!(self, RoomStatus::Ended | RoomStatus::Cancelled)
    }
}

impl std::str::FromStr for RoomStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "scheduled" => Ok(RoomStatus::Scheduled),
            "waiting" => Ok(RoomStatus::Waiting),
            "active" => Ok(RoomStatus::Active),
            "ended" => Ok(RoomStatus::Ended),
            "cancelled" => Ok(RoomStatus::Cancelled),
            other => Err(format!("unknown room status {other:?}")),
        }
    }
}

/// Whether a consultation that has a price has been paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Owed: the patient cannot be admitted yet (unless staff override).
    Unpaid,
    Paid,
    /// Paid, then given back (a cancelled consultation).
    Refunded,
}

impl PaymentStatus {
    /// The lowercase wire (and storage) name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Unpaid => "unpaid",
            PaymentStatus::Paid => "paid",
            PaymentStatus::Refunded => "refunded",
        }
    }
}

impl std::str::FromStr for PaymentStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unpaid" => Ok(PaymentStatus::Unpaid),
            "paid" => Ok(PaymentStatus::Paid),
            "refunded" => Ok(PaymentStatus::Refunded),
            other => Err(format!("unknown payment status {other:?}")),
        }
    }
}

/// How the room's call carries media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaMode {
    P2p,
    Jitsi,
}

impl MediaMode {
    /// The lowercase wire (and storage) name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaMode::P2p => "p2p",
            MediaMode::Jitsi => "jitsi",
        }
    }
}

impl std::str::FromStr for MediaMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "p2p" => Ok(MediaMode::P2p),
            "jitsi" => Ok(MediaMode::Jitsi),
            other => Err(format!("unknown media mode {other:?}")),
        }
    }
}

/// Whether a chat message came from a person or from the server API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Text,
    System,
}

impl MessageKind {
    /// The lowercase wire (and storage) name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::System => "system",
        }
    }
}

/// An ICE server in the shape `RTCPeerConnection` takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}
