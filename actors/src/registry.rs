//! The registry of running rooms.
//!
//! The registry starts a room on first use. By default a room runs on the
//! arbiter (thread) of whoever opened it, normally the HTTP worker of its
//! first session: a session and its room on one thread exchange messages
//! without waking another thread. With a pool of dedicated arbiters
//! configured, rooms are spread over the pool by a hash of their id instead.
//! Either way each room stays single-threaded. A room asks to be forgotten when it stops; an
//! address that is no longer connected is replaced on the next lookup, so a
//! caller that raced with a stopping room simply retries.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use actix::prelude::*;

use crate::room::{EndOutcome, NoShow, RoomEnv};
use crate::{Broker, MediaPolicy, Queues, Refusal, Room, RoomConfig, RoomStore};

/// Get the running room, starting it if needed.
#[derive(Message)]
#[rtype(result = "Addr<Room>")]
pub(crate) struct Open {
    pub room: String,
    /// The opener's arbiter, where the room starts unless there is a pool.
    pub home: Option<ArbiterHandle>,
}

/// Get the running room without starting one.
#[derive(Message)]
#[rtype(result = "Option<Addr<Room>>")]
pub(crate) struct Peek {
    pub room: String,
}

/// A room stopped (or is about to): forget it, if it is still this one.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Forget {
    pub room: String,
    pub addr: Addr<Room>,
}

/// Ask the room whether its admitted patient is a no-show (see
/// [`crate::room::NoShow`]), starting the room if needed.
#[derive(Message)]
#[rtype(result = "Result<Option<EndOutcome>, Refusal>")]
pub(crate) struct NoShowAt {
    pub room: String,
}

/// How many rooms are running.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct CountRooms;

/// Knows every running room of this node.
pub struct RoomRegistry {
    rooms: HashMap<String, Addr<Room>>,
    arbiters: Vec<ArbiterHandle>,
    env: Arc<RoomEnv>,
}

impl RoomRegistry {
    /// A registry whose rooms run on `threads` arbiters of their own, or
    /// on their openers' arbiters when `threads` is 0.
    pub fn new(
        store: Arc<dyn RoomStore>,
        media: Arc<dyn MediaPolicy>,
        config: RoomConfig,
        threads: usize,
        queues: Queues,
        broker: Option<Arc<dyn Broker>>,
    ) -> Self {
        let arbiters = (0..threads)
            .map(|_| {
                let arbiter = Arbiter::new();
                let handle = arbiter.handle();
                // The arbiter's thread lives as long as its handles; dropping
                // the `Arbiter` value does not stop it.
                drop(arbiter);
                handle
            })
            .collect();
        let env = RoomEnv { store, media, config, registry: None, queues, broker };
        RoomRegistry { rooms: HashMap::new(), arbiters, env: Arc::new(env) }
    }

    fn arbiter_for(&self, room: &str, home: Option<ArbiterHandle>) -> ArbiterHandle {
        if self.arbiters.is_empty() {
            return home.unwrap_or_else(Arbiter::current);
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        room.hash(&mut hasher);
        self.arbiters[(hasher.finish() as usize) % self.arbiters.len()].clone()
    }
}

impl Actor for RoomRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        // No room is open yet, so this changes the one copy in place.
        Arc::make_mut(&mut self.env).registry = Some(ctx.address().downgrade());
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

impl RoomRegistry {
    /// The room's address, starting the room on its arbiter if it is not
    /// running.
    fn open(&mut self, room: String, home: Option<ArbiterHandle>) -> Addr<Room> {
        if let Some(addr) = self.rooms.get(&room)
            && addr.connected()
        {
            return addr.clone();
        }
        let id = room.clone();
        let env = self.env.clone();
        let arbiter = self.arbiter_for(&id, home);
        let addr = Room::start_in_arbiter(&arbiter, move |_| Room::new(id, env));
        self.rooms.insert(room, addr.clone());
        addr
    }
}

impl Handler<Open> for RoomRegistry {
    type Result = MessageResult<Open>;

    fn handle(&mut self, msg: Open, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.open(msg.room, msg.home))
    }
}

impl Handler<NoShowAt> for RoomRegistry {
    type Result = ResponseFuture<Result<Option<EndOutcome>, Refusal>>;

    fn handle(&mut self, msg: NoShowAt, _ctx: &mut Context<Self>) -> Self::Result {
        let addr = self.open(msg.room, None);
        Box::pin(async move {
            addr.send(NoShow)
                .await
                .unwrap_or_else(|_| Err(Refusal::new(telehub_signaling::ErrorCode::Unavailable, "room is restarting")))
        })
    }
}

/// Returns the room's address if it is running.
impl Handler<Peek> for RoomRegistry {
    type Result = MessageResult<Peek>;

    fn handle(&mut self, msg: Peek, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.rooms.get(&msg.room).filter(|a| a.connected()).cloned())
    }
}

/// Drops a stopped room, unless a newer room took its place.
impl Handler<Forget> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, msg: Forget, _ctx: &mut Context<Self>) {
        if self.rooms.get(&msg.room).is_some_and(|a| *a == msg.addr) {
            self.rooms.remove(&msg.room);
        }
    }
}

/// Counts running rooms.
impl Handler<CountRooms> for RoomRegistry {
    type Result = usize;

    fn handle(&mut self, _msg: CountRooms, _ctx: &mut Context<Self>) -> usize {
        self.rooms.len()
    }
}
