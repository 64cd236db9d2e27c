//! The queue actor: one per waiting room with someone in or watching it.
//!
//! A queue owns its [`QueueState`], the outboxes of the sessions that
//! checked in or watch, and the timers of the waiting room: the grace period
//! of a patient whose last session dropped, and the no-show timeout of a
//! patient who was admitted but does not come. It loads its entries from
//! the store when it starts, so a restarted hub has the same queue, and it
//! stores every change before it tells anyone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytestring::ByteString;
use chrono::Utc;
use telehub_signaling::{ErrorCode, PaymentStatus, Role, ServerFrame, format_time};
use tracing::{debug, info, warn};

use crate::broker::{Broker, Called, ClusterEvent, FromCluster, Topic};
use crate::queue_state::{Place, QueueState, View, Waiting, expected_length};
use crate::queues::{ForgetQueue, QueueRegistry};
use crate::registry::{NoShowAt, Peek, RoomRegistry};
use crate::room::LocalSessions;
use crate::{EntryState, Outbox, Person, Push, QueueId, QueueStore, Refusal, SessionRef, StoreError, StoredEntry};

/// How a waiting room behaves.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// How long a patient whose last session dropped keeps their place.
    pub grace: Duration,
    /// How long an admitted patient has to join the consultation before it
    /// is cancelled as a no-show; `None` waits for ever.
    pub no_show: Option<Duration>,
    /// The expected length of a consultation while the queue has no
    /// finished ones to average.
    pub per_consultation: Duration,
    /// How many recent consultations the ETA averages.
    pub recent: u32,
    /// How long a queue with nobody in it stays before it stops.
    pub idle_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            grace: Duration::from_secs(120),
            no_show: Some(Duration::from_secs(300)),
            per_consultation: Duration::from_secs(600),
            recent: 10,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// A patient's session checks in; the `queue` reply goes to its outbox.
#[derive(Message)]
#[rtype(result = "Result<(), Refusal>")]
pub(crate) struct CheckIn {
    pub room: String,
    pub patient: Person,
    pub paid: bool,
    pub session: SessionRef,
    pub reference: Option<String>,
}

/// A session watches the queue; the `queue_state` reply goes to its outbox.
#[derive(Message)]
#[rtype(result = "Result<(), Refusal>")]
pub(crate) struct Watch {
    pub session: SessionRef,
    pub reference: Option<String>,
}

/// The consultation of `room` was admitted (and stored as active). Its
/// sessions in `told` had `admitted` from the room already.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Admitted {
    pub room: String,
    pub told: Vec<Arc<str>>,
}

/// The consultation of `room` ended (or was cancelled): its patient is no
/// longer waited for.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RoomEnded {
    pub room: String,
    /// The `ended` frame, for the patient's sessions here.
    pub frame: ByteString,
    /// The sessions the room gave it already.
    pub told: Vec<Arc<str>>,
}

/// The admitted patient of `room` joined the consultation.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Showed {
    pub room: String,
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SessionGone {
    pub session: Arc<str>,
}

/// The queue as the clinic's backend sees it.
#[derive(Message)]
#[rtype(result = "Result<ServerFrame, Refusal>")]
pub(crate) struct Snapshot {
    pub view: View,
}

/// A consultation's payment state was stored.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PaymentChanged {
    pub room: String,
    pub status: PaymentStatus,
}

/// An entry's state was written (or failed to be).
#[derive(Message)]
#[rtype(result = "()")]
struct EntryStored {
    stored: bool,
    called: Option<Called>,
}

/// One waiting room.
pub struct Queue {
    id: QueueId,
    state: Option<QueueState>,
    unusable: Option<Refusal>,
    outboxes: HashMap<Arc<str>, Outbox>,
    /// The place each waiting patient was last told, to tell only changes.
    told: HashMap<String, Place>,
    grace: HashMap<String, SpawnHandle>,
    no_show: HashMap<String, SpawnHandle>,
    /// Patients who came into their consultation before this queue heard
    /// of the admission (the two messages come from different places).
    early_shows: HashSet<String>,
    idle_timer: Option<SpawnHandle>,
    store: Arc<dyn QueueStore>,
    rooms: Addr<RoomRegistry>,
    registry: Addr<QueueRegistry>,
    config: QueueConfig,
    cluster: Cluster,
}

/// What a queue knows of the other nodes of a cluster.
#[derive(Default)]
struct Cluster {
    broker: Option<Arc<dyn Broker>>,
    subscription: Option<u64>,
    /// The rooms whose patients are checked in on each other instance.
    elsewhere: HashMap<String, HashSet<String>>,
    /// What this node last said of its own online rooms.
    announced: Option<Vec<String>>,
    /// Counts changes of the line made here, so that a reload that raced
    /// with one starts over instead of undoing it.
    generation: u64,
    reloading: bool,
    reload_again: bool,
}

impl Queue {
    pub(crate) fn new(
        id: QueueId,
        store: Arc<dyn QueueStore>,
        rooms: Addr<RoomRegistry>,
        registry: Addr<QueueRegistry>,
        config: QueueConfig,
        broker: Option<Arc<dyn Broker>>,
    ) -> Self {
        Queue {
            id,
            state: None,
            unusable: None,
            outboxes: HashMap::new(),
            told: HashMap::new(),
            grace: HashMap::new(),
            no_show: HashMap::new(),
            early_shows: HashSet::new(),
            idle_timer: None,
            store,
            rooms,
            registry,
            config,
            cluster: Cluster { broker, ..Cluster::default() },
        }
    }

    fn ready(&mut self) -> Result<&mut QueueState, Refusal> {
        match (&mut self.state, &self.unusable) {
            (Some(state), _) => Ok(state),
            (None, Some(refusal)) => Err(refusal.clone()),
            (None, None) => Err(Refusal::new(ErrorCode::Unavailable, "queue is loading")),
        }
    }

    fn push(&self, session: &str, frame: ByteString) -> Push {
        self.outboxes.get(session).map_or(Push::Closed, |outbox| outbox.push(frame))
    }

    /// Tells every waiting patient whose place changed, and every watcher
    /// the queue as they may see it.
    fn publish(&mut self) {
        let Some(state) = self.state.as_ref() else { return };
        let mut frames = Vec::new();
        for (entry, place) in state.places() {
            if self.told.get(&entry.room) != Some(&place) && entry.online() {
                let frame = ByteString::from(state.queue_frame(entry, place, None).to_json());
                frames.push((entry.room.clone(), place, entry.sessions.clone(), frame));
            }
        }
        let mut views = Vec::new();
        for (view, sessions) in state.watchers_by_view() {
            let frame = ByteString::from(state.state_frame(view, None).to_json());
            views.push((sessions.into_iter().cloned().collect::<Vec<_>>(), frame));
        }
        for (room, place, sessions, frame) in frames {
            self.told.insert(room, place);
            for session in sessions {
                self.push(&session, frame.clone());
            }
        }
        for (sessions, frame) in views {
            for session in sessions {
                self.push(&session, frame.clone());
            }
        }
    }

    /// Starts the grace period of a patient who went offline.
    fn start_grace(&mut self, room: String, ctx: &mut Context<Self>) {
        let key = room.clone();
        let handle = ctx.run_later(self.config.grace, move |act, ctx| {
            act.grace.remove(&room);
            let offline = act.state.as_ref().and_then(|s| s.waiting(&room)).is_some_and(|w| !w.online());
            if offline {
                info!(queue = %act.id, %room, "patient left the waiting room after the grace period");
                act.leave(room, EntryState::Left, ctx);
            }
        });
        if let Some(old) = self.grace.insert(key, handle) {
            ctx.cancel_future(old);
        }
    }

    fn stop_grace(&mut self, room: &str, ctx: &mut Context<Self>) {
        if let Some(handle) = self.grace.remove(room) {
            ctx.cancel_future(handle);
        }
    }

    /// Takes a waiting patient out of the queue for good, stores it, and
    /// tells everyone.
    fn leave(&mut self, room: String, why: EntryState, ctx: &mut Context<Self>) {
        let Some(state) = self.state.as_mut() else { return };
        if state.remove(&room).is_none() {
            return;
        }
        self.told.remove(&room);
        self.early_shows.remove(&room);
        self.store_entry(room, why, None, ctx);
        self.publish();
        self.maybe_idle(ctx);
    }

    /// Stores an entry's new state. In a cluster the other nodes hear of
    /// it once it is stored, and they read the line again.
    fn store_entry(&mut self, room: String, state: EntryState, called: Option<Called>, ctx: &mut Context<Self>) {
        self.store_entry_as(room, Stored::State(state), called, ctx);
    }

    fn store_entry_as(&mut self, room: String, stored: Stored, called: Option<Called>, ctx: &mut Context<Self>) {
        self.cluster.generation += 1;
        let store = self.store.clone();
        let addr = ctx.address();
        actix::spawn(async move {
            let at = Utc::now();
            let result = match stored {
                Stored::State(state) => store.set_entry_state(&room, state, at).await,
                Stored::AdmittedAway => store.admit_away(&room, at).await,
            };
            if let Err(err) = &result {
                warn!(%room, error = %err, "queue entry state not stored");
            }
            addr.do_send(EntryStored { stored: result.is_ok(), called });
        });
    }

    /// Tells the other nodes that the line changed in storage.
    fn changed(&self, called: Option<Called>, payment: Option<(String, PaymentStatus)>) {
        if let Some(broker) = &self.cluster.broker {
            broker.publish(Topic::Queue(&self.id), &ClusterEvent::QueueChanged { called, payment, ended: None });
        }
    }

    /// Tells the other nodes' queues that `room` ended, with its frame.
    fn ended_elsewhere(&self, room: &str, frame: &ByteString) {
        if let Some(broker) = &self.cluster.broker {
            let ended = Some((room.to_owned(), frame.to_string()));
            broker.publish(Topic::Queue(&self.id), &ClusterEvent::QueueChanged { called: None, payment: None, ended });
        }
    }

    /// Another node ended `room`: its sessions here that are in the room
    /// had `ended` from it (the room hears of the end on its own), the
    /// patient's others hear it from the queue.
    fn tell_ended_elsewhere(&mut self, room: String, frame: ByteString, ctx: &mut Context<Self>) {
        // Taken now: the line is read again next, without the entry.
        let sessions = self.state.as_ref().map(|s| s.sessions_of_entry(&room)).unwrap_or_default();
        if sessions.is_empty() {
            return;
        }
        let rooms = self.rooms.clone();
        let ask = async move {
            match rooms.send(Peek { room }).await {
                Ok(Some(addr)) => addr.send(LocalSessions).await.unwrap_or_default(),
                _ => Vec::new(),
            }
        };
        ctx.spawn(ask.into_actor(self).map(move |told, act, _| act.tell(&sessions, &frame, &told)));
    }

    /// Gives the `ended` frame of `room` to its patient's sessions here,
    /// waiting or admitted, but those in `told`.
    fn tell_ended(&self, room: &str, frame: &ByteString, told: &[Arc<str>]) {
        let Some(state) = self.state.as_ref() else { return };
        self.tell(&state.sessions_of_entry(room), frame, told);
    }

    /// Gives `frame` to `sessions` but those in `told`.
    fn tell(&self, sessions: &[Arc<str>], frame: &ByteString, told: &[Arc<str>]) {
        for session in sessions.iter().filter(|s| !told.contains(s)) {
            self.push(session, frame.clone());
        }
    }

    /// Tells this node's watchers who see `room` with names, and the
    /// patient's checked-in sessions here, of its payment.
    fn tell_payment(&self, room: &str, status: PaymentStatus) {
        let Some(state) = self.state.as_ref() else { return };
        let frame = ByteString::from(ServerFrame::Payment { room: room.to_owned(), status }.to_json());
        for watcher in state.payment_watchers(room) {
            self.push(watcher, frame.clone());
        }
        for session in state.sessions_for(room) {
            self.push(&session, frame.clone());
        }
    }

    /// Tells the other nodes which rooms' patients are checked in here, if
    /// that changed.
    fn announce(&mut self) {
        let (Some(broker), Some(state)) = (&self.cluster.broker, &self.state) else { return };
        let rooms = state.online_here();
        if self.cluster.announced.as_ref() != Some(&rooms) {
            broker.queue_online(&self.id, &rooms);
            self.cluster.announced = Some(rooms);
        }
    }

    /// Marks the patients online on other nodes; starts the grace period of
    /// those now offline everywhere and ends it for those back.
    fn apply_elsewhere(&mut self, ctx: &mut Context<Self>) {
        let Some(state) = self.state.as_mut() else { return };
        let online: HashSet<String> = self.cluster.elsewhere.values().flatten().cloned().collect();
        let (went, came) = state.set_elsewhere(&online);
        for room in &came {
            self.stop_grace(room, ctx);
        }
        for room in &went {
            self.told.remove(room);
            self.start_grace(room.clone(), ctx);
        }
        if !went.is_empty() || !came.is_empty() {
            self.publish();
        }
    }

    /// Reads the line again after another node changed it.
    fn reload(&mut self, ctx: &mut Context<Self>) {
        if self.cluster.reloading {
            self.cluster.reload_again = true;
            return;
        }
        self.cluster.reloading = true;
        self.cluster.reload_again = false;
        let generation = self.cluster.generation;
        let (store, id) = (self.store.clone(), self.id.clone());
        let load = async move { store.load_queue(&id).await };
        ctx.spawn(load.into_actor(self).map(move |result, act, ctx| {
            act.cluster.reloading = false;
            if act.cluster.generation != generation || act.cluster.reload_again {
                return act.reload(ctx);
            }
            let entries = match result {
                Ok(entries) => entries,
                Err(err) => return warn!(queue = %act.id, error = %err, "queue not read again"),
            };
            let (waiting, admitted) = split(entries);
            let Some(state) = act.state.as_mut() else { return };
            let (removed, added) = state.sync(waiting, admitted);
            for room in removed {
                act.told.remove(&room);
                act.early_shows.remove(&room);
                act.stop_grace(&room, ctx);
            }
            act.apply_elsewhere(ctx);
            for room in added {
                let offline = act.state.as_ref().and_then(|s| s.waiting(&room)).is_some_and(|w| !w.online());
                if offline {
                    act.start_grace(room, ctx);
                }
            }
            act.publish();
            act.maybe_idle(ctx);
        }));
    }

    /// Reads which rooms' patients are online on the other nodes.
    fn reread_elsewhere(&mut self, ctx: &mut Context<Self>) {
        let Some(broker) = self.cluster.broker.clone() else { return };
        let id = self.id.clone();
        let read = async move { broker.queue_online_elsewhere(&id).await };
        ctx.spawn(read.into_actor(self).map(|result, act, ctx| match result {
            Ok(online) => {
                act.cluster.elsewhere = online.into_iter().map(|(i, rooms)| (i, rooms.into_iter().collect())).collect();
                act.apply_elsewhere(ctx);
            }
            Err(err) => warn!(queue = %act.id, error = %err, "who is online elsewhere not read"),
        }));
    }

    /// Another node admitted a patient: tell this node's sessions of the
    /// patient and the clinic's displays.
    fn call(&self, called: &Called) {
        let Some(state) = self.state.as_ref() else { return };
        let admitted = ByteString::from(ServerFrame::Admitted { room: called.room.clone() }.to_json());
        for session in state.sessions_for(&called.room) {
            self.push(&session, admitted.clone());
        }
        let at = format_time(Utc::now());
        let frame = ServerFrame::Called { queue: self.id.name().to_owned(), ticket: called.ticket.clone(), at };
        let frame = ByteString::from(frame.to_json());
        for display in state.displays_of(called.clinic.as_deref()) {
            self.push(display, frame.clone());
        }
    }

    /// Starts the no-show timeout of an admitted patient.
    fn start_no_show(&mut self, room: String, after: Duration, ctx: &mut Context<Self>) {
        let key = room.clone();
        let handle = ctx.run_later(after, move |act, ctx| {
            act.no_show.remove(&room);
            act.check_no_show(room, ctx);
        });
        if let Some(old) = self.no_show.insert(key, handle) {
            ctx.cancel_future(old);
        }
    }

    /// Asks the room whether its patient came; if not, the room cancels
    /// the consultation and the entry is a no-show.
    fn check_no_show(&mut self, room: String, ctx: &mut Context<Self>) {
        let ask = self.rooms.send(NoShowAt { room: room.clone() });
        let fut = ask.into_actor(self).map(move |result, act, ctx| {
            let state = match result {
                Ok(Ok(Some(cancelled))) => {
                    // The patient's checked-in sessions (a page stuck
                    // before its join) hear it too.
                    act.tell_ended(&room, &cancelled.frame, &cancelled.told);
                    act.ended_elsewhere(&room, &cancelled.frame);
                    EntryState::NoShow
                }
                Ok(Ok(None)) => EntryState::Seen,
                // The room could not decide (storage down): ask again later.
                Ok(Err(_)) | Err(_) => {
                    act.start_no_show(room, Duration::from_secs(10), ctx);
                    return;
                }
            };
            if let Some(state) = act.state.as_mut() {
                state.settle(&room);
            }
            act.store_entry(room, state, None, ctx);
            act.maybe_idle(ctx);
        });
        ctx.spawn(fut);
    }

    /// Re-reads the recent consultation lengths; tells everyone if the ETA
    /// changed.
    fn refresh_lengths(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let (id, limit, default) = (self.id.clone(), self.config.recent, self.config.per_consultation);
        let fut = async move { store.recent_lengths(&id, limit).await };
        ctx.spawn(fut.into_actor(self).map(move |result, act, _ctx| {
            let lengths = match result {
                Ok(lengths) => lengths,
                Err(err) => {
                    debug!(queue = %act.id, error = %err, "recent consultation lengths not read");
                    return;
                }
            };
            if let Some(state) = act.state.as_mut() {
                state.set_per_consultation(expected_length(&lengths, default));
            }
            act.publish();
        }));
    }

    /// Stops the queue after it has been idle for a while.
    fn maybe_idle(&mut self, ctx: &mut Context<Self>) {
        let idle = self.state.as_ref().is_none_or(QueueState::is_idle) && self.grace.is_empty();
        if !idle {
            if let Some(timer) = self.idle_timer.take() {
                ctx.cancel_future(timer);
            }
            return;
        }
        if self.idle_timer.is_some() {
            return;
        }
        self.idle_timer = Some(ctx.run_later(self.config.idle_timeout, |act, ctx| {
            act.idle_timer = None;
            if act.state.as_ref().is_none_or(QueueState::is_idle) && act.grace.is_empty() {
                debug!(queue = %act.id, "queue idle, stopping");
                act.registry.do_send(ForgetQueue { queue: act.id.clone(), addr: ctx.address() });
                ctx.stop();
            }
        }));
    }

    /// Builds the state from stored entries: waiting patients start
    /// offline with a fresh grace period (the hub may have been down while
    /// they waited), admitted ones get what is left of their no-show time.
    ///
    /// In a cluster, patients checked in on other nodes (`elsewhere`) are
    /// online and get no grace period.
    fn rebuild(&mut self, entries: Vec<StoredEntry>, elsewhere: Vec<(String, Vec<String>)>, ctx: &mut Context<Self>) {
        let mut state = QueueState::new(self.id.name().to_owned(), self.config.per_consultation);
        let admitted: Vec<_> = entries
            .iter()
            .filter(|e| e.state == EntryState::Admitted)
            .map(|e| (e.room.clone(), e.changed_at))
            .collect();
        let (waiting, admitted_entries) = split(entries);
        for entry in waiting {
            state.add(entry);
        }
        for entry in admitted_entries {
            state.add_admitted(entry);
        }
        self.cluster.elsewhere = elsewhere.into_iter().map(|(i, rooms)| (i, rooms.into_iter().collect())).collect();
        let online: HashSet<String> = self.cluster.elsewhere.values().flatten().cloned().collect();
        state.set_elsewhere(&online);
        let offline: Vec<String> =
            state.places().iter().filter(|(w, _)| !w.online()).map(|(w, _)| w.room.clone()).collect();
        self.state = Some(state);
        for room in offline {
            self.start_grace(room, ctx);
        }
        if let Some(no_show) = self.config.no_show {
            for (room, at) in admitted {
                let passed = (Utc::now() - at).to_std().unwrap_or_default();
                self.start_no_show(room, no_show.saturating_sub(passed), ctx);
            }
        }
        self.refresh_lengths(ctx);
        self.maybe_idle(ctx);
    }
}

impl Actor for Queue {
    type Context = Context<Self>;

    /// Loads the queue before the first message is handled. In a cluster
    /// it subscribes to the other nodes' events first, then reads the line
    /// and who is online on the other nodes.
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        let store = self.store.clone();
        let id = self.id.clone();
        let broker = self.cluster.broker.clone();
        let me = ctx.address().recipient();
        let load = async move {
            let subscription = match &broker {
                Some(broker) => Some(broker.subscribe(Topic::Queue(&id), me).await),
                None => None,
            };
            let elsewhere = match &broker {
                Some(broker) => broker.queue_online_elsewhere(&id).await.unwrap_or_else(|err| {
                    warn!(queue = %id, error = %err, "who is online elsewhere not read; it comes with the resync");
                    Vec::new()
                }),
                None => Vec::new(),
            };
            (subscription, store.load_queue(&id).await.map(|entries| (entries, elsewhere)))
        };
        ctx.wait(load.into_actor(self).map(|(subscription, result), act, ctx| match result {
            Ok((entries, elsewhere)) => {
                act.cluster.subscription = subscription;
                act.rebuild(entries, elsewhere, ctx);
            }
            Err(err) => {
                act.cluster.subscription = subscription;
                act.unusable = Some(Refusal::from(err));
                act.registry.do_send(ForgetQueue { queue: act.id.clone(), addr: ctx.address() });
                ctx.run_later(Duration::from_secs(1), |_, ctx| ctx.stop());
            }
        }));
    }

    /// A queue stops by itself only once nobody follows it, so a follower
    /// still here means a fault (a panic unwinding the queue's task, which
    /// actix still runs this for): each is told what it lost, and follows
    /// the queue again at once. The registry forgets this queue first, so
    /// that they find a fresh one rather than this one on its way out.
    fn stopped(&mut self, ctx: &mut Context<Self>) {
        if let (Some(broker), Some(id)) = (&self.cluster.broker, self.cluster.subscription) {
            broker.unsubscribe(Topic::Queue(&self.id), id);
        }
        let Some(state) = &self.state else { return };
        let followers = state.followers(&self.id);
        if followers.is_empty() {
            return;
        }
        self.registry.do_send(ForgetQueue { queue: self.id.clone(), addr: ctx.address() });
        for (session, lost) in followers {
            if let Some(outbox) = self.outboxes.get(session) {
                outbox.lost(lost);
            }
        }
    }
}

/// The stored entries as the waiting and the admitted ones.
fn split(entries: Vec<StoredEntry>) -> (Vec<Waiting>, Vec<Waiting>) {
    let (mut waiting, mut admitted) = (Vec::new(), Vec::new());
    for stored in entries {
        let entry = Waiting {
            room: stored.room,
            ticket: stored.ticket,
            clinic: stored.clinic,
            patient: stored.patient,
            since: stored.since,
            paid: stored.paid,
            sessions: Vec::new(),
            elsewhere: false,
        };
        match stored.state {
            EntryState::Waiting => waiting.push(entry),
            EntryState::Admitted => admitted.push(entry),
            EntryState::Seen | EntryState::Left | EntryState::NoShow => {}
        }
    }
    (waiting, admitted)
}

/// Puts a patient in the queue (or back to their place) and answers with
/// their `queue` frame. Atomic: the next message waits for the store, so two
/// check-ins of one patient cannot both take a ticket.
impl Handler<CheckIn> for Queue {
    type Result = AtomicResponse<Self, Result<(), Refusal>>;

    fn handle(&mut self, msg: CheckIn, ctx: &mut Context<Self>) -> Self::Result {
        let known = match self.ready() {
            Ok(state) if state.is_admitted(&msg.room) => Err(Refusal::new(
                ErrorCode::Conflict,
                format!("{} was admitted already: join the consultation", msg.room),
            )),
            Ok(state) => Ok(state.waiting(&msg.room).is_some()),
            Err(refusal) => Err(refusal),
        };
        let known = match known {
            Ok(known) => known,
            Err(refusal) => return AtomicResponse::new(Box::pin(fut::ready(Err(refusal)))),
        };
        let session = msg.session.clone();
        self.outboxes.insert(session.id.clone(), session.outbox.clone());
        if known {
            self.stop_grace(&msg.room, ctx);
            self.answer_check_in(&msg.room, &session, msg.reference, ctx);
            return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
        }
        let store = self.store.clone();
        let (room, queue) = (msg.room.clone(), self.id.clone());
        let write = async move { store.check_in(&room, &queue, Utc::now()).await };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(move |result, act, ctx| {
            let checked = result.map_err(Refusal::from)?;
            let clinic = act.id.clinic().map(str::to_owned);
            let state = act.ready()?;
            state.add(Waiting {
                room: msg.room.clone(),
                ticket: checked.ticket,
                clinic,
                patient: msg.patient,
                since: checked.since,
                paid: msg.paid,
                sessions: Vec::new(),
                elsewhere: false,
            });
            info!(queue = %act.id, room = %msg.room, "patient checked in");
            act.cluster.generation += 1;
            act.answer_check_in(&msg.room, &session, msg.reference, ctx);
            act.changed(None, None);
            Ok(())
        })))
    }
}

impl Queue {
    /// Attaches the session to its entry, sends it the `queue` reply, and
    /// tells everyone else what changed.
    fn answer_check_in(
        &mut self,
        room: &str,
        session: &SessionRef,
        reference: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let Some(state) = self.state.as_mut() else { return };
        state.attach(room, session.id.clone());
        if let Some((entry, place)) = state.place_of(room) {
            let frame = state.queue_frame(entry, place, reference);
            self.push(&session.id, ByteString::from(frame.to_json()));
            self.told.insert(room.to_owned(), place);
        }
        self.announce();
        self.publish();
        self.maybe_idle(ctx);
    }
}

/// Adds a watcher after checking what it may see.
impl Handler<Watch> for Queue {
    type Result = ResponseActFuture<Self, Result<(), Refusal>>;

    fn handle(&mut self, msg: Watch, _ctx: &mut Context<Self>) -> Self::Result {
        if let Err(refusal) = self.ready() {
            return Box::pin(fut::ready(Err(refusal)));
        }
        let who = msg.session.identity.clone();
        let doctor = who.user.role == Role::Doctor;
        // Staff and displays without a clinic are refused before anything
        // is looked up.
        if !doctor && let Err(why) = View::of(&who, false) {
            return Box::pin(fut::ready(Err(Refusal::new(ErrorCode::Forbidden, why))));
        }
        // A doctor's own queue (named after them by default) always exists
        // and is theirs; any other queue exists once a consultation is in
        // it, and a doctor serves it when one of its consultations is theirs.
        let (store, queue, user) = (self.store.clone(), self.id.clone(), who.user.id.clone());
        let own = doctor && queue.name() == user;
        let in_use = self.state.as_ref().is_some_and(QueueState::has_entries);
        let check = async move {
            if own {
                return Ok((true, true));
            }
            let serves = doctor && store.serves(&queue, &user).await?;
            let exists = serves || in_use || store.queue_exists(&queue).await?;
            Ok::<_, StoreError>((exists, serves))
        };
        Box::pin(check.into_actor(self).map(move |checked, act, ctx| {
            let (exists, serves) = checked.map_err(Refusal::from)?;
            if !exists {
                return Err(Refusal::new(
                    ErrorCode::NotFound,
                    format!("no queue {}: no consultation is in it", act.id),
                ));
            }
            let view = View::of(&who, serves).map_err(|why| Refusal::new(ErrorCode::Forbidden, why))?;
            let state = act.ready()?;
            let frame = state.state_frame(&view, msg.reference);
            state.watch(msg.session.id.clone(), view);
            act.outboxes.insert(msg.session.id.clone(), msg.session.outbox.clone());
            act.push(&msg.session.id, ByteString::from(frame.to_json()));
            act.maybe_idle(ctx);
            Ok(())
        }))
    }
}

/// What to store of an entry.
enum Stored {
    State(EntryState),
    /// Admitted with no session of the patient's online anywhere.
    AdmittedAway,
}

/// Moves an admitted patient out of the line: `admitted` to their sessions,
/// `called` to the displays, new places to everyone else.
impl Handler<Admitted> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Admitted, ctx: &mut Context<Self>) {
        let Some(state) = self.state.as_mut() else { return };
        let Some(entry) = state.admit(&msg.room) else { return };
        let at = format_time(Utc::now());
        let called = ServerFrame::Called { queue: self.id.name().to_owned(), ticket: entry.ticket.clone(), at };
        let called = ByteString::from(called.to_json());
        let displays: Vec<Arc<str>> = state.callers_of(&entry).into_iter().cloned().collect();
        self.told.remove(&msg.room);
        self.stop_grace(&msg.room, ctx);
        let admitted = ByteString::from(ServerFrame::Admitted { room: msg.room.clone() }.to_json());
        for session in entry.sessions.iter().filter(|s| !msg.told.contains(s)) {
            self.push(session, admitted.clone());
        }
        for display in displays {
            self.push(&display, called.clone());
        }
        // A patient already in the consultation has shown up: no timeout.
        let here = !msg.told.is_empty() || self.early_shows.remove(&msg.room);
        let stored = if here {
            if let Some(state) = self.state.as_mut() {
                state.settle(&msg.room);
            }
            Stored::State(EntryState::Seen)
        } else if entry.online() {
            Stored::State(EntryState::Admitted)
        } else {
            // Nobody is on the page to see `admitted`: call them in.
            Stored::AdmittedAway
        };
        let called = Called { room: msg.room.clone(), ticket: entry.ticket.clone(), clinic: entry.clinic.clone() };
        self.store_entry_as(msg.room.clone(), stored, Some(called), ctx);
        self.announce();
        if let Some(no_show) = self.config.no_show
            && !here
        {
            self.start_no_show(msg.room, no_show, ctx);
        }
        self.publish();
        self.refresh_lengths(ctx);
    }
}

/// An ended consultation leaves the line at once, so that nobody behind it
/// waits longer for it; an admitted one is no longer timed for a no-show.
impl Handler<RoomEnded> for Queue {
    type Result = ();

    fn handle(&mut self, msg: RoomEnded, ctx: &mut Context<Self>) {
        // The patient's sessions that wait here without being in the room
        // hear that it ended, on this node and the others.
        self.tell_ended(&msg.room, &msg.frame, &msg.told);
        self.ended_elsewhere(&msg.room, &msg.frame);
        self.stop_grace(&msg.room, ctx);
        if let Some(handle) = self.no_show.remove(&msg.room) {
            ctx.cancel_future(handle);
        }
        // Its length counts in the ETAs from now on.
        self.refresh_lengths(ctx);
        if let Some(state) = self.state.as_mut()
            && state.settle(&msg.room).is_some()
        {
            self.early_shows.remove(&msg.room);
            self.maybe_idle(ctx);
            return;
        }
        self.leave(msg.room, EntryState::Left, ctx);
        self.announce();
    }
}

/// The admitted patient came: the queue is done with them.
impl Handler<Showed> for Queue {
    type Result = ();

    fn handle(&mut self, msg: Showed, ctx: &mut Context<Self>) {
        let Some(state) = self.state.as_mut() else { return };
        if state.waiting(&msg.room).is_some() {
            // The admission is on its way here: remember, so that it starts
            // no timeout.
            self.early_shows.insert(msg.room);
            return;
        }
        if state.settle(&msg.room).is_none() {
            return;
        }
        if let Some(handle) = self.no_show.remove(&msg.room) {
            ctx.cancel_future(handle);
        }
        self.store_entry(msg.room, EntryState::Seen, None, ctx);
        self.maybe_idle(ctx);
    }
}

/// A session ended: patients it was the last session of start their grace
/// period.
impl Handler<SessionGone> for Queue {
    type Result = ();

    fn handle(&mut self, msg: SessionGone, ctx: &mut Context<Self>) {
        self.outboxes.remove(&msg.session);
        let Some(state) = self.state.as_mut() else { return };
        let offline = state.session_gone(&msg.session);
        for room in &offline {
            self.told.remove(room);
            self.start_grace(room.clone(), ctx);
        }
        if !offline.is_empty() {
            self.publish();
        }
        self.announce();
        self.maybe_idle(ctx);
    }
}

/// Marks the entry paid (or not), tells the watchers who see it, and the
/// queue's other nodes.
impl Handler<PaymentChanged> for Queue {
    type Result = ();

    fn handle(&mut self, msg: PaymentChanged, _ctx: &mut Context<Self>) {
        let Some(state) = self.state.as_mut() else { return };
        state.set_paid(&msg.room, msg.status == PaymentStatus::Paid);
        self.tell_payment(&msg.room, msg.status);
        self.publish();
        self.changed(None, Some((msg.room, msg.status)));
    }
}

/// A write of this node is done: the other nodes may read the line again.
impl Handler<EntryStored> for Queue {
    type Result = ();

    fn handle(&mut self, msg: EntryStored, _ctx: &mut Context<Self>) {
        self.cluster.generation += 1;
        if msg.stored {
            self.changed(msg.called, None);
        }
    }
}

/// Applies what the queue's other nodes did.
impl Handler<FromCluster> for Queue {
    type Result = ();

    fn handle(&mut self, msg: FromCluster, ctx: &mut Context<Self>) {
        if self.state.is_none() {
            return;
        }
        match msg {
            FromCluster::Event { from, event } => match *event {
                ClusterEvent::QueueOnline { rooms } => {
                    self.cluster.elsewhere.insert(from.to_string(), rooms.into_iter().collect());
                    self.apply_elsewhere(ctx);
                }
                ClusterEvent::QueueChanged { called, payment, ended } => {
                    if let Some((room, frame)) = ended {
                        self.tell_ended_elsewhere(room, ByteString::from(frame), ctx);
                    }
                    if let Some(called) = called {
                        self.call(&called);
                    }
                    if let Some((room, status)) = payment {
                        if let Some(state) = self.state.as_mut() {
                            state.set_paid(&room, status == PaymentStatus::Paid);
                        }
                        self.tell_payment(&room, status);
                    }
                    self.reload(ctx);
                }
                _ => {}
            },
            FromCluster::Resync => {
                self.cluster.announced = None;
                self.announce();
                self.reload(ctx);
                self.reread_elsewhere(ctx);
            }
            FromCluster::NodesGone(instances) => {
                for instance in instances.iter() {
                    self.cluster.elsewhere.remove(instance);
                }
                self.apply_elsewhere(ctx);
            }
        }
    }
}

impl Handler<Snapshot> for Queue {
    type Result = Result<ServerFrame, Refusal>;

    fn handle(&mut self, msg: Snapshot, ctx: &mut Context<Self>) -> Self::Result {
        let frame = self.ready()?.state_frame(&msg.view, None);
        self.maybe_idle(ctx);
        Ok(frame)
    }
}

/// The fault that [`crate::Queues::crash`] injects for tests.
#[cfg(feature = "test-util")]
impl Handler<crate::fault::Crash> for Queue {
    type Result = ();

    fn handle(&mut self, _msg: crate::fault::Crash, _ctx: &mut Context<Self>) {
        panic!("a fault injected into queue {}", self.id);
    }
}
