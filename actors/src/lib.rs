//! Consultation rooms and waiting-room queues as actors.
//!
//! Each consultation that has someone in it is one [`Room`] actor. The
//! [`RoomRegistry`] starts a room on first use, spreads rooms over a pool of
//! arbiters (one thread each), and forgets a room once it has stopped after
//! being empty for a while. Sessions and the HTTP API talk to rooms only
//! through [`Rooms`] and [`RoomHandle`], cloneable handles with async methods.
//!
//! The decisions a room makes (who may do what, who receives which frame,
//! in which order stored messages go out) live in [`RoomState`], a plain
//! struct that is unit-tested without a runtime; the actor carries them out.
//! Storage is reached through the [`RoomStore`] port, which the server
//! implements with sqlx.

mod broker;
#[cfg(feature = "test-util")]
mod fault;
#[cfg(test)]
mod fixtures;
mod handle;
mod media;
mod outbox;
mod queue;
mod queue_id;
mod queue_state;
mod queues;
mod registry;
mod retry;
mod rights;
mod room;
mod state;
mod store;

pub use broker::{Broker, BrokerError, Called, ClusterEvent, Envelope, FromCluster, RemotePeer, Topic};
pub use handle::{RoomHandle, Rooms};
pub use media::MediaPolicy;
pub use outbox::{Lost, Next, Outbox, OutboxReceiver, Push, outbox};
pub use queue::{Queue, QueueConfig};
pub use queue_id::QueueId;
pub use queue_state::{Place, QueueState, View, Waiting};
pub use queues::{QueueRegistry, Queues};
pub use registry::RoomRegistry;
pub use rights::{Action, Identity, may};
pub use room::{Room, RoomConfig};
pub use state::{PresentPeer, Refusal, RoomState};
pub use store::{
    Appended, AuditEntry, CheckedIn, EntryState, NewMessage, Person, QueueStore, RoomRecord, RoomStore, StoreError,
    StoredEntry,
};

/// A session as rooms know it: its id, who it is, and where its frames go.
#[derive(Clone, Debug)]
pub struct SessionRef {
    pub id: std::sync::Arc<str>,
    pub identity: std::sync::Arc<Identity>,
    pub outbox: Outbox,
}
