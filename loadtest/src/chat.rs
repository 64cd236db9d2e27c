//! The chat scenario: rooms of a patient and a doctor chatting at a fixed
//! offered rate, one step per rate, on the same connections.
//!
//! The offered rate is open-loop: each session sends on a fixed schedule
//! (`sessions / rate` apart, from a random phase), whatever the hub does.
//! A message's text starts with its *scheduled* send time, and latency is
//! measured from that time, so a hub that stalls a sender cannot hide the
//! stall by keeping the sender from sending (coordinated omission): the
//! messages that should have gone out meanwhile are late by the stall.
//!
//! Every received `message` records send-to-delivery latency (for both
//! sessions of the room, the sender's own included), every `ack` records
//! ack latency, and every `message` goes through the session's
//! [`SeqCheck`]. Each step runs `--warmup` unmeasured, then `--duration`
//! measured: a latency counts in the step whose measured window its send
//! was scheduled in, a delivery or ack in the step whose window it arrived
//! in. After the last step, sessions wait up to `--drain` for what is still
//! on its way, and what never came is lost.
//!
//! A chat frame the hub refuses with `unavailable` or `rate_limited` (an
//! overloaded node sheds load, a session over its rate) is sent again with
//! the same `client_id` after the refusal's `retry_ms`, as the browser SDK
//! does, up to `--resends` times; its latency still counts from its first
//! scheduled time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use telehub_signaling::{ClientFrame, ErrorCode, ServerFrame};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::api::create_rooms;
use crate::cli::{ChatArgs, Protocol};
use crate::client::{Incoming, Joined, Ws, check_file_limit, close_reason, connect_all, decode, encode, resend_delay};
use crate::stats::{
    ChatLatency, ChatReport, Distribution, Latencies, StepLatency, StepReport, Summary, bump, distribution, micros_at,
    now_micros, per_second, write_json,
};
use crate::timeline::{Event, Timeline};
use crate::verify::{RoomProgress, SeqCheck};

/// The time between the end of connecting and the first scheduled send, so
/// every session has its plan before the schedule begins.
const START_DELAY: Duration = Duration::from_millis(500);

/// How often a session that is done sending checks whether its room has
/// drained.
const DRAIN_CHECK: Duration = Duration::from_millis(50);

/// The schedule of the run and the shared measurements, fixed once every
/// session has joined.
struct Plan {
    rates: Vec<f64>,
    /// Sessions that joined: the offered rate is split among them.
    sessions: usize,
    /// Start of each step (its warm-up first).
    step_starts: Vec<Instant>,
    /// The measured window of each step, on the `micros_at` clock.
    windows: Vec<(u64, u64)>,
    send_end: Instant,
    /// When every session stops waiting, drained or not.
    stop: Instant,
    size: usize,
    /// How often one message may be sent again after a refusal.
    resends: u32,
    delivery: Latencies,
    /// Deliveries to the other session of the room (not the sender's own
    /// copy): with --peer-url, those that crossed between nodes.
    peer: Latencies,
    ack: Latencies,
    /// Per step: sends scheduled, messages received and acks received in
    /// the measured window.
    sent: Vec<AtomicU64>,
    received: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
}

impl Plan {
    fn new(args: &ChatArgs, sessions: usize) -> Self {
        let steps = args.rate.len();
        let step_len = args.warmup + args.duration;
        let start = Instant::now() + START_DELAY;
        let step_starts: Vec<Instant> = (0..steps).map(|k| start + step_len.mul_f64(k as f64)).collect();
        let windows = step_starts.iter().map(|s| (micros_at(*s + args.warmup), micros_at(*s + step_len))).collect();
        let send_end = start + step_len.mul_f64(steps as f64);
        let counters = || (0..steps).map(|_| AtomicU64::new(0)).collect();
        Plan {
            rates: args.rate.clone(),
            sessions,
            step_starts,
            windows,
            send_end,
            stop: send_end + args.drain,
            size: args.size,
            resends: args.resends,
            delivery: Latencies::new(steps, Latencies::default_shards()),
            peer: Latencies::new(steps, Latencies::default_shards()),
            ack: Latencies::new(steps, Latencies::default_shards()),
            sent: counters(),
            received: counters(),
            acked: counters(),
        }
    }

    /// The step whose measured window holds `t` (on the `micros_at` clock).
    fn window_of(&self, t: u64) -> Option<usize> {
        self.windows.iter().position(|(from, to)| (*from..*to).contains(&t))
    }

    /// The time between two sends of one session in `step`.
    fn period(&self, step: usize) -> Duration {
        Duration::from_secs_f64(self.sessions as f64 / self.rates[step])
    }

    /// When `step` starts and when the next one does (or sending ends).
    fn step_bounds(&self, step: usize) -> (Instant, Instant) {
        (self.step_starts[step], self.step_starts.get(step + 1).copied().unwrap_or(self.send_end))
    }
}

/// The chat text: the scheduled send time, then padding up to `size` bytes.
fn text_for(t: u64, size: usize) -> String {
    let mut text = format!("t={t} ");
    let pad = size.saturating_sub(text.len());
    text.extend(std::iter::repeat_n('x', pad));
    text
}

/// The scheduled send time a chat text carries.
fn sent_time(text: &str) -> Option<u64> {
    text.strip_prefix("t=")?.split(' ').next()?.parse().ok()
}

/// What one session saw, returned when it ends.
struct SessionOutcome {
    room: usize,
    check: SeqCheck,
    acks: u64,
    errors: BTreeMap<String, u64>,
    /// Refusals answered by sending the message again, by code.
    resent: BTreeMap<String, u64>,
    /// Why the connection ended early, if it did.
    closed: Option<String>,
    /// Chat frames this session sent that got neither an ack nor an error.
    unanswered: u64,
    /// `message` frames of a room other than this session's.
    misrouted: u64,
    /// Messages received under a second `seq` for a (sender, client_id)
    /// already received: one send stored twice.
    stored_twice: u64,
    /// The (sender, client_id) pairs received, hashed.
    senders_ids: HashSet<u64>,
}

/// What the reading and the writing half of one session share.
#[derive(Default)]
struct Shared {
    /// Frames this session sent that are not yet answered.
    outstanding: AtomicI64,
    /// The reading half has stopped: the writing half stops too.
    finished: AtomicBool,
}

/// Runs one joined session: reads from the moment it joined (so the hub's
/// pings are answered while others still connect), and sends once the plan
/// arrives.
async fn run_session(
    joined: Joined,
    protocol: Protocol,
    room: Arc<RoomProgress>,
    plan: watch::Receiver<Option<Arc<Plan>>>,
    timeline: Arc<Timeline>,
) -> SessionOutcome {
    let Joined { index, room: room_index, room_id, ws, session, since } = joined;
    let (sink, stream) = ws.split();
    let shared = Shared::default();
    let mut outcome = SessionOutcome {
        room: room_index,
        check: SeqCheck::new(since),
        acks: 0,
        errors: BTreeMap::new(),
        resent: BTreeMap::new(),
        closed: None,
        unanswered: 0,
        misrouted: 0,
        stored_twice: 0,
        senders_ids: HashSet::new(),
    };
    // Socket.IO's pings, and the refusals to send again, come in on the
    // reading half and are acted on by the writing one.
    // One channel for both: the writing half waits on it whenever it is
    // polled, which `join!` does for every frame the reading half reads.
    let (errands_tx, asked) = mpsc::unbounded_channel();
    let errands = Errands { asked, due: BinaryHeap::new() };
    let writer =
        Writer { protocol, session: &session, room_id: &room_id, room: &room, shared: &shared, timeline: &timeline };
    let reader = Reader {
        protocol,
        index,
        room_id: &room_id,
        room: &room,
        shared: &shared,
        outcome: &mut outcome,
        timeline: &timeline,
        errands: errands_tx,
        tries: HashMap::new(),
    };
    let ((mut sink, send_error), ()) = tokio::join!(writer.run(sink, plan.clone(), errands), reader.run(stream, plan));
    if let Some(err) = send_error {
        outcome.closed.get_or_insert(err);
    }
    // Say goodbye properly; a hub that no longer listens does not delay the report.
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    timeline.now(Event::Closed);
    outcome
}

/// The sending half of a session.
struct Writer<'a> {
    protocol: Protocol,
    session: &'a str,
    room_id: &'a str,
    room: &'a RoomProgress,
    shared: &'a Shared,
    timeline: &'a Timeline,
}

impl Writer<'_> {
    /// Sends on the plan's schedule, then answers pings and sends again
    /// what was refused until the reading half ends; returns the sink and
    /// why sending failed, if it did.
    async fn run(
        self,
        mut sink: SplitSink<Ws, Message>,
        mut plan: watch::Receiver<Option<Arc<Plan>>>,
        mut errands: Errands,
    ) -> (SplitSink<Ws, Message>, Option<String>) {
        let (plan, result) = match self.answering(&mut sink, &mut errands, None, wait_for_plan(&mut plan)).await {
            Ok(Answered::Done(Some(plan))) => {
                let result = self.send_all(&mut sink, &plan, &mut errands).await;
                (Some(plan), result)
            }
            Ok(_) => (None, Ok(())),
            Err(err) => (None, Err(err)),
        };
        self.room.done_sending();
        // Until the reading half is done: it may still see pings and refusals.
        let answered = self.answering(&mut sink, &mut errands, plan.as_deref(), std::future::pending::<()>()).await;
        (sink, result.err().or(answered.err()))
    }

    async fn send_all(
        &self,
        sink: &mut SplitSink<Ws, Message>,
        plan: &Plan,
        errands: &mut Errands,
    ) -> Result<(), String> {
        for step in 0..plan.rates.len() {
            let period = plan.period(step);
            let (start, end) = plan.step_bounds(step);
            let phase = period.mul_f64(rand::random::<f64>());
            // The interval's default behaviour for missed ticks (burst) is
            // what an open-loop schedule needs: after a stall, the overdue
            // sends go out at once, each stamped with its scheduled time.
            let mut ticker = tokio::time::interval_at((start + phase).into(), period);
            loop {
                let Answered::Done(at) = self.answering(sink, errands, Some(plan), ticker.tick()).await? else {
                    break;
                };
                let at = at.into_std();
                if at >= end || self.shared.finished.load(Ordering::SeqCst) {
                    break;
                }
                let t = micros_at(at);
                if let Some(step) = plan.window_of(t) {
                    plan.sent[step].fetch_add(1, Ordering::Relaxed);
                }
                self.shared.outstanding.fetch_add(1, Ordering::SeqCst);
                self.room.sent(1);
                self.send_chat(sink, plan, t).await?;
                self.timeline.now(Event::Sent);
            }
        }
        Ok(())
    }

    /// Sends the chat message scheduled for `t`. Everything in it follows
    /// from `t`, so a refused message is sent again as it was first sent:
    /// `t` is its ref (for ack latency) and, with the session, its
    /// `client_id` (the schedule's times of one session all differ).
    async fn send_chat(&self, sink: &mut SplitSink<Ws, Message>, plan: &Plan, t: u64) -> Result<(), String> {
        let frame = ClientFrame::Chat {
            reference: Some(t.to_string()),
            room: self.room_id.to_owned(),
            client_id: format!("{}-{t}", self.session),
            text: text_for(t, plan.size),
        };
        let text = encode(self.protocol, &frame).map_err(|err| err.to_string())?;
        sink.send(Message::Text(text.into())).await.map_err(|err| format!("send: {err}"))
    }

    /// Runs `until` while answering the Socket.IO pings that the reading
    /// half passes on (the hub's are WebSocket pings, which tungstenite
    /// answers) and sending again, when they are due, the messages it was
    /// asked to.
    async fn answering<T>(
        &self,
        sink: &mut SplitSink<Ws, Message>,
        errands: &mut Errands,
        plan: Option<&Plan>,
        until: impl Future<Output = T>,
    ) -> Result<Answered<T>, String> {
        tokio::pin!(until);
        loop {
            let next = errands.due.peek().map(|Reverse((due, _))| *due);
            // A message due again goes before the schedule's next, as a
            // client sends what it has waited longest to send first.
            tokio::select! {
                biased;
                () = sleep_until_some(next) => {
                    let Some(Reverse((_, t))) = errands.due.pop() else { continue };
                    // Refusals come only once the plan is out.
                    if let Some(plan) = plan {
                        self.send_chat(sink, plan, t).await?;
                    }
                }
                value = &mut until => return Ok(Answered::Done(value)),
                asked = errands.asked.recv() => match asked {
                    Some(Errand::Pong) => sink
                        .send(Message::Text(crate::socketio::PONG.into()))
                        .await
                        .map_err(|err| format!("send: {err}"))?,
                    Some(Errand::Resend(t, delay)) => errands.due.push(Reverse((Instant::now() + delay, t))),
                    None => return Ok(Answered::ReaderGone),
                },
            }
        }
    }
}

/// What the writing half does besides its schedule, at the reading half's
/// word.
struct Errands {
    /// What the reading half asks for.
    asked: mpsc::UnboundedReceiver<Errand>,
    /// Those not yet due, soonest first.
    due: BinaryHeap<Reverse<(Instant, u64)>>,
}

/// What the reading half asks the writing half to do.
enum Errand {
    /// Answer a Socket.IO ping.
    Pong,
    /// Send the message scheduled for this time again, after the delay.
    Resend(u64, Duration),
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// How [`Writer::answering`] ended.
enum Answered<T> {
    /// `until` finished with this.
    Done(T),
    /// The reading half ended first: nothing more will come to answer.
    ReaderGone,
}

/// Waits until the plan is published; `None` if the run was called off.
async fn wait_for_plan(plan: &mut watch::Receiver<Option<Arc<Plan>>>) -> Option<Arc<Plan>> {
    plan.wait_for(Option::is_some).await.ok().and_then(|p| p.clone())
}

/// The receiving half of a session.
struct Reader<'a> {
    protocol: Protocol,
    index: usize,
    room_id: &'a str,
    room: &'a RoomProgress,
    shared: &'a Shared,
    outcome: &'a mut SessionOutcome,
    timeline: &'a Timeline,
    /// Socket.IO pings to answer and refused messages to send again, for
    /// the writing half.
    errands: mpsc::UnboundedSender<Errand>,
    /// How often each message refused so far was sent again.
    tries: HashMap<u64, u32>,
}

impl Reader<'_> {
    async fn run(mut self, mut stream: SplitStream<Ws>, mut plan_rx: watch::Receiver<Option<Arc<Plan>>>) {
        // No deadline and no drain checks until the plan sets them; a month
        // is as good as never.
        let never = Instant::now() + Duration::from_secs(30 * 24 * 3600);
        let deadline = tokio::time::sleep_until(never.into());
        tokio::pin!(deadline);
        let mut drain_check = tokio::time::interval_at(never.into(), DRAIN_CHECK);
        let mut plan: Option<Arc<Plan>> = None;
        loop {
            // Until the plan is known, look for it on every turn: it may
            // have been published before this task first ran.
            if plan.is_none() {
                plan = plan_rx.borrow_and_update().clone();
                if let Some(p) = &plan {
                    deadline.as_mut().reset(p.stop.into());
                    // Once sending ends, look regularly whether the room has
                    // drained: that can become true without a frame arriving
                    // here (the peer's last ack, say).
                    drain_check = tokio::time::interval_at(p.send_end.into(), DRAIN_CHECK);
                    drain_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
            }
            tokio::select! {
                changed = plan_rx.changed(), if plan.is_none() => {
                    if changed.is_err() {
                        // The run was called off before it started.
                        break;
                    }
                }
                () = &mut deadline => break,
                _ = drain_check.tick() => {
                    if self.room.drained(&self.outcome.check) {
                        break;
                    }
                }
                message = stream.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(reason) = self.handle(text.as_str(), plan.as_deref()) {
                            self.outcome.closed = Some(reason);
                            break;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        self.outcome.closed = Some(close_reason(frame.as_ref()));
                        break;
                    }
                    // Pings are answered by tungstenite as it reads; nothing else is expected.
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        self.outcome.closed = Some(format!("read: {err}"));
                        break;
                    }
                    None => {
                        self.outcome.closed = Some("connection closed".into());
                        break;
                    }
                },
            }
        }
        // Nothing this session sent will be answered any more: take its
        // unanswered frames out of the room's count, so its peer need not
        // wait for them.
        self.shared.finished.store(true, Ordering::SeqCst);
        let unanswered = self.shared.outstanding.swap(0, Ordering::SeqCst);
        self.outcome.unanswered = u64::try_from(unanswered).unwrap_or(0);
        self.room.settled(unanswered);
    }

    /// Takes one text frame into account; returns why the server ended
    /// the session, if the frame says it did.
    fn handle(&mut self, text: &str, plan: Option<&Plan>) -> Option<String> {
        let now = now_micros();
        let frame = match decode(self.protocol, text) {
            Incoming::Frame(frame) => frame,
            Incoming::Ping => {
                // The writing half is gone only when sending failed, and
                // then the session is over anyway.
                let _ = self.errands.send(Errand::Pong);
                return None;
            }
            Incoming::Closed(reason) => return Some(reason),
            Incoming::Other => return None,
            Incoming::Unparsable => {
                bump(&mut self.outcome.errors, unparsable_key(text), 1);
                return None;
            }
        };
        match frame {
            ServerFrame::Message(message) => {
                if message.room != self.room_id {
                    self.outcome.misrouted += 1;
                    return None;
                }
                if let Some(client_id) = &message.client_id {
                    let mut hasher = std::hash::DefaultHasher::new();
                    (&message.from.id, client_id).hash(&mut hasher);
                    if !self.outcome.senders_ids.insert(hasher.finish()) && self.outcome.check.is_new(message.seq) {
                        self.outcome.stored_twice += 1;
                    }
                }
                let sent = sent_time(&message.text);
                match sent {
                    Some(sent) => self.timeline.delivered(now, now.saturating_sub(sent)),
                    None => self.timeline.count(Event::Delivered, now),
                }
                self.outcome.check.observe(message.seq);
                let plan = plan?;
                if let Some(step) = plan.window_of(now) {
                    plan.received[step].fetch_add(1, Ordering::Relaxed);
                }
                if let Some((step, sent)) = sent.and_then(|t| Some((plan.window_of(t)?, t))) {
                    plan.delivery.record(self.index, step, now.saturating_sub(sent));
                    // Patients are the even sessions, doctors the odd ones.
                    let own = if self.index.is_multiple_of(2) { "patient" } else { "doctor" };
                    if message.from.role != own {
                        plan.peer.record(self.index, step, now.saturating_sub(sent));
                    }
                }
            }
            ServerFrame::Ack { reference, seq, .. } => {
                self.timeline.count(Event::Acked, now);
                self.outcome.acks += 1;
                self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
                self.room.acked(seq);
                let sent = reference.and_then(|r| r.parse::<u64>().ok());
                if !self.tries.is_empty()
                    && let Some(t) = sent
                {
                    self.tries.remove(&t);
                }
                let plan = plan?;
                if let Some(step) = plan.window_of(now) {
                    plan.acked[step].fetch_add(1, Ordering::Relaxed);
                }
                if let Some((step, sent)) = sent.and_then(|t| Some((plan.window_of(t)?, t))) {
                    plan.ack.record(self.index, step, now.saturating_sub(sent));
                }
            }
            ServerFrame::Error { code, reference, retry_ms, .. } => {
                // Chat refs are the scheduled send times, all digits.
                let chat = reference.filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()));
                let Some(t) = chat.and_then(|r| r.parse::<u64>().ok()) else {
                    bump(&mut self.outcome.errors, code.as_str(), 1);
                    return None;
                };
                if let Some(delay) = plan.and_then(|plan| self.resend_delay(plan, t, code, retry_ms))
                    && self.errands.send(Errand::Resend(t, delay)).is_ok()
                {
                    bump(&mut self.outcome.resent, code.as_str(), 1);
                    return None;
                }
                // An error that answers a chat frame settles it.
                bump(&mut self.outcome.errors, code.as_str(), 1);
                self.tries.remove(&t);
                self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
                self.room.settled(1);
            }
            // Presence, pongs and the like carry nothing to measure.
            _ => {}
        }
        None
    }

    /// After how long to send the chat message scheduled for `t` again,
    /// refused with `code` ([`resend_delay`]); `None` when the refusal is
    /// final or the message was sent again as often as the plan allows.
    fn resend_delay(&mut self, plan: &Plan, t: u64, code: ErrorCode, retry_ms: Option<u64>) -> Option<Duration> {
        let tries = self.tries.entry(t).or_default();
        if *tries >= plan.resends {
            return None;
        }
        let delay = resend_delay(code, retry_ms, *tries)?;
        *tries += 1;
        Some(delay)
    }
}

/// The key under which an unparsable frame is counted: by its `type` when
/// it has one, so a frame type this tester does not know stands out.
fn unparsable_key(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => match value.get("type").and_then(Value::as_str) {
            Some(kind) => format!("unparsable {kind} frame"),
            None => "frame without a type".into(),
        },
        Err(_) => "frame that is not JSON".into(),
    }
}

/// Runs the scenario; returns whether it passed.
pub async fn run(args: ChatArgs) -> anyhow::Result<bool> {
    args.validate()?;
    check_file_limit(&args.target)?;
    let rooms = create_rooms(&args.target).await?;
    let progress: Vec<Arc<RoomProgress>> = rooms.iter().map(|_| Arc::default()).collect();
    let (plan_tx, plan_rx) = watch::channel(None);
    let timeline = Arc::new(Timeline::new());

    let mut connected = connect_all(&args.target, &rooms, |joined| {
        let room = Arc::clone(&progress[joined.room]);
        room.joined();
        timeline.now(Event::Opened);
        tokio::spawn(run_session(joined, args.target.protocol, room, plan_rx.clone(), Arc::clone(&timeline)))
    })
    .await?;
    let sessions = connected.sessions.len();
    if sessions == 0 {
        anyhow::bail!("no session could connect and join: {}", crate::stats::counts_line(&connected.failures));
    }

    let plan = Arc::new(Plan::new(&args, sessions));
    eprintln!(
        "chatting: {} step(s) of {:?} warm-up + {:?} measured at {} sends/s, then up to {:?} drain…",
        plan.rates.len(),
        args.warmup,
        args.duration,
        plan.rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", "),
        args.drain
    );
    // Every session task holds a receiver, so the plan reaches them all.
    let _ = plan_tx.send(Some(Arc::clone(&plan)));
    let live = tokio::spawn(show_progress(Arc::clone(&plan), Arc::clone(&timeline)));
    let outcomes = collect(std::mem::take(&mut connected.sessions)).await;
    live.abort();

    let report = report(&args, &plan, &progress, outcomes, &connected, &timeline);
    report.print();
    let judged = crate::thresholds::judge(&report, &args.target.thresholds)?;
    if let Some(path) = &args.target.json {
        write_json(path, &judged.json)?;
    }
    if let Some(path) = &args.html {
        crate::html::write(path, &crate::html::chat_page(&report, &judged.verdicts))?;
    }
    Ok(report.clean && judged.met())
}

/// Shows the current step and the rates of the last second on a spinner
/// until aborted (nothing without a terminal).
async fn show_progress(plan: Arc<Plan>, timeline: Arc<Timeline>) {
    let spinner = crate::progress::spinner();
    let _clear = crate::progress::ClearOnDrop(spinner.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let live = timeline.live();
        let phase = match plan.step_starts.iter().rposition(|start| *start <= now) {
            _ if now >= plan.send_end => "draining".to_owned(),
            Some(step) => format!("step {}/{} ({:.0}/s)", step + 1, plan.rates.len(), plan.rates[step]),
            None => "starting".to_owned(),
        };
        spinner.set_message(format!(
            "{phase} │ per s: sent {} · delivered {} · acked {} │ {} open",
            live.sent_per_s, live.delivered_per_s, live.acked_per_s, live.connections
        ));
    }
}

/// Waits for every session task. A task that panicked is a bug of this
/// tester, reported as a closed session rather than taking the run down.
async fn collect(tasks: Vec<JoinHandle<SessionOutcome>>) -> Vec<Result<SessionOutcome, String>> {
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.map_err(|err| format!("session task failed: {err}")));
    }
    outcomes
}

/// Merges what every session saw into the report.
fn report(
    args: &ChatArgs,
    plan: &Plan,
    progress: &[Arc<RoomProgress>],
    outcomes: Vec<Result<SessionOutcome, String>>,
    connected: &crate::client::Connected<JoinHandle<SessionOutcome>>,
    timeline: &Timeline,
) -> ChatReport {
    let mut errors = BTreeMap::new();
    let mut resent = BTreeMap::new();
    let mut closes = BTreeMap::new();
    let (mut duplicated, mut out_of_order, mut acks, mut closed_sessions) = (0u64, 0u64, 0u64, 0usize);
    let (mut unanswered, mut misrouted, mut stored_twice) = (0u64, 0u64, 0u64);
    // The highest seq each room is known to have stored: acked to one of
    // its sessions, or received by one.
    let mut room_highest: Vec<Option<i64>> = progress.iter().map(|p| p.max_acked()).collect();
    let mut checks = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(reason) => {
                closed_sessions += 1;
                bump(&mut closes, reason, 1);
                continue;
            }
        };
        for (code, n) in &outcome.errors {
            bump(&mut errors, code.as_str(), *n);
        }
        for (code, n) in &outcome.resent {
            bump(&mut resent, code.as_str(), *n);
        }
        if let Some(reason) = outcome.closed {
            closed_sessions += 1;
            bump(&mut closes, reason, 1);
        }
        duplicated += outcome.check.duplicated + outcome.stored_twice;
        stored_twice += outcome.stored_twice;
        out_of_order += outcome.check.out_of_order;
        acks += outcome.acks;
        unanswered += outcome.unanswered;
        misrouted += outcome.misrouted;
        let highest = &mut room_highest[outcome.room];
        *highest = Some(highest.map_or(outcome.check.highest(), |h| h.max(outcome.check.highest())));
        checks.push((outcome.room, outcome.check));
    }
    let sent_any = plan.sent.iter().any(|n| n.load(Ordering::Relaxed) > 0);
    let lost = checks.iter().map(|(room, check)| room_highest[*room].map_or(0, |highest| check.lost(highest))).sum();

    let delivery = plan.delivery.merged();
    let peer = plan.peer.merged();
    let ack = plan.ack.merged();
    let steps: Vec<StepReport> = (0..plan.rates.len())
        .map(|k| StepReport {
            offered_per_s: plan.rates[k],
            sent_per_s: per_second(plan.sent[k].load(Ordering::Relaxed), args.duration),
            delivered_per_s: per_second(plan.received[k].load(Ordering::Relaxed), args.duration),
            acked_per_s: per_second(plan.acked[k].load(Ordering::Relaxed), args.duration),
            latency_ms: StepLatency {
                delivery: Summary::of(&delivery[k]),
                peer: Summary::of(&peer[k]),
                ack: Summary::of(&ack[k]),
            },
        })
        .collect();
    let last = steps.last().cloned().expect("a run has at least one step");
    let scenario = serde_json::to_value(args).unwrap_or(Value::Null);
    let scenario = match scenario {
        Value::Object(mut flags) => {
            flags.insert("name".into(), "chat".into());
            Value::Object(flags)
        }
        other => other,
    };
    ChatReport {
        scenario,
        offered_per_s: last.offered_per_s,
        sent_per_s: last.sent_per_s,
        delivered_per_s: last.delivered_per_s,
        acked_per_s: last.acked_per_s,
        latency_ms: ChatLatency {
            delivery: last.latency_ms.delivery,
            peer: last.latency_ms.peer,
            ack: last.latency_ms.ack,
            join: Summary::of(&connected.join_latency),
        },
        lost,
        duplicated,
        out_of_order,
        errors,
        resent,
        sessions: plan.sessions,
        failed_sessions: connected.failed,
        failures: connected.failures.clone(),
        closed_sessions,
        closes,
        join_per_s: per_second(plan.sessions as u64, connected.elapsed),
        acked: acks,
        steps,
        distribution_ms: Distribution { delivery: distribution(&delivery), ack: distribution(&ack) },
        timeline: timeline.report(),
        unanswered,
        misrouted,
        stored_twice,
        clean: lost == 0
            && duplicated == 0
            && out_of_order == 0
            && connected.failed == 0
            && closed_sessions == 0
            && unanswered == 0
            && misrouted == 0
            && (acks > 0 || !sent_any),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rates: &[f64]) -> ChatArgs {
        use clap::Parser;
        let rates = rates.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",");
        let cli = crate::cli::Cli::try_parse_from([
            "telehub-loadtest",
            "chat",
            "--api-key",
            "k",
            "--rate",
            &rates,
            "--warmup",
            "1s",
            "--duration",
            "2s",
            "--drain",
            "1s",
        ])
        .unwrap();
        match cli.command {
            crate::cli::Command::Chat(args) => args,
            _ => unreachable!("the flags name the chat scenario"),
        }
    }

    #[test]
    fn texts_carry_their_send_time_and_size() {
        let text = text_for(123_456, 100);
        assert_eq!(text.len(), 100);
        assert!(text.starts_with("t=123456 x"));
        assert_eq!(sent_time(&text), Some(123_456));
        assert_eq!(sent_time(&text_for(7, 0)), Some(7), "the time survives a size below its length");
        assert_eq!(sent_time("hello"), None);
        assert_eq!(sent_time("t=abc x"), None);
    }

    #[test]
    fn the_plan_splits_the_rate_and_measures_after_the_warmup() {
        let plan = Plan::new(&args(&[1000.0, 4000.0]), 2000);
        // 2000 sessions sharing 1000 sends/s: each sends every 2 s.
        assert_eq!(plan.period(0), Duration::from_secs(2));
        assert_eq!(plan.period(1), Duration::from_millis(500));
        let (start0, end0) = plan.step_bounds(0);
        let (start1, end1) = plan.step_bounds(1);
        assert_eq!(end0, start1);
        assert_eq!(end0 - start0, Duration::from_secs(3), "warm-up plus duration");
        assert_eq!(end1, plan.send_end);
        assert_eq!(plan.stop - plan.send_end, Duration::from_secs(1));

        let warmup = micros_at(start0 + Duration::from_millis(500));
        let measured = micros_at(start0 + Duration::from_millis(1500));
        let second = micros_at(start1 + Duration::from_millis(2500));
        assert_eq!(plan.window_of(warmup), None);
        assert_eq!(plan.window_of(measured), Some(0));
        assert_eq!(plan.window_of(second), Some(1));
        assert_eq!(plan.window_of(micros_at(plan.send_end)), None, "the drain is not measured");
    }

    #[test]
    fn unknown_frames_are_counted_by_type() {
        assert_eq!(unparsable_key(r#"{"type":"brand_new","x":1}"#), "unparsable brand_new frame");
        assert_eq!(unparsable_key(r#"{"x":1}"#), "frame without a type");
        assert_eq!(unparsable_key("garbage"), "frame that is not JSON");
    }

    /// Runs the scenario against a mock hub and returns whether it passed,
    /// its JSON report, and how long it took.
    async fn run_against(faults: crate::mock_hub::Faults, drain: &str) -> (bool, Value, Duration) {
        let (passed, report, took, _) = run_with_html(faults, drain).await;
        (passed, report, took)
    }

    /// The same, with the HTML report's text too.
    async fn run_with_html(faults: crate::mock_hub::Faults, drain: &str) -> (bool, Value, Duration, String) {
        run_with_flags(faults, drain, &[]).await
    }

    /// The same, with more flags.
    async fn run_with_flags(
        faults: crate::mock_hub::Faults,
        drain: &str,
        more: &[&str],
    ) -> (bool, Value, Duration, String) {
        use clap::Parser;
        let hub = crate::mock_hub::MockHub::start(faults).await;
        let name = format!("telehub-loadtest-{}-{}", std::process::id(), rand::random::<u32>());
        let json = std::env::temp_dir().join(format!("{name}.json"));
        let html = std::env::temp_dir().join(format!("{name}.html"));
        let flags = [
            "telehub-loadtest",
            "chat",
            "--url",
            &hub.url,
            "--api-key",
            "k",
            "--rooms",
            "4",
            "--rate",
            "400,800",
            "--warmup",
            "200ms",
            "--duration",
            "600ms",
            "--drain",
            drain,
            "--ramp",
            "100ms",
            "--source-addrs",
            "127.0.0.1",
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ];
        let cli = crate::cli::Cli::try_parse_from(flags.iter().chain(more)).unwrap();
        let crate::cli::Command::Chat(args) = cli.command else { unreachable!() };
        let started = Instant::now();
        let passed = run(args).await.unwrap();
        let took = started.elapsed();
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let page = std::fs::read_to_string(&html).unwrap();
        let _ = std::fs::remove_file(&json);
        let _ = std::fs::remove_file(&html);
        (passed, report, took, page)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_html_report_plots_what_the_run_counted() {
        let (passed, report, _, page) = run_with_html(crate::mock_hub::Faults::default(), "10s").await;
        assert!(passed, "{report:#}");
        assert!(page.starts_with("<!doctype html>") && page.contains("chat <span class=\"pass\">PASS</span>"));
        assert_eq!(page.matches("<svg").count(), 4, "distribution, throughput, latency over time, connections");
        // Delivery and ack; sent, delivered and acked; p50, p99 and max;
        // connections.
        assert_eq!(page.matches("<polyline").count(), 2 + 3 + 3 + 1);
        // The timeline counts every frame of the run, warm-up and drain included.
        let timeline = &report["timeline"];
        let total = |key: &str| timeline[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum::<u64>();
        assert_eq!(total("acked_per_s"), report["acked"].as_u64().unwrap());
        assert_eq!(total("sent_per_s"), total("acked_per_s"), "nothing lost: every send acked");
        assert_eq!(total("delivered_per_s"), 2 * total("sent_per_s"), "two sessions per room");
        let connections: Vec<i64> =
            timeline["connections"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(connections.iter().max(), Some(&8), "{connections:?}");
        assert_eq!(connections.last(), Some(&0), "every session closed at the end");
        // Each second with deliveries has its latency, p50 <= p99 <= max,
        // and the slowest second's maximum is the run's.
        let delivery = &timeline["delivery_ms"];
        let series = |key: &str| delivery[key].as_array().unwrap().iter().map(Value::as_f64).collect::<Vec<_>>();
        let (p50, p99, max) = (series("p50"), series("p99"), series("max"));
        let delivered = timeline["delivered_per_s"].as_array().unwrap();
        assert_eq!((p50.len(), max.len()), (delivered.len(), delivered.len()));
        for (second, count) in delivered.iter().enumerate() {
            let (a, b, c) = (p50[second], p99[second], max[second]);
            assert_eq!(count.as_u64() == Some(0), c.is_none(), "second {second}: {count} deliveries, max {c:?}");
            if let (Some(a), Some(b), Some(c)) = (a, b, c) {
                assert!(0.0 < a && a <= b && b <= c, "second {second}: {a} {b} {c}");
            }
        }
        let slowest = max.iter().flatten().copied().fold(0.0, f64::max);
        let run_max: f64 = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["latency_ms"]["delivery"]["max"].as_f64().unwrap())
            .fold(0.0, f64::max);
        // The timeline keeps the exact maximum; the steps' HDR histograms
        // (3 significant digits) report theirs rounded up to its bucket,
        // up to a thousandth above.
        assert!(slowest * 1.002 >= run_max, "the measured steps are inside the run: {slowest} < {run_max}");
        // Percentiles rise with the percentile.
        let delivery = report["distribution_ms"]["delivery"].as_array().unwrap();
        let ms: Vec<f64> = delivery.iter().map(|p| p[1].as_f64().unwrap()).collect();
        assert!(ms.windows(2).all(|w| w[0] <= w[1]) && ms.len() == 13, "{ms:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hub_that_delivers_everything_passes_without_waiting_out_the_drain() {
        let (passed, report, took) = run_against(crate::mock_hub::Faults::default(), "10s").await;
        assert!(passed, "{report:#}");
        assert_eq!(report["sessions"], 8);
        assert_eq!(report["lost"], 0);
        assert_eq!(report["duplicated"], 0);
        assert_eq!(report["out_of_order"], 0);
        assert_eq!(report["scenario"]["rooms"], 4);
        assert!(report["scenario"].get("api_key").is_none());
        let steps = report["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2);
        // Offered 800 sends/s in the last step: about 1600 deliveries/s.
        let delivered = report["delivered_per_s"].as_f64().unwrap();
        assert!((1200.0..2000.0).contains(&delivered), "{report:#}");
        let deliveries = report["latency_ms"]["delivery"]["count"].as_u64().unwrap();
        assert!(deliveries > 0);
        // Half the deliveries go to the room's other session.
        let peer = report["latency_ms"]["peer"]["count"].as_u64().unwrap();
        assert!(peer * 2 >= deliveries - deliveries / 10 && peer * 2 <= deliveries + deliveries / 10, "{report:#}");
        assert!(report["latency_ms"]["ack"]["p99"].as_f64().unwrap() > 0.0);
        assert_eq!(report["latency_ms"]["join"]["count"], 8);
        // Two steps of 0.8 s and a little setup; a drain waited out would add 10 s.
        assert!(took < Duration::from_secs(6), "took {took:?}");
    }

    /// The Socket.IO peer of the benchmark suite, a real Node.js process
    /// (its npm packages are installed by scripts/test), on a free port.
    struct SocketIoPeer {
        url: String,
        _child: tokio::process::Child,
    }

    impl SocketIoPeer {
        async fn start(ping_interval_ms: u64) -> SocketIoPeer {
            use tokio::io::AsyncBufReadExt;
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/socketio");
            assert!(
                dir.join("node_modules/socket.io").is_dir(),
                "the Socket.IO peer's packages are missing: run scripts/test, or npm ci in {}",
                dir.display()
            );
            let mut child = tokio::process::Command::new("node")
                .arg("server.js")
                .current_dir(&dir)
                .env("PORT", "0")
                .env("PING_INTERVAL_MS", ping_interval_ms.to_string())
                .env("PING_TIMEOUT_MS", ping_interval_ms.to_string())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("node runs");
            let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
            let line = lines.next_line().await.unwrap().expect("the peer says where it listens");
            let url = line.rsplit(' ').next().unwrap().to_owned();
            assert!(url.starts_with("http://127.0.0.1:"), "{line}");
            // Keep reading its output so that it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            SocketIoPeer { url, _child: child }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drives_the_socketio_peer_and_answers_its_pings() {
        use clap::Parser;
        // Pings every 200 ms with 200 ms to answer: a session that did not
        // answer them would be disconnected long before the run ends.
        let peer = SocketIoPeer::start(200).await;
        let json = std::env::temp_dir().join(format!("telehub-loadtest-sio-{}.json", rand::random::<u32>()));
        let cli = crate::cli::Cli::try_parse_from([
            "telehub-loadtest",
            "chat",
            "--protocol",
            "socketio",
            "--url",
            &peer.url,
            "--api-key",
            "k",
            "--rooms",
            "5",
            "--rate",
            "200",
            "--warmup",
            "500ms",
            "--duration",
            "1500ms",
            "--drain",
            "5s",
            "--json",
            json.to_str().unwrap(),
        ])
        .unwrap();
        let crate::cli::Command::Chat(args) = cli.command else { unreachable!() };
        let passed = run(args).await.unwrap();
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let _ = std::fs::remove_file(&json);
        assert!(passed, "{report:#}");
        assert_eq!(report["sessions"], 10);
        assert_eq!(report["closed_sessions"], 0, "pings answered, nobody dropped: {report:#}");
        assert_eq!((report["lost"].as_u64(), report["duplicated"].as_u64()), (Some(0), Some(0)));
        assert_eq!(report["scenario"]["protocol"], "socketio");
        let deliveries = report["latency_ms"]["delivery"]["count"].as_u64().unwrap();
        let acks = report["latency_ms"]["ack"]["count"].as_u64().unwrap();
        assert!(acks > 0 && deliveries == 2 * acks, "every acked message reached both sessions: {report:#}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn socketio_refuses_what_it_has_not() {
        let peer = SocketIoPeer::start(25_000).await;
        let endpoint = crate::client::Endpoint::resolve(&peer.url, Protocol::SocketIo).await.unwrap();
        // A token the peer cannot read is refused at connect.
        let Err(err) = crate::client::connect(&endpoint, "not-a-token", None).await else { panic!("not refused") };
        assert!(format!("{err:#}").contains("connect refused: unauthorized"), "{err:#}");
        // Chat in a room the session has not joined is refused, with the ref.
        let api = crate::api::Api::new(&crate::cli::Target { urls: vec![peer.url.clone()], ..test_target() }).unwrap();
        let token = api.token("p-1", "Patient 1", "patient", None).await.unwrap();
        let (mut ws, _) = crate::client::connect(&endpoint, &token, None).await.unwrap();
        let frame = ClientFrame::Chat {
            reference: Some("5".into()),
            room: "r-9".into(),
            client_id: "c".into(),
            text: "hi".into(),
        };
        ws.send(Message::Text(encode(Protocol::SocketIo, &frame).unwrap().into())).await.unwrap();
        loop {
            let Some(Ok(Message::Text(text))) = ws.next().await else { panic!("connection ended") };
            if let Incoming::Frame(ServerFrame::Error { reference, code, .. }) = decode(Protocol::SocketIo, &text) {
                assert_eq!((reference.as_deref(), code.as_str()), (Some("5"), "forbidden"));
                break;
            }
        }
    }

    fn test_target() -> crate::cli::Target {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["telehub-loadtest", "chat", "--api-key", "k"]).unwrap();
        match cli.command {
            crate::cli::Command::Chat(args) => args.target,
            _ => unreachable!(),
        }
    }

    /// The sends, acks and deliveries of a whole run, from its timeline.
    fn totals(report: &Value) -> (u64, u64, u64) {
        let timeline = &report["timeline"];
        let total = |key: &str| timeline[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum::<u64>();
        (total("sent_per_s"), total("acked_per_s"), total("delivered_per_s"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_an_overloaded_hub_refuses_are_sent_again_and_delivered() {
        let faults = crate::mock_hub::Faults { shed_every: Some(4), ..Default::default() };
        let (passed, report, _, page) = run_with_html(faults, "10s").await;
        assert!(passed, "{report:#}");
        let resent = report["resent"]["unavailable"].as_u64().unwrap_or(0);
        let (sent, acked, delivered) = totals(&report);
        // A quarter of the chat frames were refused, the resends among them.
        assert!(resent * 5 >= sent && resent * 3 <= sent, "{resent} of {sent} refused: {report:#}");
        assert_eq!(report["errors"], serde_json::json!({}), "a refusal that was sent again is not an error");
        assert_eq!(acked, sent, "every message acked in the end");
        assert_eq!(delivered, 2 * sent, "and delivered to both sessions");
        assert_eq!((report["lost"].as_u64(), report["unanswered"].as_u64()), (Some(0), Some(0)));
        assert!(page.contains(&format!("refused and sent again: unavailable {resent}")), "{page}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_resends_a_refusal_is_an_error_and_settles_the_message() {
        let faults = crate::mock_hub::Faults { shed_every: Some(4), ..Default::default() };
        let (passed, report, _, _) = run_with_flags(faults, "10s", &["--resends", "0"]).await;
        assert!(passed, "nothing acked was lost: {report:#}");
        let refused = report["errors"]["unavailable"].as_u64().unwrap_or(0);
        let (sent, acked, delivered) = totals(&report);
        assert!(refused > 0 && refused + acked == sent, "{refused} refused + {acked} acked of {sent}: {report:#}");
        assert_eq!(delivered, 2 * acked);
        assert_eq!(report["resent"], serde_json::json!({}));
        assert_eq!(report["unanswered"], 0, "a refusal answers its frame");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_threshold_not_met_fails_a_run_that_passed_its_checks() {
        let faults = crate::mock_hub::Faults::default();
        let met = ["--threshold", "lost==0,errors==0", "--threshold", "steps.1.delivered_per_s>0"];
        let (passed, report, _, _) = run_with_flags(faults, "10s", &met).await;
        assert!(passed, "{report:#}");
        let verdicts = report["thresholds"].as_array().unwrap();
        assert_eq!(verdicts.len(), 3);
        assert!(verdicts.iter().all(|v| v["met"] == true), "{verdicts:?}");
        assert_eq!(
            report["scenario"]["thresholds"],
            serde_json::json!(["lost==0", "errors==0", "steps.1.delivered_per_s>0"])
        );

        // No hub delivers in under a nanosecond.
        let (passed, report, _, page) =
            run_with_flags(faults, "10s", &["--threshold", "lost==0,latency_ms.delivery.p99<0.000001"]).await;
        assert!(!passed, "{report:#}");
        assert!(page.contains("chat <span class=\"fail\">FAIL</span>"), "the page says so too");
        assert!(page.contains("<td>latency_ms.delivery.p99&lt;0.000001</td>"), "{page}");
        assert_eq!(page.matches("class=\"fail\">not met").count(), 1);
        assert_eq!(report["clean"], true, "the checks passed");
        let missed = &report["thresholds"][1];
        assert_eq!(missed["met"], false, "{missed}");
        assert_eq!(missed["value"], report["latency_ms"]["delivery"]["p99"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lost_messages_fail_the_run() {
        let faults = crate::mock_hub::Faults { drop_every: Some(7), ..Default::default() };
        let (passed, report, _) = run_against(faults, "500ms").await;
        assert!(!passed);
        assert!(report["lost"].as_u64().unwrap() > 0, "{report:#}");
        assert_eq!(report["duplicated"], 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duplicated_messages_fail_the_run() {
        let faults = crate::mock_hub::Faults { duplicate: true, ..Default::default() };
        let (passed, report, _) = run_against(faults, "500ms").await;
        assert!(!passed);
        assert!(report["duplicated"].as_u64().unwrap() > 0, "{report:#}");
        assert_eq!(report["lost"], 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hub_that_answers_no_chat_fails_the_run() {
        let faults = crate::mock_hub::Faults { swallow_chat: true, ..Default::default() };
        let (passed, report, _) = run_against(faults, "500ms").await;
        assert!(!passed, "nothing acked, nothing delivered: {report:#}");
        assert_eq!((&report["lost"], &report["acked"]), (&serde_json::json!(0), &serde_json::json!(0)), "{report:#}");
        assert!(report["unanswered"].as_u64().unwrap() > 0, "{report:#}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_send_stored_twice_fails_the_run() {
        let faults = crate::mock_hub::Faults { store_twice: true, ..Default::default() };
        let (passed, report, _) = run_against(faults, "500ms").await;
        assert!(!passed);
        let twice = report["stored_twice"].as_u64().unwrap();
        assert!(twice > 0 && report["duplicated"].as_u64().unwrap() >= twice, "{report:#}");
        assert_eq!(
            (&report["lost"], &report["out_of_order"], &report["unanswered"]),
            (&serde_json::json!(0), &serde_json::json!(0), &serde_json::json!(0))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn setup_waits_out_the_hubs_rate_limit() {
        // Every third setup call is refused with 429: without waiting and
        // retrying, the setup would fail and the run with it.
        let faults = crate::mock_hub::Faults { throttle_every: Some(3), ..Default::default() };
        let (passed, report, _) = run_against(faults, "500ms").await;
        assert!(passed, "{report:#}");
        assert_eq!(report["sessions"], 8);
    }
}
