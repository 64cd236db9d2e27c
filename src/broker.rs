//! The Redis broker: how the nodes of a cluster share room events.
//!
//! Three tasks, each with its own connection, do all the talking:
//!
//! - the **writer** takes every write (publishes, presence entries) and
//!   every presence read from one queue, in order, and sends them as
//!   pipelines. One queue and one connection keep the events of a room in
//!   the order the room published them, and let a presence read see this
//!   node's own earlier writes.
//! - the **subscriber** holds the pub/sub connection, subscribes to the
//!   channel of every room running here, and hands each event to its room.
//! - the **heartbeat** refreshes this instance's liveness every third of
//!   the TTL and reports instances whose liveness ran out.
//!
//! Any of them that loses Redis reconnects with backoff; `/readyz` answers
//! 503 meanwhile. Events that could not be sent, or were published while
//! the subscriber was away, are lost, so after a reconnect every room is
//! told to resync: it says again which sessions it has and fills `seq` gaps
//! from the database, where every acknowledged message is. So is a room
//! that started before the subscriber's first connection was made (Redis
//! went away between the node's start and that connection).
//!
//! Names (see [`channel`]) carry the consultation in a hash tag, so that
//! a room's channel and presence key fall in one slot of a Redis Cluster and
//! the channel can be carried by sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Recipient;
use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};
use telehub_actors::{Broker, BrokerError, ClusterEvent, Envelope, FromCluster, QueueId, RemotePeer, Topic};
use telehub_signaling::Peer;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// The sorted set of instances, scored by when their liveness runs out
/// (milliseconds since the epoch). A dead instance stays listed, with its
/// score in the past, for as long as a presence hash may live, so that its
/// entries are known to be dead wherever they turn up.
const NODES: &str = "telehub:nodes";
/// How long a presence hash lives without writes (a safety net; entries
/// of dead instances are removed when noticed).
const PRESENCE_KEY_TTL_S: i64 = 86_400;
/// Writes sent in one pipeline at most.
const BATCH: usize = 512;
/// How long to wait for Redis to answer or accept a connection.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How often the pub/sub connection is asked whether it is still there.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// The pub/sub channel of a consultation's or a queue's events. Room ids
/// cannot contain `:`, so `q:` keeps queues apart from rooms; a queue's key
/// holds its clinic.
pub fn channel(topic: Topic<'_>) -> String {
    match topic {
        Topic::Room(room) => format!("telehub:{{{room}}}:events"),
        Topic::Queue(queue) => format!("telehub:{{q:{}}}:events", queue.key()),
    }
}

/// The hash of a consultation's sessions in the cluster, by session id.
pub fn presence_key(room: &str) -> String {
    format!("telehub:{{{room}}}:presence")
}

/// The hash of a queue's rooms with a patient online, by instance.
pub fn queue_online_key(queue: &QueueId) -> String {
    format!("telehub:{{q:{}}}:online", queue.key())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One item of the writer's queue.
enum Op {
    Publish {
        channel: String,
        payload: String,
    },
    /// Set fields of a hash (a room's presence: session → entry; a queue's
    /// online rooms: instance → rooms), then publish.
    Put {
        key: String,
        fields: Vec<(String, String)>,
        channel: String,
        payload: String,
    },
    /// Remove a field of a hash, then publish.
    Remove {
        key: String,
        field: String,
        channel: String,
        payload: String,
    },
    /// Remove fields of dead instances.
    Forget {
        key: String,
        fields: Vec<String>,
    },
    /// Read a hash and the instances' liveness.
    Read {
        key: String,
        reply: ReadReply,
    },
    /// Mark this instance dead at once (graceful stop).
    Leave,
}

/// A request of the subscriber.
enum Sub {
    Subscribe { channel: String, id: u64, to: Recipient<FromCluster>, done: oneshot::Sender<()> },
    Unsubscribe { channel: String, id: u64 },
}

/// The rooms running here, by channel.
type Subscribers = Arc<Mutex<HashMap<String, (u64, Recipient<FromCluster>)>>>;

/// Tells every subscribed room.
fn tell_all(subscribers: &Subscribers, message: &FromCluster) {
    let rooms: Vec<_> = subscribers.lock().expect("subscribers").values().map(|(_, to)| to.clone()).collect();
    for room in rooms {
        room.do_send(message.clone());
    }
}

/// Whether each task has Redis now, and what went through.
#[derive(Default)]
struct Health {
    writer: AtomicBool,
    subscriber: AtomicBool,
    heartbeat: AtomicBool,
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
}

/// Counters of a node's broker, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerStats {
    pub ready: bool,
    /// Events and hash writes sent to Redis.
    pub published: u64,
    /// Events of other nodes received.
    pub received: u64,
    /// Writes dropped while Redis was unreachable (made good by resyncs).
    pub dropped: u64,
    /// Times a connection to Redis was opened again after one was lost.
    pub reconnects: u64,
}

/// The broker of a node in a cluster.
pub struct RedisBroker {
    instance: String,
    node: String,
    writes: mpsc::UnboundedSender<Op>,
    subs: mpsc::UnboundedSender<Sub>,
    health: Arc<Health>,
    next_id: AtomicU64,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl RedisBroker {
    /// Connects to Redis and starts the broker's tasks on the current
    /// runtime. Fails if Redis does not answer now; later outages are
    /// ridden out.
    pub async fn start(url: &str, node: &str, ttl: Duration) -> anyhow::Result<Arc<RedisBroker>> {
        let client = Client::open(url).map_err(|e| anyhow::anyhow!("bad redis_url: {e}"))?;
        let mut probe =
            connect(&client).await.map_err(|e| anyhow::anyhow!("cannot reach Redis at {}: {e}", redact(url)))?;
        let _: String = redis::cmd("PING").query_async(&mut probe).await?;
        let instance = format!("{node}/{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let (writes, write_rx) = mpsc::unbounded_channel();
        let (subs, sub_rx) = mpsc::unbounded_channel();
        let health = Arc::new(Health::default());
        // The probe just reached Redis; the writer connects on its first
        // write and says otherwise if that fails.
        health.writer.store(true, Ordering::Relaxed);
        let subscribers: Subscribers = Arc::default();
        let tasks = vec![
            tokio::spawn(writer(client.clone(), write_rx, instance.clone(), health.clone(), subscribers.clone())),
            tokio::spawn(subscriber(client.clone(), sub_rx, instance.clone(), health.clone(), subscribers.clone())),
            tokio::spawn(heartbeat(client, instance.clone(), ttl, health.clone(), subscribers)),
        ];
        info!(%instance, "cluster broker on Redis");
        Ok(Arc::new(RedisBroker {
            instance,
            node: node.to_owned(),
            writes,
            subs,
            health,
            next_id: AtomicU64::new(1),
            tasks: Mutex::new(tasks),
        }))
    }

    /// Reads a hash through the writer (so it sees this node's earlier
    /// writes); returns its fields and the instances known to be dead.
    async fn read(&self, key: String) -> Result<(Vec<(String, String)>, HashSet<String>), BrokerError> {
        let (reply, answer) = oneshot::channel();
        self.writes.send(Op::Read { key, reply }).map_err(|_| BrokerError("the broker has stopped".into()))?;
        let (fields, instances) = tokio::time::timeout(TIMEOUT, answer)
            .await
            .map_err(|_| BrokerError("Redis did not answer in time".into()))?
            .map_err(|_| BrokerError("Redis went away".into()))??;
        let now = now_ms() as f64;
        // An instance not listed at all is taken as alive: right after a
        // Redis restart, live nodes have not listed themselves again yet.
        let dead = instances.into_iter().filter(|(_, expires)| *expires < now).map(|(instance, _)| instance).collect();
        Ok((fields, dead))
    }

    /// What went through the broker so far.
    pub fn stats(&self) -> BrokerStats {
        let h = &self.health;
        BrokerStats {
            ready: self.is_ready(),
            published: h.published.load(Ordering::Relaxed),
            received: h.received.load(Ordering::Relaxed),
            dropped: h.dropped.load(Ordering::Relaxed),
            reconnects: h.reconnects.load(Ordering::Relaxed),
        }
    }

    fn envelope(&self, event: &ClusterEvent) -> String {
        let envelope = Envelope { from: self.instance.clone(), event: event.clone() };
        serde_json::to_string(&envelope).expect("events serialize")
    }

    fn entry(&self, peer: &Peer) -> String {
        let entry = RemotePeer { peer: peer.clone(), node: self.node.clone(), instance: self.instance.clone() };
        serde_json::to_string(&entry).expect("entries serialize")
    }

    /// Marks this instance gone, sends what is queued before that, and
    /// stops the tasks.
    pub async fn close(&self) {
        let _ = self.writes.send(Op::Leave);
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().expect("tasks"));
        let mut tasks = tasks.into_iter();
        if let Some(mut writer) = tasks.next()
            && tokio::time::timeout(TIMEOUT, &mut writer).await.is_err()
        {
            warn!("Redis writes still queued at shutdown were dropped");
            writer.abort();
        }
        for task in tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl Broker for RedisBroker {
    fn instance(&self) -> &str {
        &self.instance
    }

    fn node(&self) -> &str {
        &self.node
    }

    async fn subscribe(&self, topic: Topic<'_>, to: Recipient<FromCluster>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, subscribed) = oneshot::channel();
        if self.subs.send(Sub::Subscribe { channel: channel(topic), id, to, done }).is_ok() {
            // Without Redis the subscription waits for the reconnect, and
            // the room gets `Resync` then.
            let _ = tokio::time::timeout(TIMEOUT, subscribed).await;
        }
        id
    }

    fn unsubscribe(&self, topic: Topic<'_>, id: u64) {
        let _ = self.subs.send(Sub::Unsubscribe { channel: channel(topic), id });
    }

    fn publish(&self, topic: Topic<'_>, event: &ClusterEvent) {
        let _ = self.writes.send(Op::Publish { channel: channel(topic), payload: self.envelope(event) });
    }

    fn enter(&self, room: &str, peer: &Peer) {
        let payload = self.envelope(&ClusterEvent::Enter { peer: peer.clone(), node: self.node.clone() });
        let fields = vec![(peer.session.clone(), self.entry(peer))];
        let (key, channel) = (presence_key(room), channel(Topic::Room(room)));
        let _ = self.writes.send(Op::Put { key, fields, channel, payload });
    }

    fn roster(&self, room: &str, peers: &[Peer]) {
        let payload = self.envelope(&ClusterEvent::Roster { node: self.node.clone(), peers: peers.to_vec() });
        let fields = peers.iter().map(|p| (p.session.clone(), self.entry(p))).collect();
        let (key, channel) = (presence_key(room), channel(Topic::Room(room)));
        let _ = self.writes.send(Op::Put { key, fields, channel, payload });
    }

    fn exit(&self, room: &str, session: &str) {
        let payload = self.envelope(&ClusterEvent::Exit { session: session.to_owned() });
        let (key, channel) = (presence_key(room), channel(Topic::Room(room)));
        let _ = self.writes.send(Op::Remove { key, field: session.to_owned(), channel, payload });
    }

    fn forget(&self, room: &str, sessions: &[String]) {
        let _ = self.writes.send(Op::Forget { key: presence_key(room), fields: sessions.to_vec() });
    }

    async fn presence(&self, room: &str) -> Result<Vec<RemotePeer>, BrokerError> {
        let (entries, dead_instances) = self.read(presence_key(room)).await?;
        let mut peers = Vec::new();
        let mut dead = Vec::new();
        for (session, json) in entries {
            match serde_json::from_str::<RemotePeer>(&json) {
                Ok(entry) if entry.instance == self.instance => {}
                Ok(entry) if !dead_instances.contains(&entry.instance) => peers.push(entry),
                _ => dead.push(session),
            }
        }
        if !dead.is_empty() {
            debug!(room, count = dead.len(), "presence entries of gone instances removed");
            self.forget(room, &dead);
        }
        Ok(peers)
    }

    fn queue_online(&self, queue: &QueueId, rooms: &[String]) {
        let payload = self.envelope(&ClusterEvent::QueueOnline { rooms: rooms.to_vec() });
        let value = serde_json::to_string(rooms).expect("room ids serialize");
        let (key, channel) = (queue_online_key(queue), channel(Topic::Queue(queue)));
        let _ = self.writes.send(Op::Put { key, fields: vec![(self.instance.clone(), value)], channel, payload });
    }

    async fn queue_online_elsewhere(&self, queue: &QueueId) -> Result<Vec<(String, Vec<String>)>, BrokerError> {
        let (fields, dead_instances) = self.read(queue_online_key(queue)).await?;
        let mut online = Vec::new();
        let mut dead = Vec::new();
        for (instance, json) in fields {
            if instance == self.instance {
                continue;
            }
            match serde_json::from_str::<Vec<String>>(&json) {
                Ok(rooms) if !dead_instances.contains(&instance) => online.push((instance, rooms)),
                _ => dead.push(instance),
            }
        }
        if !dead.is_empty() {
            let _ = self.writes.send(Op::Forget { key: queue_online_key(queue), fields: dead });
        }
        Ok(online)
    }

    fn is_ready(&self) -> bool {
        let h = &self.health;
        h.writer.load(Ordering::Relaxed) && h.subscriber.load(Ordering::Relaxed) && h.heartbeat.load(Ordering::Relaxed)
    }
}

/// A multiplexed connection with timeouts.
async fn connect(client: &Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new().set_connection_timeout(Some(TIMEOUT)).set_response_timeout(Some(TIMEOUT));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// Doubles from 100 ms to 2 s.
fn next_backoff(current: Duration) -> Duration {
    (current * 2).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://<redacted>{}", &url[..scheme], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Sends the queue's writes in pipelines, in order.
///
/// A pipeline that fails on a connection that had worked is tried once more
/// on a fresh one (Redis restarts show up as a broken old connection); if
/// that fails too, the batch is dropped and counted as lost. While Redis is
/// away the writer probes it with PING, so readiness comes back without
/// waiting for traffic.
async fn writer(
    client: Client,
    mut queue: mpsc::UnboundedReceiver<Op>,
    instance: String,
    health: Arc<Health>,
    subscribers: Subscribers,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = Duration::ZERO;
    // Events were dropped: the rooms resync once Redis is back.
    let mut lost = false;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let healthy = health.writer.load(Ordering::Relaxed);
        if healthy {
            if queue.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
        } else {
            tokio::select! {
                n = queue.recv_many(&mut batch, BATCH) => if n == 0 { return },
                () = tokio::time::sleep(backoff) => {}
            }
        }
        let leave = batch.iter().any(|op| matches!(op, Op::Leave));
        let mut sent = false;
        for attempt in 0..2 {
            if conn.is_none() {
                conn = connect(&client).await.ok();
            }
            let Some(c) = conn.as_mut() else { break };
            if batch.is_empty() {
                sent = redis::cmd("PING").query_async::<String>(c).await.is_ok();
            } else {
                let (pipe, reads) = pipeline(&batch, &instance);
                match pipe.query_async::<Vec<Value>>(c).await {
                    Ok(values) => {
                        answer_reads(&mut batch, reads, values);
                        sent = true;
                    }
                    Err(err) if attempt == 0 => debug!(error = %err, "Redis write failed; trying a new connection"),
                    Err(err) => warn!(error = %err, "Redis write failed"),
                }
            }
            if sent {
                break;
            }
            conn = None;
        }
        if sent {
            let writes = batch.iter().filter(|op| !matches!(op, Op::Read { .. })).count();
            health.published.fetch_add(writes as u64, Ordering::Relaxed);
            batch.clear();
            backoff = Duration::ZERO;
            health.writer.store(true, Ordering::Relaxed);
            if std::mem::take(&mut lost) {
                info!("Redis is back for writes: rooms resync");
                tell_all(&subscribers, &FromCluster::Resync);
            }
        } else {
            health.writer.store(false, Ordering::Relaxed);
            let dropped = drop_batch(&mut batch, &mut queue);
            health.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            lost |= dropped > 0;
            backoff = next_backoff(backoff);
        }
        if leave {
            return;
        }
    }
}

/// Answers the reads waiting in a batch that could not be sent, and drops
/// everything else queued: while Redis is away, events only pile up.
/// Returns how many writes were dropped.
fn drop_batch(batch: &mut Vec<Op>, queue: &mut mpsc::UnboundedReceiver<Op>) -> usize {
    let mut dropped = 0usize;
    let mut drain = |op: Op| match op {
        Op::Read { reply, .. } => {
            let _ = reply.send(Err(BrokerError("Redis is unreachable".into())));
        }
        _ => dropped += 1,
    };
    batch.drain(..).for_each(&mut drain);
    while let Ok(op) = queue.try_recv() {
        drain(op);
    }
    if dropped > 0 {
        warn!(dropped, "Redis unreachable: events dropped; rooms resync when it is back");
    }
    dropped
}

/// A presence read's answer: the hash's (session, entry) pairs and every
/// listed instance with when its liveness runs out.
type ReadReply = oneshot::Sender<Result<(Vec<(String, String)>, Vec<(String, f64)>), BrokerError>>;

/// Turns a batch into one pipeline; returns it with the number of reads,
/// whose replies come back in the order of their commands.
fn pipeline(batch: &[Op], instance: &str) -> (redis::Pipeline, usize) {
    let mut pipe = redis::pipe();
    let mut reads = 0;
    for op in batch {
        match op {
            Op::Publish { channel, payload } => {
                pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
            }
            Op::Put { key, fields, channel, payload } => {
                if !fields.is_empty() {
                    let hset = pipe.cmd("HSET").arg(key);
                    for (field, value) in fields {
                        hset.arg(field).arg(value);
                    }
                    hset.ignore();
                    pipe.cmd("EXPIRE").arg(key).arg(PRESENCE_KEY_TTL_S).ignore();
                }
                pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
            }
            Op::Remove { key, field, channel, payload } => {
                pipe.cmd("HDEL").arg(key).arg(field).ignore();
                pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
            }
            Op::Forget { key, fields } => {
                if !fields.is_empty() {
                    pipe.cmd("HDEL").arg(key).arg(fields).ignore();
                }
            }
            Op::Read { key, .. } => {
                pipe.cmd("HGETALL").arg(key);
                pipe.cmd("ZRANGE").arg(NODES).arg(0).arg(-1).arg("WITHSCORES");
                reads += 1;
            }
            Op::Leave => {
                // Dead from now on, and listed as dead for as long as any
                // presence hash may live: a score of 0 would be swept at
                // the next heartbeat, and an unlisted instance counts as
                // alive.
                pipe.cmd("ZADD").arg(NODES).arg(now_ms() - 1).arg(instance).ignore();
            }
        }
    }
    (pipe, reads)
}

fn answer_reads(batch: &mut Vec<Op>, reads: usize, values: Vec<Value>) {
    let mut values = values.into_iter();
    let replies = batch.drain(..).filter_map(|op| match op {
        Op::Read { reply, .. } => Some(reply),
        _ => None,
    });
    for reply in replies.take(reads) {
        let (Some(entries), Some(live)) = (values.next(), values.next()) else {
            let _ = reply.send(Err(BrokerError("short pipeline reply".into())));
            continue;
        };
        let parsed = redis::from_redis_value::<HashMap<String, String>>(entries)
            .and_then(|e| Ok((e.into_iter().collect(), redis::from_redis_value::<Vec<(String, f64)>>(live)?)))
            .map_err(|e| BrokerError(e.to_string()));
        let _ = reply.send(parsed);
    }
}

/// Holds the pub/sub connection and hands events to their rooms.
async fn subscriber(
    client: Client,
    mut requests: mpsc::UnboundedReceiver<Sub>,
    instance: String,
    health: Arc<Health>,
    subscribers: Subscribers,
) {
    let own = Own::new(instance);
    let mut backoff = Duration::ZERO;
    let mut first = true;
    loop {
        let pubsub = match tokio::time::timeout(TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            failed => {
                let error = match failed {
                    Ok(Err(err)) => err.to_string(),
                    _ => "timed out".to_owned(),
                };
                health.subscriber.store(false, Ordering::Relaxed);
                warn!(%error, "Redis pub/sub unreachable; retrying");
                backoff = next_backoff(backoff);
                // Keep taking requests meanwhile: a room that starts now
                // is subscribed on reconnect.
                let sleep = tokio::time::sleep(backoff);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        request = requests.recv() => match request {
                            Some(request) => note(&subscribers, request),
                            None => return,
                        },
                    }
                }
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let channels: Vec<String> = subscribers.lock().expect("subscribers").keys().cloned().collect();
        if !channels.is_empty() && !answered(sink.subscribe(&channels)).await {
            health.subscriber.store(false, Ordering::Relaxed);
            backoff = next_backoff(backoff);
            tokio::time::sleep(backoff).await;
            continue;
        }
        health.subscriber.store(true, Ordering::Relaxed);
        backoff = Duration::ZERO;
        let again = !std::mem::take(&mut first);
        if again {
            health.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        // Rooms that started before this connection (after a lost one, or
        // before the first one was made) heard nothing meanwhile.
        if again || !channels.is_empty() {
            info!(rooms = channels.len(), "Redis pub/sub is connected: the rooms started before resync");
            tell_all(&subscribers, &FromCluster::Resync);
        }
        // A connection that died without a reset (a partition) would say
        // nothing: ask it something now and then.
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.reset();
        loop {
            tokio::select! {
                _ = probe.tick() => {
                    if !answered(sink.ping::<redis::Value>()).await {
                        warn!("Redis pub/sub connection does not answer; reconnecting");
                        break;
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else { break };
                    health.received.fetch_add(1, Ordering::Relaxed);
                    dispatch(&subscribers, &own, message.get_channel_name(), message.get_payload_bytes());
                }
                request = requests.recv() => {
                    let Some(request) = request else { return };
                    let ok = match request {
                        Sub::Subscribe { channel, id, to, done } => {
                            subscribers.lock().expect("subscribers").insert(channel.clone(), (id, to));
                            let ok = answered(sink.subscribe(&channel)).await;
                            let _ = done.send(());
                            ok
                        }
                        Sub::Unsubscribe { channel, id } => {
                            let mine = {
                                let mut map = subscribers.lock().expect("subscribers");
                                let mine = map.get(&channel).is_some_and(|(current, _)| *current == id);
                                if mine {
                                    map.remove(&channel);
                                }
                                mine
                            };
                            !mine || answered(sink.unsubscribe(&channel)).await
                        }
                    };
                    if !ok {
                        warn!("Redis subscription failed; reconnecting");
                        break;
                    }
                }
            }
        }
        health.subscriber.store(false, Ordering::Relaxed);
        warn!("Redis pub/sub connection lost; reconnecting");
    }
}

/// Whether a pub/sub command was answered, in time and without error.
async fn answered<T>(command: impl std::future::Future<Output = redis::RedisResult<T>>) -> bool {
    matches!(tokio::time::timeout(TIMEOUT, command).await, Ok(Ok(_)))
}

/// Records a subscription request while Redis is away.
fn note(subscribers: &Subscribers, request: Sub) {
    let mut map = subscribers.lock().expect("subscribers");
    match request {
        Sub::Subscribe { channel, id, to, done } => {
            map.insert(channel, (id, to));
            // Do not keep the room waiting: it is subscribed on reconnect
            // and resyncs then.
            let _ = done.send(());
        }
        Sub::Unsubscribe { channel, id } => {
            if map.get(&channel).is_some_and(|(current, _)| *current == id) {
                map.remove(&channel);
            }
        }
    }
}

/// This node's instance, and how every envelope it publishes begins:
/// `from` is the first field [`Envelope`] serializes, so the node knows its
/// own events coming back from Redis by that prefix without parsing them.
struct Own {
    instance: String,
    prefix: Vec<u8>,
}

impl Own {
    fn new(instance: String) -> Self {
        let prefix = format!("{{\"from\":{},", serde_json::to_string(&instance).expect("strings serialize"));
        Own { instance, prefix: prefix.into_bytes() }
    }
}

/// Hands one event to its room, unless this instance sent it.
fn dispatch(subscribers: &Subscribers, own: &Own, channel: &str, payload: &[u8]) {
    // Every node hears its own publications back on the rooms it serves;
    // those are for the other nodes, and parsing them cost as much as
    // parsing a peer's.
    if payload.starts_with(&own.prefix) {
        return;
    }
    let envelope: Envelope = match serde_json::from_slice(payload) {
        Ok(envelope) => envelope,
        Err(err) => return warn!(%channel, error = %err, "undecodable cluster event dropped"),
    };
    // Should the serialized form ever stop beginning with `from`, the
    // prefix no longer matches: this still keeps the node from taking its
    // own events for a peer's.
    if envelope.from == own.instance {
        return;
    }
    let to = subscribers.lock().expect("subscribers").get(channel).map(|(_, to)| to.clone());
    if let Some(to) = to {
        to.do_send(FromCluster::Event { from: envelope.from.into(), event: Box::new(envelope.event) });
    }
}

/// Which instances are alive, from this node's looks at the list of live
/// ones: an instance is gone once no look has found it for a whole TTL.
struct Liveness {
    instance: String,
    ttl: Duration,
    /// When each instance was last seen live.
    seen: HashMap<String, tokio::time::Instant>,
    /// This node could not look since its last look: the others may have
    /// been unable to refresh their listing too.
    blind: bool,
}

impl Liveness {
    fn new(instance: String, ttl: Duration) -> Self {
        Liveness { instance, ttl, seen: HashMap::new(), blind: false }
    }

    /// A look at the list failed.
    fn lost_sight(&mut self) {
        self.blind = true;
    }

    /// Takes the instances listed live at `at`; returns those now gone.
    fn look(&mut self, live: Vec<String>, at: tokio::time::Instant) -> Vec<String> {
        if std::mem::take(&mut self.blind) {
            // Back after Redis was away (perhaps restarted empty): every
            // instance gets a whole TTL to list itself again before it
            // counts as gone; the time without Redis is not held against it.
            for last in self.seen.values_mut() {
                *last = at;
            }
        }
        for other in live {
            self.seen.insert(other, at);
        }
        let gone: Vec<String> = self
            .seen
            .iter()
            .filter(|(other, last)| **other != self.instance && at.duration_since(**last) > self.ttl)
            .map(|(other, _)| other.clone())
            .collect();
        for other in &gone {
            self.seen.remove(other);
        }
        gone
    }
}

/// Refreshes this instance's liveness and reports instances that stopped
/// refreshing theirs.
///
/// An instance is reported gone once it has not been live for a whole TTL
/// as this node saw it: its listing expired (it died) or vanished (a Redis
/// restart lost it and it never came back to list itself again).
async fn heartbeat(client: Client, instance: String, ttl: Duration, health: Arc<Health>, subscribers: Subscribers) {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let mut conn: Option<MultiplexedConnection> = None;
    let mut liveness = Liveness::new(instance.clone(), ttl);
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if conn.is_none() {
            conn = connect(&client).await.ok();
        }
        let Some(c) = conn.as_mut() else {
            health.heartbeat.store(false, Ordering::Relaxed);
            liveness.lost_sight();
            continue;
        };
        let now = now_ms();
        let result: redis::RedisResult<(Vec<String>,)> = redis::pipe()
            .cmd("ZADD")
            .arg(NODES)
            .arg(now + ttl_ms)
            .arg(&instance)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(NODES)
            .arg("-inf")
            .arg(now - PRESENCE_KEY_TTL_S * 1000)
            .ignore()
            .cmd("ZRANGEBYSCORE")
            .arg(NODES)
            .arg(now)
            .arg("+inf")
            .query_async(c)
            .await;
        match result {
            Ok((live,)) => {
                health.heartbeat.store(true, Ordering::Relaxed);
                let gone = liveness.look(live, tokio::time::Instant::now());
                if !gone.is_empty() {
                    info!(instances = ?gone, "cluster instances stopped refreshing; their sessions leave");
                    tell_all(&subscribers, &FromCluster::NodesGone(gone.into()));
                }
            }
            Err(err) => {
                warn!(error = %err, "Redis heartbeat failed");
                health.heartbeat.store(false, Ordering::Relaxed);
                liveness.lost_sight();
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands what a room would get to the test.
    struct Collector(mpsc::UnboundedSender<FromCluster>);

    impl actix::Actor for Collector {
        type Context = actix::Context<Self>;
    }

    impl actix::Handler<FromCluster> for Collector {
        type Result = ();

        fn handle(&mut self, message: FromCluster, _: &mut Self::Context) {
            let _ = self.0.send(message);
        }
    }

    #[actix::test]
    async fn a_room_that_subscribed_before_the_first_connection_resyncs_once_it_is_made() {
        use actix::Actor;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        let (requests, rx) = mpsc::unbounded_channel();
        let health = Arc::new(Health::default());
        let task = tokio::spawn(subscriber(client, rx, "n/1".into(), health.clone(), Subscribers::default()));
        let (tx, mut heard) = mpsc::unbounded_channel();
        let (done, subscribed) = oneshot::channel();
        let to = Collector(tx).start().recipient();
        requests.send(Sub::Subscribe { channel: channel(Topic::Room("r")), id: 1, to, done }).unwrap();
        // Nothing listens on the port yet: the request is only noted.
        subscribed.await.unwrap();
        assert!(!health.subscriber.load(Ordering::Relaxed));
        let dir = tempfile::tempdir().unwrap();
        let mut redis = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is needed (Debian package redis-server; scripts/test installs it)");
        // The subscriber retries with backoff; without a resync the room
        // would hear nothing at all.
        let first = tokio::time::timeout(Duration::from_secs(30), heard.recv()).await;
        let _ = redis.kill();
        let _ = redis.wait();
        task.abort();
        assert!(matches!(first, Ok(Some(FromCluster::Resync))), "the room is told to resync");
        assert_eq!(health.reconnects.load(Ordering::Relaxed), 0, "a first connection is no reconnect");
    }

    #[actix::test]
    async fn a_node_drops_its_own_events_unparsed_and_hands_on_a_peers() {
        use actix::Actor;
        let (tx, mut heard) = mpsc::unbounded_channel();
        let subscribers = Subscribers::default();
        let room = channel(Topic::Room("r"));
        subscribers.lock().unwrap().insert(room.clone(), (1, Collector(tx).start().recipient()));
        let typing = |from: &str| {
            let event = ClusterEvent::Frame { frame: format!("typing of {from}") };
            serde_json::to_vec(&Envelope { from: from.into(), event }).unwrap()
        };
        // The next event handed to the room; a bound, not a timing: a
        // wrongly dropped event fails the test instead of hanging it.
        let mut next = async || match tokio::time::timeout(Duration::from_secs(10), heard.recv()).await {
            Ok(Some(FromCluster::Event { from, event })) => (from.to_string(), *event),
            other => panic!("an event is handed on, got {other:?}"),
        };
        let own = Own::new("node-a/1".into());
        assert!(typing("node-a/1").starts_with(&own.prefix), "its events are known by their first bytes");
        // Its own event, and one of an instance whose name it begins.
        dispatch(&subscribers, &own, &room, &typing("node-a/1"));
        dispatch(&subscribers, &own, &room, &typing("node-a/12"));
        let frame = ClusterEvent::Frame { frame: "typing of node-a/12".into() };
        assert_eq!(next().await, ("node-a/12".to_owned(), frame), "only the peer's event is handed on");
        // What is undecodable is dropped, not handed on as anything.
        dispatch(&subscribers, &own, &room, b"{\"from\":\"x\"");
        dispatch(&subscribers, &own, &room, &typing("node-b/1"));
        assert_eq!(next().await.0, "node-b/1", "nothing came of the undecodable one");
    }

    #[test]
    fn queue_channels_name_the_clinic_as_docs_cluster_md_says() {
        let k1 = QueueId::new(Some("k1"), "q-ana");
        assert_eq!(channel(Topic::Queue(&k1)), "telehub:{q:2.k1/q-ana}:events");
        assert_eq!(queue_online_key(&k1), "telehub:{q:2.k1/q-ana}:online");
        assert_eq!(channel(Topic::Queue(&QueueId::new(None, "q-ana"))), "telehub:{q:/q-ana}:events");
        assert_ne!(channel(Topic::Queue(&QueueId::new(Some("k2"), "q-ana"))), channel(Topic::Queue(&k1)));
        assert_eq!(channel(Topic::Room("c-1001")), "telehub:{c-1001}:events");
    }

    #[test]
    fn an_instance_is_gone_after_a_ttl_unseen_but_not_for_time_without_redis() {
        let ttl = Duration::from_millis(900);
        let t0 = tokio::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut liveness = Liveness::new("me".into(), ttl);
        assert!(liveness.look(vec!["me".into(), "a".into(), "b".into()], at(0)).is_empty());
        // Redis goes away for three TTLs, and comes back empty: only this
        // node has listed itself again at the first look.
        liveness.lost_sight();
        assert!(liveness.look(vec!["me".into()], at(2700)).is_empty(), "the outage is not held against them");
        // a lists itself again in time; b never does.
        assert!(liveness.look(vec!["me".into(), "a".into()], at(3000)).is_empty());
        assert_eq!(liveness.look(vec!["me".into(), "a".into()], at(3700)), vec!["b".to_owned()]);
        assert!(liveness.look(vec!["me".into(), "a".into()], at(4000)).is_empty(), "reported once");
        // Without an outage, a TTL unseen is gone.
        assert_eq!(liveness.look(vec!["me".into()], at(5000)), vec!["a".to_owned()]);
    }
}
