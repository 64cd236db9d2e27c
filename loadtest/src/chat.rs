//! The chat scenario: rooms of a patient and a doctor chatting at a fixed
//! offered rate, one step per rate.
//!
//! Each session sends on a fixed schedule with a random phase. A message's
//! text starts with its *scheduled* send time, so latency counts from when
//! the message should have gone out: a hub that stalls the sender cannot
//! hide the stall (coordinated omission). Every `message` received records
//! send-to-delivery latency; every `ack` records ack latency.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use telehub_signaling::{ClientFrame, ServerFrame};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::ChatArgs;
use crate::client::{Joined, connect_all};
use crate::setup::create_rooms;
use crate::stats::{SeqCheck, Summary, histogram, micros_at, now_micros};

/// What one session saw.
struct SessionResult {
    room: usize,
    delivery: Vec<Histogram<u64>>,
    ack: Vec<Histogram<u64>>,
    /// Messages received inside each step's measured window.
    received: Vec<u64>,
    acks: Vec<u64>,
    check: SeqCheck,
    acked: Vec<i64>,
    errors: BTreeMap<String, u64>,
    closed: Option<String>,
}

/// The measured windows of the steps, on the `now_micros` clock.
#[derive(Clone)]
struct Plan {
    rates: Vec<f64>,
    step_start: Vec<Instant>,
    windows: Vec<(u64, u64)>,
    send_end: Instant,
    stop: Instant,
    sessions: usize,
    size: usize,
}

impl Plan {
    fn window_of(&self, t: u64) -> Option<usize> {
        self.windows.iter().position(|(a, b)| t >= *a && t < *b)
    }
}

/// The chat text: scheduled send time first, then padding to `size`.
fn text_for(t: u64, size: usize) -> String {
    let mut text = format!("t={t} ");
    while text.len() < size {
        text.push('x');
    }
    text
}

fn sent_time(text: &str) -> Option<u64> {
    text.strip_prefix("t=")?.split(' ').next()?.parse().ok()
}

async fn drive(joined: Joined, plan: Plan) -> SessionResult {
    let steps = plan.rates.len();
    let mut result = SessionResult {
        room: joined.room,
        delivery: (0..steps).map(|_| histogram()).collect(),
        ack: (0..steps).map(|_| histogram()).collect(),
        received: vec![0; steps],
        acks: vec![0; steps],
        check: SeqCheck::new(joined.since),
        acked: Vec::new(),
        errors: BTreeMap::new(),
        closed: None,
    };
    let Joined { ws, session, room_id, .. } = joined;
    let (mut sink, mut stream) = ws.split();

    let writer = async {
        let mut sent = 0u64;
        for (step, rate) in plan.rates.iter().enumerate() {
            let period = Duration::from_secs_f64(plan.sessions as f64 / rate.max(0.001));
            let end = plan.step_start.get(step + 1).copied().unwrap_or(plan.send_end);
            let phase = period.mul_f64(rand::random::<f64>());
            let mut ticker = tokio::time::interval_at((plan.step_start[step] + phase).into(), period);
            loop {
                let at = ticker.tick().await.into_std();
                if at >= end {
                    break;
                }
                let t = micros_at(at);
                sent += 1;
                let frame = ClientFrame::Chat {
                    reference: Some(t.to_string()),
                    room: room_id.clone(),
                    client_id: format!("{session}-{sent}"),
                    text: text_for(t, plan.size),
                };
                let text = serde_json::to_string(&frame).expect("frames serialize");
                if sink.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        }
        // Keep the sink open (and so the session) until the reader is done.
        std::future::pending::<()>().await;
    };

    let reader = async {
        let stop = tokio::time::sleep_until(plan.stop.into());
        tokio::pin!(stop);
        loop {
            let message = tokio::select! {
                () = &mut stop => break,
                message = stream.next() => message,
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    result.closed = Some(format!("closed by the hub: {frame:?}"));
                    break;
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => {
                    result.closed = Some(err.to_string());
                    break;
                }
                None => {
                    result.closed = Some("connection closed".into());
                    break;
                }
            };
            let now = now_micros();
            let in_window = plan.window_of(now);
            match serde_json::from_str::<ServerFrame>(&text) {
                Ok(ServerFrame::Message(message)) => {
                    result.check.observe(message.seq);
                    if let Some(step) = in_window {
                        result.received[step] += 1;
                    }
                    if let Some(sent) = sent_time(&message.text) {
                        if let Some(step) = plan.window_of(sent) {
                            let _ = result.delivery[step].record(now.saturating_sub(sent).max(1));
                        }
                    }
                }
                Ok(ServerFrame::Ack { reference, seq, .. }) => {
                    result.acked.push(seq);
                    if let Some(step) = in_window {
                        result.acks[step] += 1;
                    }
                    if let Some(sent) = reference.and_then(|r| r.parse::<u64>().ok()) {
                        if let Some(step) = plan.window_of(sent) {
                            let _ = result.ack[step].record(now.saturating_sub(sent).max(1));
                        }
                    }
                }
                Ok(ServerFrame::Error { code, .. }) => *result.errors.entry(code.as_str().to_owned()).or_default() += 1,
                Ok(_) => {}
                Err(err) => *result.errors.entry(format!("unparsable frame: {err}")).or_default() += 1,
            }
        }
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
    result
}

/// Runs the scenario; returns whether the run was clean.
pub async fn run(args: ChatArgs) -> anyhow::Result<bool> {
    let target = &args.target;
    anyhow::ensure!(!args.rate.is_empty() && args.rate.iter().all(|r| *r > 0.0), "rates must be positive");
    now_micros();
    eprintln!("creating {} consultations and their tokens…", target.rooms);
    let setup_started = Instant::now();
    let rooms = create_rooms(target).await?;
    eprintln!("  done in {:.1} s", setup_started.elapsed().as_secs_f64());
    eprintln!("connecting and joining {} sessions…", rooms.len() * 2);
    let join_started = Instant::now();
    let (joined, failed) = connect_all(target, &rooms).await?;
    let join_secs = join_started.elapsed().as_secs_f64();
    eprintln!("  {} joined in {join_secs:.1} s, {} failed", joined.len(), failed.len());
    for error in failed.iter().take(5) {
        eprintln!("  failed: {error}");
    }
    let mut join_hist = histogram();
    for j in &joined {
        let _ = join_hist.record(j.join_us.max(1));
    }

    let step_len = args.warmup + args.duration;
    let start = Instant::now() + Duration::from_millis(500);
    let step_start: Vec<Instant> = (0..args.rate.len()).map(|k| start + step_len * k as u32).collect();
    let windows = step_start.iter().map(|s| (micros_at(*s + args.warmup), micros_at(*s + step_len))).collect();
    let send_end = start + step_len * args.rate.len() as u32;
    let plan = Plan {
        rates: args.rate.clone(),
        step_start,
        windows,
        send_end,
        stop: send_end + args.drain,
        sessions: joined.len(),
        size: args.size.max(16),
    };
    eprintln!("chatting: {} step(s) of {:?} warm-up + {:?} measured, then {:?} drain…", plan.rates.len(), args.warmup, args.duration, args.drain);
    let tasks: Vec<_> = joined.into_iter().map(|j| tokio::spawn(drive(j, plan.clone()))).collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await?);
    }
    Ok(report(&args, &plan, results, failed.len(), &join_hist, join_secs, rooms.len() * 2))
}

fn report(args: &ChatArgs, plan: &Plan, results: Vec<SessionResult>, failed: usize, join: &Histogram<u64>, join_secs: f64, wanted: usize) -> bool {
    let steps = plan.rates.len();
    let secs = args.duration.as_secs_f64();
    let mut delivery: Vec<Histogram<u64>> = (0..steps).map(|_| histogram()).collect();
    let mut ack: Vec<Histogram<u64>> = (0..steps).map(|_| histogram()).collect();
    let mut received = vec![0u64; steps];
    let mut acks = vec![0u64; steps];
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let (mut duplicated, mut out_of_order, mut closed) = (0u64, 0u64, 0u64);
    let mut acked_by_room: BTreeMap<usize, BTreeSet<i64>> = BTreeMap::new();
    for r in &results {
        for k in 0..steps {
            let _ = delivery[k].add(&r.delivery[k]);
            let _ = ack[k].add(&r.ack[k]);
            received[k] += r.received[k];
            acks[k] += r.acks[k];
        }
        for (code, n) in &r.errors {
            *errors.entry(code.clone()).or_default() += n;
        }
        duplicated += r.check.duplicated;
        out_of_order += r.check.out_of_order;
        closed += u64::from(r.closed.is_some());
        acked_by_room.entry(r.room).or_default().extend(&r.acked);
    }
    let lost: u64 = results.iter().map(|r| r.check.missing(acked_by_room.get(&r.room).into_iter().flatten())).sum();
    let acked_total: usize = acked_by_room.values().map(BTreeSet::len).sum();

    println!();
    println!("sessions: {} joined of {wanted} ({failed} failed), join rate {:.0}/s, join latency p50 {:.1} ms p99 {:.1} ms",
        results.len(), results.len() as f64 / join_secs.max(1e-9), Summary::of(join).p50, Summary::of(join).p99);
    println!("{:>10} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}", "offered/s", "delivered/s", "acked/s", "del p50", "del p90", "del p99", "del max", "ack p50", "ack p99");
    let mut json_steps = Vec::new();
    for k in 0..steps {
        let d = Summary::of(&delivery[k]);
        let a = Summary::of(&ack[k]);
        let delivered_per_s = received[k] as f64 / secs;
        let acked_per_s = acks[k] as f64 / secs;
        println!("{:>10.0} {:>12.0} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}", plan.rates[k], delivered_per_s, acked_per_s, d.p50, d.p90, d.p99, d.max, a.p50, a.p99);
        json_steps.push(json!({
            "offered_per_s": plan.rates[k],
            "delivered_per_s": delivered_per_s,
            "acked_per_s": acked_per_s,
            "latency_ms": {"delivery": d, "ack": a},
        }));
    }
    println!("acked messages: {acked_total}; lost: {lost}, duplicated: {duplicated}, out of order: {out_of_order}; sessions closed early: {closed}");
    if !errors.is_empty() {
        println!("errors: {errors:?}");
    }
    let clean = lost == 0 && duplicated == 0 && out_of_order == 0 && failed == 0 && closed == 0;
    if let Some(path) = &args.target.json {
        let last = json_steps.last().cloned().unwrap_or(json!({}));
        let report = json!({
            "scenario": {
                "kind": "chat",
                "url": args.target.url,
                "rooms": args.target.rooms,
                "sessions": wanted,
                "rates": plan.rates,
                "duration_s": secs,
                "warmup_s": args.warmup.as_secs_f64(),
                "size": plan.size,
            },
            "delivered_per_s": last["delivered_per_s"],
            "latency_ms": {"delivery": last["latency_ms"]["delivery"], "ack": last["latency_ms"]["ack"], "join": Summary::of(join)},
            "steps": json_steps,
            "join_per_s": results.len() as f64 / join_secs.max(1e-9),
            "acked": acked_total,
            "lost": lost,
            "duplicated": duplicated,
            "out_of_order": out_of_order,
            "errors": errors,
            "failed_sessions": failed,
            "closed_sessions": closed,
            "clean": clean,
        });
        if let Err(err) = std::fs::write(path, serde_json::to_string_pretty(&report).expect("json")) {
            eprintln!("cannot write {}: {err}", path.display());
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_carry_their_send_time() {
        let text = text_for(123_456, 40);
        assert_eq!(text.len(), 40);
        assert_eq!(sent_time(&text), Some(123_456));
        assert_eq!(sent_time("hello"), None);
    }
}
