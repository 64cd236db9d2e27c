//! What a room tells each session about media: ICE servers, Jitsi access.
//!
//! The room decides the mode; the policy turns it into per-session
//! credentials. The server implements it from its settings
//! (`src/media.rs`: TURN REST credentials, Jitsi tokens). Credentials are per session because TURN and Jitsi tokens
//! name the user they were issued to.

use telehub_signaling::{IceServer, JitsiInfo, UserInfo};

/// Makes per-session media credentials.
pub trait MediaPolicy: Send + Sync + 'static {
    /// The ICE servers a session gets in `joined`.
    fn ice_servers(&self, user: &UserInfo) -> Vec<IceServer>;
    /// Jitsi access for a session once the room is in Jitsi mode; `None` when
    /// no Jitsi deployment is configured.
    fn jitsi(&self, room: &str, user: &UserInfo) -> Option<JitsiInfo>;
    /// How many members may be in a peer-to-peer call before the room moves
    /// to Jitsi.
    fn mesh_limit(&self) -> usize {
        4
    }
    /// Whether the hub has video calls on at all.
    fn video(&self) -> bool {
        true
    }
}
