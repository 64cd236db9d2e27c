//! The registry of running queues, and the handle sessions use.
//!
//! Queues live beside the rooms: started on first use on the opener's
//! arbiter (or the room pool, like rooms), forgotten once they stop.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use telehub_signaling::{ErrorCode, PaymentStatus, ServerFrame};

use crate::queue::{
    Admitted, CheckIn, PaymentChanged, Queue, QueueConfig, RoomEnded, SessionGone, Showed, Snapshot, Watch,
};
use crate::queue_state::View;
use crate::retry::ask_fresh;
use crate::room::{CheckinTicket, EndOutcome};
use crate::{Broker, QueueId, QueueStore, Refusal, RoomRegistry, SessionRef};

/// Get the running queue, starting it if needed.
#[derive(Message)]
#[rtype(result = "Addr<Queue>")]
pub(crate) struct OpenQueue {
    pub queue: QueueId,
    pub home: Option<ArbiterHandle>,
}

/// A queue stopped: forget it, if it is still this one.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ForgetQueue {
    pub queue: QueueId,
    pub addr: Addr<Queue>,
}

/// Knows every running queue of this node.
pub struct QueueRegistry {
    queues: HashMap<QueueId, Addr<Queue>>,
    store: Arc<dyn QueueStore>,
    rooms: Addr<RoomRegistry>,
    config: QueueConfig,
    broker: Option<Arc<dyn Broker>>,
}

impl QueueRegistry {
    pub(crate) fn new(
        store: Arc<dyn QueueStore>,
        rooms: Addr<RoomRegistry>,
        config: QueueConfig,
        broker: Option<Arc<dyn Broker>>,
    ) -> Self {
        QueueRegistry { queues: HashMap::new(), store, rooms, config, broker }
    }
}

impl Actor for QueueRegistry {
    type Context = Context<Self>;
}

impl Handler<OpenQueue> for QueueRegistry {
    type Result = MessageResult<OpenQueue>;

    fn handle(&mut self, msg: OpenQueue, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(addr) = self.queues.get(&msg.queue)
            && addr.connected()
        {
            return MessageResult(addr.clone());
        }
        let (name, store, rooms, config, broker) =
            (msg.queue.clone(), self.store.clone(), self.rooms.clone(), self.config.clone(), self.broker.clone());
        let registry = ctx.address();
        let arbiter = msg.home.unwrap_or_else(Arbiter::current);
        let addr = Queue::start_in_arbiter(&arbiter, move |_| Queue::new(name, store, rooms, registry, config, broker));
        self.queues.insert(msg.queue, addr.clone());
        MessageResult(addr)
    }
}

impl Handler<ForgetQueue> for QueueRegistry {
    type Result = ();

    fn handle(&mut self, msg: ForgetQueue, _ctx: &mut Context<Self>) {
        if self.queues.get(&msg.queue).is_some_and(|a| *a == msg.addr) {
            self.queues.remove(&msg.queue);
        }
    }
}

/// The running queue, if there is one (for tests).
#[cfg(feature = "test-util")]
#[derive(Message)]
#[rtype(result = "Option<Addr<Queue>>")]
pub(crate) struct PeekQueue {
    pub queue: QueueId,
}

#[cfg(feature = "test-util")]
impl Handler<PeekQueue> for QueueRegistry {
    type Result = Option<Addr<Queue>>;

    fn handle(&mut self, msg: PeekQueue, _ctx: &mut Context<Self>) -> Self::Result {
        self.queues.get(&msg.queue).filter(|addr| addr.connected()).cloned()
    }
}

/// The queues of this node, for sessions, rooms and the HTTP API.
#[derive(Clone)]
pub struct Queues {
    registry: Addr<QueueRegistry>,
}

fn gone() -> Refusal {
    Refusal::new(ErrorCode::Unavailable, "queue is restarting, retry")
}

impl Queues {
    pub(crate) fn new(registry: Addr<QueueRegistry>) -> Self {
        Queues { registry }
    }

    async fn open(&self, queue: &QueueId) -> Result<Addr<Queue>, Refusal> {
        let home = Arbiter::try_current();
        self.registry.send(OpenQueue { queue: queue.clone(), home }).await.map_err(|_| gone())
    }

    /// Sends a request to a queue, retrying when it stopped between the
    /// lookup and the request.
    async fn ask<M, T>(&self, queue: &QueueId, make: impl Fn() -> M) -> Result<T, Refusal>
    where
        M: Message<Result = Result<T, Refusal>> + Send + 'static,
        T: Send + 'static,
        Queue: Handler<M>,
    {
        ask_fresh(|| self.open(queue), make, gone).await?.1
    }

    /// Checks a patient's session in to `queue`; the `queue` reply goes to
    /// its outbox.
    pub(crate) async fn check_in(
        &self,
        ticket: &CheckinTicket,
        room: &str,
        session: &SessionRef,
        reference: Option<String>,
    ) -> Result<(), Refusal> {
        self.ask(&ticket.queue, || CheckIn {
            room: room.to_owned(),
            patient: ticket.patient.clone(),
            paid: ticket.paid,
            session: session.clone(),
            reference: reference.clone(),
        })
        .await
    }

    /// Makes a session a watcher of `queue`; `queue_state` goes to its outbox.
    pub async fn watch(&self, queue: &QueueId, session: &SessionRef, reference: Option<String>) -> Result<(), Refusal> {
        self.ask(queue, || Watch { session: session.clone(), reference: reference.clone() }).await
    }

    /// The queue as `view` sees it (the clinic's backend: [`View::Full`]).
    pub async fn snapshot(&self, queue: &QueueId, view: View) -> Result<ServerFrame, Refusal> {
        self.ask(queue, || Snapshot { view: view.clone() }).await
    }

    /// Tells a queue that a consultation of it was admitted.
    pub(crate) async fn admitted(&self, queue: &QueueId, room: &str, told: Vec<Arc<str>>) {
        if let Ok(addr) = self.open(queue).await {
            addr.do_send(Admitted { room: room.to_owned(), told });
        }
    }

    /// Tells a queue that a consultation of it ended.
    pub(crate) async fn ended(&self, room: &str, ended: EndOutcome) {
        if let Ok(addr) = self.open(&ended.queue).await {
            addr.do_send(RoomEnded { room: room.to_owned(), frame: ended.frame, told: ended.told });
        }
    }

    /// Tells a queue that a consultation's payment state changed.
    pub(crate) async fn payment(&self, queue: &QueueId, room: &str, status: PaymentStatus) {
        if let Ok(addr) = self.open(queue).await {
            addr.do_send(PaymentChanged { room: room.to_owned(), status });
        }
    }

    /// Tells a queue that an admitted patient joined their consultation.
    pub(crate) fn showed(&self, queue: &QueueId, room: &str) {
        let this = self.clone();
        let (queue, room) = (queue.clone(), room.to_owned());
        actix::spawn(async move {
            if let Ok(addr) = this.open(&queue).await {
                addr.do_send(Showed { room });
            }
        });
    }

    /// Makes the queue panic, as a bug in it would, and returns once it is
    /// gone; `false` if the queue was not running. For tests of what its
    /// followers do when it stops under them.
    #[cfg(feature = "test-util")]
    pub async fn crash(&self, queue: &QueueId) -> bool {
        let Ok(Some(addr)) = self.registry.send(PeekQueue { queue: queue.clone() }).await else { return false };
        crate::fault::crash(addr, &format!("queue {queue}")).await;
        true
    }

    /// A session that checked in to or watched `queue` ended.
    pub fn session_gone(&self, queue: &QueueId, session: Arc<str>) {
        let this = self.clone();
        let queue = queue.clone();
        actix::spawn(async move {
            if let Ok(addr) = this.open(&queue).await {
                addr.do_send(SessionGone { session });
            }
        });
    }
}
