//! The consultation scenario: whole consultations, each the way a patient
//! and a doctor go through one, with waiting-room displays watching and,
//! if asked, patients whose connection drops mid-chat.
//!
//! Every consultation and token is of one clinic (`--clinic`). Consultation
//! N gets doctor `d-N`, or with `--doctors M` one of M doctors (d-(N mod M)
//! counted from `--room-offset`), and that doctor's queue, so that queues
//! hold several patients. For every consultation, started evenly over
//! `--ramp`:
//! 1. the patient connects and checks in to the waiting room (`queue`);
//! 2. the doctor connects and admits them (`admitted` reaches the patient);
//! 3. both join the room;
//! 4. they negotiate a call through the hub's relay: the impolite side (the
//!    larger session id) sends a real audio and video offer, the other
//!    answers, and each trickles `--candidates` ICE candidates;
//! 5. they chat: `--messages` rounds in which the patient, then the doctor,
//!    says it is typing, sends a message and, once the other has it, the
//!    other sends a read receipt; `--interval` apart;
//! 6. the doctor ends the consultation and both hear `ended`.
//!
//! Reconnects (`--reconnect-share F`): an evenly spread share F of the
//! consultations (consultation i of the run when `floor((i+1)F) >
//! floor(iF)`: every one for 1, every second for 0.5) drops its patient's
//! connection after half of the chat rounds, without a close frame (the
//! socket is simply dropped, so the hub sees the TCP connection end).
//! While the patient is away the doctor sends a message; then the patient
//! connects afresh (to the doctor's node, so in
//! a cluster the replay crosses nodes) and joins with `since` = the highest
//! seq it had seen. The `joined` history must bring that message and every
//! other one it missed, through the same [`SeqCheck`] as live messages, or
//! the consultation fails at `replay`; then the chat goes on. With
//! `--storm-at T` every chosen patient drops at time T of the run instead,
//! all at once: one that reaches its halfway point earlier waits there
//! (both sides keep reading, so pings are answered); one that was not yet
//! that far into its chat at T (still connecting, in the waiting room, or
//! in its first rounds) drops as soon as it gets there, and counts as late
//! for the storm (`storm_late`).
//!
//! Displays (`--displays N`): N sessions of role `display` watch the queues
//! (round-robin over the queues of the run, in room order) from before the
//! first consultation starts until the last one is over. Each checks that
//! every `queue_state` entry it gets is anonymised (no room, no patient),
//! and that every patient admitted in its queue is `called` exactly once.
//! After the consultations, a display waits up to `--step-timeout` for
//! calls still missing; a duplicate that would come after that is not seen.
//!
//! Every step's latency goes into an HDR histogram (check-in and admit
//! from the request to the patient's reply, join, each relayed signal from
//! send to arrival, each message from send to the other side and to its
//! ack, end to both `ended`; `rejoin` from the start of reconnecting to
//! `joined`, `called` from the doctor's admit to each display's `called`).
//! Every `message` goes through the receiving side's [`SeqCheck`]; a
//! consultation that lost, duplicated or reordered a message, or did not
//! get through its steps (reconnect and replay included), and a display
//! that failed, saw a name or missed or doubled a call, fail the run.
//!
//! The report (printed, `--json`, and with `--html` a page with plots, see
//! `html`) has every kind's summary and its distribution by percentile,
//! and a [`Timeline`] of the run: consultations started, completed and
//! failed, messages delivered to the other side, signals relayed and
//! reconnects per second, and the connections open (patients, doctors
//! and displays) at the end of each second.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use telehub_signaling::{
    Candidate, ClientFrame, Description, DescriptionKind, HistoryItem, ServerFrame, SignalData, is_polite,
};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::api::{RoomSetup, Staffing, create_staffed_rooms, display_tokens};
use crate::cli::ConsultArgs;
use crate::client::{Endpoint, Ws, check_open_files, close_reason, connect, resend_delay, send};
use crate::stats::{Summary, bump, counts_line, distribution, histogram, micros_at, record, write_json};
use crate::timeline::{ConsultTimelineReport, Event, Timeline};
use crate::verify::SeqCheck;

/// Latency histograms of every kind, shared by the consultations.
#[derive(Default)]
struct Latencies {
    kinds: Mutex<BTreeMap<&'static str, Histogram<u64>>>,
}

impl Latencies {
    fn record(&self, kind: &'static str, since: Instant) {
        self.record_span(kind, since, Instant::now());
    }

    fn record_span(&self, kind: &'static str, from: Instant, to: Instant) {
        let micros = u64::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX);
        let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        record(kinds.entry(kind).or_insert_with(histogram), micros);
    }

    fn summaries(&self) -> BTreeMap<&'static str, Summary> {
        let kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        kinds.iter().map(|(kind, h)| (*kind, Summary::of(h))).collect()
    }

    /// Every kind's latency by percentile, as in the chat report.
    fn distributions(&self) -> BTreeMap<&'static str, Vec<(f64, f64)>> {
        let kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        kinds.iter().map(|(kind, h)| (*kind, distribution(std::slice::from_ref(h)))).collect()
    }
}

/// A connection on the run's timeline: counted opened when made, and
/// closed once, when closed or dropped (a failed step drops its sides
/// without closing them).
struct Open(Option<Arc<Timeline>>);

impl Open {
    fn new(timeline: &Arc<Timeline>) -> Open {
        timeline.now(Event::Opened);
        Open(Some(Arc::clone(timeline)))
    }

    fn close(&mut self) {
        if let Some(timeline) = self.0.take() {
            timeline.now(Event::Closed);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.close();
    }
}

/// One side of a consultation: its socket, and what it saw.
struct Side {
    ws: Ws,
    session: String,
    open: Open,
    /// How long one step may wait for the hub.
    patience: Duration,
    check: SeqCheck,
    errors: BTreeMap<String, u64>,
    typing: u64,
    reads: u64,
}

impl Side {
    async fn connect(
        endpoint: &Endpoint,
        token: &str,
        source: Option<IpAddr>,
        patience: Duration,
        connect_timeout: Duration,
        timeline: &Arc<Timeline>,
    ) -> Result<Side, String> {
        let (ws, session) = connect_within("connect", endpoint, token, source, connect_timeout).await?;
        let open = Open::new(timeline);
        Ok(Side { ws, session, open, patience, check: SeqCheck::new(0), errors: BTreeMap::new(), typing: 0, reads: 0 })
    }

    /// Closes the connection, waiting a second at most for the close
    /// handshake.
    async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
        self.open.close();
    }

    /// Drops the socket without a WebSocket close frame; what the side saw
    /// is kept. The hub sees the TCP connection end with no close
    /// handshake. (A phone that loses its network sends nothing at all,
    /// which the hub notices only by its heartbeat; that is not simulated.)
    fn hang_up(self) -> Away {
        let Side { ws, session: _, open, patience, check, errors, typing, reads } = self;
        drop(ws);
        drop(open);
        Away { patience, check, errors, typing, reads }
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), String> {
        send(&mut self.ws, frame).await.map_err(|err| format!("send: {err:#}"))
    }

    /// Reads until `want` takes a frame, accounting for every frame on the
    /// way. An error that answers `reference` fails the step, and so does
    /// waiting longer than the side's patience.
    async fn until<T>(
        &mut self,
        step: &str,
        reference: Option<&str>,
        want: impl FnMut(&ServerFrame) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + self.patience;
        let found = self.until_by(step, reference, deadline, want).await?;
        found.ok_or_else(|| format!("{step}: nothing within {:?}", self.patience))
    }

    /// [`Side::until`] with a deadline of its own: `None` when it passes
    /// first.
    async fn until_by<T>(
        &mut self,
        step: &str,
        reference: Option<&str>,
        deadline: tokio::time::Instant,
        mut want: impl FnMut(&ServerFrame) -> Option<T>,
    ) -> Result<Option<T>, String> {
        loop {
            let Ok(message) = tokio::time::timeout_at(deadline, self.ws.next()).await else {
                return Ok(None);
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!("{step}: closed {}", close_reason(frame.as_ref())));
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(format!("{step}: {err}")),
                None => return Err(format!("{step}: connection closed")),
            };
            let frame: ServerFrame = match serde_json::from_str(text.as_str()) {
                Ok(frame) => frame,
                Err(_) => {
                    bump(&mut self.errors, "unparsable frame", 1);
                    continue;
                }
            };
            match &frame {
                ServerFrame::Message(message) => {
                    self.check.observe(message.seq);
                }
                ServerFrame::Typing { .. } => self.typing += 1,
                ServerFrame::Read { .. } => self.reads += 1,
                _ => {}
            }
            // An error that `want` takes is the caller's to count.
            if let Some(found) = want(&frame) {
                return Ok(Some(found));
            }
            if let ServerFrame::Error { reference: r, code, message, .. } = &frame {
                bump(&mut self.errors, code.as_str(), 1);
                if reference.is_some() && r.as_deref() == reference {
                    return Err(format!("{step}: {} {message}", code.as_str()));
                }
            }
        }
    }
}

/// A side whose connection is gone: what it saw, until it reconnects.
struct Away {
    patience: Duration,
    check: SeqCheck,
    errors: BTreeMap<String, u64>,
    typing: u64,
    reads: u64,
}

impl Away {
    /// Connects afresh (without joining yet).
    async fn reconnect(
        self,
        endpoint: &Endpoint,
        token: &str,
        source: Option<IpAddr>,
        connect_timeout: Duration,
        timeline: &Arc<Timeline>,
    ) -> Result<Side, String> {
        let (ws, session) = connect_within("reconnect", endpoint, token, source, connect_timeout).await?;
        let open = Open::new(timeline);
        let Away { patience, check, errors, typing, reads } = self;
        Ok(Side { ws, session, open, patience, check, errors, typing, reads })
    }
}

/// Connects and waits for `welcome`, for `connect_timeout` at most; the
/// error names the step.
async fn connect_within(
    step: &str,
    endpoint: &Endpoint,
    token: &str,
    source: Option<IpAddr>,
    connect_timeout: Duration,
) -> Result<(Ws, String), String> {
    tokio::time::timeout(connect_timeout, connect(endpoint, token, source))
        .await
        .map_err(|_| format!("{step}: no welcome within {connect_timeout:?}"))?
        .map_err(|err| format!("{step}: {err:#}"))
}

/// What one consultation came to.
#[derive(Default)]
struct Outcome {
    failure: Option<String>,
    sides: Vec<Side>,
    /// The highest seq acknowledged in the room.
    highest: i64,
    messages: u64,
    /// The patient dropped and rejoined.
    reconnected: bool,
    /// Its reconnect came after `--storm-at`, not in the storm: the
    /// consultation was not yet halfway into its chat then.
    storm_late: bool,
    /// Messages the patient got from the rejoin's history.
    replayed: u64,
    /// Refusals of chat answered by sending the message again, by code.
    resent: BTreeMap<String, u64>,
}

/// What the consultations and displays of a run share.
struct Run {
    args: ConsultArgs,
    endpoints: Vec<Endpoint>,
    lat: Latencies,
    /// Consultations, deliveries, signals and connections per second.
    timeline: Arc<Timeline>,
    /// When the first consultation could start: the ramp and the storm
    /// count from here.
    started: Instant,
    /// Every patient the hub confirmed admitted, for the displays to hear
    /// called.
    admissions: Mutex<Vec<Admission>>,
}

/// A patient the doctor admitted: the ticket, and when the doctor asked.
#[derive(Debug, Clone)]
struct Admission {
    queue: String,
    ticket: String,
    asked: Instant,
}

/// Whether consultation `i` (0-based in the run) loses its patient's
/// connection: an evenly spread `share` of them.
fn drops(i: usize, share: f64) -> bool {
    ((i + 1) as f64 * share).floor() > (i as f64 * share).floor()
}

/// A plausible browser offer: audio and video, bundled, with real codecs.
fn sdp(kind: DescriptionKind, session: &str) -> String {
    let setup = if kind == DescriptionKind::Offer { "actpass" } else { "active" };
    let id: u64 = session.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) >> 1;
    let mut sdp = format!(
        "v=0\r\no=- {id} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\n\
         a=msid-semantic: WMS stream-{id}\r\n"
    );
    let media = [
        (
            "audio",
            "111 63 9 0 8 13 110 126",
            "a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n\
          a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
          a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\n\
          a=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n",
        ),
        (
            "video",
            "96 97 102 103 104 105 106 107 108 109",
            "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\n\
          a=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n\
          a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\na=rtcp-fb:102 goog-remb\r\n\
          a=rtcp-fb:102 transport-cc\r\na=rtcp-fb:102 ccm fir\r\na=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\n\
          a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
          a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=rtpmap:104 H264/90000\r\n\
          a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
          a=rtpmap:105 rtx/90000\r\na=fmtp:105 apt=104\r\na=rtpmap:106 VP9/90000\r\na=fmtp:106 profile-id=0\r\n\
          a=rtpmap:107 rtx/90000\r\na=fmtp:107 apt=106\r\na=rtpmap:108 red/90000\r\na=rtpmap:109 ulpfec/90000\r\n",
        ),
    ];
    for (mid, (kind, payloads, codecs)) in media.iter().enumerate() {
        sdp.push_str(&format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF {payloads}\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:u{id:x}\r\na=ice-pwd:p{id:x}0123456789abcdef\r\na=ice-options:trickle\r\n\
             a=fingerprint:sha-256 4A:5F:21:0C:93:7E:B2:18:55:C0:6D:AA:3B:91:E4:07:F2:68:1D:C5:39:8E:B0:74:\
             13:A6:CF:52:E9:0B:86:DD\r\na=setup:{setup}\r\na=mid:{mid}\r\n\
             a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
             a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
             a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
             a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\n\
             a=msid:stream-{id} track-{kind}-{id}\r\na=rtcp-mux\r\na=rtcp-rsize\r\n{codecs}\
             a=ssrc:{ssrc} cname:c{id:x}\r\na=ssrc:{ssrc} msid:stream-{id} track-{kind}-{id}\r\n",
            ssrc = 1000 + mid as u64 * 7919 + (id % 100_000),
        ));
    }
    sdp
}

/// The `i`th host candidate of a side.
fn candidate(session: &str, i: usize) -> Candidate {
    let port = 50_000 + (i * 7) % 10_000;
    let priority = 2_122_260_223u64 - i as u64 * 256;
    Candidate {
        candidate: format!("candidate:{i} 1 udp {priority} 192.168.{}.{} {port} typ host generation 0", i % 4, 10 + i),
        sdp_mid: Some((i % 2).to_string()),
        sdp_mline_index: Some((i % 2) as u16),
        username_fragment: Some(format!("u{}", session.len())),
    }
}

fn signal(room: &str, to: &str, data: SignalData) -> ClientFrame {
    ClientFrame::Signal { reference: None, room: room.to_owned(), to: to.to_owned(), data }
}

/// Waits for a signal from `from` that `accept` takes, and records its
/// latency since `sent`.
async fn relayed(
    side: &mut Side,
    from: &str,
    accept: impl Fn(&SignalData) -> bool,
    run: &Run,
    sent: Instant,
) -> Result<(), String> {
    side.until("signal", None, |f| match f {
        ServerFrame::Signal { from: f, data, .. } if f == from && accept(data) => Some(()),
        _ => None,
    })
    .await?;
    run.lat.record("signal", sent);
    run.timeline.now(Event::Signaled);
    Ok(())
}

/// Runs consultation `i` of the run through every step.
async fn consultation(i: usize, setup: RoomSetup, run: Arc<Run>) -> Outcome {
    let mut outcome = Outcome::default();
    run.timeline.now(Event::Started);
    match steps(i, &setup, &run, &mut outcome).await {
        Ok(()) => run.timeline.now(Event::Completed),
        Err(err) => {
            run.timeline.now(Event::Failed);
            outcome.failure = Some(err);
        }
    }
    for side in &mut outcome.sides {
        side.close().await;
    }
    outcome
}

async fn steps(i: usize, setup: &RoomSetup, run: &Run, outcome: &mut Outcome) -> Result<(), String> {
    let (args, lat, endpoints) = (&run.args, &run.lat, &run.endpoints);
    let room = setup.room.as_str();
    let source = args.target.source_addrs.get(setup.number % args.target.source_addrs.len().max(1)).copied();
    // Round-robin over the nodes as in the chat scenario: with two, every
    // patient is on the first and every doctor on the second.
    let node = |k: usize| &endpoints[(2 * setup.number + k) % endpoints.len()];
    let timeline = &run.timeline;
    let wait = args.target.connect_timeout;
    let mut patient = Side::connect(node(0), &setup.patient_token, source, args.step_timeout, wait, timeline).await?;
    let mut doctor = Side::connect(node(1), &setup.doctor_token, source, args.step_timeout, wait, timeline).await?;

    // 1. Check in.
    let t = Instant::now();
    patient.send(&ClientFrame::Checkin { reference: Some("c".into()), room: room.into() }).await?;
    let (queue, ticket) = patient
        .until("checkin", Some("c"), |f| match f {
            ServerFrame::Queue { queue, ticket, .. } => Some((queue.clone(), ticket.clone())),
            _ => None,
        })
        .await?;
    lat.record("checkin", t);

    // 2. Admit.
    let t = Instant::now();
    doctor
        .send(&ClientFrame::Admit { reference: Some("a".into()), room: room.into(), override_payment: false })
        .await?;
    doctor.until("admit", Some("a"), |f| matches!(f, ServerFrame::Ok { .. }).then_some(())).await?;
    run.admissions.lock().unwrap_or_else(PoisonError::into_inner).push(Admission { queue, ticket, asked: t });
    patient.until("admitted", None, |f| matches!(f, ServerFrame::Admitted { .. }).then_some(())).await?;
    lat.record("admit", t);

    // 3. Both join.
    for side in [&mut patient, &mut doctor] {
        let t = Instant::now();
        side.send(&ClientFrame::Join { reference: Some("j".into()), room: room.into(), since: None }).await?;
        let seq = side
            .until("join", Some("j"), |f| match f {
                ServerFrame::Joined { seq, .. } => Some(*seq),
                _ => None,
            })
            .await?;
        side.check = SeqCheck::new(seq);
        lat.record("join", t);
    }

    // 4. The call's negotiation: the impolite side offers.
    let (offerer, answerer) = if is_polite(&patient.session, &doctor.session) {
        (&mut doctor, &mut patient)
    } else {
        (&mut patient, &mut doctor)
    };
    let description = |kind, session: &str| SignalData {
        description: Some(Description { kind, sdp: Some(sdp(kind, session)) }),
        ..SignalData::default()
    };
    let t = Instant::now();
    let (to, from) = (answerer.session.clone(), offerer.session.clone());
    offerer.send(&signal(room, &to, description(DescriptionKind::Offer, &from))).await?;
    relayed(answerer, &from, |d| d.description.is_some(), run, t).await?;
    let t = Instant::now();
    answerer.send(&signal(room, &from, description(DescriptionKind::Answer, &to))).await?;
    relayed(offerer, &to, |d| d.description.is_some(), run, t).await?;
    for turn in 0..2 {
        let (sender, receiver) =
            if turn == 0 { (&mut *offerer, &mut *answerer) } else { (&mut *answerer, &mut *offerer) };
        let mut sent = Vec::with_capacity(args.candidates);
        let (from, to) = (sender.session.clone(), receiver.session.clone());
        for i in 0..args.candidates {
            sent.push(Instant::now());
            let data = SignalData { candidate: Some(candidate(&from, i)), ..SignalData::default() };
            sender.send(&signal(room, &to, data)).await?;
        }
        for t in sent {
            relayed(receiver, &from, |d| d.candidate.is_some(), run, t).await?;
        }
    }

    // 5. Chat with typing and read receipts; a chosen patient drops and
    // rejoins halfway.
    let rejoin_at = drops(i, args.reconnect_share).then_some(args.messages / 2);
    let rejoin_node = node(1);
    let mut pace = tokio::time::interval(args.interval);
    for round in 0..args.messages {
        if rejoin_at == Some(round) {
            patient = rejoin(patient, &mut doctor, setup, rejoin_node, source, run, outcome).await?;
            // After a wait for the storm, go on at the usual pace rather
            // than catch up in a burst.
            pace.reset();
        }
        for n in 0..2 {
            let (sender, receiver) = if n == 0 { (&mut patient, &mut doctor) } else { (&mut doctor, &mut patient) };
            pace.tick().await;
            let active = ClientFrame::Typing { reference: None, room: room.into(), active: true };
            sender.send(&active).await?;
            let client_id = format!("{}-{round}-{n}", sender.session);
            let reference = format!("m{round}-{n}");
            let t = Instant::now();
            let text = format!("t={} round {round}: how are you feeling today?", micros_at(t));
            let chat = ClientFrame::Chat {
                reference: Some(reference.clone()),
                room: room.into(),
                client_id: client_id.clone(),
                text,
            };
            sender.send(&chat).await?;
            outcome.messages += 1;
            // Both sides are read at once, so that each frame is timed when
            // it arrives: the delivery may come before the ack.
            let acked = async {
                let mut resent = Vec::new();
                let seq = loop {
                    let answer = sender
                        .until("ack", None, |f| match f {
                            ServerFrame::Ack { reference: Some(r), seq, .. } if *r == reference => Some(Ok(*seq)),
                            ServerFrame::Error { reference: Some(r), code, message, retry_ms, .. }
                                if *r == reference =>
                            {
                                Some(Err((*code, message.clone(), *retry_ms)))
                            }
                            _ => None,
                        })
                        .await?;
                    match answer {
                        Ok(seq) => break seq,
                        // Refused for now: the same frame again, after the
                        // wait the refusal asks for.
                        Err((code, _, retry_ms))
                            if resent.len() < args.resends as usize
                                && let Some(wait) = resend_delay(code, retry_ms, resent.len() as u32) =>
                        {
                            resent.push(code);
                            tokio::time::sleep(wait).await;
                            sender.send(&chat).await?;
                        }
                        Err((code, message, _)) => {
                            bump(&mut sender.errors, code.as_str(), 1);
                            return Err(format!("ack: {} {message}", code.as_str()));
                        }
                    }
                };
                Ok::<_, String>((seq, Instant::now(), resent))
            };
            let delivered = async {
                let seq = receiver
                    .until("delivery", None, |f| match f {
                        ServerFrame::Message(m) if m.client_id.as_deref() == Some(client_id.as_str()) => Some(m.seq),
                        _ => None,
                    })
                    .await?;
                Ok::<_, String>((seq, Instant::now()))
            };
            let (acked, delivered) = tokio::join!(acked, delivered);
            let ((seq, acked_at, resent), (delivered_seq, now)) = (acked?, delivered?);
            for code in resent {
                bump(&mut outcome.resent, code.as_str(), 1);
            }
            if delivered_seq != seq {
                return Err(format!("delivery: {client_id} was acked as seq {seq} and delivered as {delivered_seq}"));
            }
            lat.record_span("ack", t, acked_at);
            outcome.highest = outcome.highest.max(seq);
            lat.record_span("delivery", t, now);
            let took = u64::try_from(now.saturating_duration_since(t).as_micros()).unwrap_or(u64::MAX);
            timeline.delivered(micros_at(now), took);
            receiver.send(&ClientFrame::Read { reference: None, room: room.into(), seq }).await?;
        }
    }
    // Without chat rounds, halfway is the end.
    if rejoin_at == Some(args.messages) {
        patient = rejoin(patient, &mut doctor, setup, rejoin_node, source, run, outcome).await?;
    } else if args.messages > 0 {
        // The doctor sees that the patient has read the last message before
        // ending it. A receipt that never comes is counted, not waited for.
        let last = outcome.highest;
        let deadline = tokio::time::Instant::now() + doctor.patience;
        doctor
            .until_by("read", None, deadline, |f| {
                matches!(f, ServerFrame::Read { seq, .. } if *seq >= last).then_some(())
            })
            .await?;
    }

    // 6. The doctor ends it.
    let t = Instant::now();
    doctor.send(&ClientFrame::End { reference: Some("e".into()), room: room.into() }).await?;
    for side in [&mut doctor, &mut patient] {
        side.until("end", Some("e"), |f| matches!(f, ServerFrame::Ended { .. }).then_some(())).await?;
    }
    lat.record("end", t);
    outcome.sides = vec![patient, doctor];
    Ok(())
}

/// The patient drops its connection (at the storm, with `--storm-at`), the
/// doctor says something meanwhile, and the patient reconnects to
/// `endpoint` and rejoins with `since`: the history must bring what it
/// missed. Returns the patient on its new connection.
async fn rejoin(
    mut patient: Side,
    doctor: &mut Side,
    setup: &RoomSetup,
    endpoint: &Endpoint,
    source: Option<IpAddr>,
    run: &Run,
    outcome: &mut Outcome,
) -> Result<Side, String> {
    let room = setup.room.as_str();
    if let Some(at) = run.args.storm_at {
        let storm = tokio::time::Instant::from_std(run.started + at);
        if tokio::time::Instant::now() < storm {
            // Both keep reading meanwhile, so the hub's pings are answered.
            let (p, d) = tokio::join!(
                patient.until_by("storm", None, storm, |_| None::<()>),
                doctor.until_by("storm", None, storm, |_| None::<()>)
            );
            p?;
            d?;
        } else {
            outcome.storm_late = true;
        }
    }
    let since = patient.check.highest();
    let away = patient.hang_up();

    // While the patient is away: a message it can only get by replay.
    let reference = "away";
    let t = Instant::now();
    let text = format!("t={} while you were away: the results are in", micros_at(t));
    let client_id = format!("{}-away", doctor.session);
    doctor.send(&ClientFrame::Chat { reference: Some(reference.into()), room: room.into(), client_id, text }).await?;
    outcome.messages += 1;
    let missed = doctor
        .until("ack", Some(reference), |f| match f {
            ServerFrame::Ack { reference: Some(r), seq, .. } if r == reference => Some(*seq),
            _ => None,
        })
        .await?;
    run.lat.record("ack", t);
    outcome.highest = outcome.highest.max(missed);

    let t = Instant::now();
    let mut patient =
        away.reconnect(endpoint, &setup.patient_token, source, run.args.target.connect_timeout, &run.timeline).await?;
    patient.send(&ClientFrame::Join { reference: Some("r".into()), room: room.into(), since: Some(since) }).await?;
    let (history, complete) = patient
        .until("rejoin", Some("r"), |f| match f {
            ServerFrame::Joined { history, history_complete, .. } => Some((history.clone(), *history_complete)),
            _ => None,
        })
        .await?;
    run.lat.record("rejoin", t);
    for HistoryItem::Message(message) in &history {
        patient.check.observe(message.seq);
        outcome.replayed += 1;
    }
    if !patient.check.complete_through(missed) {
        let more = if complete { "" } else { " (history_complete false)" };
        return Err(format!("replay: the rejoin after seq {since} did not bring everything up to {missed}{more}"));
    }
    outcome.reconnected = true;
    run.timeline.now(Event::Reconnected);
    Ok(patient)
}

/// One waiting-room display: what it saw of its queue.
#[derive(Default)]
struct Board {
    queue: String,
    failure: Option<String>,
    /// Every `called` of its queue: the ticket and when it came.
    called: Vec<(String, Instant)>,
    /// `queue_state` frames of its queue.
    updates: u64,
    /// Entries that showed a room or a patient.
    leaked: u64,
}

impl Board {
    fn take(&mut self, frame: &ServerFrame) {
        match frame {
            ServerFrame::QueueState { queue, entries, .. } if *queue == self.queue => {
                self.updates += 1;
                self.leaked += entries.iter().filter(|e| e.room.is_some() || e.patient.is_some()).count() as u64;
            }
            ServerFrame::Called { queue, ticket, .. } if *queue == self.queue => {
                self.called.push((ticket.clone(), Instant::now()));
            }
            _ => {}
        }
    }
}

/// Connects a display and has it watch `queue`.
async fn watch_queue(
    endpoint: &Endpoint,
    token: &str,
    source: Option<IpAddr>,
    queue: &str,
    patience: Duration,
    connect_timeout: Duration,
    timeline: &Arc<Timeline>,
) -> (Option<Side>, Board) {
    let mut board = Board { queue: queue.to_owned(), ..Board::default() };
    let watching = async {
        let mut side = Side::connect(endpoint, token, source, patience, connect_timeout, timeline).await?;
        side.send(&ClientFrame::Watch { reference: Some("w".into()), queue: queue.to_owned() }).await?;
        side.until("watch", Some("w"), |f| {
            board.take(f);
            matches!(f, ServerFrame::QueueState { reference: Some(r), .. } if r == "w").then_some(())
        })
        .await?;
        Ok::<_, String>(side)
    };
    match watching.await {
        Ok(side) => (Some(side), board),
        Err(err) => {
            board.failure = Some(err);
            (None, board)
        }
    }
}

/// Keeps a display reading until the consultations are `done`, then until
/// every admission of its queue has been called (or the step timeout).
async fn keep_watching(mut side: Side, mut board: Board, run: Arc<Run>, mut done: watch::Receiver<bool>) -> Board {
    let result = async {
        loop {
            let deadline = tokio::time::Instant::now() + run.args.step_timeout;
            tokio::select! {
                read = side.until_by("display", None, deadline, |f| {
                    board.take(f);
                    None::<()>
                }) => { read?; }
                _ = done.wait_for(|done| *done) => break,
            }
        }
        let expected: Vec<String> = {
            let admissions = run.admissions.lock().unwrap_or_else(PoisonError::into_inner);
            let mut admitted: HashMap<&str, HashMap<&str, &Admission>> = HashMap::new();
            for admission in admissions.iter() {
                admitted.entry(&admission.queue).or_default().insert(&admission.ticket, admission);
            }
            admissions.iter().filter(|a| a.queue == board.queue).map(|a| a.ticket.clone()).collect()
        };
        let all_called = |board: &Board| expected.iter().all(|t| board.called.iter().any(|(c, _)| c == t));
        if !all_called(&board) {
            let deadline = tokio::time::Instant::now() + run.args.step_timeout;
            side.until_by("called", None, deadline, |f| {
                board.take(f);
                all_called(&board).then_some(())
            })
            .await?;
        }
        Ok::<_, String>(())
    }
    .await;
    if let Err(err) = result {
        board.failure = Some(err);
    }
    side.close().await;
    board
}

/// The key under which a failed consultation is counted: its step and,
/// when the hub refused it, the error code (`join: forbidden`), without the
/// message, which names rooms and sessions.
fn failure_key(reason: &str) -> String {
    match reason.split_once(':') {
        Some((step, rest)) => match rest.split_whitespace().next() {
            Some(code) if serde_json::from_value::<telehub_signaling::ErrorCode>(code.into()).is_ok() => {
                format!("{step}: {code}")
            }
            _ => step.to_owned(),
        },
        None => reason.to_owned(),
    }
}

/// The consultation report, as written to `--json`.
#[derive(Debug, Serialize)]
pub struct ConsultReport {
    pub scenario: serde_json::Value,
    pub consultations: usize,
    pub completed: usize,
    pub failed: usize,
    /// Why consultations failed, by step and reason.
    pub failures: BTreeMap<String, u64>,
    /// Per kind: checkin, admit, join, signal, ack, delivery, end, and
    /// rejoin and called when there were reconnects and displays.
    pub latency_ms: BTreeMap<&'static str, Summary>,
    /// The same kinds by percentile, `[percentile, ms]` pairs, for plotting.
    pub distribution_ms: BTreeMap<&'static str, Vec<(f64, f64)>>,
    pub messages: u64,
    /// Live deliveries (to the other side) per second over the whole run.
    pub delivered_per_s: f64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// `error` frames received, by code, but for the refusals answered by
    /// sending the message again (`resent`).
    pub errors: BTreeMap<String, u64>,
    /// Refusals of chat (`unavailable`, `rate_limited`) answered by sending
    /// the same message again, by code.
    pub resent: BTreeMap<String, u64>,
    /// `typing` and `read` frames seen by the other side.
    pub typing_seen: u64,
    /// Typing indicators a side that stayed connected never saw: one is
    /// sent before every message.
    pub typing_missing: u64,
    pub reads_seen: u64,
    /// Read receipts a side that stayed connected never saw: the other side
    /// reads every message it is delivered.
    pub reads_missing: u64,
    /// Patients that dropped their connection and rejoined with `since`.
    pub reconnects: u64,
    /// Messages those rejoins brought in their history.
    pub replayed: u64,
    /// Reconnects after `--storm-at` rather than in the storm, of
    /// consultations not yet halfway into their chat at that time.
    pub storm_late: u64,
    /// Displays that watched their queue to the end.
    pub displays: usize,
    /// Displays that could not connect, watch or stay connected, by step.
    pub display_failures: BTreeMap<String, u64>,
    /// `queue_state` frames the displays got.
    pub queue_states: u64,
    /// Entries of those that showed a room or a patient to a display.
    pub leaked_entries: u64,
    /// Admitted patients `called` on the displays of their queue (once per
    /// display), and those a display never heard or heard more than once.
    pub called: u64,
    pub called_missing: u64,
    pub called_duplicated: u64,
    /// `called` of tickets the run did not see admitted (not a failure:
    /// another process may share the queue).
    pub called_unexpected: u64,
    pub elapsed_s: f64,
    /// Consultations, deliveries, signals, reconnects and connections per
    /// second of the whole run.
    pub timeline: ConsultTimelineReport,
    /// Every consultation went through (reconnects included), nothing was
    /// lost, duplicated or reordered, and every display stayed up, saw
    /// tickets only, and heard each admitted patient called once.
    pub clean: bool,
}

impl ConsultReport {
    pub fn print(&self) {
        println!();
        println!(
            "consultations: {} completed, {} failed of {} in {:.1} s",
            self.completed, self.failed, self.consultations, self.elapsed_s
        );
        if !self.failures.is_empty() {
            println!("failures: {}", counts_line(&self.failures));
        }
        println!();
        println!("{:>10} {:>9} {:>9} {:>9} {:>9} {:>9}", "latency", "count", "p50", "p90", "p99", "max");
        for (kind, s) in &self.latency_ms {
            println!("{kind:>10} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2}", s.count, s.p50, s.p90, s.p99, s.max);
        }
        println!("(ms; check-in and admit to the patient's reply, signal from send to the peer, end to both sides,");
        println!(" rejoin from reconnecting to joined, called from the admit to each display)");
        println!();
        println!(
            "verification: {} messages; lost {}, duplicated {}, out of order {}; typing seen {} (missing {}), read receipts seen {} (missing {})",
            self.messages,
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.typing_seen,
            self.typing_missing,
            self.reads_seen,
            self.reads_missing
        );
        println!(
            "reconnects: {} rejoined, {} messages replayed, {} late for the storm",
            self.reconnects, self.replayed, self.storm_late
        );
        println!(
            "displays: {} watched, failures: {}; {} queue states, {} entries with names; \
             called {}, missing {}, duplicated {}, unexpected {}",
            self.displays,
            counts_line(&self.display_failures),
            self.queue_states,
            self.leaked_entries,
            self.called,
            self.called_missing,
            self.called_duplicated,
            self.called_unexpected
        );
        println!("error frames: {}", counts_line(&self.errors));
        println!("refused and sent again: {}", counts_line(&self.resent));
        println!("result: {}", if self.clean { "PASS" } else { "FAIL" });
    }
}

/// Runs the scenario; returns whether it passed.
pub async fn run(args: ConsultArgs) -> anyhow::Result<bool> {
    args.validate()?;
    check_open_files(args.target.sessions() + args.displays)?;
    let staffing =
        Staffing { clinic: Some(args.clinic.clone()), doctors: args.doctors, offset: args.target.room_offset };
    let rooms = create_staffed_rooms(&args.target, &staffing).await?;
    let tokens = display_tokens(&args.target, &args.clinic, args.displays).await?;
    let mut endpoints = Vec::new();
    for url in args.target.nodes() {
        endpoints.push(Endpoint::resolve(url, args.target.protocol).await?);
    }
    // The run's queues in room order, for the displays.
    let mut queues: Vec<&str> = Vec::new();
    for setup in &rooms {
        if !queues.contains(&setup.queue.as_str()) {
            queues.push(&setup.queue);
        }
    }
    // Every display watches before the first check-in, so it hears every
    // call of its queue.
    let sources = &args.target.source_addrs;
    let timeline = Arc::new(Timeline::new());
    let watching = futures_util::future::join_all(tokens.iter().enumerate().map(|(k, token)| {
        let (endpoint, queue) = (&endpoints[k % endpoints.len()], queues[k % queues.len()]);
        let source = (!sources.is_empty()).then(|| sources[k % sources.len()]);
        watch_queue(endpoint, token, source, queue, args.step_timeout, args.target.connect_timeout, &timeline)
    }))
    .await;
    let run = Arc::new(Run {
        args,
        endpoints,
        lat: Latencies::default(),
        timeline,
        started: Instant::now(),
        admissions: Mutex::new(Vec::new()),
    });
    let (done, consultations_over) = watch::channel(false);
    let displays: Vec<_> = watching
        .into_iter()
        .map(|(side, board)| {
            let (run, over) = (Arc::clone(&run), consultations_over.clone());
            tokio::spawn(async move {
                match side {
                    Some(side) => keep_watching(side, board, run, over).await,
                    None => board,
                }
            })
        })
        .collect();

    let total = rooms.len();
    eprintln!("running {total} consultations over a {:?} ramp…", run.args.target.ramp);
    let bar = crate::progress::bar(total as u64, "consultations");
    let tasks: Vec<_> = rooms
        .into_iter()
        .enumerate()
        .map(|(i, setup)| {
            let not_before = run.started + run.args.target.ramp.mul_f64(i as f64 / total as f64);
            let run = Arc::clone(&run);
            tokio::spawn(async move {
                tokio::time::sleep_until(not_before.into()).await;
                consultation(i, setup, run).await
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(total);
    for task in tasks {
        outcomes.push(task.await.map_err(|err| format!("consultation task failed: {err}")));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let _ = done.send(true);
    let mut boards = Vec::with_capacity(displays.len());
    for task in displays {
        boards.push(task.await.map_err(|err| format!("display task failed: {err}")));
    }
    report(&run, outcomes, boards, run.started.elapsed()).finish(&run.args)
}

fn report(
    run: &Run,
    outcomes: Vec<Result<Outcome, String>>,
    boards: Vec<Result<Board, String>>,
    elapsed: Duration,
) -> ConsultReport {
    let consultations = outcomes.len();
    let (mut failures, mut errors, mut resent) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let (mut lost, mut duplicated, mut out_of_order, mut messages, mut typing, mut reads) = (0, 0, 0, 0, 0, 0);
    let (mut reconnects, mut replayed, mut storm_late) = (0, 0, 0);
    let (mut typing_missing, mut reads_missing) = (0, 0);
    for outcome in outcomes {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(reason) => {
                bump(&mut failures, reason, 1);
                continue;
            }
        };
        if let Some(reason) = &outcome.failure {
            bump(&mut failures, failure_key(reason), 1);
        }
        messages += outcome.messages;
        reconnects += u64::from(outcome.reconnected);
        storm_late += u64::from(outcome.reconnected && outcome.storm_late);
        replayed += outcome.replayed;
        for (code, n) in &outcome.resent {
            bump(&mut resent, code.as_str(), *n);
        }
        // Each side announces every message it sends with a typing
        // indicator, and reads every message it is delivered: the other
        // side must see both, unless it was away (they are live only).
        let heard_all = outcome.failure.is_none() && !outcome.reconnected;
        for side in &outcome.sides {
            if heard_all {
                typing_missing += (outcome.messages / 2).saturating_sub(side.typing);
                reads_missing += (outcome.messages / 2).saturating_sub(side.reads);
            }
            lost += side.check.lost(outcome.highest);
            duplicated += side.check.duplicated;
            out_of_order += side.check.out_of_order;
            typing += side.typing;
            reads += side.reads;
            for (code, n) in &side.errors {
                bump(&mut errors, code.as_str(), *n);
            }
        }
    }
    let failed = failures.values().sum::<u64>() as usize;

    let admissions = run.admissions.lock().unwrap_or_else(PoisonError::into_inner);
    let mut admitted: HashMap<&str, HashMap<&str, &Admission>> = HashMap::new();
    for admission in admissions.iter() {
        admitted.entry(&admission.queue).or_default().insert(&admission.ticket, admission);
    }
    let mut display_failures = BTreeMap::new();
    let (mut displays, mut queue_states, mut leaked_entries) = (0, 0, 0);
    let (mut called, mut called_missing, mut called_duplicated, mut called_unexpected) = (0, 0, 0, 0);
    for board in boards {
        let board = match board {
            Ok(board) => board,
            Err(reason) => {
                bump(&mut display_failures, reason, 1);
                continue;
            }
        };
        queue_states += board.updates;
        leaked_entries += board.leaked;
        if let Some(reason) = &board.failure {
            // What a display that went away did not hear says nothing
            // about the hub's calls.
            bump(&mut display_failures, reason.split(':').next().unwrap_or(reason).to_owned(), 1);
            continue;
        }
        displays += 1;
        let expected = admitted.get(board.queue.as_str());
        // Each ticket's first call, and how many came in all.
        let mut heard: HashMap<&str, (Instant, u64)> = HashMap::new();
        for (ticket, at) in &board.called {
            if expected.is_some_and(|tickets| tickets.contains_key(ticket.as_str())) {
                heard.entry(ticket).or_insert((*at, 0)).1 += 1;
            } else {
                called_unexpected += 1;
            }
        }
        for admission in expected.into_iter().flat_map(|tickets| tickets.values()) {
            match heard.get(admission.ticket.as_str()) {
                Some((first, times)) => {
                    called += 1;
                    called_duplicated += times - 1;
                    run.lat.record_span("called", admission.asked, *first);
                }
                None => called_missing += 1,
            }
        }
    }

    let mut scenario = serde_json::to_value(&run.args).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(flags) = &mut scenario {
        flags.insert("name".into(), "consult".into());
    }
    let displays_ok =
        display_failures.is_empty() && leaked_entries == 0 && called_missing == 0 && called_duplicated == 0;
    let timeline = run.timeline.consult_report();
    let delivered: u64 = timeline.delivered_per_s.iter().sum();
    ConsultReport {
        scenario,
        consultations,
        completed: consultations - failed,
        failed,
        failures,
        latency_ms: run.lat.summaries(),
        distribution_ms: run.lat.distributions(),
        messages,
        lost,
        duplicated,
        out_of_order,
        errors,
        resent,
        typing_seen: typing,
        typing_missing,
        reads_seen: reads,
        reads_missing,
        reconnects,
        replayed,
        storm_late,
        displays,
        display_failures,
        queue_states,
        leaked_entries,
        called,
        called_missing,
        called_duplicated,
        called_unexpected,
        elapsed_s: elapsed.as_secs_f64(),
        delivered_per_s: delivered as f64 / elapsed.as_secs_f64().max(1e-9),
        timeline,
        clean: failed == 0
            && lost == 0
            && duplicated == 0
            && out_of_order == 0
            && typing_missing == 0
            && reads_missing == 0
            && displays_ok,
    }
}

impl ConsultReport {
    /// Prints the report, writes the JSON and HTML files if asked; returns
    /// whether the run passed.
    fn finish(self, args: &ConsultArgs) -> anyhow::Result<bool> {
        self.print();
        let judged = crate::thresholds::judge(&self, &args.target.thresholds)?;
        if let Some(path) = &args.target.json {
            write_json(path, &judged.json)?;
        }
        if let Some(path) = &args.html {
            crate::html::write(path, &crate::html::consult_page(&self, &judged.verdicts))?;
        }
        Ok(self.clean && judged.met())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_and_answer_are_sdp_a_hub_accepts() {
        for kind in [DescriptionKind::Offer, DescriptionKind::Answer] {
            let data = SignalData {
                description: Some(Description { kind, sdp: Some(sdp(kind, "s_0123")) }),
                ..SignalData::default()
            };
            assert!(data.kind().is_ok(), "{:?}", data.kind());
            let text = sdp(kind, "s_0123");
            assert!((2_500..8_000).contains(&text.len()), "a few KB, as browsers write: {}", text.len());
            assert!(text.contains("m=audio") && text.contains("m=video") && text.contains("a=ice-options:trickle"));
        }
        let c = SignalData { candidate: Some(candidate("s_1", 3)), ..SignalData::default() };
        assert!(c.kind().is_ok());
    }

    /// Runs the scenario against a mock hub; returns whether it passed and
    /// the JSON report.
    async fn run_against(faults: crate::mock_hub::Faults) -> (bool, serde_json::Value) {
        run_with(faults, &[]).await
    }

    /// [`run_against`] with more flags.
    async fn run_with(faults: crate::mock_hub::Faults, flags: &[&str]) -> (bool, serde_json::Value) {
        use clap::Parser;
        let hub = crate::mock_hub::MockHub::start(faults).await;
        let json = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        let mut argv = vec![
            "telehub-loadtest",
            "consult",
            "--url",
            &hub.url,
            "--api-key",
            "k",
            "--rooms",
            "3",
            "--messages",
            "3",
            "--interval",
            "10ms",
            "--candidates",
            "4",
            "--step-timeout",
            "1s",
            "--json",
            json.path().to_str().unwrap(),
        ];
        argv.extend_from_slice(flags);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Consult(args) = cli.command else { unreachable!() };
        let passed = run(args).await.unwrap();
        let report = serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap();
        (passed, report)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn whole_consultations_go_through_every_step() {
        let (passed, report) = run_against(crate::mock_hub::Faults::default()).await;
        assert!(passed, "{report:#}");
        assert_eq!((report["completed"].as_u64(), report["failed"].as_u64()), (Some(3), Some(0)), "{report:#}");
        let count = |kind: &str| report["latency_ms"][kind]["count"].as_u64().unwrap_or(0);
        assert_eq!((count("checkin"), count("admit"), count("join"), count("end")), (3, 3, 6, 3));
        // An offer, an answer and 4 candidates each way, per consultation.
        assert_eq!(count("signal"), 3 * (2 + 2 * 4));
        // Three rounds of two messages.
        assert_eq!((count("delivery"), count("ack"), report["messages"].as_u64().unwrap()), (18, 18, 18));
        assert_eq!(report["typing_seen"], 18, "the other side saw every typing indicator");
        assert_eq!(report["typing_missing"], 0);
        assert_eq!(report["reads_seen"], 18, "and every read receipt");
        assert_eq!(report["reads_missing"], 0);
        assert_eq!(report["lost"], 0);
        assert_eq!(report["scenario"]["name"], "consult");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chat_an_overloaded_hub_refuses_is_sent_again() {
        let faults = crate::mock_hub::Faults { shed_every: Some(4), ..Default::default() };
        let (passed, report) = run_against(faults).await;
        assert!(passed, "{report:#}");
        assert_eq!((report["completed"].as_u64(), report["failed"].as_u64()), (Some(3), Some(0)), "{report:#}");
        assert!(report["resent"]["unavailable"].as_u64().unwrap_or(0) >= 4, "{report:#}");
        assert_eq!(report["errors"], serde_json::json!({}), "a refusal sent again is no error");
        let count = |kind: &str| report["latency_ms"][kind]["count"].as_u64().unwrap_or(0);
        assert_eq!((count("delivery"), count("ack")), (18, 18), "every message acked and delivered once");
        assert_eq!((&report["lost"], &report["duplicated"]), (&serde_json::json!(0), &serde_json::json!(0)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_resends_a_refused_message_fails_its_consultation() {
        let faults = crate::mock_hub::Faults { shed_every: Some(4), ..Default::default() };
        let (passed, report) = run_with(faults, &["--resends", "0"]).await;
        assert!(!passed, "{report:#}");
        let failed = report["failed"].as_u64().unwrap();
        assert!(failed >= 1, "{report:#}");
        assert_eq!(report["failures"]["ack: unavailable"], failed, "{report:#}");
        assert_eq!(report["resent"], serde_json::json!({}));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn typing_indicators_that_never_arrive_fail_the_run() {
        let faults = crate::mock_hub::Faults { drop_typing: true, ..Default::default() };
        let (passed, report) = run_against(faults).await;
        assert!(!passed, "{report:#}");
        assert_eq!((&report["failed"], &report["lost"]), (&serde_json::json!(0), &serde_json::json!(0)));
        assert_eq!(report["typing_missing"], 18, "{report:#}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_receipts_that_never_arrive_fail_the_run() {
        let faults = crate::mock_hub::Faults { drop_reads: true, ..Default::default() };
        let (passed, report) = run_against(faults).await;
        assert!(!passed, "{report:#}");
        assert_eq!((&report["failed"], &report["lost"]), (&serde_json::json!(0), &serde_json::json!(0)));
        assert_eq!((&report["reads_seen"], &report["reads_missing"]), (&serde_json::json!(0), &serde_json::json!(18)));
        assert_eq!(report["typing_missing"], 0, "{report:#}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_that_never_arrives_fails_its_consultation() {
        // Seq 3 (the patient's second message) never reaches the doctor,
        // the room's second member: the doctor waits for it in vain.
        let faults = crate::mock_hub::Faults { drop_every: Some(3), ..Default::default() };
        let (passed, report) = run_against(faults).await;
        assert!(!passed);
        assert_eq!(report["failed"], 3, "{report:#}");
        assert_eq!(report["failures"]["delivery"], 3, "{report:#}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_copy_fails_the_run_even_when_every_step_went_through() {
        // Even seqs are the doctor's own messages: only the doctor's copies
        // go missing, which no step waits for, but the check counts.
        let faults = crate::mock_hub::Faults { drop_every: Some(2), ..Default::default() };
        let (passed, report) = run_against(faults).await;
        assert!(!passed);
        assert_eq!(report["completed"], 3, "{report:#}");
        assert!(report["lost"].as_u64().unwrap() > 0, "{report:#}");
    }

    #[test]
    fn the_patients_that_drop_are_spread_evenly() {
        let chosen = |share: f64| (0..12).filter(|&i| drops(i, share)).collect::<Vec<_>>();
        assert_eq!(chosen(0.0), Vec::<usize>::new());
        assert_eq!(chosen(1.0), (0..12).collect::<Vec<_>>());
        assert_eq!(chosen(0.5), vec![1, 3, 5, 7, 9, 11]);
        assert_eq!(chosen(0.25), vec![3, 7, 11]);
    }

    fn count(report: &serde_json::Value, kind: &str) -> u64 {
        report["latency_ms"][kind]["count"].as_u64().unwrap_or(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_patient_that_drops_mid_chat_rejoins_and_gets_what_it_missed() {
        // Of three consultations, the second (i = 1) drops its patient.
        let (passed, report) = run_with(Default::default(), &["--reconnect-share", "0.5"]).await;
        assert!(passed, "{report:#}");
        assert_eq!(report["reconnects"], 1, "{report:#}");
        assert_eq!(count(&report, "rejoin"), 1);
        // The doctor's message while the patient was away came by replay,
        // and nothing else was missing.
        assert_eq!(report["replayed"], 1, "{report:#}");
        assert_eq!(report["messages"], 18 + 1);
        assert_eq!((report["lost"].as_u64(), report["duplicated"].as_u64()), (Some(0), Some(0)), "{report:#}");
        assert_eq!(report["scenario"]["reconnect_share"], 0.5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_a_storm_every_chosen_patient_drops_at_the_given_time() {
        let (passed, report) = run_with(Default::default(), &["--reconnect-share", "1", "--storm-at", "700ms"]).await;
        assert!(passed, "{report:#}");
        assert_eq!(report["reconnects"], 3, "{report:#}");
        assert_eq!(report["lost"], 0, "{report:#}");
        assert!(report["elapsed_s"].as_f64().unwrap() >= 0.7, "nobody drops before the storm: {report:#}");
        assert_eq!(report["scenario"]["storm_at_s"], 0.7);
        // A storm at the very start finds every consultation not yet
        // halfway: each drops when it gets there, late.
        let (passed, report) = run_with(Default::default(), &["--reconnect-share", "1", "--storm-at", "0s"]).await;
        assert!(passed, "{report:#}");
        assert_eq!((report["reconnects"].as_u64(), report["storm_late"].as_u64()), (Some(3), Some(3)), "{report:#}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_that_leaves_out_a_missed_message_fails_the_run() {
        let faults = crate::mock_hub::Faults { replay_skips_first: true, ..Default::default() };
        let (passed, report) = run_with(faults, &["--reconnect-share", "1"]).await;
        assert!(!passed);
        assert_eq!(report["failures"]["replay"], 3, "{report:#}");
        assert_eq!(report["reconnects"], 0, "{report:#}");
    }

    /// Three consultations with two doctors (d-0 has rooms 0 and 2, d-1
    /// room 1) and three displays (on d-0, d-1, d-0): five calls to hear.
    const DISPLAYS: [&str; 4] = ["--doctors", "2", "--displays", "3"];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn displays_hear_every_admitted_patient_of_their_queue_called_once() {
        let (passed, report) = run_with(Default::default(), &DISPLAYS).await;
        assert!(passed, "{report:#}");
        assert_eq!(report["displays"], 3, "{report:#}");
        assert_eq!(report["called"], 5, "{report:#}");
        assert_eq!(count(&report, "called"), 5);
        assert_eq!((report["called_missing"].as_u64(), report["leaked_entries"].as_u64()), (Some(0), Some(0)));
        // The watch reply and a change per check-in and admit, at least.
        assert!(report["queue_states"].as_u64().unwrap() >= 3, "{report:#}");
        assert_eq!(report["scenario"]["clinic"], "c-load");
    }

    /// [`run_with`] with `--html`: also returns the page.
    async fn run_with_page(faults: crate::mock_hub::Faults, flags: &[&str]) -> (bool, serde_json::Value, String) {
        let html = tempfile::Builder::new().suffix(".html").tempfile().unwrap();
        let mut all = vec!["--html", html.path().to_str().unwrap()];
        all.extend_from_slice(flags);
        let (passed, report) = run_with(faults, &all).await;
        (passed, report, std::fs::read_to_string(html.path()).unwrap())
    }

    /// The sum of a per-second series of the report's timeline.
    fn total(report: &serde_json::Value, series: &str) -> u64 {
        report["timeline"][series].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum()
    }

    fn connections(report: &serde_json::Value) -> Vec<i64> {
        report["timeline"]["connections"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
    }

    #[test]
    fn failures_are_counted_by_step_and_code() {
        assert_eq!(failure_key("join: forbidden not a member of c-12"), "join: forbidden");
        assert_eq!(failure_key("delivery: seq 3 never arrived"), "delivery");
        assert_eq!(failure_key("connect: no welcome within 30s"), "connect");
        assert_eq!(failure_key("session task failed"), "session task failed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_html_report_plots_what_the_run_counted() {
        // Over a ramp of 1.5 s the last consultation starts a second in,
        // so the displays are still watching at the end of second 0.
        let mut flags = vec!["--reconnect-share", "0.5", "--ramp", "1500ms"];
        flags.extend_from_slice(&DISPLAYS);
        let (passed, report, page) = run_with_page(Default::default(), &flags).await;
        assert!(passed, "{report:#}");
        assert!(page.starts_with("<!doctype html>") && page.contains("consult <span class=\"pass\">PASS</span>"));
        assert_eq!(page.matches("<svg").count(), 5, "distribution, throughput, consultations, latency, connections");
        // Delivery, ack, signal, join, rejoin and called; delivered and
        // signals; started, completed, failed and reconnects; p50, p99 and
        // max of the deliveries; connections.
        assert_eq!(page.matches("<polyline").count(), 6 + 2 + 4 + 3 + 1);
        let kinds = report["latency_ms"].as_object().unwrap();
        assert_eq!(kinds.len(), 9, "{report:#}");
        for (kind, summary) in kinds {
            assert!(page.contains(&format!("<tr><td>{kind}</td><td>{}</td>", summary["count"])), "{kind}");
            let points = report["distribution_ms"][kind].as_array().unwrap();
            let ms: Vec<f64> = points.iter().map(|p| p[1].as_f64().unwrap()).collect();
            assert!(ms.len() == 13 && ms.windows(2).all(|w| w[0] <= w[1]), "{kind}: {ms:?}");
        }
        // The timeline counts what the report counts.
        assert_eq!((total(&report, "started_per_s"), total(&report, "completed_per_s")), (3, 3));
        assert_eq!((total(&report, "failed_per_s"), total(&report, "reconnects_per_s")), (0, 1));
        assert_eq!(total(&report, "signals_per_s"), count(&report, "signal"));
        assert_eq!(total(&report, "delivered_per_s"), count(&report, "delivery"));
        let rate = total(&report, "delivered_per_s") as f64 / report["elapsed_s"].as_f64().unwrap();
        assert!((report["delivered_per_s"].as_f64().unwrap() - rate).abs() < 1e-6, "{report:#}");
        // Each second with a delivery has its latency, and only those.
        let delivery = &report["timeline"]["delivery_ms"];
        let max = delivery["max"].as_array().unwrap();
        let delivered = report["timeline"]["delivered_per_s"].as_array().unwrap();
        assert_eq!(max.len(), delivered.len());
        for (m, d) in max.iter().zip(delivered) {
            assert_eq!(m.is_null(), d.as_u64() == Some(0), "{delivery}");
        }
        let slowest = max.iter().filter_map(serde_json::Value::as_f64).fold(0.0, f64::max);
        assert!(slowest > 0.0 && slowest <= report["latency_ms"]["delivery"]["max"].as_f64().unwrap() + 0.001);
        // What was not delivered live came by replay.
        let replayed = report["replayed"].as_u64().unwrap();
        assert_eq!(total(&report, "delivered_per_s") + replayed, report["messages"].as_u64().unwrap());
        let open = connections(&report);
        assert!(open.len() >= 2 && open[0] >= 3, "the three displays, and maybe a consultation: {open:?}");
        assert!(open.iter().all(|&n| n <= 3 + 2 * 3), "{open:?}");
        assert_eq!(open.last(), Some(&0), "every connection closed at the end: {open:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_html_report_of_a_failed_run_says_fail_and_counts_the_failures() {
        let faults = crate::mock_hub::Faults { drop_every: Some(3), ..Default::default() };
        let (passed, report, page) = run_with_page(faults, &[]).await;
        assert!(!passed);
        assert!(page.contains("consult <span class=\"fail\">FAIL</span>"), "{page}");
        assert!(page.contains("0 of 3 consultations completed, 3 failed (delivery 3)"), "{page}");
        assert_eq!((total(&report, "completed_per_s"), total(&report, "failed_per_s")), (0, 3));
        assert_eq!(connections(&report).last(), Some(&0), "failed steps drop their connections too");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn names_shown_to_a_display_fail_the_run() {
        let faults = crate::mock_hub::Faults { leak_names: true, ..Default::default() };
        let (passed, report) = run_with(faults, &DISPLAYS).await;
        assert!(!passed);
        assert_eq!(report["completed"], 3, "the consultations themselves went through: {report:#}");
        assert!(report["leaked_entries"].as_u64().unwrap() > 0, "{report:#}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_a_display_never_hears_fails_the_run() {
        let faults = crate::mock_hub::Faults { drop_called: true, ..Default::default() };
        let (passed, report) = run_with(faults, &DISPLAYS).await;
        assert!(!passed);
        assert_eq!(report["completed"], 3, "{report:#}");
        assert_eq!((report["called"].as_u64(), report["called_missing"].as_u64()), (Some(0), Some(5)), "{report:#}");
    }
}
