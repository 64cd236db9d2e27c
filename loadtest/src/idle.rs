//! The idle scenario: connect and join many sessions, hold them without
//! sending anything, and measure what they cost the hub: the join rate, the
//! failures, and (with `--pid`) its resident memory per joined session.
//!
//! Held sessions keep reading their sockets. Nothing they receive needs an
//! answer from the test, but tungstenite answers the hub's WebSocket pings
//! while it reads, and a session that stopped reading would be dropped by
//! the hub's heartbeat and counted as a close.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::api::create_rooms;
use crate::cli::{IdleArgs, Protocol};
use crate::client::{Incoming, Ws, check_file_limit, close_reason, connect_all, decode};
use crate::stats::{IdleLatency, IdleReport, Summary, bump, per_second, write_json};

/// VmRSS of a process in KiB, from `/proc/PID/status`.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|err| anyhow::anyhow!("cannot read {path}: {err}"))?;
    parse_vm_rss(&status).ok_or_else(|| anyhow::anyhow!("no VmRSS line in {path}"))
}

/// The `VmRSS:  12345 kB` line of a `/proc/PID/status` text.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether two readings are within 1% of each other.
fn settled(previous: u64, now: u64) -> bool {
    now.abs_diff(previous).saturating_mul(100) < previous.max(1)
}

/// Reads the RSS once a second until two readings are within 1%, for at
/// most 10 s, and returns the last reading. The hub's allocator and its
/// background work (group commits, room actors starting) take a moment to
/// come to rest after a burst of joins.
async fn settled_rss(pid: u32) -> anyhow::Result<u64> {
    let mut last = rss_kib(pid)?;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = rss_kib(pid)?;
        if settled(last, now) {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// Holds one session until `stop`; returns why it ended early, if it did.
async fn hold(mut ws: Ws, protocol: Protocol, mut stop: watch::Receiver<bool>) -> Option<String> {
    loop {
        tokio::select! {
            // The only change ever sent is the stop (and a dropped sender
            // means the run is over too).
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return None;
            }
            message = ws.next() => match message {
                Some(Ok(Message::Close(frame))) => return Some(close_reason(frame.as_ref())),
                // Socket.IO's pings are frames of its own protocol.
                Some(Ok(Message::Text(text))) if protocol == Protocol::SocketIo => match decode(protocol, &text) {
                    Incoming::Ping => {
                        if let Err(err) = ws.send(Message::Text(crate::socketio::PONG.into())).await {
                            return Some(format!("send: {err}"));
                        }
                    }
                    Incoming::Closed(reason) => return Some(reason),
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(err)) => return Some(format!("read: {err}")),
                None => return Some("connection closed".into()),
            },
        }
    }
}

/// Runs the scenario; returns whether every session joined and stayed.
pub async fn run(args: IdleArgs) -> anyhow::Result<bool> {
    let target = &args.target;
    target.validate()?;
    check_file_limit(target)?;
    // Fail before any setup if the hub's memory cannot be read.
    if let Some(pid) = args.pid {
        rss_kib(pid)?;
    }
    let rooms = create_rooms(target).await?;
    let rss_before = match args.pid {
        Some(pid) => Some(settled_rss(pid).await?),
        None => None,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let connected =
        connect_all(target, &rooms, |joined| tokio::spawn(hold(joined.ws, target.protocol, stop_rx.clone()))).await?;
    let sessions = connected.sessions.len();

    let rss_after = match args.pid {
        Some(pid) => Some(settled_rss(pid).await?),
        None => None,
    };
    eprintln!("holding {sessions} sessions for {:?}…", args.hold);
    tokio::time::sleep(args.hold).await;
    let rss_end = match args.pid {
        Some(pid) => Some(rss_kib(pid)?),
        None => None,
    };

    let _ = stop_tx.send(true);
    let mut closes = BTreeMap::new();
    let mut closed_sessions = 0;
    for task in connected.sessions {
        let early = task.await.unwrap_or_else(|err| Some(format!("session task failed: {err}")));
        if let Some(reason) = early {
            closed_sessions += 1;
            bump(&mut closes, reason, 1);
        }
    }

    let rss_kib_per_session = match (rss_before, rss_after) {
        (Some(before), Some(after)) if sessions > 0 => Some((after as f64 - before as f64) / sessions as f64),
        _ => None,
    };
    let scenario = match serde_json::to_value(&args).unwrap_or(Value::Null) {
        Value::Object(mut flags) => {
            flags.insert("name".into(), "idle".into());
            Value::Object(flags)
        }
        other => other,
    };
    let report = IdleReport {
        scenario,
        sessions,
        failed_sessions: connected.failed,
        failures: connected.failures,
        join_per_s: per_second(sessions as u64, connected.elapsed),
        latency_ms: IdleLatency { join: Summary::of(&connected.join_latency) },
        closed_sessions,
        closes,
        rss_kib_before: rss_before,
        rss_kib_after: rss_after,
        rss_kib_end: rss_end,
        rss_kib_per_session,
        clean: connected.failed == 0 && closed_sessions == 0,
    };
    report.print();
    if let Some(path) = &target.json {
        write_json(path, &report)?;
    }
    Ok(report.clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\ttelehub\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\nThreads:\t8\n";
        assert_eq!(parse_vm_rss(status), Some(123_456));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn settling_is_within_one_percent() {
        assert!(settled(100_000, 100_500));
        assert!(settled(100_000, 99_500));
        assert!(!settled(100_000, 101_000));
        assert!(!settled(0, 1));
        assert!(settled(0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn holds_sessions_and_reports_memory() {
        use clap::Parser;
        let hub = crate::mock_hub::MockHub::start(crate::mock_hub::Faults::default()).await;
        let json = std::env::temp_dir().join(format!("telehub-loadtest-idle-{}.json", std::process::id()));
        let pid = std::process::id().to_string();
        let cli = crate::cli::Cli::try_parse_from([
            "telehub-loadtest",
            "idle",
            "--url",
            &hub.url,
            "--api-key",
            "k",
            "--rooms",
            "5",
            "--room-offset",
            "100",
            "--hold",
            "100ms",
            "--pid",
            &pid,
            "--json",
            json.to_str().unwrap(),
        ])
        .unwrap();
        let crate::cli::Command::Idle(args) = cli.command else { unreachable!() };
        assert!(run(args).await.unwrap());
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let _ = std::fs::remove_file(&json);
        assert_eq!(report["sessions"], 10);
        assert_eq!(report["failed_sessions"], 0);
        assert_eq!(report["closed_sessions"], 0);
        assert!(report["rss_kib_per_session"].is_number(), "{report:#}");
        assert!(report["join_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(report["scenario"]["room_offset"], 100);
    }
}
