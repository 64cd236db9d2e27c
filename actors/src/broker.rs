//! The port to the other nodes of a cluster.
//!
//! On one node there is no broker: a room delivers straight to the outboxes
//! of its sessions, which is the whole of the in-process case. In a cluster
//! every node that has a session in a consultation runs its own [`Room`]
//! actor for it, and the rooms of one consultation tell each other what
//! happened through a [`Broker`] (Redis pub/sub in the server). What they
//! exchange is a [`ClusterEvent`]: facts that already happened on the sender's
//! node (a message stored, a session entered, a status stored), never
//! requests, so a receiving room only has to apply and deliver them.
//!
//! The durable facts (messages, statuses, read markers) are in the shared
//! database, so a lost event costs latency, not data: a room that sees a
//! `seq` gap fills it from storage, and after the broker reconnects every
//! room is told to [`FromCluster::Resync`].
//!
//! [`Room`]: crate::Room

use std::sync::Arc;

use actix::prelude::*;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use telehub_signaling::{MediaMode, MessageEvent, PaymentStatus, Peer, RoomStatus};

use crate::QueueId;

/// What a subscription is about: a consultation room or a waiting-room
/// queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic<'a> {
    Room(&'a str),
    Queue(&'a QueueId),
}

/// A queue's admission, for the displays and the patient's sessions of
/// every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Called {
    pub room: String,
    pub ticket: String,
    pub clinic: Option<String>,
}

/// Something that happened in a room or a queue on one node, for the same
/// room or queue on the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClusterEvent {
    /// A message was stored (chat or system).
    Message { message: MessageEvent },
    /// A session of the sender's node entered the room.
    Enter { peer: Peer, node: String },
    /// A session of the sender's node left the room.
    Exit { session: String },
    /// Every session the sender's node has in the room now, after the
    /// broker reconnected: the receivers replace what they knew of that
    /// node with it.
    Roster { node: String, peers: Vec<Peer> },
    /// A frame for every session (typing): delivered as it is.
    Frame { frame: String },
    /// A read marker moved; `frame` is the `read` frame to deliver.
    Read { user: String, seq: i64, frame: String },
    /// The media mode changed; each node gives its sessions their own
    /// credentials.
    Media { mode: MediaMode, reason: String },
    /// The consultation's status was stored; `frame` is the `ended` frame
    /// of an end or cancellation.
    Status {
        status: RoomStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        frame: Option<String>,
    },
    /// A `signal` frame for one session, which lives on the receiver's node
    /// if on any.
    Signal { to: String, frame: String },
    /// The consultation's payment state changed; `frame` is the `payment`
    /// frame to deliver.
    Payment { status: PaymentStatus, frame: String },
    /// The rooms of a queue whose patients have a session checked in on the
    /// sender's node now (all of them: it replaces what was known).
    QueueOnline { rooms: Vec<String> },
    /// The queue's line changed in storage (a check-in, an admission, a
    /// patient gone): read it again. An admission says whom to call.
    QueueChanged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        called: Option<Called>,
        /// A consultation of the queue whose payment state changed: its
        /// `payment` frame for the watchers who see it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment: Option<(String, PaymentStatus)>,
        /// A consultation of the queue ended: its `ended` frame, for the
        /// patient's waiting sessions that are not in the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ended: Option<(String, String)>,
    },
}

/// A room event with the instance that sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending node's instance (see [`Broker::instance`]).
    pub from: String,
    /// Nested, not flattened: a flattened tagged enum is read through an
    /// intermediate buffer, which costs on every event.
    pub event: ClusterEvent,
}

/// What the broker tells a room.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum FromCluster {
    /// An event from another node's room or queue.
    Event { from: Arc<str>, event: Box<ClusterEvent> },
    /// The broker reconnected: events may have been lost meanwhile. The
    /// room reloads what it might have missed and tells the others which
    /// sessions it has.
    Resync,
    /// These instances stopped refreshing their liveness: their sessions
    /// are gone.
    NodesGone(Arc<[String]>),
}

/// A session on another node, as the cluster's presence lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemotePeer {
    pub peer: Peer,
    /// The node's configured id, for `GET …/presence`.
    pub node: String,
    /// The node's instance, for liveness.
    pub instance: String,
}

/// Why the broker could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("broker unavailable: {0}")]
pub struct BrokerError(pub String);

/// What rooms need from the other nodes.
///
/// Publishing never waits and never fails in the caller's face: events of
/// one room leave in the order they were published, and events lost while
/// the broker is away are made good by [`FromCluster::Resync`].
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// This process: the node's id and a random part, so that a node that
    /// restarts under the same id is a new instance.
    fn instance(&self) -> &str;
    /// The node's configured id.
    fn node(&self) -> &str;
    /// Delivers the events of a room or queue from other nodes to `to` from
    /// now on.
    /// Returns once the subscription is in place, or at once when the
    /// broker is away (it subscribes on reconnect and sends `Resync`).
    /// The number identifies the subscription for [`Broker::unsubscribe`].
    async fn subscribe(&self, topic: Topic<'_>, to: Recipient<FromCluster>) -> u64;
    /// Ends a subscription, unless a newer one replaced it.
    fn unsubscribe(&self, topic: Topic<'_>, id: u64);
    /// Sends an event to the room's or queue's other nodes.
    fn publish(&self, topic: Topic<'_>, event: &ClusterEvent);
    /// Lists a local session in the cluster's presence and tells the others.
    fn enter(&self, room: &str, peer: &Peer);
    /// Lists every local session of the room in the cluster's presence
    /// again and tells the others that these are all (after a reconnect).
    fn roster(&self, room: &str, peers: &[Peer]);
    /// Removes a local session from the presence and tells the others.
    fn exit(&self, room: &str, session: &str);
    /// Removes sessions of dead instances from the presence.
    fn forget(&self, room: &str, sessions: &[String]);
    /// The sessions of other live instances in the room.
    async fn presence(&self, room: &str) -> Result<Vec<RemotePeer>, BrokerError>;
    /// Records which rooms of a queue have their patient checked in on this
    /// node, and tells the others (`QueueOnline`).
    fn queue_online(&self, queue: &QueueId, rooms: &[String]);
    /// The same, as every other live instance last recorded it.
    async fn queue_online_elsewhere(&self, queue: &QueueId) -> Result<Vec<(String, Vec<String>)>, BrokerError>;
    /// Whether the broker is connected.
    fn is_ready(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use telehub_signaling::{MessageKind, Role, Sender, UserInfo};

    use super::*;

    #[test]
    fn envelopes_round_trip_as_json() {
        let peer = Peer {
            session: "s_1".into(),
            user: UserInfo { id: "d1".into(), name: "Ana".into(), role: Role::Doctor },
            state: None,
            since: Some("2026-11-25T10:00:00.000Z".into()),
        };
        let message = MessageEvent {
            room: "c-1".into(),
            seq: 7,
            id: "m_7".into(),
            client_id: Some("x".into()),
            from: Sender { id: "d1".into(), name: "Ana".into(), role: "doctor".into() },
            kind: MessageKind::Text,
            text: "hello".into(),
            at: "2026-11-25T10:00:00.000Z".into(),
        };
        let events = [
            ClusterEvent::Message { message },
            ClusterEvent::Enter { peer: peer.clone(), node: "node-a".into() },
            ClusterEvent::Exit { session: "s_1".into() },
            ClusterEvent::Roster { node: "node-a".into(), peers: vec![peer] },
            ClusterEvent::Frame { frame: "{}".into() },
            ClusterEvent::Read { user: "d1".into(), seq: 3, frame: "{}".into() },
            ClusterEvent::Media { mode: MediaMode::Jitsi, reason: "ice_failed".into() },
            ClusterEvent::Status { status: RoomStatus::Ended, frame: Some("{}".into()) },
            ClusterEvent::Signal { to: "s_2".into(), frame: "{}".into() },
        ];
        for event in events {
            let envelope = Envelope { from: "node-a/1".into(), event };
            let json = serde_json::to_value(&envelope).unwrap();
            assert_eq!(json["from"], "node-a/1");
            assert!(json["event"]["type"].is_string(), "{json}");
            assert_eq!(serde_json::from_value::<Envelope>(json).unwrap(), envelope);
        }
    }
}
