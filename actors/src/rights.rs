//! Who may do what, as the protocol's table of rights says.
//!
//! - patient: their own consultations: join, chat, typing, read, signal,
//!   report `ice_failed`, check in;
//! - doctor: the same in the consultations they are assigned to, plus admit,
//!   end and switching the media mode;
//! - staff: like a doctor for every consultation of their clinic, but no
//!   media (no signaling, no `ice_failed`);
//! - display: nothing in rooms; it only watches queues.
//!
//! A token's `rooms` claim, when present, narrows which rooms it may enter.

use telehub_signaling::{Role, UserInfo};

use crate::RoomRecord;

/// Who a session is, as its token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserInfo,
    pub clinic: Option<String>,
    /// The token's `rooms` claim.
    pub rooms: Option<Vec<String>>,
}

/// Something a session asks to do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Join,
    Chat,
    Typing,
    Read,
    Signal,
    ReportIceFailure,
    SwitchMedia,
    Checkin,
    Admit,
    End,
}

/// Whether `who` may do `action` in `room`; the error says why not.
pub fn may(who: &Identity, action: Action, room: &RoomRecord) -> Result<(), String> {
    let role = who.user.role;
    if !belongs(who, room) {
        return Err(format!("not a member of {}", room.id));
    }
    let allowed = match action {
        Action::Join | Action::Chat | Action::Typing | Action::Read => {
            matches!(role, Role::Patient | Role::Doctor | Role::Staff)
        }
        Action::Signal | Action::ReportIceFailure => matches!(role, Role::Patient | Role::Doctor),
        Action::SwitchMedia | Action::Admit | Action::End => matches!(role, Role::Doctor | Role::Staff),
        Action::Checkin => role == Role::Patient,
    };
    if !allowed {
        return Err(format!("a {} may not {} in {}", role.as_str(), verb(action), room.id));
    }
    // A `rooms` claim lets a patient into another's consultation (a
    // relative, an interpreter), but the queue is the patient's own: it
    // would be shown under the consultation's patient.
    if action == Action::Checkin && room.patient.id != who.user.id {
        return Err(format!("only the patient of {} may check in to it", room.id));
    }
    Ok(())
}

/// Whether a role takes part in the call: only those get media
/// credentials (TURN, a Jitsi token). Staff run the consultation without
/// being in the call; displays never join.
pub fn in_call(role: Role) -> bool {
    matches!(role, Role::Patient | Role::Doctor)
}

/// Whether the consultation is one of this identity's.
fn belongs(who: &Identity, room: &RoomRecord) -> bool {
    if let Some(rooms) = &who.rooms
        && !rooms.iter().any(|r| r == &room.id)
    {
        return false;
    }
    let listed = who.rooms.is_some();
    match who.user.role {
        Role::Patient => listed || room.patient.id == who.user.id,
        Role::Doctor => listed || room.doctor.id == who.user.id,
        Role::Staff => who.clinic.is_some() && who.clinic == room.clinic,
        Role::Display => false,
    }
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Join => "join",
        Action::Chat => "chat",
        Action::Typing => "type",
        Action::Read => "mark as read",
        Action::Signal => "signal",
        Action::ReportIceFailure => "report media failures",
        Action::SwitchMedia => "switch the media mode",
        Action::Checkin => "check in",
        Action::Admit => "admit",
        Action::End => "end the consultation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomRecord {
        crate::fixtures::record(0)
    }

    fn who(id: &str, role: Role, clinic: Option<&str>, rooms: Option<&[&str]>) -> Identity {
        Identity {
            user: UserInfo { id: id.into(), name: id.into(), role },
            clinic: clinic.map(str::to_owned),
            rooms: rooms.map(|r| r.iter().map(|s| s.to_string()).collect()),
        }
    }

    const ALL: [Action; 10] = [
        Action::Join,
        Action::Chat,
        Action::Typing,
        Action::Read,
        Action::Signal,
        Action::ReportIceFailure,
        Action::SwitchMedia,
        Action::Checkin,
        Action::Admit,
        Action::End,
    ];

    fn allowed(identity: &Identity) -> Vec<Action> {
        ALL.into_iter().filter(|a| may(identity, *a, &room()).is_ok()).collect()
    }

    #[test]
    fn patient_rights() {
        use Action::*;
        let p = who("p1", Role::Patient, None, None);
        assert_eq!(allowed(&p), vec![Join, Chat, Typing, Read, Signal, ReportIceFailure, Checkin]);
        assert!(allowed(&who("p2", Role::Patient, None, None)).is_empty(), "another patient");
    }

    #[test]
    fn doctor_rights() {
        use Action::*;
        let d = who("d1", Role::Doctor, None, None);
        assert_eq!(allowed(&d), vec![Join, Chat, Typing, Read, Signal, ReportIceFailure, SwitchMedia, Admit, End]);
        assert!(allowed(&who("d2", Role::Doctor, Some("k1"), None)).is_empty(), "unassigned doctor");
    }

    #[test]
    fn staff_rights() {
        use Action::*;
        let s = who("s1", Role::Staff, Some("k1"), None);
        assert_eq!(allowed(&s), vec![Join, Chat, Typing, Read, SwitchMedia, Admit, End]);
        assert!(allowed(&who("s2", Role::Staff, Some("k2"), None)).is_empty(), "other clinic");
        assert!(allowed(&who("s3", Role::Staff, None, None)).is_empty(), "no clinic");
    }

    #[test]
    fn display_has_no_rights_in_rooms() {
        assert!(allowed(&who("x", Role::Display, Some("k1"), None)).is_empty());
        assert!(allowed(&who("x", Role::Display, Some("k1"), Some(&["c-1"]))).is_empty());
    }

    #[test]
    fn rooms_claim_grants_and_narrows() {
        assert!(may(&who("p9", Role::Patient, None, Some(&["c-1"])), Action::Chat, &room()).is_ok());
        assert!(may(&who("p1", Role::Patient, None, Some(&["c-2"])), Action::Join, &room()).is_err());
        assert!(may(&who("s1", Role::Staff, Some("k1"), Some(&["c-2"])), Action::End, &room()).is_err());
    }

    #[test]
    fn only_the_consultations_own_patient_checks_in() {
        let guest = who("p9", Role::Patient, None, Some(&["c-1"]));
        assert!(may(&guest, Action::Join, &room()).is_ok(), "the claim lets them in");
        assert!(may(&guest, Action::Checkin, &room()).is_err(), "but the queue place is the patient's");
        assert!(may(&who("p1", Role::Patient, None, Some(&["c-1"])), Action::Checkin, &room()).is_ok());
    }
}
