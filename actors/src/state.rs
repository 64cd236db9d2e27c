//! The decisions of one room, without I/O.
//!
//! [`RoomState`] knows the consultation, the sessions present, the messages
//! stored and delivered, and the read markers. Its methods decide and return
//! what should happen; the [`Room`](crate::Room) actor sends the frames and
//! talks to storage. Keeping the two apart lets these rules be tested as
//! plain functions.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use litemap::LiteMap;
use telehub_signaling::{ErrorCode, MediaMode, MessageEvent, Peer, PeerState, PresenceEvent, RoomStatus, ServerFrame};

use crate::{Action, Identity, RoomRecord, may};

/// Why a room refused a request: a protocol error code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// When to try again, for a refusal that passes.
    pub retry_ms: Option<u64>,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal { code, message: message.into(), retry_ms: None }
    }
}

/// What a client is told when storage fails: `unavailable` says nothing was
/// stored and a retry is safe.
impl From<crate::StoreError> for Refusal {
    fn from(err: crate::StoreError) -> Self {
        use crate::StoreError;
        match err {
            StoreError::NotFound(what) => Refusal::new(ErrorCode::NotFound, format!("{what} not found")),
            StoreError::Conflict(message) => Refusal::new(ErrorCode::Conflict, message),
            StoreError::Unavailable(message) => {
                tracing::warn!(%message, "storage unavailable");
                Refusal::new(ErrorCode::Unavailable, "storage unavailable, nothing was stored: retry")
            }
            StoreError::Overloaded { retry_ms } => Refusal {
                retry_ms: Some(retry_ms),
                ..Refusal::new(ErrorCode::Unavailable, "storage is overloaded, nothing was stored: retry")
            },
        }
    }
}

/// A session present in the room.
#[derive(Debug, Clone)]
struct Present {
    identity: Arc<Identity>,
    since: String,
    /// Where the session lives when it is on another node of a cluster.
    remote: Option<Remote>,
}

/// The node of a session on another node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Remote {
    node: Arc<str>,
    instance: Arc<str>,
}

/// A session present, with the node it is on (`None`: this node).
#[derive(Debug, Clone, PartialEq)]
pub struct PresentPeer {
    pub peer: Peer,
    pub node: Option<String>,
}

/// Where the history of a `joined` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryPlan {
    /// Everything needed is in memory.
    Ready {
        history: Vec<MessageEvent>,
        complete: bool,
    },
    /// Load from storage: messages after `after`, or the last `last` ones.
    LoadAfter {
        after: i64,
        limit: u32,
    },
    LoadLast {
        limit: u32,
    },
}

/// The state of one consultation room.
#[derive(Debug)]
pub struct RoomState {
    record: RoomRecord,
    /// A sorted vector: a room holds a few sessions, and a `BTreeMap`'s
    /// first node alone is room for eleven (about 900 bytes a room).
    sessions: LiteMap<Arc<str>, Present>,
    /// The last `seq` delivered to the sessions present.
    delivered: i64,
    /// Stored messages that wait for an earlier `seq` before going out.
    waiting: BTreeMap<i64, MessageEvent>,
    /// The newest delivered messages: every message with `seq` in
    /// `(recent_floor, delivered]`, oldest first.
    recent: VecDeque<MessageEvent>,
    recent_floor: i64,
    recent_capacity: usize,
    read_markers: HashMap<String, i64>,
    /// Writes sent to storage whose result has not come back.
    in_flight: usize,
    /// `end` was accepted and is being stored.
    ending: bool,
    history_default: u32,
    history_max: u32,
}

impl RoomState {
    /// A room for a stored consultation. `recent_capacity` messages are kept
    /// in memory so that most reconnects are served without storage.
    pub fn new(record: RoomRecord, recent_capacity: usize, history_default: u32, history_max: u32) -> Self {
        let last = record.last_seq;
        RoomState {
            record,
            // Room for a consultation's two, the patient and the doctor.
            sessions: LiteMap::with_capacity(2),
            delivered: last,
            waiting: BTreeMap::new(),
            recent: VecDeque::new(),
            recent_floor: last,
            recent_capacity: recent_capacity.max(1),
            read_markers: HashMap::new(),
            in_flight: 0,
            ending: false,
            history_default: history_default.max(1),
            history_max: history_max.max(1),
        }
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn record(&self) -> &RoomRecord {
        &self.record
    }

    pub fn status(&self) -> RoomStatus {
        self.record.status
    }

    pub fn media_mode(&self) -> MediaMode {
        self.record.media_mode
    }

    /// The last `seq` delivered.
    pub fn last_seq(&self) -> i64 {
        self.delivered
    }

    /// No session of this node is present and no write is pending: the
    /// room may stop. (Sessions on other nodes have rooms of their own.)
    pub fn is_idle(&self) -> bool {
        self.sessions.values().all(|p| p.remote.is_some()) && self.in_flight == 0 && self.waiting.is_empty()
    }

    /// Whether stored messages wait for an earlier `seq` that has not come.
    pub fn has_gap(&self) -> bool {
        !self.waiting.is_empty()
    }

    pub fn is_present(&self, session: &str) -> bool {
        self.sessions.contains_key(session)
    }

    /// Every session present, for broadcasts.
    pub fn sessions(&self) -> impl Iterator<Item = &Arc<str>> {
        self.sessions.keys()
    }

    /// The sessions of users in a role.
    pub fn sessions_of(&self, user_id: &str) -> impl Iterator<Item = &Arc<str>> {
        self.sessions.iter().filter(move |(_, p)| p.identity.user.id == user_id).map(|(id, _)| id)
    }

    /// Checks rights and the room's state for an action.
    pub fn check(&self, who: &Identity, action: Action) -> Result<(), Refusal> {
        may(who, action, &self.record).map_err(|m| Refusal::new(ErrorCode::Forbidden, m))?;
        let closed = self.record.status.is_closed() || self.ending;
        let needs_open = !matches!(action, Action::Join | Action::Read | Action::Typing);
        if closed && needs_open {
            return Err(Refusal::new(ErrorCode::Conflict, format!("{} has ended", self.record.id)));
        }
        Ok(())
    }

    /// Checks that a session is present before it acts in the room.
    pub fn check_present(&self, session: &str, who: &Identity, action: Action) -> Result<(), Refusal> {
        if !self.is_present(session) {
            return Err(Refusal::new(ErrorCode::Forbidden, format!("join {} first", self.record.id)));
        }
        self.check(who, action)
    }

    /// The other sessions present, as `joined.peers` lists them.
    pub fn peers_except(&self, session: &str) -> Vec<Peer> {
        self.sessions.iter().filter(|(id, _)| id.as_ref() != session).map(|(id, p)| peer(id, p, true)).collect()
    }

    /// Every session present, with its state.
    pub fn peers(&self) -> Vec<Peer> {
        self.sessions.iter().map(|(id, p)| peer(id, p, true)).collect()
    }

    /// Every session present, with the node of those on other nodes.
    pub fn present(&self) -> Vec<PresentPeer> {
        self.sessions
            .iter()
            .map(|(id, p)| PresentPeer { peer: peer(id, p, true), node: p.remote.as_ref().map(|r| r.node.to_string()) })
            .collect()
    }

    /// The sessions of this node present, as peers.
    pub fn local_peers(&self) -> Vec<Peer> {
        self.sessions.iter().filter(|(_, p)| p.remote.is_none()).map(|(id, p)| peer(id, p, true)).collect()
    }

    /// Whether a present session is on another node.
    pub fn is_remote(&self, session: &str) -> bool {
        self.sessions.get(session).is_some_and(|p| p.remote.is_some())
    }

    /// Adds a session of another node; returns the `presence` join for this
    /// node's sessions, or `None` if it was known already.
    pub fn enter_remote(&mut self, peer: Peer, node: &str, instance: &str) -> Option<ServerFrame> {
        let session: Arc<str> = peer.session.as_str().into();
        if self.sessions.contains_key(&session) {
            return None;
        }
        let identity = Arc::new(Identity { user: peer.user, clinic: None, rooms: None });
        let remote = Remote { node: node.into(), instance: instance.into() };
        let present = Present { identity, since: peer.since.unwrap_or_default(), remote: Some(remote) };
        let frame = ServerFrame::Presence {
            room: self.record.id.clone(),
            event: PresenceEvent::Join,
            peer: self::peer(&session, &present, true),
        };
        self.sessions.insert(session, present);
        Some(frame)
    }

    /// Removes the sessions of instances that are gone; returns their ids
    /// and the `presence` leaves for this node's sessions.
    pub fn exit_instances(&mut self, gone: &[String]) -> (Vec<String>, Vec<ServerFrame>) {
        let ids: Vec<Arc<str>> = self
            .sessions
            .iter()
            .filter(|(_, p)| p.remote.as_ref().is_some_and(|r| gone.iter().any(|g| **g == *r.instance)))
            .map(|(id, _)| id.clone())
            .collect();
        let frames = ids.iter().filter_map(|id| self.exit(id)).collect();
        (ids.iter().map(|id| id.to_string()).collect(), frames)
    }

    /// Replaces what the room knew of an instance's sessions with its
    /// roster; returns the `presence` frames for the difference.
    pub fn roster(&mut self, instance: &str, node: &str, peers: Vec<Peer>) -> Vec<ServerFrame> {
        let stale: Vec<Arc<str>> = self
            .sessions
            .iter()
            .filter(|(id, p)| {
                p.remote.as_ref().is_some_and(|r| &*r.instance == instance)
                    && !peers.iter().any(|peer| peer.session == id.as_ref())
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut frames: Vec<_> = stale.iter().filter_map(|id| self.exit(id)).collect();
        frames.extend(peers.into_iter().filter_map(|peer| self.enter_remote(peer, node, instance)));
        frames
    }

    /// Adds a session; returns the `presence` join for the others, or `None`
    /// if it was present already (a repeated `join` only pages history).
    pub fn enter(&mut self, session: Arc<str>, identity: Arc<Identity>, at: String) -> Option<ServerFrame> {
        if self.sessions.contains_key(&session) {
            return None;
        }
        let present = Present { identity, since: at, remote: None };
        let frame = ServerFrame::Presence {
            room: self.record.id.clone(),
            event: PresenceEvent::Join,
            peer: peer(&session, &present, true),
        };
        self.sessions.insert(session, present);
        Some(frame)
    }

    /// Removes a session; returns the `presence` leave for the others.
    pub fn exit(&mut self, session: &str) -> Option<ServerFrame> {
        let present = self.sessions.remove(session)?;
        Some(ServerFrame::Presence {
            room: self.record.id.clone(),
            event: PresenceEvent::Leave,
            peer: peer(session, &present, false),
        })
    }

    /// Who a present session is.
    pub fn identity_of(&self, session: &str) -> Option<&Arc<Identity>> {
        self.sessions.get(session).map(|p| &p.identity)
    }

    /// How many sessions take part in a call (patients and doctors).
    pub fn callers(&self) -> usize {
        use telehub_signaling::Role;
        self.sessions.values().filter(|p| matches!(p.identity.user.role, Role::Patient | Role::Doctor)).count()
    }

    /// Decides where the history for a join comes from.
    pub fn plan_history(&self, since: Option<i64>) -> HistoryPlan {
        match since {
            Some(since) if since >= self.delivered => HistoryPlan::Ready { history: Vec::new(), complete: true },
            Some(since) if since >= self.recent_floor => {
                let history: Vec<_> =
                    self.recent.iter().filter(|m| m.seq > since).take(self.history_max as usize).cloned().collect();
                let complete = history.last().is_none_or(|m| m.seq == self.delivered);
                HistoryPlan::Ready { history, complete }
            }
            Some(since) => HistoryPlan::LoadAfter { after: since, limit: self.history_max },
            None => {
                let want = self.history_default as usize;
                if self.recent_floor == 0 || self.recent.len() >= want {
                    let skip = self.recent.len().saturating_sub(want);
                    let history: Vec<_> = self.recent.iter().skip(skip).cloned().collect();
                    let complete = history.first().map_or(self.delivered == 0, |m| m.seq == 1);
                    HistoryPlan::Ready { history, complete }
                } else {
                    HistoryPlan::LoadLast { limit: self.history_default }
                }
            }
        }
    }

    /// Completes history loaded from storage with what was delivered while
    /// it loaded, so that history plus live frames leave no gap. Returns the
    /// history and whether it reaches the newest message.
    pub fn finish_history(&self, plan: &HistoryPlan, mut loaded: Vec<MessageEvent>) -> (Vec<MessageEvent>, bool) {
        // Messages stored but not yet delivered come live later; showing
        // them now as well would send them twice.
        loaded.retain(|m| m.seq <= self.delivered);
        let (start, limit) = match *plan {
            HistoryPlan::LoadAfter { after, limit } => (after, limit as usize),
            HistoryPlan::LoadLast { limit } => (0, limit as usize),
            HistoryPlan::Ready { ref history, complete } => return (history.clone(), complete),
        };
        let truncated = matches!(plan, HistoryPlan::LoadAfter { .. }) && loaded.len() >= limit;
        let mut last = loaded.last().map_or(start, |m| m.seq);
        if !truncated && last < self.delivered && last >= self.recent_floor {
            loaded.extend(self.recent.iter().filter(|m| m.seq > last).cloned());
            last = self.delivered;
        }
        if let HistoryPlan::LoadLast { .. } = plan {
            let skip = loaded.len().saturating_sub(limit);
            loaded.drain(..skip);
            let complete = last == self.delivered && loaded.first().is_none_or(|m| m.seq == 1);
            return (loaded, complete);
        }
        loaded.truncate(limit);
        let complete = loaded.last().map_or(start >= self.delivered, |m| m.seq == self.delivered);
        (loaded, complete)
    }

    /// Notes a write (or a history load) sent to storage; the room does not
    /// stop while one is pending.
    pub fn write_started(&mut self) {
        self.in_flight += 1;
    }

    /// Notes a write that came back, stored or not.
    pub fn write_finished(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Takes a newly stored message and returns the messages that may go out
    /// now, in `seq` order. A message whose predecessor is still on its way
    /// from storage waits for it, so every session sees `seq` in order.
    pub fn stored(&mut self, message: MessageEvent) -> Vec<MessageEvent> {
        if message.seq <= self.delivered {
            return Vec::new();
        }
        self.waiting.insert(message.seq, message);
        let mut ready = Vec::new();
        while let Some(next) = self.waiting.remove(&(self.delivered + 1)) {
            self.delivered = next.seq;
            self.remember(next.clone());
            ready.push(next);
        }
        self.record.last_seq = self.delivered;
        ready
    }

    fn remember(&mut self, message: MessageEvent) {
        if self.recent.len() == self.recent_capacity
            && let Some(old) = self.recent.pop_front()
        {
            self.recent_floor = old.seq;
        }
        self.recent.push_back(message);
    }

    /// The stored read markers, loaded with the room.
    pub fn set_read_markers(&mut self, markers: impl IntoIterator<Item = (String, i64)>) {
        self.read_markers.extend(markers);
    }

    /// Every user's read marker, by user id.
    pub fn read_marks(&self) -> Vec<telehub_signaling::ReadMarker> {
        let mut marks: Vec<_> = self
            .read_markers
            .iter()
            .filter(|(_, seq)| **seq > 0)
            .map(|(user, seq)| telehub_signaling::ReadMarker {
                user: telehub_signaling::UserId { id: user.clone() },
                seq: *seq,
            })
            .collect();
        marks.sort_by(|a, b| a.user.id.cmp(&b.user.id));
        marks
    }

    /// Moves a user's read marker. Markers never move back, and never past
    /// the newest message; returns the new marker if it moved.
    pub fn read(&mut self, user: &str, seq: i64) -> Option<i64> {
        let seq = seq.min(self.delivered);
        let marker = self.read_markers.entry(user.to_owned()).or_insert(0);
        if seq <= *marker {
            return None;
        }
        *marker = seq;
        Some(seq)
    }

    /// Moves a user's read marker as another node stored it.
    pub fn read_elsewhere(&mut self, user: &str, seq: i64) {
        let marker = self.read_markers.entry(user.to_owned()).or_insert(0);
        *marker = (*marker).max(seq);
    }

    /// Takes the stored read markers after events may have been missed;
    /// returns the ones that moved forward.
    pub fn catch_up_read_markers(&mut self, stored: Vec<(String, i64)>) -> Vec<(String, i64)> {
        let mut moved = Vec::new();
        for (user, seq) in stored {
            let marker = self.read_markers.entry(user.clone()).or_insert(0);
            if seq > *marker {
                *marker = seq;
                moved.push((user, seq));
            }
        }
        moved
    }

    /// What storage says the consultation is now, after events may have
    /// been missed, compared with what this room last knew (`known`): the
    /// changes to apply, where memory has not moved on by itself since.
    /// A status only moves forward (to active, or to closed).
    pub fn missed_changes(&self, known: &RoomRecord, stored: &RoomRecord) -> MissedChanges {
        let now = &self.record;
        let forward = |from: RoomStatus, to: RoomStatus| {
            !from.is_closed()
                && (to.is_closed()
                    || (to == RoomStatus::Active && matches!(from, RoomStatus::Scheduled | RoomStatus::Waiting)))
        };
        MissedChanges {
            status: (now.status == known.status && !self.ending && forward(now.status, stored.status))
                .then_some(stored.status),
            media_mode: (now.media_mode == known.media_mode && stored.media_mode != now.media_mode)
                .then_some(stored.media_mode),
            paid: (now.paid == known.paid && stored.paid != now.paid).then_some(stored.paid),
        }
    }

    /// Checks that the target of a signal is present.
    pub fn check_target(&self, to: &str) -> Result<(), Refusal> {
        if self.is_present(to) {
            Ok(())
        } else {
            Err(Refusal::new(ErrorCode::NotFound, format!("no session {to} in {}", self.record.id)))
        }
    }

    /// Sets the media mode; returns whether it changed.
    pub fn set_media_mode(&mut self, mode: MediaMode) -> bool {
        let changed = self.record.media_mode != mode;
        self.record.media_mode = mode;
        changed
    }

    /// Whether a call of this many callers needs the Jitsi fallback.
    pub fn over_mesh_limit(&self, limit: usize) -> bool {
        self.record.media_mode == MediaMode::P2p && self.callers() > limit
    }

    /// Starts ending the room: from now on chat and media are refused.
    pub fn begin_end(&mut self) -> Result<(), Refusal> {
        if self.record.status.is_closed() || self.ending {
            return Err(Refusal::new(ErrorCode::Conflict, format!("{} has ended", self.record.id)));
        }
        self.ending = true;
        Ok(())
    }

    /// The end was stored, or failed to be.
    pub fn finish_end(&mut self, stored: bool) {
        self.ending = false;
        if stored {
            self.record.status = RoomStatus::Ended;
        }
    }

    /// Admits the patient: the consultation becomes active.
    ///
    /// An unpaid consultation is refused unless `override_payment` (staff,
    /// checked by the caller).
    pub fn admit(&mut self, override_payment: bool) -> Result<(), Refusal> {
        if !self.record.paid && !override_payment && !self.record.status.is_closed() {
            return Err(Refusal::new(
                ErrorCode::Conflict,
                format!("{} is not paid yet: it can be admitted once paid, or by staff overriding", self.record.id),
            ));
        }
        match self.record.status {
            RoomStatus::Scheduled | RoomStatus::Waiting => {
                self.record.status = RoomStatus::Active;
                Ok(())
            }
            RoomStatus::Active => {
                Err(Refusal::new(ErrorCode::Conflict, format!("{} is active already", self.record.id)))
            }
            RoomStatus::Ended | RoomStatus::Cancelled => {
                Err(Refusal::new(ErrorCode::Conflict, format!("{} has ended", self.record.id)))
            }
        }
    }

    /// Takes a payment state; returns whether it changed whether anything
    /// is owed.
    pub fn set_paid(&mut self, paid: bool) -> bool {
        let changed = self.record.paid != paid;
        self.record.paid = paid;
        changed
    }

    /// Undoes [`RoomState::admit`] when storing it failed.
    pub fn set_status(&mut self, status: RoomStatus) {
        self.record.status = status;
    }
}

/// What a room missed while events could not reach it
/// ([`RoomState::missed_changes`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MissedChanges {
    pub status: Option<RoomStatus>,
    pub media_mode: Option<MediaMode>,
    pub paid: Option<bool>,
}

fn peer(id: &str, present: &Present, with_state: bool) -> Peer {
    Peer {
        session: id.to_string(),
        user: present.identity.user.clone(),
        state: with_state.then_some(PeerState::Online),
        since: with_state.then(|| present.since.clone()),
    }
}

#[cfg(test)]
mod tests {
    use telehub_signaling::{MessageKind, Role, Sender, UserInfo};

    use super::*;
    use crate::RoomRecord;
    use crate::fixtures::record;

    fn msg(seq: i64) -> MessageEvent {
        MessageEvent {
            room: "c-1".into(),
            seq,
            id: format!("m_{seq}"),
            client_id: None,
            from: Sender { id: "p1".into(), name: "Budi".into(), role: "patient".into() },
            kind: MessageKind::Text,
            text: format!("hello {seq}"),
            at: "2026-11-24T10:15:00.123Z".into(),
        }
    }

    fn identity(id: &str, role: Role) -> Arc<Identity> {
        Arc::new(Identity {
            user: UserInfo { id: id.into(), name: id.into(), role },
            clinic: Some("k1".into()),
            rooms: None,
        })
    }

    fn seqs(messages: &[MessageEvent]) -> Vec<i64> {
        messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn stored_messages_go_out_in_seq_order() {
        let mut room = RoomState::new(record(0), 10, 50, 500);
        assert!(room.stored(msg(2)).is_empty(), "2 waits for 1");
        assert_eq!(seqs(&room.stored(msg(1))), vec![1, 2]);
        assert!(room.stored(msg(2)).is_empty(), "delivered already");
        assert_eq!(seqs(&room.stored(msg(3))), vec![3]);
        assert_eq!(room.last_seq(), 3);
    }

    #[test]
    fn presence_is_one_entry_per_session() {
        let mut room = RoomState::new(record(0), 10, 50, 500);
        let p = identity("p1", Role::Patient);
        assert!(room.enter("s_1".into(), p.clone(), "t".into()).is_some());
        assert!(room.enter("s_2".into(), p.clone(), "t".into()).is_some());
        assert!(room.enter("s_2".into(), p, "t".into()).is_none(), "second join of a session");
        assert_eq!(room.peers_except("s_1").len(), 1);
        assert_eq!(room.peers().len(), 2);
        match room.exit("s_1") {
            Some(ServerFrame::Presence { event: PresenceEvent::Leave, peer, .. }) => assert_eq!(peer.session, "s_1"),
            other => panic!("{other:?}"),
        }
        assert!(room.exit("s_1").is_none());
    }

    #[test]
    fn history_comes_from_memory_when_it_can() {
        let mut room = RoomState::new(record(0), 3, 2, 500);
        for seq in 1..=5 {
            room.stored(msg(seq));
        }
        // Memory holds 3..=5 after a start with an empty room.
        match room.plan_history(Some(2)) {
            HistoryPlan::Ready { history, complete } => {
                assert_eq!(seqs(&history), vec![3, 4, 5]);
                assert!(complete);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(room.plan_history(Some(1)), HistoryPlan::LoadAfter { after: 1, limit: 500 });
        assert_eq!(room.plan_history(Some(9)), HistoryPlan::Ready { history: vec![], complete: true });
        match room.plan_history(None) {
            HistoryPlan::Ready { history, complete } => {
                assert_eq!(seqs(&history), vec![4, 5]);
                assert!(!complete, "older messages exist");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn loaded_history_is_completed_from_memory_without_gaps_or_doubles() {
        let mut room = RoomState::new(record(10), 5, 50, 500);
        room.stored(msg(11));
        room.stored(msg(12));
        let plan = room.plan_history(Some(4));
        assert_eq!(plan, HistoryPlan::LoadAfter { after: 4, limit: 500 });
        // The load saw up to 11 and also 13, stored but not delivered yet.
        let loaded: Vec<_> = (5..=11).chain([13]).map(msg).collect();
        let (history, complete) = room.finish_history(&plan, loaded);
        assert_eq!(seqs(&history), (5..=12).collect::<Vec<_>>());
        assert!(complete);
    }

    #[test]
    fn loaded_history_over_the_limit_is_incomplete() {
        let room = RoomState::new(record(10), 5, 50, 3);
        let plan = room.plan_history(Some(0));
        let (history, complete) = room.finish_history(&plan, (1..=3).map(msg).collect());
        assert_eq!(seqs(&history), vec![1, 2, 3]);
        assert!(!complete);
    }

    #[test]
    fn read_markers_never_move_back_or_past_the_end() {
        let mut room = RoomState::new(record(10), 5, 50, 500);
        assert_eq!(room.read("p1", 5), Some(5));
        assert_eq!(room.read("p1", 4), None);
        assert_eq!(room.read("p1", 99), Some(10));
        assert_eq!(room.read("d1", 3), Some(3));
    }

    #[test]
    fn an_ended_room_refuses_chat_but_allows_join() {
        let mut room = RoomState::new(record(0), 5, 50, 500);
        let doctor = identity("d1", Role::Doctor);
        room.begin_end().unwrap();
        assert_eq!(room.check(&doctor, Action::Chat).unwrap_err().code, ErrorCode::Conflict);
        room.finish_end(true);
        assert_eq!(room.status(), RoomStatus::Ended);
        assert!(room.check(&doctor, Action::Join).is_ok());
        assert_eq!(room.check(&doctor, Action::Signal).unwrap_err().code, ErrorCode::Conflict);
        assert_eq!(room.begin_end().unwrap_err().code, ErrorCode::Conflict);
    }

    #[test]
    fn acting_needs_presence_and_rights() {
        let mut room = RoomState::new(record(0), 5, 50, 500);
        let patient = identity("p1", Role::Patient);
        assert_eq!(room.check_present("s_1", &patient, Action::Chat).unwrap_err().code, ErrorCode::Forbidden);
        room.enter("s_1".into(), patient.clone(), "t".into());
        assert!(room.check_present("s_1", &patient, Action::Chat).is_ok());
        assert_eq!(room.check_present("s_1", &patient, Action::End).unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(room.check_target("s_2").unwrap_err().code, ErrorCode::NotFound);
    }

    fn remote_peer(session: &str, user: &str, role: Role) -> Peer {
        Peer {
            session: session.into(),
            user: UserInfo { id: user.into(), name: user.into(), role },
            state: None,
            since: Some("t".into()),
        }
    }

    #[test]
    fn sessions_of_other_nodes_are_present_but_keep_no_room_alive() {
        let mut room = RoomState::new(record(0), 5, 50, 500);
        assert!(room.enter_remote(remote_peer("s_r", "d1", Role::Doctor), "node-b", "node-b/1").is_some());
        assert!(room.enter_remote(remote_peer("s_r", "d1", Role::Doctor), "node-b", "node-b/1").is_none());
        assert!(room.is_idle(), "a remote session has a room on its own node");
        assert!(room.is_remote("s_r") && room.check_target("s_r").is_ok());
        room.enter("s_l".into(), identity("p1", Role::Patient), "t".into());
        assert!(!room.is_idle());
        assert_eq!(room.local_peers().len(), 1);
        let nodes: Vec<_> = room.present().into_iter().map(|p| (p.peer.session, p.node)).collect();
        assert_eq!(nodes, vec![("s_l".to_owned(), None), ("s_r".to_owned(), Some("node-b".to_owned()))]);
    }

    #[test]
    fn a_roster_replaces_what_was_known_of_its_instance() {
        let mut room = RoomState::new(record(0), 5, 50, 500);
        room.enter_remote(remote_peer("s_1", "d1", Role::Doctor), "node-b", "node-b/1");
        room.enter_remote(remote_peer("s_2", "s1", Role::Staff), "node-b", "node-b/1");
        room.enter_remote(remote_peer("s_3", "s2", Role::Staff), "node-c", "node-c/1");
        let frames = room.roster(
            "node-b/1",
            "node-b",
            vec![remote_peer("s_2", "s1", Role::Staff), remote_peer("s_4", "p1", Role::Patient)],
        );
        let events: Vec<_> = frames
            .iter()
            .map(|f| match f {
                ServerFrame::Presence { event, peer, .. } => (*event, peer.session.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(events, vec![(PresenceEvent::Leave, "s_1".to_owned()), (PresenceEvent::Join, "s_4".to_owned())]);
        assert!(room.is_present("s_3"), "another instance's sessions stay");
    }

    #[test]
    fn the_sessions_of_a_dead_instance_leave() {
        let mut room = RoomState::new(record(0), 5, 50, 500);
        room.enter_remote(remote_peer("s_1", "d1", Role::Doctor), "node-b", "node-b/1");
        room.enter_remote(remote_peer("s_2", "s2", Role::Staff), "node-c", "node-c/1");
        room.enter("s_3".into(), identity("p1", Role::Patient), "t".into());
        let (gone, frames) = room.exit_instances(&["node-b/1".to_owned()]);
        assert_eq!(gone, vec!["s_1".to_owned()]);
        assert_eq!(frames.len(), 1);
        assert!(!room.is_present("s_1") && room.is_present("s_2") && room.is_present("s_3"));
    }

    #[test]
    fn a_room_catches_up_forward_and_keeps_what_changed_here() {
        let mut room = RoomState::new(RoomRecord { paid: false, ..record(0) }, 5, 50, 500);
        let known = room.record().clone();
        let stored =
            RoomRecord { status: RoomStatus::Ended, media_mode: MediaMode::Jitsi, paid: true, ..known.clone() };
        let all =
            MissedChanges { status: Some(RoomStatus::Ended), media_mode: Some(MediaMode::Jitsi), paid: Some(true) };
        assert_eq!(room.missed_changes(&known, &stored), all);
        // A status never moves back, and an admission is a step forward.
        let back = RoomRecord { status: RoomStatus::Scheduled, ..known.clone() };
        assert_eq!(room.missed_changes(&known, &back).status, None);
        let admitted = RoomRecord { status: RoomStatus::Active, ..known.clone() };
        assert_eq!(room.missed_changes(&known, &admitted).status, Some(RoomStatus::Active));
        // What this room changed while storage was read is newer: kept.
        room.set_media_mode(MediaMode::Jitsi);
        let older = RoomRecord { media_mode: MediaMode::P2p, ..stored.clone() };
        assert_eq!(room.missed_changes(&known, &older).media_mode, None);
        room.set_status(RoomStatus::Ended);
        let closed = room.record().clone();
        assert_eq!(room.missed_changes(&closed, &admitted).status, None, "closed stays closed");
        // Read markers only move forward.
        room.read_elsewhere("d1", 4);
        let moved = room.catch_up_read_markers(vec![("d1".into(), 3), ("p1".into(), 2)]);
        assert_eq!(moved, vec![("p1".to_owned(), 2)]);
    }

    #[test]
    fn an_unpaid_consultation_is_admitted_only_with_an_override() {
        let mut room = RoomState::new(RoomRecord { paid: false, ..record(0) }, 5, 50, 500);
        assert_eq!(room.admit(false).unwrap_err().code, ErrorCode::Conflict);
        assert_eq!(room.status(), RoomStatus::Waiting, "nothing changed");
        assert!(room.admit(true).is_ok());
        let mut room = RoomState::new(RoomRecord { paid: false, ..record(0) }, 5, 50, 500);
        assert!(room.set_paid(true));
        assert!(!room.set_paid(true));
        assert!(room.admit(false).is_ok());
    }

    #[test]
    fn mesh_limit_counts_callers_only() {
        let mut room = RoomState::new(record(0), 5, 50, 500);
        room.enter("s_1".into(), identity("p1", Role::Patient), "t".into());
        room.enter("s_2".into(), identity("d1", Role::Doctor), "t".into());
        room.enter("s_3".into(), identity("s1", Role::Staff), "t".into());
        assert_eq!(room.callers(), 2);
        assert!(!room.over_mesh_limit(2));
        assert!(room.over_mesh_limit(1));
        room.set_media_mode(MediaMode::Jitsi);
        assert!(!room.over_mesh_limit(1), "already in jitsi");
    }
}
