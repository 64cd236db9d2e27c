//! Several nodes on one PostgreSQL database and one Redis: a consultation
//! whose members sit on different nodes, and the failures a cluster must
//! ride out (Redis restarting, a node killed, a node stopping).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use telehub::config::Settings;

use crate::helpers::*;
use crate::postgres::Server;
use crate::waiting_room as wr;

/// A real `redis-server` on a free loopback port, without persistence, so a
/// restart loses everything as a crash would.
pub struct Redis {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let mut redis = Redis { port, child: None, dir: tempfile::tempdir().unwrap() };
        redis.spawn();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server and waits until it says it accepts connections.
    fn spawn(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--logfile", "", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server is needed (Debian package redis-server; scripts/test installs it)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.by_ref().map_while(Result::ok).any(|line| line.contains("Ready to accept connections"));
        assert!(ready, "redis-server on port {} did not start", self.port);
        // Keep reading so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        self.child = Some(child);
    }

    /// Kills the server at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A connection of the test's own, to look into the server.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// PostgreSQL and Redis for a test's nodes.
struct Cluster {
    _pg: Server,
    redis: Redis,
    database: String,
}

/// The liveness TTL of the test clusters: short, so dead nodes are noticed
/// soon.
const TTL_MS: u64 = 900;

impl Cluster {
    async fn new() -> Cluster {
        let pg = Server::get();
        let database = fresh_postgres_database(&pg.url).await;
        Cluster { _pg: pg, redis: Redis::start(), database }
    }

    fn settings(&self, node: &str, dir: &tempfile::TempDir) -> Settings {
        Settings {
            database_url: self.database.clone(),
            redis_url: Some(self.redis.url()),
            node_id: node.into(),
            cluster_ttl_ms: TTL_MS,
            ..test_settings(dir)
        }
    }

    async fn node(&self, node: &str) -> TestApp {
        self.node_with(node, |_| {}).await
    }

    async fn node_with(&self, node: &str, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut settings = self.settings(node, &dir);
        adjust(&mut settings);
        start(settings, dir).await
    }

    /// A node in a process of its own, to be killed.
    async fn process(&self, node: &str) -> Process {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_telehub"))
            .env("TELEHUB_BIND", addr.to_string())
            .env("TELEHUB_DATABASE_URL", &self.database)
            .env("TELEHUB_REDIS_URL", self.redis.url())
            .env("TELEHUB_JWT_SECRET", SECRET)
            .env("TELEHUB_API_KEY", API_KEY)
            .env("TELEHUB_NODE_ID", node)
            .env("TELEHUB_CLUSTER_TTL_MS", TTL_MS.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the telehub binary");
        let process = Process { child, addr };
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/readyz");
        eventually("the node process is ready", || async {
            http.get(&url).send().await.is_ok_and(|r| r.status().as_u16() == 200)
        })
        .await;
        process
    }
}

/// A node running as its own process.
struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Process {
    fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/v1/ws?token={token}", self.addr)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A series of the node's `/metrics` that it must have.
async fn metric(app: &TestApp, name: &str) -> f64 {
    app.metric(name).await.unwrap_or_else(|| panic!("no {name} in the node's metrics"))
}

async fn readiness(app: &TestApp) -> u16 {
    app.http.get(app.url("/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

fn sessions(peers: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        peers.as_array().unwrap().iter().map(|p| p["session"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    ids.sort();
    ids
}

/// Creates consultation `room`; its patient joins on `a`, then its doctor
/// on `b`, and the patient has seen the doctor arrive. Returns (patient,
/// doctor).
async fn across(a: &TestApp, b: &TestApp, room: &str) -> (Client, Client) {
    a.consultation(room).await;
    let mut patient = a.patient(room).await;
    patient.join(room, None).await;
    let mut doctor = b.doctor(room).await;
    doctor.join(room, None).await;
    assert_eq!(patient.recv_type("presence").await["peer"]["session"], doctor.session.as_str());
    (patient, doctor)
}

/// The liveness score of the instance of a node (`node-a/`) in Redis.
async fn listed_score(redis: &Redis, prefix: &str) -> Option<f64> {
    let mut conn = redis.connection().await;
    let listed: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("telehub:nodes")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap();
    listed.iter().find(|(instance, _)| instance.starts_with(prefix)).map(|(_, score)| *score)
}

/// Waits until the node's instance has refreshed its liveness `n` more
/// times: `n` of its heartbeats have run.
async fn heartbeats(redis: &Redis, prefix: &str, n: usize) {
    let mut last = listed_score(redis, prefix).await;
    for _ in 0..n {
        eventually("the node refreshes its liveness", || async { listed_score(redis, prefix).await > last }).await;
        last = listed_score(redis, prefix).await;
    }
}

/// The next `message` frame's seq and text.
async fn next_message(client: &mut Client) -> (i64, String) {
    let message = client.recv_type("message").await;
    (message["seq"].as_i64().unwrap(), message["text"].as_str().unwrap().to_owned())
}

const OFFER: &str = "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n";

#[tokio::test]
async fn three_nodes_share_one_consultation() {
    let cluster = Cluster::new().await;
    let (a, b, c) = (cluster.node("node-a").await, cluster.node("node-b").await, cluster.node("node-c").await);
    a.consultation("c-3").await;

    // The doctor on b, then the patient on a: each sees the other.
    let mut doctor = b.doctor("c-3").await;
    doctor.join("c-3", None).await;
    let mut patient = a.patient("c-3").await;
    let joined = patient.join("c-3", None).await;
    assert_eq!(sessions(&joined["peers"]), vec![doctor.session.clone()], "{joined}");
    let arrived = doctor.recv_type("presence").await;
    assert_eq!((&arrived["event"], &arrived["peer"]["session"]), (&json!("join"), &json!(patient.session)));

    // Node c runs no room for c-3 yet: its HTTP view of presence comes
    // from the cluster, with each session's node.
    let (status, presence) = c.get("/v1/consultations/c-3/presence").await;
    assert_eq!(status, 200, "{presence}");
    let mut nodes: Vec<(String, String)> = presence["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["session"].as_str().unwrap().to_owned(), s["node"].as_str().unwrap().to_owned()))
        .collect();
    nodes.sort();
    let mut expected = vec![(patient.session.clone(), "node-a".to_owned()), (doctor.session.clone(), "node-b".into())];
    expected.sort();
    assert_eq!(nodes, expected);

    // Staff on c joins and is seen by both.
    let mut staff = Client::connect(&c, &token("s-1", "Sri", "staff", 3600)).await;
    let joined = staff.join("c-3", None).await;
    assert_eq!(sessions(&joined["peers"]), sorted(&[&patient.session, &doctor.session]));
    for client in [&mut doctor, &mut patient] {
        let presence = client.recv_type("presence").await;
        assert_eq!(presence["peer"]["session"], staff.session.as_str());
    }

    // Chat from a and from b reaches every node.
    assert_eq!(patient.chat("c-3", "p1", "from a").await["seq"], 1);
    for client in [&mut doctor, &mut patient, &mut staff] {
        assert_eq!(next_message(client).await, (1, "from a".into()));
    }
    assert_eq!(doctor.chat("c-3", "d1", "from b").await["seq"], 2);
    for client in [&mut doctor, &mut patient, &mut staff] {
        assert_eq!(next_message(client).await, (2, "from b".into()));
    }

    // Typing and read markers cross nodes.
    let ok = patient.request(json!({"type": "typing", "room": "c-3", "active": true})).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    let typing = doctor.recv_type("typing").await;
    assert_eq!((&typing["user"]["id"], &typing["active"]), (&json!("p-c-3"), &json!(true)));
    assert_eq!(staff.recv_type("typing").await["user"]["id"], "p-c-3");
    let ok = doctor.request(json!({"type": "read", "room": "c-3", "seq": 2})).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    let read = patient.recv_type("read").await;
    assert_eq!((&read["user"]["id"], &read["seq"]), (&json!("d-c-3"), &json!(2)));
    assert_eq!(staff.recv_type("read").await["seq"], 2);

    // A signal from b reaches the patient's session on a, and only it.
    let sent = doctor
        .request(json!({"type": "signal", "room": "c-3", "to": patient.session, "data": {"description": {"type": "offer", "sdp": OFFER}}}))
        .await;
    assert_eq!(sent["type"], "ok", "{sent}");
    let signal = patient.recv_type("signal").await;
    assert_eq!((&signal["from"], &signal["data"]["description"]["type"]), (&json!(doctor.session), &json!("offer")));
    staff.assert_quiet().await;

    // The patient leaves on a; the others see it.
    let left = patient.request(json!({"type": "leave", "room": "c-3"})).await;
    assert_eq!(left["type"], "left", "{left}");
    for client in [&mut doctor, &mut staff] {
        let presence = client.recv_type("presence").await;
        assert_eq!((&presence["event"], &presence["peer"]["session"]), (&json!("leave"), &json!(patient.session)));
    }
    patient.join("c-3", Some(2)).await;
    doctor.recv_type("presence").await;
    staff.recv_type("presence").await;

    // The doctor ends it on b: the other nodes' sessions are told.
    let ok = doctor.request(json!({"type": "end", "room": "c-3"})).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    for client in [&mut patient, &mut staff] {
        let ended = client.recv_type("ended").await;
        assert_eq!(ended["by"]["id"], "d-c-3");
    }
    // And the room is ended on every node, not only on b.
    let refused = patient.request(json!({"type": "chat", "room": "c-3", "client_id": "late", "text": "x"})).await;
    assert_eq!(refused["code"], "conflict", "{refused}");
}

/// Sends `n` chats without waiting, then reads until it has their acks and
/// `total` messages; returns the messages' seqs in arrival order.
async fn chat_and_collect(client: &mut Client, room: &str, prefix: &str, n: usize, total: usize) -> Vec<i64> {
    for i in 0..n {
        let id = format!("{prefix}{i}");
        client.send(json!({"type": "chat", "ref": id, "room": room, "client_id": id, "text": id})).await;
    }
    let (mut acks, mut seqs) = (0, Vec::new());
    while acks < n || seqs.len() < total {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("ack") => acks += 1,
            Some("message") => seqs.push(frame["seq"].as_i64().unwrap()),
            Some("error") => panic!("refused: {frame}"),
            _ => {}
        }
    }
    seqs
}

#[tokio::test]
async fn two_nodes_writing_at_once_deliver_every_message_once_in_seq_order() {
    let cluster = Cluster::new().await;
    let (a, b) = (cluster.node("node-a").await, cluster.node("node-b").await);
    let (mut patient, mut doctor) = across(&a, &b, "c-burst").await;

    let (seen_a, seen_b) = tokio::join!(
        chat_and_collect(&mut patient, "c-burst", "p", 60, 120),
        chat_and_collect(&mut doctor, "c-burst", "d", 60, 120)
    );
    let all: Vec<i64> = (1..=120).collect();
    assert_eq!(seen_a, all, "node a's session saw every message once, in order");
    assert_eq!(seen_b, all, "node b's session saw every message once, in order");
}

#[tokio::test]
async fn a_redis_restart_loses_no_acknowledged_message() {
    let mut cluster = Cluster::new().await;
    let (a, b) = (cluster.node("node-a").await, cluster.node("node-b").await);
    let (mut patient, mut doctor) = across(&a, &b, "c-redis").await;
    let mut staff = Client::connect(&a, &token("s-1", "Sri", "staff", 3600)).await;
    staff.join("c-redis", None).await;
    patient.chat("c-redis", "1", "before").await;
    assert_eq!(next_message(&mut doctor).await, (1, "before".into()));
    assert_eq!(next_message(&mut staff).await, (1, "before".into()));

    cluster.redis.kill();
    eventually("node a reports the broker down", || async { readiness(&a).await == 503 }).await;
    eventually("node b reports the broker down", || async { readiness(&b).await == 503 }).await;
    // A node without Redis still serves its own sessions, from storage.
    assert_eq!(patient.chat("c-redis", "2", "while redis is down").await["seq"], 2);
    // A signal for a session on the other node cannot go: the sender is
    // told so (signals are not kept), rather than given an `ok`.
    let signal = json!({"type": "signal", "room": "c-redis", "to": doctor.session, "data": {"bye": true}});
    let refused = patient.request(signal).await;
    assert_eq!((&refused["type"], &refused["code"]), (&json!("error"), &json!("unavailable")), "{refused}");
    assert_eq!(next_message(&mut staff).await, (2, "while redis is down".into()));

    cluster.redis.restart();
    eventually("node a is ready again", || async { readiness(&a).await == 200 }).await;
    eventually("node b is ready again", || async { readiness(&b).await == 200 }).await;
    // What b missed comes from the database after the resync, then live
    // delivery resumes.
    assert_eq!(next_message(&mut doctor).await, (2, "while redis is down".into()));
    patient.chat("c-redis", "3", "after").await;
    assert_eq!(next_message(&mut doctor).await, (3, "after".into()));
    // The operators' view of it.
    assert!(metric(&a, "telehub_cluster_dropped_total").await >= 1.0, "a's publish of message 2 was dropped");
    for node in [&a, &b] {
        assert_eq!(metric(node, "telehub_cluster_ready").await, 1.0);
        assert!(metric(node, "telehub_cluster_reconnects_total").await >= 1.0);
    }
    assert!(metric(&b, "telehub_cluster_received_total").await >= 2.0, "messages 1 and 3 at least");
    // Presence was rebuilt in the new Redis: a node that starts the room
    // afresh sees both nodes' sessions.
    let c = cluster.node("node-c").await;
    let (status, presence) = c.get("/v1/consultations/c-redis/presence").await;
    assert_eq!(status, 200);
    assert_eq!(presence["sessions"].as_array().unwrap().len(), 3, "{presence}");
}

#[tokio::test]
async fn a_redis_outage_longer_than_the_ttl_declares_no_live_node_dead() {
    let mut cluster = Cluster::new().await;
    let (a, b) = (cluster.node("node-a").await, cluster.node("node-b").await);
    let (mut patient, mut doctor) = across(&a, &b, "c-long").await;
    cluster.redis.kill();
    eventually("node b reports the broker down", || async { readiness(&b).await == 503 }).await;
    // The outage itself: well past the TTL in which a node must refresh
    // its listing (the waiting is the condition under test, not a way to
    // let something finish).
    tokio::time::sleep(Duration::from_millis(3 * TTL_MS)).await;
    cluster.redis.restart();
    eventually("node a is ready again", || async { readiness(&a).await == 200 }).await;
    eventually("node b is ready again", || async { readiness(&b).await == 200 }).await;
    // Node b has looked at the list of live nodes a few times since, and
    // node a has listed itself again: nobody left.
    heartbeats(&cluster.redis, "node-a/", 1).await;
    heartbeats(&cluster.redis, "node-b/", 2).await;
    patient.chat("c-long", "1", "still here").await;
    loop {
        let frame = doctor.recv().await;
        assert_ne!(frame["event"], "leave", "a live node's session was declared gone: {frame}");
        if frame["type"] == "message" {
            break;
        }
    }
    let (_, presence) = b.get("/v1/consultations/c-long/presence").await;
    assert_eq!(presence["sessions"].as_array().unwrap().len(), 2, "{presence}");
}

#[tokio::test]
async fn after_a_redis_outage_a_room_catches_up_with_what_other_nodes_changed() {
    let mut cluster = Cluster::new().await;
    let (a, b) = (cluster.node("node-a").await, cluster.node("node-b").await);
    let (mut patient, mut doctor) = across(&a, &b, "c-miss").await;
    patient.chat("c-miss", "1", "before").await;
    assert_eq!(next_message(&mut doctor).await, (1, "before".into()));
    // A second consultation, for a node that acts on a stale one.
    let (mut other_patient, mut other_doctor) = across(&a, &b, "c-stale").await;

    cluster.redis.kill();
    eventually("node a reports the broker down", || async { readiness(&a).await == 503 }).await;
    eventually("node b reports the broker down", || async { readiness(&b).await == 503 }).await;
    // On node b, while node a cannot hear of it: the doctor reads message
    // 1, moves the call to Jitsi and ends the consultation.
    assert_eq!(doctor.request(json!({"type": "read", "room": "c-miss", "seq": 1})).await["type"], "ok");
    assert_eq!(doctor.request(json!({"type": "media", "room": "c-miss", "mode": "jitsi"})).await["type"], "ok");
    assert_eq!(doctor.request(json!({"type": "end", "room": "c-miss"})).await["type"], "ok");
    // The other consultation ends on b too. Node a still thinks it is on,
    // but storage does not let it be admitted back to active, and the
    // refusal makes node a catch up at once, Redis or not.
    assert_eq!(other_doctor.request(json!({"type": "end", "room": "c-stale"})).await["type"], "ok");
    let mut staff = Client::connect(&a, &token("s-1", "Sri", "staff", 3600)).await;
    let refused = staff.request(json!({"type": "admit", "room": "c-stale"})).await;
    assert_eq!(refused["code"], "conflict", "{refused}");
    // It names who ended it, from storage.
    let ended = other_patient.recv_type("ended").await;
    assert_eq!((&ended["room"], &ended["by"]["id"]), (&json!("c-stale"), &json!("d-c-stale")), "{ended}");
    assert_eq!(readiness(&a).await, 503, "still without Redis");

    cluster.redis.restart();
    eventually("node a is ready again", || async { readiness(&a).await == 200 }).await;
    // The patient on node a hears what it missed, in this order.
    let read = patient.recv_type("read").await;
    assert_eq!((&read["user"]["id"], &read["seq"]), (&json!("d-c-miss"), &json!(1)), "{read}");
    assert_eq!(patient.recv_type("media_mode").await["mode"], "jitsi");
    let ended = patient.recv_type("ended").await;
    assert_eq!((&ended["room"], &ended["by"]["id"]), (&json!("c-miss"), &json!("d-c-miss")), "{ended}");
    let refused = patient.request(json!({"type": "chat", "room": "c-miss", "client_id": "2", "text": "x"})).await;
    assert_eq!(refused["code"], "conflict", "{refused}");
    let (_, consultation) = a.get("/v1/consultations/c-miss").await;
    assert_eq!((&consultation["status"], &consultation["media_mode"]), (&json!("ended"), &json!("jitsi")));
}

#[tokio::test]
async fn a_no_show_refused_by_storage_makes_the_node_catch_up() {
    let mut cluster = Cluster::new().await;
    let a = cluster.node_with("node-a", |s| s.no_show_s = 2).await;
    let b = cluster.node("node-b").await;
    wr::queued(&a, "c-ns", "k1").await;
    let mut patient = wr::patient(&a, "c-ns").await;
    wr::check_in(&mut patient, "c-ns").await;
    let mut doctor_a = wr::doctor(&a).await;
    doctor_a.join("c-ns", None).await;
    let mut doctor_b = wr::doctor(&b).await;
    doctor_b.join("c-ns", None).await;
    assert_eq!(doctor_a.recv_type("presence").await["peer"]["session"], doctor_b.session.as_str());

    cluster.redis.kill();
    eventually("node a reports the broker down", || async { readiness(&a).await == 503 }).await;
    // Node a admits the patient, who never comes; before its no-show
    // timeout runs out, the doctor ends the consultation on node b, which
    // node a cannot hear of.
    assert_eq!(doctor_a.request(json!({"type": "admit", "room": "c-ns"})).await["type"], "ok");
    assert_eq!(doctor_b.request(json!({"type": "end", "room": "c-ns"})).await["type"], "ok");
    // Node a's no-show finds the consultation ended in storage and catches
    // up at once, Redis or not: its session hears the end, which was not
    // a no-show.
    let ended = doctor_a.recv_type("ended").await;
    assert_eq!(ended["by"], json!({"id": "d-ana", "name": "Ana"}), "the doctor's end, not a no-show");
    assert_eq!(readiness(&a).await, 503, "still without Redis");
    let (_, consultation) = a.get("/v1/consultations/c-ns").await;
    assert_eq!(consultation["status"], "ended", "not cancelled: {consultation}");
}

#[tokio::test]
async fn a_message_to_a_consultation_ended_on_another_node_is_refused_by_storage() {
    let mut cluster = Cluster::new().await;
    let (a, b) = (cluster.node("node-a").await, cluster.node("node-b").await);
    let (mut patient, mut doctor) = across(&a, &b, "c-late").await;
    let before = patient.chat("c-late", "1", "before the end").await;
    assert_eq!(next_message(&mut doctor).await, (1, "before the end".into()));
    let (mut other_patient, mut other_doctor) = across(&a, &b, "c-late-sys").await;

    cluster.redis.kill();
    eventually("node a reports the broker down", || async { readiness(&a).await == 503 }).await;
    // Both consultations end on node b, which node a cannot hear of.
    assert_eq!(doctor.request(json!({"type": "end", "room": "c-late"})).await["type"], "ok");
    assert_eq!(other_doctor.request(json!({"type": "end", "room": "c-late-sys"})).await["type"], "ok");
    // Node a still takes the patient's chat, but storage refuses it, and the
    // refusal makes the room catch up at once.
    let refused = patient.request(json!({"type": "chat", "room": "c-late", "client_id": "2", "text": "late"})).await;
    assert_eq!(refused["code"], "conflict", "{refused}");
    assert_eq!(patient.recv_type("ended").await["room"], "c-late");
    // A resend of the message stored before the end keeps its ack.
    assert_eq!(patient.chat("c-late", "1", "before the end").await["seq"], before["seq"]);
    // A system message through node a's HTTP API: refused the same way.
    let (status, body) = a.post("/v1/consultations/c-late-sys/messages", json!({"text": "late"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    assert_eq!(other_patient.recv_type("ended").await["room"], "c-late-sys");
    assert_eq!(readiness(&a).await, 503, "still without Redis");
    // Nothing was stored after either end.
    let (_, page) = b.get("/v1/consultations/c-late/messages").await;
    let texts: Vec<&str> = page["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["before the end"]);
    let (_, page) = b.get("/v1/consultations/c-late-sys/messages").await;
    assert_eq!(page["messages"], json!([]));
    let (_, consultation) = a.get("/v1/consultations/c-late").await;
    assert_eq!(consultation["last_seq"], 1, "{consultation}");
}

#[tokio::test]
async fn a_killed_node_s_sessions_leave_and_its_clients_resume_elsewhere() {
    let cluster = Cluster::new().await;
    let b = cluster.node("node-b").await;
    let doomed = cluster.process("node-k").await;
    b.consultation("c-kill").await;
    let mut doctor = b.doctor("c-kill").await;
    doctor.join("c-kill", None).await;
    let patient_token = token("p-c-kill", "Budi", "patient", 3600);
    let mut patient = Client::connect_to(&doomed.ws_url(&patient_token)).await;
    patient.join("c-kill", None).await;
    let gone = patient.session.clone();
    assert_eq!(doctor.recv_type("presence").await["peer"]["session"], gone.as_str());

    let mut acked = Vec::new();
    for i in 1..=20 {
        let ack = patient.chat("c-kill", &format!("k{i}"), &format!("k {i}")).await;
        acked.push(ack["seq"].as_i64().unwrap());
    }
    drop(doomed); // SIGKILL

    // The doctor sees the dead node's session leave once its TTL runs out,
    // and every acknowledged message, once, in order: the last ones may
    // have died with the node before it published them, and come from the
    // database then.
    let (mut seen, mut left) = (Vec::new(), false);
    while seen.len() < acked.len() || !left {
        let frame = doctor.recv().await;
        match frame["type"].as_str() {
            Some("message") => seen.push(frame["seq"].as_i64().unwrap()),
            Some("presence") => {
                assert_eq!((&frame["event"], &frame["peer"]["session"]), (&json!("leave"), &json!(gone)));
                left = true;
            }
            _ => {}
        }
    }
    assert_eq!(seen, acked);
    // The patient's client reconnects to the surviving node and resumes
    // from what it had (here: everything up to its last ack).
    let mut patient = b.patient("c-kill").await;
    let joined = patient.join("c-kill", Some(20)).await;
    assert_eq!(joined["history"].as_array().unwrap().len(), 0);
    assert_eq!(joined["seq"], 20);
    assert_eq!(patient.chat("c-kill", "after", "after the crash").await["seq"], 21);
    assert_eq!(next_message(&mut doctor).await, (21, "after the crash".into()));
}

/// A room that panics on one node cannot tell the others that its sessions
/// left; the sessions do, when they let go of it.
#[tokio::test]
async fn a_room_that_stops_under_its_members_lets_the_other_nodes_see_them_leave_and_return() {
    let cluster = Cluster::new().await;
    let (a, b) = (cluster.node("node-a").await, cluster.node("node-b").await);
    let (mut patient, mut doctor) = across(&a, &b, "c-fault").await;
    assert_eq!(patient.chat("c-fault", "1", "one").await["seq"], 1);
    assert_eq!(next_message(&mut doctor).await, (1, "one".into()));
    let session = json!(patient.session);
    let is_the_patient =
        |frame: &Value, event: &str| (&frame["event"], &frame["peer"]["session"]) == (&json!(event), &session);

    // Told the room restarted, the patient's session lets go of it, and
    // the doctor on node b sees it leave; its next chat there is refused,
    // it joins again, and the new room on node a takes the cluster's
    // traffic.
    assert!(a.rooms.crash("c-fault").await);
    assert_eq!(patient.recv_type("error").await["room"], "c-fault");
    let refused = patient.request(json!({"type": "chat", "room": "c-fault", "client_id": "2", "text": "two"})).await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert!(is_the_patient(&doctor.recv_type("presence").await, "leave"));
    let joined = patient.join("c-fault", Some(1)).await;
    assert_eq!(joined["peers"][0]["session"], doctor.session.as_str(), "{joined}");
    assert!(is_the_patient(&doctor.recv_type("presence").await, "join"));
    assert_eq!(patient.chat("c-fault", "2", "two").await["seq"], 2);
    assert_eq!(next_message(&mut doctor).await, (2, "two".into()));
    doctor.chat("c-fault", "3", "three").await;
    assert_eq!(next_message(&mut patient).await, (2, "two".into()));
    assert_eq!(next_message(&mut patient).await, (3, "three".into()));

    // Again, and the patient closes at once: whether its session lets go
    // on the notice or on the close, node a lives on and the doctor sees
    // the patient leave.
    let channel = "telehub:{c-fault}:events";
    assert_eq!(subscriptions(&cluster.redis, channel).await, 2, "both nodes' rooms subscribe");
    assert!(a.rooms.crash("c-fault").await);
    patient.ws.close(None).await.unwrap();
    assert_eq!(patient.closed().await, Some(1000));
    let leave = doctor.recv_type("presence").await;
    assert!(is_the_patient(&leave, "leave"), "{leave}");
    // The stopped room unsubscribed as it went (actix stops an actor whose
    // task unwinds), and node b's subscription stays.
    eventually("node a unsubscribes from the room it lost", || async {
        subscriptions(&cluster.redis, channel).await == 1
    })
    .await;
}

/// How many connections subscribe to a channel of Redis.
async fn subscriptions(redis: &Redis, channel: &str) -> i64 {
    let mut conn = redis.connection().await;
    let (_, count): (String, i64) =
        redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut conn).await.unwrap();
    count
}

#[tokio::test]
async fn a_node_that_stops_moves_its_clients_to_another_with_nothing_lost() {
    let cluster = Cluster::new().await;
    let (a, b) = (cluster.node("node-a").await, cluster.node("node-b").await);
    let (mut patient, mut doctor) = across(&a, &b, "c-move").await;
    patient.chat("c-move", "1", "one").await;
    assert_eq!(next_message(&mut patient).await.0, 1);
    let last_seen = 1;

    let stopping = tokio::spawn(a.stop());
    patient.recv_type("goaway").await;
    assert_eq!(patient.closed().await, Some(1001));
    stopping.await.unwrap();
    let leave = doctor.recv_type("presence").await;
    assert_eq!((&leave["event"], &leave["peer"]["session"]), (&json!("leave"), &json!(patient.session)));

    // While the patient moves, the doctor writes.
    doctor.chat("c-move", "2", "while you moved").await;
    let mut patient = b.patient("c-move").await;
    let joined = patient.join("c-move", Some(last_seen)).await;
    let history: Vec<i64> = joined["history"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(history, vec![2]);
    assert_eq!(joined["history_complete"], true);

    // The stopped node stays listed as dead after the others' heartbeats
    // have swept the list: presence left behind by it reads as dead, not
    // as a node that has not listed itself yet.
    heartbeats(&cluster.redis, "node-b/", 2).await;
    let a_score = listed_score(&cluster.redis, "node-a/").await;
    let now = chrono::Utc::now().timestamp_millis() as f64;
    assert!(a_score.is_some_and(|score| score > 0.0 && score < now), "node a listed as dead: {a_score:?}");
}

#[tokio::test]
async fn the_waiting_room_spans_the_nodes() {
    let cluster = Cluster::new().await;
    let (a, b, c) = (cluster.node("node-a").await, cluster.node("node-b").await, cluster.node("node-c").await);
    for room in ["c-q1", "c-q2"] {
        wr::queued(&a, room, "k1").await;
    }
    // Patients check in on a and on b: one line, one ticket sequence.
    let mut p1 = wr::patient(&a, "c-q1").await;
    let first = wr::check_in(&mut p1, "c-q1").await;
    assert_eq!((&first["ticket"], &first["position"]), (&json!("A-001"), &json!(1)));
    let mut p2 = wr::patient(&b, "c-q2").await;
    let second = wr::check_in(&mut p2, "c-q2").await;
    assert_eq!((&second["ticket"], &second["position"]), (&json!("A-002"), &json!(2)));

    // The doctor watches on c, a display on b: both see the whole line,
    // with both patients online though neither is on their node.
    let mut doctor = wr::doctor(&c).await;
    let seen = wr::watch(&mut doctor, "q-ana").await;
    assert_eq!(wr::tickets(&seen), ["A-001", "A-002"]);
    let online: Vec<&Value> = seen["entries"].as_array().unwrap().iter().map(|e| &e["online"]).collect();
    assert_eq!(online, [&json!(true), &json!(true)], "{seen}");
    let mut display = wr::clinic_client(&b, "display", "k1").await;
    assert_eq!(wr::tickets(&wr::watch(&mut display, "q-ana").await), ["A-001", "A-002"]);
    let (status, body) = c.get("/v1/queues/q-ana?clinic=k1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"].as_array().unwrap().len(), 2, "{body}");

    // The doctor admits the first patient from c: the patient on a is told,
    // the display on b calls the ticket, the second patient moves up.
    doctor.join("c-q1", None).await;
    doctor.send(json!({"type": "admit", "room": "c-q1"})).await;
    assert_eq!(p1.recv_type("admitted").await, json!({"type": "admitted", "room": "c-q1"}));
    let called = display.recv_type("called").await;
    assert_eq!((&called["queue"], &called["ticket"]), (&json!("q-ana"), &json!("A-001")));
    assert_eq!(wr::place(&mut p2, 1).await["ticket"], "A-002");
    assert_eq!(wr::tickets(&wr::state_with(&mut doctor, 1).await), ["A-002"]);
    p1.join("c-q1", None).await;
    assert_eq!(doctor.recv_type("presence").await["peer"]["session"], p1.session.as_str());

    // The second patient's only session, on b, drops: the doctor on c sees
    // them offline (and the grace period starts).
    drop(p2);
    loop {
        let state = doctor.recv_type("queue_state").await;
        if state["entries"][0]["online"] == json!(false) {
            break;
        }
    }
    assert_eq!(c.consultation_status("c-q1").await, "active");

    // A consultation ended on one node: its patient waiting on another,
    // never in the room, hears that it ended.
    wr::queued(&a, "c-q3", "k1").await;
    let mut p3 = wr::patient(&b, "c-q3").await;
    wr::check_in(&mut p3, "c-q3").await;
    let (status, body) = a.post("/v1/consultations/c-q3/end", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(p3.recv_type("ended").await["room"], "c-q3");
}

/// A queue that panics on one node is started again there from storage by
/// its followers on that node, subscribes again, and takes the cluster's
/// changes as before.
#[tokio::test]
async fn a_queue_that_stops_on_one_node_is_followed_again_and_hears_the_others() {
    let cluster = Cluster::new().await;
    let (a, b) = (cluster.node("node-a").await, cluster.node("node-b").await);
    for room in ["c-f1", "c-f2"] {
        wr::queued(&a, room, "k1").await;
    }
    let mut p1 = wr::patient(&a, "c-f1").await;
    assert_eq!(wr::check_in(&mut p1, "c-f1").await["ticket"], "A-001");
    let mut p2 = wr::patient(&b, "c-f2").await;
    assert_eq!(wr::check_in(&mut p2, "c-f2").await["ticket"], "A-002");
    let mut display = wr::clinic_client(&a, "display", "k1").await;
    // Node a's queue hears of the check-in on b through Redis, maybe after
    // the display first sees it.
    let board = wr::watch(&mut display, "q-ana").await;
    if wr::tickets(&board).len() < 2 {
        assert_eq!(wr::tickets(&board), ["A-001"]);
        assert_eq!(wr::tickets(&wr::state_with(&mut display, 2).await), ["A-001", "A-002"]);
    }
    let mut doctor = wr::doctor(&b).await;
    assert_eq!(wr::tickets(&wr::watch(&mut doctor, "q-ana").await), ["A-001", "A-002"]);
    let queue = telehub_actors::QueueId::new(Some("k1"), "q-ana");
    let channel = telehub::broker::channel(telehub_actors::Topic::Queue(&queue));
    assert_eq!(subscriptions(&cluster.redis, &channel).await, 2, "both nodes' queues subscribe");

    assert!(a.rooms.queues().crash(&queue).await);
    // The display and the patient on node a follow the new queue there by
    // themselves; the patient keeps their ticket and place.
    assert_eq!(wr::tickets(&display.recv_type("queue_state").await), ["A-001", "A-002"]);
    let again = p1.recv_type("queue").await;
    assert_eq!((&again["ticket"], &again["position"]), (&json!("A-001"), &json!(1)), "{again}");
    eventually("the new queue on node a subscribes", || async { subscriptions(&cluster.redis, &channel).await == 2 })
        .await;

    // The doctor on node b admits the first patient: the new queue on node
    // a hears it, calls the ticket on its display, and the patient is told.
    doctor.join("c-f1", None).await;
    assert_eq!(doctor.request(json!({"type": "admit", "room": "c-f1"})).await["type"], "ok");
    assert_eq!(p1.recv_type("admitted").await["room"], "c-f1");
    let called = display.recv_type("called").await;
    assert_eq!((&called["queue"], &called["ticket"]), (&json!("q-ana"), &json!("A-001")));
    assert_eq!(wr::tickets(&wr::state_with(&mut display, 1).await), ["A-002"]);
    assert_eq!(wr::place(&mut p2, 1).await["ticket"], "A-002");
}
