//! The room actor: one per consultation with someone in it.
//!
//! A room owns its [`RoomState`] and the outboxes of the sessions present.
//! It carries out what the state decides: it stores through the
//! [`RoomStore`], then sends frames. Every broadcast is serialized once and
//! the same bytes are pushed to every outbox; a full outbox is the session's
//! problem, never the room's (see [`crate::outbox`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::WeakAddr;
use actix::prelude::*;
use bytestring::ByteString;
use chrono::Utc;
use litemap::LiteMap;
use telehub_signaling::{
    ErrorCode, MediaEvent, MediaInfo, MediaMode, MessageEvent, MessageKind, PaymentStatus, Peer, Role, RoomStatus,
    Sender, ServerFrame, SignalData, UserId, UserRef, format_time,
};
use tracing::{debug, info, warn};

use crate::broker::{Broker, ClusterEvent, FromCluster, Topic};
use crate::registry::Forget;
use crate::state::{HistoryPlan, MissedChanges};
use crate::{
    Action, AuditEntry, Identity, Lost, MediaPolicy, NewMessage, Outbox, Person, PresentPeer, Push, QueueId, Queues,
    Refusal, RoomHandle, RoomRecord, RoomRegistry, RoomState, RoomStore, SessionRef, StoreError,
};

/// Enter the room. The `joined` frame goes to the session's outbox before
/// any later broadcast, so history and live messages meet without a gap.
#[derive(Message)]
#[rtype(result = "Result<(), Refusal>")]
pub(crate) struct Join {
    pub session: SessionRef,
    pub since: Option<i64>,
    pub reference: Option<String>,
}

/// Leave the room, on request (`reply`) or because the session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Leave {
    pub session: SessionRef,
    pub reference: Option<String>,
    pub reply: bool,
}

/// Store a chat message, then acknowledge and broadcast it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Chat {
    pub session: SessionRef,
    pub reference: Option<String>,
    pub client_id: String,
    pub text: String,
}

/// The store's answer to a [`Chat`].
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ChatStored {
    pub session: SessionRef,
    pub reference: Option<String>,
    pub client_id: String,
    pub from: Sender,
    pub text: String,
    pub result: Result<crate::Appended, StoreError>,
}

/// Tell the others that the session's user is typing.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Typing {
    pub session: SessionRef,
    pub reference: Option<String>,
    pub active: bool,
}

/// Move the user's read marker.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct MarkRead {
    pub session: SessionRef,
    pub reference: Option<String>,
    pub seq: i64,
}

/// The store's answer to a [`MarkRead`].
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ReadStored {
    pub session: SessionRef,
    pub reference: Option<String>,
    pub result: Result<i64, StoreError>,
}

/// Relay a WebRTC signal to one session of the room.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Relay {
    pub session: SessionRef,
    pub reference: Option<String>,
    pub to: String,
    pub data: SignalData,
}

/// Report a media failure or ask for a media mode.
#[derive(Message)]
#[rtype(result = "Result<(), Refusal>")]
pub(crate) struct SwitchMedia {
    pub session: Option<Arc<str>>,
    pub identity: Arc<Identity>,
    pub event: Option<MediaEvent>,
    pub mode: Option<MediaMode>,
}

/// Admit the patient: the consultation becomes active.
#[derive(Message)]
#[rtype(result = "Result<AdmitOutcome, Refusal>")]
pub(crate) struct Admit {
    pub identity: Option<Arc<Identity>>,
    /// Admit though it is unpaid: staff (or the clinic's backend) only.
    pub override_payment: bool,
}

/// The consultation's payment state was stored: tell the room. Answers the
/// consultation's queue, whose watchers are told next.
#[derive(Message)]
#[rtype(result = "Result<QueueId, Refusal>")]
pub(crate) struct SetPayment {
    pub status: PaymentStatus,
}

/// Check a patient in: the room checks rights and status and says which
/// queue the consultation waits in.
#[derive(Message)]
#[rtype(result = "Result<CheckinTicket, Refusal>")]
pub(crate) struct CheckinInfo {
    pub identity: Arc<Identity>,
}

/// What a check-in needs to know of the consultation.
#[derive(Debug, Clone)]
pub(crate) struct CheckinTicket {
    pub queue: QueueId,
    pub patient: Person,
    pub paid: bool,
}

/// The patient checked in: a scheduled consultation is waiting now.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct MarkWaiting;

/// What admitting did: the consultation's queue, and the patient's sessions
/// in the room that were told (when there are any, the patient has shown up
/// already: no no-show timeout for them).
#[derive(Debug, Clone)]
pub(crate) struct AdmitOutcome {
    pub queue: QueueId,
    pub told: Vec<Arc<str>>,
}

/// What ending did: the consultation's queue, the `ended` frame, and the
/// sessions in the room that had it (the queue tells the patient's other
/// sessions).
#[derive(Debug, Clone)]
pub(crate) struct EndOutcome {
    pub queue: QueueId,
    pub frame: ByteString,
    pub told: Vec<Arc<str>>,
}

/// The no-show timeout of an admitted patient ran out: cancel the
/// consultation unless the patient is there. Answers what cancelling did,
/// if it did.
#[derive(Message)]
#[rtype(result = "Result<Option<EndOutcome>, Refusal>")]
pub(crate) struct NoShow;

/// End the consultation; `identity` is `None` for the clinic's backend.
#[derive(Message)]
#[rtype(result = "Result<EndOutcome, Refusal>")]
pub(crate) struct End {
    pub identity: Option<Arc<Identity>>,
    pub by: UserRef,
}

/// Store and broadcast a system message from the HTTP API.
#[derive(Message)]
#[rtype(result = "Result<MessageEvent, Refusal>")]
pub(crate) struct PostSystem {
    pub text: String,
    pub name: String,
}

/// The sessions present now, on every node.
#[derive(Message)]
#[rtype(result = "Vec<PresentPeer>")]
pub(crate) struct GetPresence;

/// The sessions of this node in the room now.
#[derive(Message)]
#[rtype(result = "Vec<Arc<str>>")]
pub(crate) struct LocalSessions;

/// The room's record as the room knows it now.
#[derive(Message)]
#[rtype(result = "Option<RoomRecord>")]
pub(crate) struct GetRecord;

/// Tuning of rooms.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// Messages kept in memory per room for reconnects.
    pub recent_capacity: usize,
    /// Messages in `joined.history` when `since` is absent.
    pub history_default: u32,
    /// Most messages in one `joined.history`.
    pub history_max: u32,
    /// How long an empty room stays before it stops.
    pub idle_timeout: Duration,
    /// In a cluster, how long a `seq` gap may stay open before the room
    /// reads the missing messages from storage (an event lost between
    /// nodes).
    pub gap_wait: Duration,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            recent_capacity: 128,
            history_default: 50,
            history_max: 500,
            idle_timeout: Duration::from_secs(30),
            gap_wait: Duration::from_millis(300),
        }
    }
}

/// One consultation room.
///
/// 552 bytes, so that its task (the actor's context and this) fits a
/// 1,024-byte allocation with 32 bytes to spare; the next class is 1,280.
pub struct Room {
    id: String,
    /// `None` until the record is loaded, or if it could not be.
    state: Option<RoomState>,
    /// Why the room cannot serve, once loading failed.
    /// Boxed: rare, and the room's task fits a smaller allocation without it.
    unusable: Option<Box<Refusal>>,
    /// A sorted vector, not a hash map: a room holds a handful of
    /// sessions, and a hash map's first table is about 120 bytes a room.
    outboxes: LiteMap<Arc<str>, Outbox>,
    /// What every room of the node shares, held once.
    env: Arc<RoomEnv>,
    idle_timer: Option<SpawnHandle>,
    subscription: Option<u64>,
    gap_timer: Option<SpawnHandle>,
    /// Missing messages are being read from storage.
    filling: bool,
}

/// What the rooms of a node share: one per registry, so that a room holds
/// a pointer where it held a copy of each (about 140 bytes a room, and an
/// allocation for each actor address).
#[derive(Clone)]
pub(crate) struct RoomEnv {
    pub store: Arc<dyn RoomStore>,
    pub media: Arc<dyn MediaPolicy>,
    pub config: RoomConfig,
    /// Weak, as the registry holds this too; set once it has started.
    pub registry: Option<WeakAddr<RoomRegistry>>,
    pub queues: Queues,
    /// The other nodes, in a cluster.
    pub broker: Option<Arc<dyn Broker>>,
}

impl Room {
    pub(crate) fn new(id: String, env: Arc<RoomEnv>) -> Self {
        Room {
            id,
            state: None,
            unusable: None,
            outboxes: LiteMap::with_capacity(2),
            env,
            idle_timer: None,
            subscription: None,
            gap_timer: None,
            filling: false,
        }
    }

    /// Tells the registry this room is stopping.
    fn forget(&self, ctx: &mut Context<Self>) {
        if let Some(registry) = self.env.registry.as_ref().and_then(WeakAddr::upgrade) {
            registry.do_send(Forget { room: self.id.clone(), addr: ctx.address() });
        }
    }

    /// Tells the room's other nodes, in a cluster.
    fn publish(&self, event: impl FnOnce() -> ClusterEvent) {
        if let Some(broker) = &self.env.broker {
            broker.publish(Topic::Room(&self.id), &event());
        }
    }

    /// The loaded state, or the refusal to send when there is none.
    fn ready(&mut self) -> Result<&mut RoomState, Refusal> {
        match (&mut self.state, &self.unusable) {
            (Some(state), _) => Ok(state),
            (None, Some(refusal)) => Err(Refusal::clone(refusal)),
            (None, None) => Err(Refusal::new(ErrorCode::Unavailable, "room is loading")),
        }
    }

    fn send_to(outbox: &Outbox, frame: &ServerFrame) {
        let _ = outbox.push(ByteString::from(frame.to_json()));
    }

    fn reply_ok(outbox: &Outbox, reference: Option<String>) {
        if reference.is_some() {
            Self::send_to(outbox, &ServerFrame::Ok { reference });
        }
    }

    fn reply_error(outbox: &Outbox, reference: Option<String>, refusal: Refusal) {
        let Refusal { code, message, retry_ms } = refusal;
        Self::send_to(outbox, &ServerFrame::Error { reference, code, message, retry_ms, room: None, queue: None });
    }

    /// Sends the same bytes to every session present except `except`, and
    /// drops sessions whose task has gone.
    fn broadcast(&mut self, frame: &ServerFrame, except: Option<&str>, ctx: &mut Context<Self>) {
        self.broadcast_bytes(ByteString::from(frame.to_json()), except, ctx);
    }

    fn broadcast_bytes(&mut self, bytes: ByteString, except: Option<&str>, ctx: &mut Context<Self>) {
        let mut gone = Vec::new();
        for (id, outbox) in &self.outboxes {
            if except == Some(id.as_ref()) {
                continue;
            }
            if outbox.push(bytes.clone()) == Push::Closed {
                gone.push(id.clone());
            }
        }
        for id in gone {
            self.evict(&id, ctx);
        }
    }

    /// Sends `ended` to every session here and tells the other nodes the
    /// stored `status` (ended or cancelled); answers what the queue needs to
    /// tell the patient's sessions outside the room.
    fn announce_end(
        &mut self,
        status: RoomStatus,
        by: UserRef,
        at: chrono::DateTime<Utc>,
        queue: QueueId,
        ctx: &mut Context<Self>,
    ) -> EndOutcome {
        let frame = ServerFrame::Ended { room: self.id.clone(), by, at: format_time(at) };
        let bytes = ByteString::from(frame.to_json());
        self.publish(|| ClusterEvent::Status { status, frame: Some(bytes.to_string()) });
        let told = self.outboxes.keys().cloned().collect();
        self.broadcast_bytes(bytes.clone(), None, ctx);
        EndOutcome { queue, frame: bytes, told }
    }

    /// Removes a session whose task ended without saying goodbye.
    fn evict(&mut self, session: &str, ctx: &mut Context<Self>) {
        self.outboxes.remove(session);
        let Some(state) = self.state.as_mut() else { return };
        if let Some(frame) = state.exit(session) {
            if let Some(broker) = &self.env.broker {
                broker.exit(&self.id, session);
            }
            self.broadcast(&frame, None, ctx);
        }
        self.maybe_idle(ctx);
    }

    fn deliver(&mut self, messages: Vec<MessageEvent>, ctx: &mut Context<Self>) {
        for message in messages {
            self.broadcast(&ServerFrame::Message(message), None, ctx);
        }
        self.watch_gap(ctx);
    }

    /// Takes a stored message (of this node or another) and delivers what
    /// may go out now.
    fn take_stored(&mut self, message: MessageEvent, ctx: &mut Context<Self>) {
        let ready = self.state.as_mut().map(|s| s.stored(message)).unwrap_or_default();
        self.deliver(ready, ctx);
    }

    /// In a cluster, a `seq` gap that stays open means an event between
    /// nodes was lost: read the missing messages from storage.
    fn watch_gap(&mut self, ctx: &mut Context<Self>) {
        let gap = self.state.as_ref().is_some_and(RoomState::has_gap);
        if self.env.broker.is_none() || !gap || self.gap_timer.is_some() || self.filling {
            return;
        }
        let handle = ctx.run_later(self.env.config.gap_wait, |act, ctx| {
            act.gap_timer = None;
            if act.state.as_ref().is_some_and(RoomState::has_gap) {
                act.fill(ctx);
            }
        });
        self.gap_timer = Some(handle);
    }

    /// Reads the messages after the last delivered one from storage and
    /// delivers them: the durable record fills whatever events were lost.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        let Some(state) = self.state.as_mut() else { return };
        if self.filling {
            return;
        }
        self.filling = true;
        state.write_started();
        let after = state.last_seq();
        let limit = self.env.config.history_max;
        let store = self.env.store.clone();
        let room = self.id.clone();
        let load = async move { store.messages_after(&room, after, limit).await };
        ctx.spawn(load.into_actor(self).map(move |result, act, ctx| {
            act.filling = false;
            if let Some(state) = act.state.as_mut() {
                state.write_finished();
            }
            match result {
                Ok(messages) => {
                    let more = messages.len() >= limit as usize;
                    if !messages.is_empty() {
                        debug!(room = %act.id, after, count = messages.len(), "messages filled from storage");
                    }
                    for message in messages {
                        act.take_stored(message, ctx);
                    }
                    if more {
                        act.fill(ctx);
                    }
                }
                Err(err) => warn!(room = %act.id, error = %err, "could not fill missing messages"),
            }
            act.watch_gap(ctx);
            act.maybe_idle(ctx);
        }));
    }

    fn audit(&self, user: Option<&str>, action: &str, detail: serde_json::Value) {
        let store = self.env.store.clone();
        let entry = AuditEntry {
            at: Utc::now(),
            room: Some(self.id.clone()),
            user: user.map(str::to_owned),
            action: action.to_owned(),
            detail,
        };
        store.audit(entry);
    }

    /// Adds a session that passed the checks, with its history.
    fn enter(&mut self, join: Join, history: Vec<MessageEvent>, complete: bool, ctx: &mut Context<Self>) {
        let Join { session, reference, .. } = join;
        if session.outbox.is_closed() {
            return;
        }
        let Some(state) = self.state.as_mut() else { return };
        let presence = state.enter(session.id.clone(), session.identity.clone(), format_time(Utc::now()));
        let user = &session.identity.user;
        let in_call = crate::rights::in_call(user.role);
        let media = MediaInfo {
            mode: state.media_mode(),
            ice_servers: if in_call { self.env.media.ice_servers(user) } else { Vec::new() },
            jitsi: match state.media_mode() {
                MediaMode::Jitsi if in_call => self.env.media.jitsi(&self.id, user),
                _ => None,
            },
            video: self.env.media.video(),
        };
        let joined = ServerFrame::Joined {
            reference,
            room: self.id.clone(),
            status: state.status(),
            seq: state.last_seq(),
            peers: state.peers_except(&session.id),
            history: history.into_iter().map(telehub_signaling::HistoryItem::Message).collect(),
            history_complete: complete,
            media,
            read: state.read_marks(),
        };
        let over_limit = state.over_mesh_limit(self.env.media.mesh_limit());
        // An admitted patient who comes in is no no-show.
        let showed = (state.status() == RoomStatus::Active && state.record().patient.id == user.id)
            .then(|| state.record().queue_id());
        Self::send_to(&session.outbox, &joined);
        self.outboxes.insert(session.id.clone(), session.outbox.clone());
        if let Some(idle) = self.idle_timer.take() {
            ctx.cancel_future(idle);
        }
        if let Some(presence) = presence {
            if let (Some(broker), ServerFrame::Presence { peer, .. }) = (&self.env.broker, &presence) {
                broker.enter(&self.id, peer);
            }
            self.broadcast(&presence, Some(&session.id), ctx);
            self.audit(Some(&user.id), "join", serde_json::json!({ "session": &*session.id, "role": user.role }));
        }
        if over_limit {
            self.apply_media_mode(MediaMode::Jitsi, "mesh_limit", Some(None), ctx);
        }
        if let Some(queue) = showed {
            self.env.queues.showed(&queue, &self.id);
        }
    }

    /// Sets the media mode and tells every session, each with its own
    /// credentials. `by` is `Some` (with the user who asked, if one did)
    /// when the change happened on this node, which then stores it and
    /// tells the other nodes; `None` when another node did that.
    fn apply_media_mode(&mut self, mode: MediaMode, reason: &str, by: Option<Option<&str>>, ctx: &mut Context<Self>) {
        let Some(state) = self.state.as_mut() else { return };
        if !state.set_media_mode(mode) {
            return;
        }
        let mut gone = Vec::new();
        for (id, outbox) in &self.outboxes {
            let Some(identity) = state.identity_of(id) else { continue };
            let jitsi = match mode {
                MediaMode::Jitsi if crate::rights::in_call(identity.user.role) => {
                    self.env.media.jitsi(&self.id, &identity.user)
                }
                _ => None,
            };
            let frame = ServerFrame::MediaMode { room: self.id.clone(), mode, reason: reason.to_owned(), jitsi };
            if outbox.push(ByteString::from(frame.to_json())) == Push::Closed {
                gone.push(id.clone());
            }
        }
        for id in gone {
            self.evict(&id, ctx);
        }
        let Some(by) = by else { return };
        self.publish(|| ClusterEvent::Media { mode, reason: reason.to_owned() });
        let store = self.env.store.clone();
        let room = self.id.clone();
        actix::spawn(async move {
            if let Err(err) = store.set_media_mode(&room, mode).await {
                warn!(%room, error = %err, "media mode not stored");
            }
        });
        self.audit(by, "media", serde_json::json!({ "mode": mode, "reason": reason }));
    }

    /// Stops the room after it has been idle for a while.
    fn maybe_idle(&mut self, ctx: &mut Context<Self>) {
        let idle = self.state.as_ref().is_none_or(RoomState::is_idle);
        if !idle || self.idle_timer.is_some() {
            return;
        }
        let handle = ctx.run_later(self.env.config.idle_timeout, |act, ctx| {
            act.idle_timer = None;
            if act.state.as_ref().is_none_or(RoomState::is_idle) {
                debug!(room = %act.id, "room idle, stopping");
                act.forget(ctx);
                ctx.stop();
            }
        });
        self.idle_timer = Some(handle);
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    /// Loads the consultation before the first message is handled: `wait`
    /// holds the mailbox until the record is in.
    ///
    /// In a cluster the room subscribes to the other nodes' events first
    /// and loads afterwards: what happened before the subscription is in
    /// the load, what happens after it comes as events, and what is in both
    /// is taken once (`seq` and session ids tell).
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        let store = self.env.store.clone();
        let id = self.id.clone();
        let broker = self.env.broker.clone();
        let me = ctx.address().recipient();
        let load = async move {
            let subscription = match &broker {
                Some(broker) => Some(broker.subscribe(Topic::Room(&id), me).await),
                None => None,
            };
            let loaded = async {
                let Some(record) = store.load_room(&id).await? else { return Ok(None) };
                let markers = store.read_markers(&id).await?;
                let remote = match &broker {
                    Some(broker) => broker.presence(&id).await.unwrap_or_else(|err| {
                        warn!(room = %id, error = %err, "cluster presence not read; it comes with the resync");
                        Vec::new()
                    }),
                    None => Vec::new(),
                };
                Ok(Some((record, markers, remote)))
            };
            (subscription, loaded.await)
        };
        ctx.wait(load.into_actor(self).map(|(subscription, result): (_, Result<_, StoreError>), act, ctx| {
            act.subscription = subscription;
            match result {
                Ok(Some((record, markers, remote))) => {
                    let mut state = RoomState::new(
                        record,
                        act.env.config.recent_capacity,
                        act.env.config.history_default,
                        act.env.config.history_max,
                    );
                    state.set_read_markers(markers);
                    for entry in remote {
                        state.enter_remote(entry.peer, &entry.node, &entry.instance);
                    }
                    act.state = Some(state);
                    act.maybe_idle(ctx);
                    return;
                }
                Ok(None) => {
                    act.unusable =
                        Some(Box::new(Refusal::new(ErrorCode::NotFound, format!("no consultation {}", act.id))));
                }
                Err(err) => act.unusable = Some(Box::new(Refusal::from(err))),
            }
            // Forget the room at once so that the next attempt loads afresh
            // (the consultation may be created, or storage come back), but
            // answer what is already in the mailbox before stopping.
            act.forget(ctx);
            ctx.run_later(Duration::from_secs(1), |_, ctx| ctx.stop());
        }));
    }

    /// A room stops by itself only once it is empty, so a session still in
    /// it means a fault (a panic unwinding the room's task, which actix
    /// still runs this for): each is told, and takes it up at once. The
    /// registry forgets the room first, so that whoever comes next finds a
    /// fresh one rather than this one on its way out.
    fn stopped(&mut self, ctx: &mut Context<Self>) {
        if let (Some(broker), Some(id)) = (&self.env.broker, self.subscription) {
            broker.unsubscribe(Topic::Room(&self.id), id);
        }
        if self.outboxes.is_empty() {
            return;
        }
        self.forget(ctx);
        let handle = RoomHandle::new(ctx.address());
        for (_, outbox) in &self.outboxes {
            outbox.lost(Lost::Room { room: self.id.clone(), handle: handle.clone() });
        }
    }
}

/// Checks rights, then sends `joined` with history from memory, or loads
/// history from storage first.
impl Handler<Join> for Room {
    type Result = ResponseActFuture<Self, Result<(), Refusal>>;

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        let plan = match self.ready() {
            Ok(state) => match state.check(&msg.session.identity, Action::Join) {
                Ok(()) => state.plan_history(msg.since),
                Err(refusal) => return Box::pin(fut::ready(Err(refusal))),
            },
            Err(refusal) => return Box::pin(fut::ready(Err(refusal))),
        };
        if let HistoryPlan::Ready { history, complete } = plan {
            self.enter(msg, history, complete, ctx);
            return Box::pin(fut::ready(Ok(())));
        }
        // A join that waits for storage keeps the room from stopping idle.
        if let Some(state) = self.state.as_mut() {
            state.write_started();
        }
        let store = self.env.store.clone();
        let room = self.id.clone();
        let query = plan.clone();
        let load = async move {
            match query {
                HistoryPlan::LoadAfter { after, limit } => store.messages_after(&room, after, limit).await,
                HistoryPlan::LoadLast { limit } => store.last_messages(&room, limit).await,
                HistoryPlan::Ready { history, .. } => Ok(history),
            }
        };
        Box::pin(load.into_actor(self).map(move |result, act, ctx| {
            let Some(state) = act.state.as_mut() else {
                return Err(Refusal::new(ErrorCode::Unavailable, "room is gone"));
            };
            state.write_finished();
            let loaded = match result {
                Ok(loaded) => loaded,
                Err(err) => {
                    act.maybe_idle(ctx);
                    return Err(Refusal::from(err));
                }
            };
            let state = act.state.as_ref().expect("checked above");
            let (history, complete) = state.finish_history(&plan, loaded);
            act.enter(msg, history, complete, ctx);
            Ok(())
        }))
    }
}

/// Removes the session and tells the others.
impl Handler<Leave> for Room {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        let was_present = self.state.as_ref().is_some_and(|s| s.is_present(&msg.session.id));
        self.evict(&msg.session.id, ctx);
        if was_present {
            let user = &msg.session.identity.user;
            self.audit(Some(&user.id), "leave", serde_json::json!({ "session": &*msg.session.id }));
        }
        if msg.reply {
            Self::send_to(&msg.session.outbox, &ServerFrame::Left { reference: msg.reference, room: self.id.clone() });
        }
    }
}

/// Stores the message (group-committed with other rooms' writes), then
/// acks the sender and broadcasts it in `seq` order. A resend with a known
/// `client_id` gets the original ack and no second broadcast.
impl Handler<Chat> for Room {
    type Result = ();

    fn handle(&mut self, msg: Chat, ctx: &mut Context<Self>) {
        let Chat { session, reference, client_id, text } = msg;
        let state = match self.ready() {
            Ok(state) => state,
            Err(refusal) => return Self::reply_error(&session.outbox, reference, refusal),
        };
        if let Err(refusal) = state.check_present(&session.id, &session.identity, Action::Chat) {
            if refusal.code == ErrorCode::Conflict {
                // The room has ended; a resend of a message stored before
                // the end still gets its original ack.
                return self.ack_resend(session, reference, client_id, refusal, ctx);
            }
            return Self::reply_error(&session.outbox, reference, refusal);
        }
        state.write_started();
        let user = &session.identity.user;
        let from = Sender { id: user.id.clone(), name: user.name.clone(), role: user.role.as_str().to_owned() };
        let new = NewMessage {
            room: self.id.clone(),
            from: from.clone(),
            client_id: Some(client_id.clone()),
            kind: MessageKind::Text,
            text: text.clone(),
        };
        let store = self.env.store.clone();
        let room = ctx.address();
        // A plain task per write, woken only by its own reply: futures
        // spawned into the actor's context would all be polled on every
        // wake-up of the room, which costs dearly with many writes in flight.
        actix::spawn(async move {
            let result = store.append(new).await;
            room.do_send(ChatStored { session, reference, client_id, from, text, result });
        });
    }
}

impl Room {
    /// Answers a chat frame in a room that no longer takes messages: the
    /// original ack if the message was stored before, `refusal` if not.
    fn ack_resend(
        &mut self,
        session: SessionRef,
        reference: Option<String>,
        client_id: String,
        refusal: Refusal,
        ctx: &mut Context<Self>,
    ) {
        let store = self.env.store.clone();
        let room = ctx.address();
        let id = self.id.clone();
        actix::spawn(async move {
            let found = store.sent(&id, &session.identity.user.id, &client_id).await;
            room.do_send(ResendLookedUp { session, reference, found, refusal });
        });
    }
}

/// Whether a chat frame refused by an ended room was stored before the end.
#[derive(Message)]
#[rtype(result = "()")]
struct ResendLookedUp {
    session: SessionRef,
    reference: Option<String>,
    found: Result<Option<crate::Appended>, StoreError>,
    refusal: Refusal,
}

impl Handler<ResendLookedUp> for Room {
    type Result = ();

    fn handle(&mut self, msg: ResendLookedUp, _: &mut Context<Self>) {
        let ResendLookedUp { session, reference, found, refusal } = msg;
        match found {
            Ok(Some(stored)) => Self::send_to(
                &session.outbox,
                &ServerFrame::Ack { reference, room: self.id.clone(), seq: stored.seq, id: stored.id, at: stored.at },
            ),
            Ok(None) => Self::reply_error(&session.outbox, reference, refusal),
            Err(err) => Self::reply_error(&session.outbox, reference, Refusal::from(err)),
        }
    }
}

/// Acknowledges a stored chat message and broadcasts it in `seq` order, or
/// tells the sender that storage failed.
impl Handler<ChatStored> for Room {
    type Result = ();

    fn handle(&mut self, msg: ChatStored, ctx: &mut Context<Self>) {
        let ChatStored { session, reference, client_id, from, text, result } = msg;
        if let Some(state) = self.state.as_mut() {
            state.write_finished();
        }
        match result {
            Ok(stored) => {
                let ack = ServerFrame::Ack {
                    reference,
                    room: self.id.clone(),
                    seq: stored.seq,
                    id: stored.id.clone(),
                    at: stored.at.clone(),
                };
                Self::send_to(&session.outbox, &ack);
                if stored.duplicate {
                    // The original may have been stored by a node that died
                    // before it told anyone: storage has it.
                    if self.state.as_ref().is_some_and(|s| stored.seq > s.last_seq()) {
                        self.fill(ctx);
                    }
                } else {
                    let event = MessageEvent {
                        room: self.id.clone(),
                        seq: stored.seq,
                        id: stored.id,
                        client_id: Some(client_id),
                        from,
                        kind: MessageKind::Text,
                        text,
                        at: stored.at,
                    };
                    self.publish(|| ClusterEvent::Message { message: event.clone() });
                    self.take_stored(event, ctx);
                }
            }
            Err(err) => {
                // Storage refuses chat to a consultation that another node
                // ended while this one could not hear of it.
                self.catch_up_if_stale(&err, ctx);
                Self::reply_error(&session.outbox, reference, Refusal::from(err));
            }
        }
        self.maybe_idle(ctx);
    }
}

/// Forwards a typing indicator to the others; it is never stored.
impl Handler<Typing> for Room {
    type Result = ();

    fn handle(&mut self, msg: Typing, ctx: &mut Context<Self>) {
        let Typing { session, reference, active } = msg;
        let check = self.ready().and_then(|s| s.check_present(&session.id, &session.identity, Action::Typing));
        if let Err(refusal) = check {
            return Self::reply_error(&session.outbox, reference, refusal);
        }
        let user = &session.identity.user;
        let frame = ServerFrame::Typing {
            room: self.id.clone(),
            user: UserRef { id: user.id.clone(), name: user.name.clone() },
            active,
        };
        let bytes = ByteString::from(frame.to_json());
        self.publish(|| ClusterEvent::Frame { frame: bytes.to_string() });
        self.broadcast_bytes(bytes, Some(&session.id), ctx);
        Self::reply_ok(&session.outbox, reference);
    }
}

/// Stores the read marker if it moves forward, then tells the others.
impl Handler<MarkRead> for Room {
    type Result = ();

    fn handle(&mut self, msg: MarkRead, ctx: &mut Context<Self>) {
        let MarkRead { session, reference, seq } = msg;
        let state = match self.ready() {
            Ok(state) => state,
            Err(refusal) => return Self::reply_error(&session.outbox, reference, refusal),
        };
        if let Err(refusal) = state.check_present(&session.id, &session.identity, Action::Read) {
            return Self::reply_error(&session.outbox, reference, refusal);
        }
        let user_id = session.identity.user.id.clone();
        let Some(seq) = state.read(&user_id, seq) else {
            return Self::reply_ok(&session.outbox, reference);
        };
        state.write_started();
        let store = self.env.store.clone();
        let room = self.id.clone();
        let addr = ctx.address();
        actix::spawn(async move {
            let result = store.set_read_marker(&room, &user_id, seq).await;
            addr.do_send(ReadStored { session, reference, result });
        });
    }
}

/// Tells the others where the reader's marker is now.
impl Handler<ReadStored> for Room {
    type Result = ();

    fn handle(&mut self, msg: ReadStored, ctx: &mut Context<Self>) {
        let ReadStored { session, reference, result } = msg;
        if let Some(state) = self.state.as_mut() {
            state.write_finished();
        }
        match result {
            Ok(marker) => {
                let user = UserId { id: session.identity.user.id.clone() };
                let frame = ServerFrame::Read { room: self.id.clone(), user, seq: marker };
                let bytes = ByteString::from(frame.to_json());
                let user = &session.identity.user.id;
                self.publish(|| ClusterEvent::Read { user: user.clone(), seq: marker, frame: bytes.to_string() });
                self.broadcast_bytes(bytes, Some(&session.id), ctx);
                Self::reply_ok(&session.outbox, reference);
            }
            Err(err) => Self::reply_error(&session.outbox, reference, Refusal::from(err)),
        }
        self.maybe_idle(ctx);
    }
}

/// Relays a signal to its target only.
impl Handler<Relay> for Room {
    type Result = ();

    fn handle(&mut self, msg: Relay, _ctx: &mut Context<Self>) {
        let Relay { session, reference, to, data } = msg;
        let check = self.ready().and_then(|s| {
            s.check_present(&session.id, &session.identity, Action::Signal)?;
            if *session.id == *to {
                return Err(Refusal::new(ErrorCode::BadRequest, "a session does not signal itself"));
            }
            s.check_target(&to)
        });
        if let Err(refusal) = check {
            return Self::reply_error(&session.outbox, reference, refusal);
        }
        if self.state.as_ref().is_some_and(|s| s.is_remote(&to)) {
            if self.env.broker.as_ref().is_some_and(|b| !b.is_ready()) {
                // Signals are not kept: one that cannot leave now is lost,
                // so the sender is told rather than given an `ok`.
                let refusal =
                    Refusal::new(ErrorCode::Unavailable, format!("{to} is on another node, out of reach now"));
                return Self::reply_error(&session.outbox, reference, refusal);
            }
            let frame = ServerFrame::Signal {
                room: self.id.clone(),
                from: session.id.to_string(),
                user: session.identity.user.clone(),
                data,
            };
            self.publish(|| ClusterEvent::Signal { to, frame: frame.to_json() });
            return Self::reply_ok(&session.outbox, reference);
        }
        let Some(target) = self.outboxes.get(to.as_str()) else {
            return Self::reply_error(
                &session.outbox,
                reference,
                Refusal::new(ErrorCode::NotFound, format!("no session {to}")),
            );
        };
        let frame = ServerFrame::Signal {
            room: self.id.clone(),
            from: session.id.to_string(),
            user: session.identity.user.clone(),
            data,
        };
        Self::send_to(target, &frame);
        Self::reply_ok(&session.outbox, reference);
    }
}

/// Switches the media mode on a reported ICE failure or on request.
impl Handler<SwitchMedia> for Room {
    type Result = Result<(), Refusal>;

    fn handle(&mut self, msg: SwitchMedia, ctx: &mut Context<Self>) -> Self::Result {
        let state = self.ready()?;
        let (mode, reason) = match (msg.event, msg.mode) {
            (Some(MediaEvent::IceFailed), _) => {
                let session = msg.session.as_deref().unwrap_or("");
                state.check_present(session, &msg.identity, Action::ReportIceFailure)?;
                (MediaMode::Jitsi, "ice_failed")
            }
            (None, Some(mode)) => {
                state.check(&msg.identity, Action::SwitchMedia)?;
                (mode, "requested")
            }
            (None, None) => return Err(Refusal::new(ErrorCode::BadRequest, "media needs an event or a mode")),
        };
        self.apply_media_mode(mode, reason, Some(Some(&msg.identity.user.id)), ctx);
        Ok(())
    }
}

/// Makes the consultation active and tells the patient's sessions.
impl Handler<Admit> for Room {
    type Result = ResponseActFuture<Self, Result<AdmitOutcome, Refusal>>;

    fn handle(&mut self, msg: Admit, _ctx: &mut Context<Self>) -> Self::Result {
        let check = self.ready().and_then(|state| {
            if let Some(identity) = &msg.identity {
                state.check(identity, Action::Admit)?;
                if msg.override_payment && identity.user.role != Role::Staff {
                    return Err(Refusal::new(ErrorCode::Forbidden, "only staff may admit an unpaid consultation"));
                }
            }
            let before = state.status();
            state.admit(msg.override_payment)?;
            state.write_started();
            Ok(before)
        });
        let before = match check {
            Ok(before) => before,
            Err(refusal) => return Box::pin(fut::ready(Err(refusal))),
        };
        let store = self.env.store.clone();
        let room = self.id.clone();
        let write = async move { store.set_status(&room, RoomStatus::Active, Utc::now(), None).await };
        Box::pin(write.into_actor(self).map(move |result, act, ctx| {
            let state = act.state.as_mut().ok_or_else(|| Refusal::new(ErrorCode::Unavailable, "room is gone"))?;
            state.write_finished();
            if let Err(err) = result {
                state.set_status(before);
                act.catch_up_if_stale(&err, ctx);
                return Err(Refusal::from(err));
            }
            let patient = state.record().patient.id.clone();
            let queue = state.record().queue_id();
            let frame = ByteString::from(ServerFrame::Admitted { room: act.id.clone() }.to_json());
            let mut told = Vec::new();
            for session in state.sessions_of(&patient) {
                if let Some(outbox) = act.outboxes.get(session) {
                    let _ = outbox.push(frame.clone());
                    told.push(session.clone());
                }
            }
            let unpaid = !state.record().paid;
            act.publish(|| ClusterEvent::Status { status: RoomStatus::Active, frame: None });
            let by = msg.identity.as_ref().map(|i| i.user.id.as_str());
            let detail = if unpaid {
                serde_json::json!({ "patient": patient, "override_payment": true })
            } else {
                serde_json::json!({ "patient": patient })
            };
            act.audit(by, "admit", detail);
            act.maybe_idle(ctx);
            Ok(AdmitOutcome { queue, told })
        }))
    }
}

/// Stores the end, then sends `ended` to every session.
impl Handler<End> for Room {
    type Result = ResponseActFuture<Self, Result<EndOutcome, Refusal>>;

    fn handle(&mut self, msg: End, _ctx: &mut Context<Self>) -> Self::Result {
        let check = self.ready().and_then(|state| {
            if let Some(identity) = &msg.identity {
                state.check(identity, Action::End)?;
            }
            state.begin_end()?;
            state.write_started();
            Ok(())
        });
        if let Err(refusal) = check {
            return Box::pin(fut::ready(Err(refusal)));
        }
        let at = Utc::now();
        let store = self.env.store.clone();
        let room = self.id.clone();
        let by = Person { id: msg.by.id.clone(), name: msg.by.name.clone() };
        let write = async move { store.set_status(&room, RoomStatus::Ended, at, Some(by)).await };
        Box::pin(write.into_actor(self).map(move |result, act, ctx| {
            let state = act.state.as_mut().ok_or_else(|| Refusal::new(ErrorCode::Unavailable, "room is gone"))?;
            state.write_finished();
            state.finish_end(result.is_ok());
            let queue = state.record().queue_id();
            if let Err(err) = &result {
                act.catch_up_if_stale(err, ctx);
            }
            result.map_err(Refusal::from)?;
            let ended = act.announce_end(RoomStatus::Ended, msg.by.clone(), at, queue, ctx);
            act.audit(Some(&msg.by.id), "end", serde_json::json!({}));
            act.maybe_idle(ctx);
            Ok(ended)
        }))
    }
}

/// Stores a system message and broadcasts it like chat.
impl Handler<PostSystem> for Room {
    type Result = ResponseActFuture<Self, Result<MessageEvent, Refusal>>;

    fn handle(&mut self, msg: PostSystem, _ctx: &mut Context<Self>) -> Self::Result {
        let check = self.ready().and_then(|state| {
            if state.status().is_closed() {
                return Err(Refusal::new(ErrorCode::Conflict, format!("{} has ended", state.id())));
            }
            state.write_started();
            Ok(())
        });
        if let Err(refusal) = check {
            return Box::pin(fut::ready(Err(refusal)));
        }
        let from = Sender { id: "system".into(), name: msg.name, role: "system".into() };
        let new = NewMessage {
            room: self.id.clone(),
            from: from.clone(),
            client_id: None,
            kind: MessageKind::System,
            text: msg.text.clone(),
        };
        let store = self.env.store.clone();
        let write = async move { store.append(new).await };
        Box::pin(write.into_actor(self).map(move |result, act, ctx| {
            if let Some(state) = act.state.as_mut() {
                state.write_finished();
            }
            let stored = result.map_err(|err| {
                act.catch_up_if_stale(&err, ctx);
                Refusal::from(err)
            })?;
            let event = MessageEvent {
                room: act.id.clone(),
                seq: stored.seq,
                id: stored.id,
                client_id: None,
                from,
                kind: MessageKind::System,
                text: msg.text,
                at: stored.at,
            };
            act.publish(|| ClusterEvent::Message { message: event.clone() });
            act.take_stored(event.clone(), ctx);
            act.maybe_idle(ctx);
            Ok(event)
        }))
    }
}

/// Takes the stored payment state and tells the sessions present, and the
/// room's other nodes.
impl Handler<SetPayment> for Room {
    type Result = Result<QueueId, Refusal>;

    fn handle(&mut self, msg: SetPayment, ctx: &mut Context<Self>) -> Self::Result {
        let state = self.ready()?;
        let queue = state.record().queue_id();
        // The store said the state changed; a room that just loaded has it
        // already, and its sessions still need to hear.
        state.set_paid(msg.status == PaymentStatus::Paid);
        let frame = ServerFrame::Payment { room: self.id.clone(), status: msg.status };
        let bytes = ByteString::from(frame.to_json());
        self.publish(|| ClusterEvent::Payment { status: msg.status, frame: bytes.to_string() });
        self.broadcast_bytes(bytes, None, ctx);
        Ok(queue)
    }
}

/// Lists the sessions present, on every node.
impl Handler<GetPresence> for Room {
    type Result = Vec<PresentPeer>;

    fn handle(&mut self, _msg: GetPresence, _ctx: &mut Context<Self>) -> Vec<PresentPeer> {
        self.state.as_ref().map(RoomState::present).unwrap_or_default()
    }
}

/// Applies what the room's other nodes did.
impl Handler<FromCluster> for Room {
    type Result = ();

    fn handle(&mut self, msg: FromCluster, ctx: &mut Context<Self>) {
        if self.state.is_none() {
            return;
        }
        match msg {
            FromCluster::Event { from, event } => self.apply(&from, *event, ctx),
            FromCluster::Resync => self.resync(ctx),
            FromCluster::NodesGone(instances) => {
                let Some(state) = self.state.as_mut() else { return };
                let (sessions, frames) = state.exit_instances(&instances);
                if sessions.is_empty() {
                    return;
                }
                info!(room = %self.id, sessions = sessions.len(), "sessions of a node that stopped answering left");
                if let Some(broker) = &self.env.broker {
                    broker.forget(&self.id, &sessions);
                }
                for frame in frames {
                    self.broadcast(&frame, None, ctx);
                }
                // The node may have stored messages it never announced.
                self.fill(ctx);
            }
        }
    }
}

impl Room {
    /// Applies one event of another node's room.
    fn apply(&mut self, from: &str, event: ClusterEvent, ctx: &mut Context<Self>) {
        let Some(state) = self.state.as_mut() else { return };
        match event {
            ClusterEvent::Message { message } => self.take_stored(message, ctx),
            ClusterEvent::Enter { peer, node } => {
                if let Some(frame) = state.enter_remote(peer, &node, from) {
                    self.broadcast(&frame, None, ctx);
                }
            }
            ClusterEvent::Exit { session } => {
                if state.is_remote(&session)
                    && let Some(frame) = state.exit(&session)
                {
                    self.broadcast(&frame, None, ctx);
                }
            }
            ClusterEvent::Roster { node, peers } => {
                for frame in state.roster(from, &node, peers) {
                    self.broadcast(&frame, None, ctx);
                }
                // The sender was cut off from Redis: what it published
                // meanwhile is lost, what it stored is in the database.
                self.fill(ctx);
            }
            ClusterEvent::Frame { frame } => self.broadcast_bytes(frame.into(), None, ctx),
            ClusterEvent::Read { user, seq, frame } => {
                state.read_elsewhere(&user, seq);
                self.broadcast_bytes(frame.into(), None, ctx);
            }
            ClusterEvent::Media { mode, reason } => self.apply_media_mode(mode, &reason, None, ctx),
            ClusterEvent::Status { status, frame } => {
                let before = state.status();
                match status {
                    RoomStatus::Waiting if before != RoomStatus::Scheduled => {}
                    _ => state.set_status(status),
                }
                if status == RoomStatus::Active && before != RoomStatus::Active {
                    let patient = state.record().patient.id.clone();
                    let bytes = ByteString::from(ServerFrame::Admitted { room: self.id.clone() }.to_json());
                    for session in state.sessions_of(&patient) {
                        if let Some(outbox) = self.outboxes.get(session) {
                            let _ = outbox.push(bytes.clone());
                        }
                    }
                }
                if let Some(frame) = frame {
                    self.broadcast_bytes(frame.into(), None, ctx);
                }
            }
            ClusterEvent::Signal { to, frame } => {
                if let Some(outbox) = self.outboxes.get(to.as_str()) {
                    let _ = outbox.push(frame.into());
                }
            }
            ClusterEvent::Payment { status, frame } => {
                state.set_paid(status == PaymentStatus::Paid);
                self.broadcast_bytes(frame.into(), None, ctx);
            }
            ClusterEvent::QueueOnline { .. } | ClusterEvent::QueueChanged { .. } => {}
        }
    }

    /// After the broker was away: say again which sessions this node has,
    /// take the others' from the cluster's presence, and read the messages
    /// that may have been missed from storage.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        let (Some(broker), Some(state)) = (self.env.broker.clone(), self.state.as_ref()) else { return };
        broker.roster(&self.id, &state.local_peers());
        let known = state.record().clone();
        self.fill(ctx);
        self.catch_up(known, ctx);
        let room = self.id.clone();
        let read = async move { broker.presence(&room).await };
        ctx.spawn(read.into_actor(self).map(|result, act, ctx| {
            let remote = match result {
                Ok(remote) => remote,
                Err(err) => return warn!(room = %act.id, error = %err, "cluster presence not read after resync"),
            };
            let Some(state) = act.state.as_mut() else { return };
            let mut by_instance: HashMap<String, (String, Vec<Peer>)> = HashMap::new();
            for entry in remote {
                by_instance.entry(entry.instance).or_insert_with(|| (entry.node, Vec::new())).1.push(entry.peer);
            }
            let mut frames = Vec::new();
            for (instance, (node, peers)) in by_instance {
                frames.extend(state.roster(&instance, &node, peers));
            }
            for frame in frames {
                act.broadcast(&frame, None, ctx);
            }
        }));
    }
}

impl Room {
    /// Reads the consultation and its read markers again, after events from
    /// other nodes may have been lost, and applies what changed meanwhile
    /// as the lost events would have: an end, an admission, a media mode, a
    /// payment, read markers. `known` is the record as this room had it
    /// when the read began; a field that changed here since is newer than
    /// the read and is kept.
    fn catch_up(&mut self, known: RoomRecord, ctx: &mut Context<Self>) {
        let store = self.env.store.clone();
        let room = self.id.clone();
        let read = async move { (store.load_room(&room).await, store.read_markers(&room).await) };
        ctx.spawn(read.into_actor(self).map(move |(record, markers), act, ctx| {
            let Some(state) = act.state.as_mut() else { return };
            let markers = match markers {
                Ok(markers) => state.catch_up_read_markers(markers),
                Err(err) => {
                    warn!(room = %act.id, error = %err, "read markers not read after resync");
                    Vec::new()
                }
            };
            let stored = match record {
                Ok(Some(stored)) => stored,
                Ok(None) => return,
                Err(err) => return warn!(room = %act.id, error = %err, "consultation not read after resync"),
            };
            let missed = state.missed_changes(&known, &stored);
            for (user, seq) in markers {
                act.broadcast(&ServerFrame::Read { room: act.id.clone(), user: UserId { id: user }, seq }, None, ctx);
            }
            if missed != MissedChanges::default() {
                info!(room = %act.id, ?missed, "caught up with changes made on other nodes");
            }
            if let Some(paid) = missed.paid {
                let status = if paid { PaymentStatus::Paid } else { PaymentStatus::Refunded };
                let frame = ServerFrame::Payment { room: act.id.clone(), status };
                act.apply(NOWHERE, ClusterEvent::Payment { status, frame: frame.to_json() }, ctx);
            }
            if let Some(mode) = missed.media_mode {
                act.apply_media_mode(mode, "requested", None, ctx);
            }
            if let Some(status) = missed.status {
                let frame = status.is_closed().then(|| {
                    // Consultations ended before who ended them was stored
                    // name the hub.
                    let by = match &stored.ended_by {
                        Some(p) => UserRef { id: p.id.clone(), name: p.name.clone() },
                        None => UserRef { id: "system".into(), name: "Telehub".into() },
                    };
                    let at = stored.ended_at.clone().unwrap_or_else(|| format_time(Utc::now()));
                    ServerFrame::Ended { room: act.id.clone(), by, at }.to_json()
                });
                act.apply(NOWHERE, ClusterEvent::Status { status, frame }, ctx);
            }
        }));
    }
}

impl Room {
    /// After storage refused a status change or a message as a conflict:
    /// the consultation ended on a node this one has not heard from, so
    /// catch up with it now rather than at the next resync.
    fn catch_up_if_stale(&mut self, err: &StoreError, ctx: &mut Context<Self>) {
        if let (StoreError::Conflict(_), Some(state)) = (err, self.state.as_ref()) {
            let known = state.record().clone();
            self.catch_up(known, ctx);
        }
    }
}

/// The sender of events a room replays to itself when it catches up.
const NOWHERE: &str = "";

/// Returns the record with the room's live status, mode and last `seq`.
impl Handler<LocalSessions> for Room {
    type Result = Vec<Arc<str>>;

    fn handle(&mut self, _msg: LocalSessions, _ctx: &mut Context<Self>) -> Vec<Arc<str>> {
        self.outboxes.keys().cloned().collect()
    }
}

impl Handler<GetRecord> for Room {
    type Result = Option<RoomRecord>;

    fn handle(&mut self, _msg: GetRecord, _ctx: &mut Context<Self>) -> Option<RoomRecord> {
        self.state.as_ref().map(|s| s.record().clone())
    }
}

/// Says which queue the patient checks in to, if they may.
impl Handler<CheckinInfo> for Room {
    type Result = Result<CheckinTicket, Refusal>;

    fn handle(&mut self, msg: CheckinInfo, _ctx: &mut Context<Self>) -> Self::Result {
        let state = self.ready()?;
        state.check(&msg.identity, Action::Checkin)?;
        let record = state.record();
        match record.status {
            RoomStatus::Scheduled | RoomStatus::Waiting => {
                Ok(CheckinTicket { paid: record.paid, queue: record.queue_id(), patient: record.patient.clone() })
            }
            RoomStatus::Active => Err(Refusal::new(
                ErrorCode::Conflict,
                format!("{} has started: join it instead of checking in", record.id),
            )),
            RoomStatus::Ended | RoomStatus::Cancelled => {
                Err(Refusal::new(ErrorCode::Conflict, format!("{} has ended", record.id)))
            }
        }
    }
}

impl Handler<MarkWaiting> for Room {
    type Result = ();

    fn handle(&mut self, _msg: MarkWaiting, _ctx: &mut Context<Self>) {
        if let Some(state) = self.state.as_mut()
            && state.status() == RoomStatus::Scheduled
        {
            state.set_status(RoomStatus::Waiting);
            self.publish(|| ClusterEvent::Status { status: RoomStatus::Waiting, frame: None });
        }
    }
}

/// Cancels an active consultation whose patient never came.
impl Handler<NoShow> for Room {
    type Result = ResponseActFuture<Self, Result<Option<EndOutcome>, Refusal>>;

    fn handle(&mut self, _msg: NoShow, _ctx: &mut Context<Self>) -> Self::Result {
        let check = self.ready().map(|state| {
            let record = state.record();
            let absent = state.sessions_of(&record.patient.id).next().is_none();
            let cancel = record.status == RoomStatus::Active && absent && state.begin_end().is_ok();
            if cancel {
                state.write_started();
            }
            cancel
        });
        match check {
            Ok(true) => {}
            Ok(false) => return Box::pin(fut::ready(Ok(None))),
            Err(refusal) => return Box::pin(fut::ready(Err(refusal))),
        }
        let at = Utc::now();
        let store = self.env.store.clone();
        let room = self.id.clone();
        let by = UserRef { id: "system".into(), name: "No-show".into() };
        let stored_by = Person { id: by.id.clone(), name: by.name.clone() };
        let write = async move { store.set_status(&room, RoomStatus::Cancelled, at, Some(stored_by)).await };
        Box::pin(write.into_actor(self).map(move |result, act, ctx| {
            let state = act.state.as_mut().ok_or_else(|| Refusal::new(ErrorCode::Unavailable, "room is gone"))?;
            state.write_finished();
            state.finish_end(false);
            if let Err(err) = result {
                act.catch_up_if_stale(&err, ctx);
                return Err(Refusal::from(err));
            }
            let state = act.state.as_mut().ok_or_else(|| Refusal::new(ErrorCode::Unavailable, "room is gone"))?;
            state.set_status(RoomStatus::Cancelled);
            let queue = state.record().queue_id();
            let ended = act.announce_end(RoomStatus::Cancelled, by, at, queue, ctx);
            act.audit(None, "no_show", serde_json::json!({}));
            info!(room = %act.id, "consultation cancelled: the patient did not come");
            act.maybe_idle(ctx);
            Ok(Some(ended))
        }))
    }
}

/// The fault that [`crate::Rooms::crash`] injects for tests.
#[cfg(feature = "test-util")]
impl Handler<crate::fault::Crash> for Room {
    type Result = ();

    fn handle(&mut self, _msg: crate::fault::Crash, _ctx: &mut Context<Self>) {
        panic!("a fault injected into room {}", self.id);
    }
}
