//! A relay-only call through a real coturn, with the TURN credentials the hub
//! hands out in `joined`.
//!
//! The unit tests check the credential formula against a value computed by
//! hand; only a real TURN server shows that coturn, configured with
//! `use-auth-secret` and the same secret, accepts what the hub issues, and
//! refuses it once it is altered. coturn runs on loopback in a folder of its
//! own, and the peers use relayed candidates only, so the call cannot succeed
//! any other way.

use std::fs::File;
use std::io::Read;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use telehub::config::Settings;
use webrtc::peer_connection::{RTCIceCandidateType, RTCIceServer};

use crate::helpers::*;
use crate::webrtc::{First, Peer, PeerConfig, both_ways};

/// How many relay ports coturn may hand out: two allocations per test, and
/// room to skip a port that something else took meanwhile.
const RELAY_PORTS: u16 = 16;

/// A coturn `turnserver` on 127.0.0.1, in a temporary folder of its own, with
/// a fresh shared secret. Killed on drop.
pub struct Coturn {
    pub port: u16,
    pub secret: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Coturn {
    /// Starts coturn and waits until it answers a STUN binding request.
    pub async fn start() -> Coturn {
        let dir = tempfile::tempdir().unwrap();
        // The listening port and the relay range are consecutive, below the
        // ephemeral range, where no port handed out by the OS can land.
        let port = free_udp_ports(1 + RELAY_PORTS);
        let secret = format!("{:032x}", rand::random::<u128>());
        let config = dir.path().join("turnserver.conf");
        std::fs::write(
            &config,
            format!(
                "listening-ip=127.0.0.1\n\
                 relay-ip=127.0.0.1\n\
                 listening-port={port}\n\
                 min-port={}\n\
                 max-port={}\n\
                 use-auth-secret\n\
                 static-auth-secret={secret}\n\
                 realm=telehub.test\n\
                 fingerprint\n\
                 no-tcp\n\
                 no-tls\n\
                 no-dtls\n\
                 no-cli\n\
                 no-rfc5780\n\
                 allow-loopback-peers\n\
                 no-multicast-peers\n\
                 log-file=stdout\n\
                 simple-log\n\
                 pidfile={}\n\
                 userdb={}\n",
                port + 1,
                port + RELAY_PORTS,
                dir.path().join("turnserver.pid").display(),
                dir.path().join("turndb").display(),
            ),
        )
        .unwrap();
        let log = File::create(dir.path().join("turnserver.log")).unwrap();
        let child = Command::new("turnserver")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start turnserver, from Debian's coturn ({err}): run scripts/test, which installs it")
            });
        let mut coturn = Coturn { port, secret, child, dir };
        coturn.wait_until_ready().await;
        coturn
    }

    /// Sends STUN binding requests until one is answered. A request or its
    /// answer may be lost while coturn binds its socket, so each try waits a
    /// little for its answer, and the whole wait is bounded by [`PATIENCE`].
    async fn wait_until_ready(&mut self) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut answer = [0u8; 512];
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("turnserver exited with {status}:\n{}", self.log());
            }
            assert!(tokio::time::Instant::now() < deadline, "turnserver did not answer STUN:\n{}", self.log());
            let transaction: [u8; 12] = rand::random();
            socket.send_to(&binding_request(&transaction), ("127.0.0.1", self.port)).await.unwrap();
            let wait = tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut answer)).await;
            if let Ok(Ok((length, _))) = wait
                && is_binding_success(&answer[..length], &transaction)
            {
                return;
            }
        }
    }

    /// Points the hub at this server: one TURN URL and the shared secret.
    pub fn configure(&self, settings: &mut Settings) {
        settings.ice_urls = vec![format!("turn:127.0.0.1:{}?transport=udp", self.port)];
        settings.turn_secret = Some(self.secret.clone());
    }

    fn log(&self) -> String {
        let mut log = String::new();
        let _ = File::open(self.dir.path().join("turnserver.log")).and_then(|mut file| file.read_to_string(&mut log));
        log
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first of `count` consecutive UDP ports that are free on 127.0.0.1.
fn free_udp_ports(count: u16) -> u16 {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let mut rng = rand::rng();
    for _ in 0..100 {
        let first = rng.random_range(10_000..ephemeral - count);
        let free = (first..first + count).all(|port| UdpSocket::bind(("127.0.0.1", port)).is_ok());
        if free {
            return first;
        }
    }
    panic!("no {count} consecutive free UDP ports below {ephemeral}");
}

/// A STUN binding request (RFC 5389): the header alone, with no attributes.
fn binding_request(transaction: &[u8; 12]) -> Vec<u8> {
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(transaction);
    request
}

fn is_binding_success(answer: &[u8], transaction: &[u8; 12]) -> bool {
    answer.len() >= 20 && answer[..2] == [0x01, 0x01] && answer[8..20] == transaction[..]
}

/// The ICE servers of a `joined` frame, as webrtc-rs takes them.
fn ice_servers(joined: &Value) -> Vec<RTCIceServer> {
    let servers = joined["media"]["ice_servers"].as_array().expect("ice servers in joined");
    servers
        .iter()
        .map(|server| RTCIceServer {
            urls: server["urls"].as_array().unwrap().iter().map(|url| url.as_str().unwrap().to_owned()).collect(),
            username: server["username"].as_str().unwrap_or_default().to_owned(),
            credential: server["credential"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// The same servers with every TURN password altered by one character.
fn tampered(mut servers: Vec<RTCIceServer>) -> Vec<RTCIceServer> {
    for server in servers.iter_mut().filter(|server| !server.credential.is_empty()) {
        let first = server.credential.remove(0);
        server.credential.insert(0, if first == 'A' { 'B' } else { 'A' });
    }
    servers
}

/// The doctor and the patient of consultation `room`, each as a relay-only
/// peer built from the ICE servers the hub gave its session in `joined`.
/// `change` may alter those servers first. Returns (doctor, patient).
async fn relay_peers(
    app: &TestApp,
    room: &str,
    change: impl Fn(Vec<RTCIceServer>) -> Vec<RTCIceServer>,
    ice_timeouts: Option<(Duration, Duration)>,
) -> (Peer, Peer) {
    app.consultation(room).await;
    let mut doctor = app.doctor(room).await;
    let doctor_joined = doctor.join(room, None).await;
    let mut patient = app.patient(room).await;
    let patient_joined = patient.join(room, None).await;
    doctor.recv_type("presence").await;

    let config = |joined: &Value| {
        let servers = ice_servers(joined);
        assert_eq!(servers.len(), 1, "one TURN server, no STUN: {joined}");
        PeerConfig { ice_servers: change(servers), relay_only: true, ice_timeouts }
    };
    let (doctor_session, patient_session) = (doctor.session.clone(), patient.session.clone());
    let doctor = Peer::new(doctor, &patient_session, room, config(&doctor_joined)).await;
    let patient = Peer::new(patient, &doctor_session, room, config(&patient_joined)).await;
    (doctor, patient)
}

#[tokio::test]
async fn a_relay_only_call_succeeds_with_the_hubs_credentials() {
    let turn = Coturn::start().await;
    let app = spawn_app_with(|settings| turn.configure(settings)).await;
    let (mut doctor, mut patient) = relay_peers(&app, "c-turn1", |servers| servers, None).await;

    let from_patient = patient.channel("consultation").await;
    doctor.start(First::Listen);
    patient.start(First::Offer);
    patient.connected().await;
    doctor.connected().await;
    for peer in [&mut doctor, &mut patient] {
        let relayed = (RTCIceCandidateType::Relay, RTCIceCandidateType::Relay);
        assert_eq!(peer.selected_pair().await, relayed, "{} used a direct path", peer.session);
        let gathered = peer.gathered().await;
        assert!(!gathered.is_empty(), "{} gathered nothing", peer.session);
        assert!(gathered.iter().all(|kind| *kind == RTCIceCandidateType::Relay), "{}: {gathered:?}", peer.session);
    }

    both_ways(&from_patient, &mut doctor).await;
}

#[tokio::test]
async fn tampered_turn_credentials_fail() {
    let turn = Coturn::start().await;
    let app = spawn_app_with(|settings| turn.configure(settings)).await;
    // ICE gives up after its disconnected and failed timeouts, added up; the
    // defaults would take half a minute.
    let quick = Some((Duration::from_secs(1), Duration::from_secs(2)));
    let (mut doctor, mut patient) = relay_peers(&app, "c-turn2", tampered, quick).await;

    let _from_patient = patient.channel("consultation").await;
    doctor.start(First::Listen);
    patient.start(First::Offer);
    for peer in [&mut doctor, &mut patient] {
        assert_eq!(peer.gathered().await, [], "coturn gave {} an allocation", peer.session);
        peer.failed().await;
    }
}
