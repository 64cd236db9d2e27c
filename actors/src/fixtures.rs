//! Values shared by the unit tests of this crate.

use telehub_signaling::{MediaMode, RoomStatus};

use crate::{Person, RoomRecord};

/// Consultation `c-1` of patient `p1` and doctor `d1` in clinic `k1`.
pub fn record(last_seq: i64) -> RoomRecord {
    RoomRecord {
        id: "c-1".into(),
        status: RoomStatus::Waiting,
        patient: Person { id: "p1".into(), name: "Budi".into() },
        doctor: Person { id: "d1".into(), name: "Ana".into() },
        clinic: Some("k1".into()),
        queue: "d1".into(),
        media_mode: MediaMode::P2p,
        last_seq,
        paid: true,
        ended_at: None,
        ended_by: None,
    }
}
