//! Handles that hide actor messaging from sessions and the HTTP API.

use std::sync::Arc;

use actix::prelude::*;
use telehub_signaling::{ErrorCode, MediaEvent, MediaMode, MessageEvent, PaymentStatus, SignalData, UserRef};

use crate::queues::QueueRegistry;
use crate::registry::{CountRooms, Open, Peek};
use crate::retry::ask_fresh;
use crate::room::{
    Admit, Chat, CheckinInfo, End, GetPresence, GetRecord, Join, Leave, MarkRead, MarkWaiting, PostSystem, Relay,
    SetPayment, SwitchMedia, Typing,
};
use crate::{
    Broker, Identity, MediaPolicy, PresentPeer, QueueConfig, QueueId, QueueStore, Queues, Refusal, Room, RoomConfig,
    RoomRecord, RoomRegistry, RoomStore, SessionRef,
};

/// The rooms of this node.
#[derive(Clone)]
pub struct Rooms {
    registry: Addr<RoomRegistry>,
    queues: Queues,
    broker: Option<Arc<dyn Broker>>,
}

/// A room a session has joined. Two handles are equal when they reach the
/// same run of the room (it starts afresh after it stopped).
#[derive(Clone, PartialEq, Eq)]
pub struct RoomHandle {
    addr: Addr<Room>,
}

impl std::fmt::Debug for RoomHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomHandle").field("running", &self.is_running()).finish_non_exhaustive()
    }
}

impl RoomHandle {
    pub(crate) fn new(addr: Addr<Room>) -> Self {
        RoomHandle { addr }
    }
}

fn gone() -> Refusal {
    Refusal::new(ErrorCode::Unavailable, "room is restarting, retry")
}

impl Rooms {
    /// Starts the registry on the current arbiter; rooms run on `threads`
    /// arbiters of their own, or (with 0) on the arbiter of whoever opens
    /// them.
    /// The waiting rooms' queues start beside it, on the same registry
    /// thread. With a `broker`, the rooms of one consultation on different
    /// nodes share their events through it.
    pub fn start(
        stores: (Arc<dyn RoomStore>, Arc<dyn QueueStore>),
        media: Arc<dyn MediaPolicy>,
        config: RoomConfig,
        queue_config: QueueConfig,
        threads: usize,
        broker: Option<Arc<dyn Broker>>,
    ) -> Rooms {
        let (store, queue_store) = stores;
        let mut queues = None;
        let registry = RoomRegistry::create(|ctx| {
            let handle =
                Queues::new(QueueRegistry::new(queue_store, ctx.address(), queue_config, broker.clone()).start());
            queues = Some(handle.clone());
            RoomRegistry::new(store, media, config, threads, handle, broker.clone())
        });
        let queues = queues.expect("made by the registry");
        Rooms { registry, queues, broker }
    }

    /// The queues of the waiting rooms.
    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// Checks a patient's session in to the waiting room of their
    /// consultation; the `queue` reply goes to the session's outbox. Returns
    /// the queue.
    pub async fn check_in(
        &self,
        room: &str,
        session: &SessionRef,
        reference: Option<String>,
    ) -> Result<QueueId, Refusal> {
        let identity = session.identity.clone();
        let ticket = self.ask(room, || CheckinInfo { identity: identity.clone() }).await?;
        self.queues.check_in(&ticket, room, session, reference).await?;
        if let Ok(addr) = self.open(room).await {
            addr.do_send(MarkWaiting);
        }
        Ok(ticket.queue)
    }

    /// A session lets go of a room that stopped under it (after a fault):
    /// the room can no longer say that the session left, so in a cluster
    /// its presence there is withdrawn here, and the other nodes' rooms see
    /// it leave. Joining again brings it back.
    pub fn let_go(&self, room: &str, session: &str) {
        if let Some(broker) = &self.broker {
            broker.exit(room, session);
        }
    }

    /// Makes the room panic, as a bug in it would, and returns once it is
    /// gone; `false` if the room was not running. For tests of what
    /// sessions and the registry do when a room stops under its members.
    #[cfg(feature = "test-util")]
    pub async fn crash(&self, room: &str) -> bool {
        let Ok(Some(addr)) = self.registry.send(Peek { room: room.to_owned() }).await else { return false };
        crate::fault::crash(addr, &format!("room {room}")).await;
        true
    }

    async fn open(&self, room: &str) -> Result<Addr<Room>, Refusal> {
        let home = Arbiter::try_current();
        self.registry.send(Open { room: room.to_owned(), home }).await.map_err(|_| gone())
    }

    /// Sends a request to a room, retrying when the room stopped between
    /// the lookup and the request.
    async fn ask<M, T>(&self, room: &str, make: impl Fn() -> M) -> Result<T, Refusal>
    where
        M: Message<Result = Result<T, Refusal>> + Send + 'static,
        T: Send + 'static,
        Room: Handler<M>,
    {
        ask_fresh(|| self.open(room), make, gone).await?.1
    }

    /// Joins a session to a room; `joined` goes to its outbox.
    pub async fn join(
        &self,
        room: &str,
        session: &SessionRef,
        since: Option<i64>,
        reference: Option<String>,
    ) -> Result<RoomHandle, Refusal> {
        let join = || Join { session: session.clone(), since, reference: reference.clone() };
        let (addr, result) = ask_fresh(|| self.open(room), join, gone).await?;
        result.map(|()| RoomHandle { addr })
    }

    /// Reports a media event or asks for a mode.
    pub async fn switch_media(
        &self,
        room: &str,
        session: Option<Arc<str>>,
        identity: Arc<Identity>,
        event: Option<MediaEvent>,
        mode: Option<MediaMode>,
    ) -> Result<(), Refusal> {
        self.ask(room, || SwitchMedia { session: session.clone(), identity: identity.clone(), event, mode }).await
    }

    /// Admits the patient; `identity` is `None` for the clinic's backend.
    /// The waiting room then moves the patient out of its line. An unpaid
    /// consultation needs `override_payment` (staff or the backend).
    pub async fn admit(
        &self,
        room: &str,
        identity: Option<Arc<Identity>>,
        override_payment: bool,
    ) -> Result<(), Refusal> {
        let outcome = self.ask(room, || Admit { identity: identity.clone(), override_payment }).await?;
        self.queues.admitted(&outcome.queue, room, outcome.told).await;
        Ok(())
    }

    /// The consultation's payment state was stored: its room and its
    /// queue's watchers are told.
    pub async fn payment(&self, room: &str, status: PaymentStatus) -> Result<(), Refusal> {
        let queue = self.ask(room, || SetPayment { status }).await?;
        self.queues.payment(&queue, room, status).await;
        Ok(())
    }

    /// Ends the consultation; `identity` is `None` for the clinic's backend.
    /// Its patient then leaves the waiting room's line, and their sessions
    /// there that are not in the room hear `ended` too.
    pub async fn end(&self, room: &str, identity: Option<Arc<Identity>>, by: UserRef) -> Result<(), Refusal> {
        let ended = self.ask(room, || End { identity: identity.clone(), by: by.clone() }).await?;
        self.queues.ended(room, ended).await;
        Ok(())
    }

    /// Stores and broadcasts a system message.
    pub async fn post_system(&self, room: &str, name: &str, text: &str) -> Result<MessageEvent, Refusal> {
        self.ask(room, || PostSystem { text: text.to_owned(), name: name.to_owned() }).await
    }

    /// The sessions in a room, on every node. A room that runs here knows
    /// them all; otherwise, in a cluster, the broker's presence does.
    pub async fn presence(&self, room: &str) -> Result<Vec<PresentPeer>, Refusal> {
        if let Ok(Some(addr)) = self.registry.send(Peek { room: room.to_owned() }).await
            && let Ok(present) = addr.send(GetPresence).await
        {
            return Ok(present);
        }
        let Some(broker) = &self.broker else { return Ok(Vec::new()) };
        let remote =
            broker.presence(room).await.map_err(|err| Refusal::new(ErrorCode::Unavailable, err.to_string()))?;
        Ok(remote.into_iter().map(|r| PresentPeer { peer: r.peer, node: Some(r.node) }).collect())
    }

    /// The live record of a running room (status, media mode, last `seq`).
    pub async fn live_record(&self, room: &str) -> Option<RoomRecord> {
        let addr = self.registry.send(Peek { room: room.to_owned() }).await.ok()??;
        addr.send(GetRecord).await.ok()?
    }

    /// How many rooms run on this node.
    pub async fn count(&self) -> usize {
        self.registry.send(CountRooms).await.unwrap_or(0)
    }
}

impl RoomHandle {
    /// Whether the room still runs; a session whose room stopped must join
    /// again.
    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }

    /// Sends a chat message; the ack or error comes through the outbox.
    pub fn chat(&self, session: &SessionRef, reference: Option<String>, client_id: String, text: String) {
        self.addr.do_send(Chat { session: session.clone(), reference, client_id, text });
    }

    /// Sends a typing indicator.
    pub fn typing(&self, session: &SessionRef, reference: Option<String>, active: bool) {
        self.addr.do_send(Typing { session: session.clone(), reference, active });
    }

    /// Moves the read marker.
    pub fn read(&self, session: &SessionRef, reference: Option<String>, seq: i64) {
        self.addr.do_send(MarkRead { session: session.clone(), reference, seq });
    }

    /// Relays a signal to one session of the room.
    pub fn relay(&self, session: &SessionRef, reference: Option<String>, to: String, data: SignalData) {
        self.addr.do_send(Relay { session: session.clone(), reference, to, data });
    }

    /// Leaves the room; with `reply` the session gets `left`.
    pub fn leave(&self, session: &SessionRef, reference: Option<String>, reply: bool) {
        self.addr.do_send(Leave { session: session.clone(), reference, reply });
    }
}
