//! The idle scenario: hold many joined sessions and measure what they cost
//! the hub: resident memory per session, and the join rate.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::cli::IdleArgs;
use crate::client::connect_all;
use crate::setup::create_rooms;
use crate::stats::{Summary, histogram};

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until the RSS stops moving (two readings a second apart within
/// 1%), at most 10 s, and returns it.
async fn settled_rss(pid: u32) -> Option<u64> {
    let mut last = rss_kib(pid)?;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = rss_kib(pid)?;
        if now.abs_diff(last) * 100 <= last {
            return Some(now);
        }
        last = now;
    }
    Some(last)
}

pub async fn run(args: IdleArgs) -> anyhow::Result<bool> {
    let target = &args.target;
    let rss_before = match args.pid {
        Some(pid) => settled_rss(pid).await,
        None => None,
    };
    eprintln!("creating {} consultations and their tokens…", target.rooms);
    let rooms = create_rooms(target).await?;
    eprintln!("connecting and joining {} sessions…", rooms.len() * 2);
    let started = Instant::now();
    let (joined, failed) = connect_all(target, &rooms).await?;
    let secs = started.elapsed().as_secs_f64();
    let mut join = histogram();
    for j in &joined {
        let _ = join.record(j.join_us.max(1));
    }
    let sessions = joined.len();
    // Keep reading every socket, so pings are answered and nothing backs up.
    let readers: Vec<_> = joined
        .into_iter()
        .map(|j| {
            let mut ws = j.ws;
            tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
        })
        .collect();
    let rss_after = match args.pid {
        Some(pid) => settled_rss(pid).await,
        None => None,
    };
    tokio::time::sleep(args.hold).await;
    let per_session = match (rss_before, rss_after) {
        (Some(before), Some(after)) if sessions > 0 => Some(after.saturating_sub(before) as f64 / sessions as f64),
        _ => None,
    };
    let j = Summary::of(&join);
    println!();
    println!("sessions joined: {sessions} of {} ({} failed) in {secs:.1} s: {:.0} joins/s", rooms.len() * 2, failed.len(), sessions as f64 / secs.max(1e-9));
    println!("join latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", j.p50, j.p99, j.max);
    for error in failed.iter().take(5) {
        println!("failed: {error}");
    }
    if let (Some(before), Some(after), Some(per)) = (rss_before, rss_after, per_session) {
        println!("hub RSS: {before} KiB before, {after} KiB with the sessions: {per:.1} KiB per session");
    }
    if let Some(path) = &target.json {
        let report = json!({
            "scenario": {"kind": "idle", "url": target.url, "rooms": target.rooms, "sessions": rooms.len() * 2},
            "sessions": sessions,
            "failed_sessions": failed.len(),
            "join_per_s": sessions as f64 / secs.max(1e-9),
            "latency_ms": {"join": j},
            "rss_kib_before": rss_before,
            "rss_kib_after": rss_after,
            "rss_kib_per_session": per_session,
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    for reader in readers {
        reader.abort();
    }
    Ok(failed.is_empty())
}
