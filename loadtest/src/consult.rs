//! The consultation scenario: whole consultations, each the way a patient
//! and a doctor go through one.
//!
//! For every consultation, started evenly over `--ramp`:
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
//! Every step's latency goes into an HDR histogram (check-in and admit
//! from the request to the patient's reply, join, each relayed signal from
//! send to arrival, each message from send to the other side and to its
//! ack, end to both `ended`). Every `message` goes through the receiving
//! side's [`SeqCheck`]; a consultation that lost, duplicated or reordered a
//! message, or did not get through its steps, fails the run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use telehub_signaling::{Candidate, ClientFrame, Description, DescriptionKind, ServerFrame, SignalData, is_polite};
use tokio_tungstenite::tungstenite::Message;

use crate::api::{RoomSetup, create_rooms};
use crate::cli::ConsultArgs;
use crate::client::{Endpoint, Ws, check_file_limit, close_reason, connect, send};
use crate::stats::{Summary, bump, counts_line, histogram, micros_at, record, write_json};
use crate::verify::SeqCheck;

/// Latency histograms of every kind, shared by the consultations.
#[derive(Default)]
struct Latencies {
    kinds: Mutex<BTreeMap<&'static str, Histogram<u64>>>,
}

impl Latencies {
    fn record(&self, kind: &'static str, since: Instant) {
        let micros = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        record(kinds.entry(kind).or_insert_with(histogram), micros);
    }

    fn summaries(&self) -> BTreeMap<&'static str, Summary> {
        let kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        kinds.iter().map(|(kind, h)| (*kind, Summary::of(h))).collect()
    }
}

/// One side of a consultation: its socket, and what it saw.
struct Side {
    ws: Ws,
    session: String,
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
        source: Option<std::net::IpAddr>,
        patience: Duration,
    ) -> Result<Side, String> {
        let (ws, session) = connect(endpoint, token, source).await.map_err(|err| format!("connect: {err:#}"))?;
        Ok(Side { ws, session, patience, check: SeqCheck::new(0), errors: BTreeMap::new(), typing: 0, reads: 0 })
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), String> {
        send(&mut self.ws, frame).await.map_err(|err| format!("send: {err:#}"))
    }

    /// Reads until `want` takes a frame, accounting for every frame on the
    /// way. An error that answers `reference` fails the step.
    async fn until<T>(
        &mut self,
        step: &str,
        reference: Option<&str>,
        mut want: impl FnMut(&ServerFrame) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| format!("{step}: nothing within {:?}", self.patience))?;
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
                ServerFrame::Error { reference: r, code, message, .. } => {
                    bump(&mut self.errors, code.as_str(), 1);
                    if reference.is_some() && r.as_deref() == reference {
                        return Err(format!("{step}: {} {message}", code.as_str()));
                    }
                }
                _ => {}
            }
            if let Some(found) = want(&frame) {
                return Ok(found);
            }
        }
    }
}

/// What one consultation came to.
struct Outcome {
    failure: Option<String>,
    sides: Vec<Side>,
    /// The highest seq acknowledged in the room.
    highest: i64,
    messages: u64,
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

/// Waits for a signal from `from` that `accept` takes.
async fn relayed(side: &mut Side, from: &str, accept: impl Fn(&SignalData) -> bool) -> Result<(), String> {
    side.until("signal", None, |f| match f {
        ServerFrame::Signal { from: f, data, .. } if f == from && accept(data) => Some(()),
        _ => None,
    })
    .await
}

/// Runs one consultation through every step.
async fn consultation(
    setup: RoomSetup,
    endpoints: Arc<Vec<Endpoint>>,
    args: Arc<ConsultArgs>,
    lat: Arc<Latencies>,
) -> Outcome {
    let mut outcome = Outcome { failure: None, sides: Vec::new(), highest: 0, messages: 0 };
    if let Err(err) = steps(&setup, &endpoints, &args, &lat, &mut outcome).await {
        outcome.failure = Some(err);
    }
    for side in &mut outcome.sides {
        let _ = tokio::time::timeout(Duration::from_secs(1), side.ws.close(None)).await;
    }
    outcome
}

async fn steps(
    setup: &RoomSetup,
    endpoints: &[Endpoint],
    args: &ConsultArgs,
    lat: &Latencies,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let room = setup.room.as_str();
    let source = args.target.source_addrs.get(setup.number % args.target.source_addrs.len().max(1)).copied();
    // Round-robin over the nodes as in the chat scenario: with two, every
    // patient is on the first and every doctor on the second.
    let node = |k: usize| &endpoints[(2 * setup.number + k) % endpoints.len()];
    let mut patient = Side::connect(node(0), &setup.patient_token, source, args.step_timeout).await?;
    let mut doctor = Side::connect(node(1), &setup.doctor_token, source, args.step_timeout).await?;

    // 1. Check in.
    let t = Instant::now();
    patient.send(&ClientFrame::Checkin { reference: Some("c".into()), room: room.into() }).await?;
    patient.until("checkin", Some("c"), |f| matches!(f, ServerFrame::Queue { .. }).then_some(())).await?;
    lat.record("checkin", t);

    // 2. Admit.
    let t = Instant::now();
    doctor
        .send(&ClientFrame::Admit { reference: Some("a".into()), room: room.into(), override_payment: false })
        .await?;
    doctor.until("admit", Some("a"), |f| matches!(f, ServerFrame::Ok { .. }).then_some(())).await?;
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
    relayed(answerer, &from, |d| d.description.is_some()).await?;
    lat.record("signal", t);
    let t = Instant::now();
    answerer.send(&signal(room, &from, description(DescriptionKind::Answer, &to))).await?;
    relayed(offerer, &to, |d| d.description.is_some()).await?;
    lat.record("signal", t);
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
            relayed(receiver, &from, |d| d.candidate.is_some()).await?;
            lat.record("signal", t);
        }
    }

    // 5. Chat with typing and read receipts.
    let mut pace = tokio::time::interval(args.interval);
    for round in 0..args.messages {
        for n in 0..2 {
            let (sender, receiver) = if n == 0 { (&mut patient, &mut doctor) } else { (&mut doctor, &mut patient) };
            pace.tick().await;
            let active = ClientFrame::Typing { reference: None, room: room.into(), active: true };
            sender.send(&active).await?;
            let client_id = format!("{}-{round}-{n}", sender.session);
            let reference = format!("m{round}-{n}");
            let t = Instant::now();
            let text = format!("t={} round {round}: how are you feeling today?", micros_at(t));
            sender
                .send(&ClientFrame::Chat { reference: Some(reference.clone()), room: room.into(), client_id, text })
                .await?;
            outcome.messages += 1;
            let seq = sender
                .until("ack", Some(&reference), |f| match f {
                    ServerFrame::Ack { reference: Some(r), seq, .. } if *r == reference => Some(*seq),
                    _ => None,
                })
                .await?;
            lat.record("ack", t);
            outcome.highest = outcome.highest.max(seq);
            receiver
                .until("delivery", None, |f| match f {
                    ServerFrame::Message(m) if m.seq == seq => Some(()),
                    _ => None,
                })
                .await?;
            lat.record("delivery", t);
            receiver.send(&ClientFrame::Read { reference: None, room: room.into(), seq }).await?;
        }
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

/// The consultation report, as written to `--json`.
#[derive(Debug, Serialize)]
pub struct ConsultReport {
    pub scenario: serde_json::Value,
    pub consultations: usize,
    pub completed: usize,
    pub failed: usize,
    /// Why consultations failed, by step and reason.
    pub failures: BTreeMap<String, u64>,
    /// Per kind: checkin, admit, join, signal, ack, delivery, end.
    pub latency_ms: BTreeMap<&'static str, Summary>,
    pub messages: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// `error` frames received, by code.
    pub errors: BTreeMap<String, u64>,
    /// `typing` and `read` frames seen by the other side.
    pub typing_seen: u64,
    pub reads_seen: u64,
    pub elapsed_s: f64,
    /// Every consultation went through, and nothing was lost, duplicated or
    /// reordered.
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
        println!("(ms; check-in and admit to the patient's reply, signal from send to the peer, end to both sides)");
        println!();
        println!(
            "verification: {} messages; lost {}, duplicated {}, out of order {}; typing seen {}, read receipts seen {}",
            self.messages, self.lost, self.duplicated, self.out_of_order, self.typing_seen, self.reads_seen
        );
        println!("error frames: {}", counts_line(&self.errors));
        println!("result: {}", if self.clean { "PASS" } else { "FAIL" });
    }
}

/// Runs the scenario; returns whether it passed.
pub async fn run(args: ConsultArgs) -> anyhow::Result<bool> {
    args.validate()?;
    check_file_limit(&args.target)?;
    let rooms = create_rooms(&args.target).await?;
    let mut endpoints = Vec::new();
    for url in args.target.nodes() {
        endpoints.push(Endpoint::resolve(url, args.target.protocol).await?);
    }
    let endpoints = Arc::new(endpoints);
    let args = Arc::new(args);
    let lat = Arc::new(Latencies::default());
    let started = Instant::now();
    let total = rooms.len();
    eprintln!("running {total} consultations over a {:?} ramp…", args.target.ramp);
    let bar = crate::progress::bar(total as u64, "consultations");
    let tasks: Vec<_> = rooms
        .into_iter()
        .enumerate()
        .map(|(i, setup)| {
            let not_before = started + args.target.ramp.mul_f64(i as f64 / total as f64);
            let (endpoints, args, lat) = (Arc::clone(&endpoints), Arc::clone(&args), Arc::clone(&lat));
            tokio::spawn(async move {
                tokio::time::sleep_until(not_before.into()).await;
                consultation(setup, endpoints, args, lat).await
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(total);
    for task in tasks {
        outcomes.push(task.await.map_err(|err| format!("consultation task failed: {err}")));
        bar.inc(1);
    }
    bar.finish_and_clear();
    report(&args, outcomes, &lat, started.elapsed()).finish(&args)
}

fn report(
    args: &ConsultArgs,
    outcomes: Vec<Result<Outcome, String>>,
    lat: &Latencies,
    elapsed: Duration,
) -> ConsultReport {
    let consultations = outcomes.len();
    let (mut failures, mut errors) = (BTreeMap::new(), BTreeMap::new());
    let (mut lost, mut duplicated, mut out_of_order, mut messages, mut typing, mut reads) = (0, 0, 0, 0, 0, 0);
    for outcome in outcomes {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(reason) => {
                bump(&mut failures, reason, 1);
                continue;
            }
        };
        if let Some(reason) = &outcome.failure {
            bump(&mut failures, reason.split(':').next().unwrap_or(reason).to_owned(), 1);
        }
        messages += outcome.messages;
        for side in &outcome.sides {
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
    let mut scenario = serde_json::to_value(args).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(flags) = &mut scenario {
        flags.insert("name".into(), "consult".into());
    }
    ConsultReport {
        scenario,
        consultations,
        completed: consultations - failed,
        failed,
        failures,
        latency_ms: lat.summaries(),
        messages,
        lost,
        duplicated,
        out_of_order,
        errors,
        typing_seen: typing,
        reads_seen: reads,
        elapsed_s: elapsed.as_secs_f64(),
        clean: failed == 0 && lost == 0 && duplicated == 0 && out_of_order == 0,
    }
}

impl ConsultReport {
    /// Prints the report, writes the JSON file if asked; returns whether
    /// the run passed.
    fn finish(self, args: &ConsultArgs) -> anyhow::Result<bool> {
        self.print();
        if let Some(path) = &args.target.json {
            write_json(path, &self)?;
        }
        Ok(self.clean)
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
        use clap::Parser;
        let hub = crate::mock_hub::MockHub::start(faults).await;
        let json = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        let cli = crate::cli::Cli::try_parse_from([
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
        ])
        .unwrap();
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
        assert_eq!(report["lost"], 0);
        assert_eq!(report["scenario"]["name"], "consult");
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
}
