//! Real calls through the hub: two webrtc-rs peers, one in the patient's
//! session and one in the doctor's, negotiate over the hub's `signal` relay
//! and exchange bytes on a data channel.
//!
//! `signaling.rs` shows that the hub relays frames unchanged; these tests show
//! that what it relays is enough for a real WebRTC stack to connect:
//! descriptions and trickled candidates in the protocol's shape, and the
//! polite-peer rule of perfect negotiation when both sides offer at once.
//!
//! Everything stays on 127.0.0.1: each peer binds one UDP socket on loopback
//! (so its only host candidate is a loopback one) and multicast DNS is off.
//! The [`Peer`] driver is shared with `turn.rs`, which makes the same call
//! through a real TURN server.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::StreamExt;
use rtc::ice::mdns::MulticastDnsMode;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit,
    RTCIceCandidateType, RTCIceGatheringState, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSdpType, RTCSessionDescription, RTCStatsReportEntry, SettingEngineBuilder,
    StatsSelector,
};

use crate::helpers::*;

/// How a peer is built: the ICE servers it may use and how.
#[derive(Default)]
pub struct PeerConfig {
    pub ice_servers: Vec<RTCIceServer>,
    /// Use relayed candidates only, as a client behind a strict firewall
    /// would have to.
    pub relay_only: bool,
    /// ICE's disconnected and failed timeouts, for tests that wait for a
    /// call to fail and should not wait webrtc-rs's default half minute.
    pub ice_timeouts: Option<(Duration, Duration)>,
}

/// Who speaks first once a peer starts negotiating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// Make an offer before reading anything from the other peer.
    Offer,
    /// Wait for the other peer's offer.
    Listen,
}

/// What the peer connection has gathered locally.
#[derive(Default)]
struct Gathering {
    candidates: Vec<RTCIceCandidateType>,
    complete: bool,
}

/// One side of a call: a webrtc-rs peer connection living in a hub session.
///
/// The peer connection reports through [`Events`]; once started, a
/// [`Negotiator`] task owns the session's WebSocket and carries the
/// signaling. The test waits on what they report, never on the clock.
pub struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    /// The session this peer lives in, for failure messages.
    pub session: String,
    /// Whether this peer yields when offers collide.
    pub polite: bool,
    negotiator: Option<Negotiator>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    states: watch::Receiver<Vec<RTCPeerConnectionState>>,
    gathering: watch::Receiver<Gathering>,
    channels: mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
}

impl Peer {
    /// Builds a peer connection for the session of `client`, calling the
    /// session `other` in `room`. Nothing is signalled before [`Peer::start`].
    pub async fn new(client: Client, other: &str, room: &str, config: PeerConfig) -> Peer {
        let (local_candidates, candidates) = mpsc::unbounded_channel();
        let (states_tx, states) = watch::channel(Vec::new());
        let (gathering_tx, gathering) = watch::channel(Gathering::default());
        let (channels_tx, channels) = mpsc::unbounded_channel();
        let events = Events { local_candidates, states: states_tx, gathering: gathering_tx, channels: channels_tx };

        // Multicast DNS would join a multicast group on the machine's
        // interfaces and query the network for `.local` candidates: off, so
        // that nothing leaves loopback.
        let mut settings = SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled);
        if let Some((disconnected, failed)) = config.ice_timeouts {
            settings = settings.with_ice_timeouts(Some(disconnected), Some(failed), None);
        }
        let policy = if config.relay_only { RTCIceTransportPolicy::Relay } else { RTCIceTransportPolicy::All };
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(config.ice_servers)
            .with_ice_transport_policy(policy)
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_setting_engine(settings.build())
            .with_handler(Arc::new(events))
            // A concrete address is bound as given, loopback included (a
            // wildcard would expand to the machine's other interfaces).
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .expect("a peer connection on loopback");
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let session = client.session.clone();
        let polite = telehub_signaling::is_polite(&session, other);
        let negotiator = Negotiator {
            pc: pc.clone(),
            polite,
            client,
            room: room.to_owned(),
            other: other.to_owned(),
            ignore_offer: false,
            held: Vec::new(),
            candidates,
        };
        Peer { pc, session, polite, negotiator: Some(negotiator), task: None, states, gathering, channels }
    }

    /// Creates a data channel; it opens once the call is up.
    pub async fn channel(&self, label: &str) -> Arc<dyn DataChannel> {
        self.pc.create_data_channel(label, None).await.expect("a data channel")
    }

    /// Starts carrying this peer's signaling over the hub. With
    /// [`First::Offer`] the peer offers before it reads anything, so two
    /// peers that both start that way are sure to collide.
    pub fn start(&mut self, first: First) {
        let negotiator = self.negotiator.take().expect("a peer starts once");
        self.task = Some(tokio::spawn(negotiator.run(first)));
    }

    /// Waits until the call is connected; panics if it fails instead.
    pub async fn connected(&mut self) {
        let states = self.state(RTCPeerConnectionState::Connected).await;
        assert_eq!(states.last(), Some(&RTCPeerConnectionState::Connected), "{} did not connect", self.session);
    }

    /// Waits until the call has failed, and checks that it never connected.
    pub async fn failed(&mut self) {
        let states = self.state(RTCPeerConnectionState::Failed).await;
        assert!(!states.contains(&RTCPeerConnectionState::Connected), "{} connected: {states:?}", self.session);
    }

    /// The connection states so far, once they include `wanted` or `Failed`.
    async fn state(&mut self, wanted: RTCPeerConnectionState) -> Vec<RTCPeerConnectionState> {
        let until =
            self.states.wait_for(|states| states.contains(&wanted) || states.contains(&RTCPeerConnectionState::Failed));
        let what = format!("{} to be {wanted}", self.session);
        watching(self.task.as_mut(), &what, until).await.expect("the peer connection is alive").clone()
    }

    /// Waits until gathering is complete; returns the local candidates' types.
    pub async fn gathered(&mut self) -> Vec<RTCIceCandidateType> {
        let what = format!("{} to finish gathering", self.session);
        let until = self.gathering.wait_for(|gathering| gathering.complete);
        watching(self.task.as_mut(), &what, until).await.expect("the peer connection is alive").candidates.clone()
    }

    /// The next data channel that the other peer opened.
    pub async fn remote_channel(&mut self) -> Arc<dyn DataChannel> {
        let what = format!("a data channel from the other side of {}", self.session);
        watching(self.task.as_mut(), &what, self.channels.recv()).await.expect("the peer connection is alive")
    }

    /// The types of the local and remote candidates of the pair in use.
    pub async fn selected_pair(&self) -> (RTCIceCandidateType, RTCIceCandidateType) {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let pair_id = &report.transport().expect("a transport").selected_candidate_pair_id;
        let Some(RTCStatsReportEntry::IceCandidatePair(pair)) = report.get(pair_id) else {
            panic!("no selected pair {pair_id:?} in {report:?}")
        };
        // webrtc-rs 0.21 names a pair's candidates by their ICE ids, but files
        // each candidate's own entry under a prefixed id.
        let candidate = |prefix: &str, id: &str| match report.get(id).or_else(|| report.get(&format!("{prefix}{id}"))) {
            Some(RTCStatsReportEntry::LocalCandidate(candidate) | RTCStatsReportEntry::RemoteCandidate(candidate)) => {
                candidate.candidate_type
            }
            _ => panic!("no candidate {id:?} in {report:?}"),
        };
        (
            candidate("RTCLocalIceCandidate_", &pair.local_candidate_id),
            candidate("RTCRemoteIceCandidate_", &pair.remote_candidate_id),
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Waits for `until`, for at most [`PATIENCE`], but gives up at once if the
/// negotiation task ends: then nothing more can happen, and its error says why.
async fn watching<T>(
    task: Option<&mut JoinHandle<anyhow::Result<()>>>,
    what: &str,
    until: impl Future<Output = T>,
) -> T {
    let task = task.expect("the peer has not started");
    tokio::select! {
        done = tokio::time::timeout(PATIENCE, until) => done.unwrap_or_else(|_| panic!("timed out waiting for {what}")),
        ended = task => panic!("negotiation ended while waiting for {what}: {ended:?}"),
    }
}

/// The peer connection's event handler. webrtc-rs calls it from the
/// connection's driver task, so it only hands things on.
struct Events {
    /// Local candidates for the negotiator to trickle; an empty candidate
    /// marks the end of gathering.
    local_candidates: mpsc::UnboundedSender<RTCIceCandidateInit>,
    /// Every connection state so far, so that a test can tell that a call
    /// never connected, not just that it is not connected now.
    states: watch::Sender<Vec<RTCPeerConnectionState>>,
    gathering: watch::Sender<Gathering>,
    channels: mpsc::UnboundedSender<Arc<dyn DataChannel>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        self.gathering.send_modify(|gathering| gathering.candidates.push(event.candidate.typ));
        let init = event.candidate.to_json().expect("a gathered candidate serializes");
        let _ = self.local_candidates.send(init);
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathering.send_modify(|gathering| gathering.complete = true);
            let _ = self.local_candidates.send(RTCIceCandidateInit::default());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.states.send_modify(|states| states.push(state));
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.channels.send(channel);
    }
}

/// Carries one peer's signaling over its hub session: sends its descriptions
/// and trickles its candidates, and applies what the other peer sends, with
/// perfect negotiation's rules for colliding offers.
///
/// It handles one thing at a time, so the W3C example's `makingOffer` flag
/// has no window to cover here: a collision always shows as a local offer
/// that is still pending.
struct Negotiator {
    pc: Arc<dyn PeerConnection>,
    client: Client,
    room: String,
    other: String,
    polite: bool,
    /// Set while the impolite peer ignores a colliding offer, so that errors
    /// from that offer's candidates are ignored too.
    ignore_offer: bool,
    /// Remote candidates that came before a remote description to add them to.
    held: Vec<RTCIceCandidateInit>,
    candidates: mpsc::UnboundedReceiver<RTCIceCandidateInit>,
}

impl Negotiator {
    async fn run(mut self, first: First) -> anyhow::Result<()> {
        if first == First::Offer {
            let offer = self.pc.create_offer(None).await?;
            self.pc.set_local_description(offer.clone()).await?;
            self.send_description(&offer).await;
        }
        loop {
            tokio::select! {
                Some(candidate) = self.candidates.recv() => self.send_candidate(candidate).await,
                message = self.client.ws.next() => match message {
                    Some(Ok(Message::Text(text))) => self.on_frame(serde_json::from_str(&text)?).await?,
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(err.into()),
                    None => return Ok(()),
                },
            }
        }
    }

    async fn on_frame(&mut self, frame: Value) -> anyhow::Result<()> {
        match frame["type"].as_str() {
            Some("signal") => {
                anyhow::ensure!(frame["from"] == self.other.as_str(), "a signal from a stranger: {frame}");
                let data = &frame["data"];
                if let Some(description) = data.get("description") {
                    self.on_description(description).await
                } else if let Some(candidate) = data.get("candidate") {
                    self.on_candidate(candidate).await
                } else {
                    anyhow::bail!("unexpected signal {data}")
                }
            }
            Some("error") => anyhow::bail!("the hub refused a signal: {frame}"),
            // Presence, acks and the like are not about the call.
            _ => Ok(()),
        }
    }

    /// Perfect negotiation, as in the W3C example.
    async fn on_description(&mut self, description: &Value) -> anyhow::Result<()> {
        let sdp = description["sdp"].as_str().unwrap_or_default().to_owned();
        let description = match description["type"].as_str() {
            Some("offer") => RTCSessionDescription::offer(sdp)?,
            Some("answer") => RTCSessionDescription::answer(sdp)?,
            other => anyhow::bail!("unexpected description type {other:?}"),
        };
        let offer = description.sdp_type == RTCSdpType::Offer;
        // The signaling state is `stable` exactly when no description is pending.
        let stable =
            self.pc.pending_local_description().await.is_none() && self.pc.pending_remote_description().await.is_none();
        let collision = offer && !stable;
        self.ignore_offer = !self.polite && collision;
        if self.ignore_offer {
            return Ok(());
        }
        if collision {
            // Browsers roll back implicitly inside setRemoteDescription;
            // webrtc-rs refuses a remote offer while a local one is pending,
            // so the polite peer rolls its own offer back first.
            self.pc.set_local_description(RTCSessionDescription::rollback(None)?).await?;
        }
        self.pc.set_remote_description(description).await?;
        for candidate in std::mem::take(&mut self.held) {
            self.pc.add_ice_candidate(candidate).await?;
        }
        if offer {
            let answer = self.pc.create_answer(None).await?;
            self.pc.set_local_description(answer.clone()).await?;
            self.send_description(&answer).await;
        }
        Ok(())
    }

    async fn on_candidate(&mut self, candidate: &Value) -> anyhow::Result<()> {
        let candidate = RTCIceCandidateInit {
            candidate: candidate["candidate"].as_str().unwrap_or_default().to_owned(),
            sdp_mid: candidate["sdp_mid"].as_str().map(str::to_owned),
            sdp_mline_index: candidate["sdp_mline_index"].as_u64().map(|index| index as u16),
            ..RTCIceCandidateInit::default()
        };
        if self.pc.remote_description().await.is_none() {
            self.held.push(candidate);
            return Ok(());
        }
        match self.pc.add_ice_candidate(candidate).await {
            Err(err) if !self.ignore_offer => Err(err.into()),
            _ => Ok(()),
        }
    }

    async fn send_description(&mut self, description: &RTCSessionDescription) {
        let data = json!({"description": {"type": description.sdp_type.to_string(), "sdp": description.sdp}});
        self.signal(data).await;
    }

    async fn send_candidate(&mut self, candidate: RTCIceCandidateInit) {
        let mut sent = json!({"candidate": candidate.candidate});
        // webrtc-rs leaves the mid empty when it does not know it; the index
        // alone names the m-line then, as it would for a browser.
        if let Some(mid) = candidate.sdp_mid.filter(|mid| !mid.is_empty()) {
            sent["sdp_mid"] = json!(mid);
        }
        if let Some(index) = candidate.sdp_mline_index {
            sent["sdp_mline_index"] = json!(index);
        }
        self.signal(json!({"candidate": sent})).await;
    }

    async fn signal(&mut self, data: Value) {
        self.client.send(json!({"type": "signal", "room": self.room, "to": self.other, "data": data})).await;
    }
}

/// Waits until `channel` is open.
pub async fn opened(channel: &Arc<dyn DataChannel>) {
    loop {
        match tokio::time::timeout(PATIENCE, channel.poll()).await.expect("timed out waiting for the channel to open") {
            Some(DataChannelEvent::OnOpen) => return,
            Some(DataChannelEvent::OnClose) | None => panic!("the channel closed before it opened"),
            Some(_) => {}
        }
    }
}

/// Sends `bytes` on `from` and checks that `to`, the other end of the same
/// channel, receives them unchanged. Both ends must be open.
pub async fn carries(from: &Arc<dyn DataChannel>, to: &Arc<dyn DataChannel>, bytes: &[u8]) {
    from.send(BytesMut::from(bytes)).await.expect("sent");
    loop {
        match tokio::time::timeout(PATIENCE, to.poll()).await.expect("timed out waiting for a message") {
            Some(DataChannelEvent::OnMessage(message)) => {
                assert!(!message.is_string, "binary was sent");
                assert_eq!(&message.data[..], bytes, "the bytes arrived changed");
                return;
            }
            Some(DataChannelEvent::OnClose) | None => panic!("the channel closed before the message came"),
            Some(_) => {}
        }
    }
}

/// The patient opened `from_patient` towards `doctor`: once both ends are
/// open, bytes go through it both ways unchanged.
pub async fn both_ways(from_patient: &Arc<dyn DataChannel>, doctor: &mut Peer) {
    let at_doctor = doctor.remote_channel().await;
    opened(from_patient).await;
    opened(&at_doctor).await;
    carries(from_patient, &at_doctor, &payload(1)).await;
    carries(&at_doctor, from_patient, &payload(2)).await;
}

/// Every byte value, then a few in the other order: something a text
/// channel or a careless copy would damage.
pub fn payload(tag: u8) -> Vec<u8> {
    (0..=255u8).chain([tag, 0, 255, tag]).collect()
}

#[tokio::test]
async fn two_peers_connect_through_the_hub_and_exchange_bytes() {
    let app = spawn_app().await;
    let (doctor_client, patient_client) = app.pair("c-rtc1").await;
    let (doctor_session, patient_session) = (doctor_client.session.clone(), patient_client.session.clone());
    let mut patient = Peer::new(patient_client, &doctor_session, "c-rtc1", PeerConfig::default()).await;
    let mut doctor = Peer::new(doctor_client, &patient_session, "c-rtc1", PeerConfig::default()).await;

    let from_patient = patient.channel("consultation").await;
    doctor.start(First::Listen);
    patient.start(First::Offer);
    patient.connected().await;
    doctor.connected().await;
    assert_eq!(doctor.selected_pair().await, (RTCIceCandidateType::Host, RTCIceCandidateType::Host));
    both_ways(&from_patient, &mut doctor).await;
}

#[tokio::test]
async fn glare_resolves_with_the_polite_peer_rule() {
    let app = spawn_app().await;
    let (doctor_client, patient_client) = app.pair("c-rtc2").await;
    let (doctor_session, patient_session) = (doctor_client.session.clone(), patient_client.session.clone());
    let mut patient = Peer::new(patient_client, &doctor_session, "c-rtc2", PeerConfig::default()).await;
    let mut doctor = Peer::new(doctor_client, &patient_session, "c-rtc2", PeerConfig::default()).await;
    assert_ne!(patient.polite, doctor.polite, "exactly one peer yields");

    // Each side opens a channel and offers before reading the other's offer:
    // both offers cross in the hub. The impolite peer's offer must win.
    let from_patient = patient.channel("from-patient").await;
    let from_doctor = doctor.channel("from-doctor").await;
    patient.start(First::Offer);
    doctor.start(First::Offer);
    patient.connected().await;
    doctor.connected().await;
    let (polite, impolite) = if patient.polite { (&patient, &doctor) } else { (&doctor, &patient) };
    let kind = |description: Option<RTCSessionDescription>| description.expect("negotiated").sdp_type;
    assert_eq!(kind(polite.pc.current_local_description().await), RTCSdpType::Answer, "the polite peer answered");
    assert_eq!(kind(impolite.pc.current_local_description().await), RTCSdpType::Offer, "the impolite peer's offer won");

    // Both channels ride on the one association the winning offer set up.
    let at_doctor = doctor.remote_channel().await;
    let at_patient = patient.remote_channel().await;
    for channel in [&from_patient, &from_doctor, &at_doctor, &at_patient] {
        opened(channel).await;
    }
    assert_eq!(at_doctor.label().await.unwrap(), "from-patient");
    assert_eq!(at_patient.label().await.unwrap(), "from-doctor");
    carries(&from_patient, &at_doctor, &payload(1)).await;
    carries(&at_doctor, &from_patient, &payload(2)).await;
    carries(&from_doctor, &at_patient, &payload(3)).await;
    carries(&at_patient, &from_doctor, &payload(4)).await;
}
