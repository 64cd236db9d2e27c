//! The idle scenario: connect and join many sessions, hold them without
//! sending anything, and measure what they cost the hub: the join rate, the
//! failures, and (with `--pid`) its resident memory per joined session.
//!
//! Held sessions keep reading their sockets. Nothing they receive needs an
//! answer from the test, but tungstenite answers the hub's WebSocket pings
//! while it reads, and a session that stopped reading would be dropped by
//! the hub's heartbeat and counted as a close.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::api::{RoomSetup, create_rooms};
use crate::cli::{IdleArgs, Protocol, Target};
use crate::client::{Connected, Incoming, Ws, check_open_files, close_reason, connect_all, decode};
use crate::stats::{IdleLatency, IdleReport, Summary, bump, histogram, per_second, write_json};

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

/// The sessions that joined, wherever they are held: what a holder process
/// reports to the one that started it.
#[derive(Debug, Serialize, Deserialize)]
struct Joins {
    sessions: usize,
    failed: usize,
    failures: BTreeMap<String, u64>,
    /// The join latencies in µs, as (value, count) pairs.
    join_us: Vec<(u64, u64)>,
    elapsed_s: f64,
}

impl Joins {
    fn of<T>(connected: &Connected<T>) -> Joins {
        Joins {
            sessions: connected.sessions.len(),
            failed: connected.failed,
            failures: connected.failures.clone(),
            join_us: connected
                .join_latency
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
            elapsed_s: connected.elapsed.as_secs_f64(),
        }
    }

    fn latency(&self) -> Histogram<u64> {
        let mut latency = histogram();
        for &(us, n) in &self.join_us {
            latency.saturating_record_n(us.max(1), n);
        }
        latency
    }

    /// The holders connect side by side: the join rate is over the slowest.
    fn add(&mut self, other: Joins) {
        self.sessions += other.sessions;
        self.failed += other.failed;
        for (reason, n) in other.failures {
            bump(&mut self.failures, reason, n);
        }
        self.join_us.extend(other.join_us);
        self.elapsed_s = self.elapsed_s.max(other.elapsed_s);
    }
}

/// Sessions that ended before the hold did, by reason.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Closes {
    closed: usize,
    closes: BTreeMap<String, u64>,
}

/// Where the joined sessions are held until the end of the hold.
enum Holding {
    /// In this process, a task per session.
    Here { stop: watch::Sender<bool>, sessions: Vec<JoinHandle<Option<String>>> },
    /// In processes of their own (`--processes`).
    Elsewhere(Vec<Holder>),
}

/// A process holding a share of the sessions: it reads its rooms and then
/// `stop` on standard input, and answers each with a line of JSON.
struct Holder {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Holder {
    async fn read<T: DeserializeOwned>(&mut self, what: &str) -> anyhow::Result<T> {
        let line = self.lines.next_line().await?;
        let line = line.with_context(|| format!("a holder process ended before it sent its {what}"))?;
        serde_json::from_str(&line).with_context(|| format!("a holder process sent a bad {what}: {line}"))
    }
}

impl Holding {
    /// Connects and joins every session of `rooms` here.
    async fn here(target: &Target, rooms: &[RoomSetup]) -> anyhow::Result<(Holding, Joins)> {
        let (stop, stop_rx) = watch::channel(false);
        let connected =
            connect_all(target, rooms, |joined| tokio::spawn(hold(joined.ws, target.protocol, stop_rx.clone())))
                .await?;
        let joins = Joins::of(&connected);
        Ok((Holding::Here { stop, sessions: connected.sessions }, joins))
    }

    /// Starts `processes` copies of this program, hands each its share of
    /// `rooms`, and waits until each has joined its sessions.
    async fn elsewhere(target: &Target, rooms: &[RoomSetup], processes: usize) -> anyhow::Result<(Holding, Joins)> {
        let program = std::env::current_exe().context("cannot find this program to start its holders")?;
        let share = rooms.len().div_ceil(processes).max(1);
        let mut holders = Vec::with_capacity(processes);
        for rooms in rooms.chunks(share) {
            let mut child = Command::new(&program)
                .arg("idle")
                .arg("--holder")
                .args(holder_flags(target, processes))
                .env("TELEHUB_API_KEY", &target.api_key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", program.display()))?;
            let mut stdin = child.stdin.take().context("the holder has no standard input")?;
            let stdout = child.stdout.take().context("the holder has no standard output")?;
            let mut line = serde_json::to_vec(rooms)?;
            line.push(b'\n');
            stdin.write_all(&line).await?;
            holders.push(Holder { child, stdin, lines: BufReader::new(stdout).lines() });
        }
        eprintln!("{} holder processes are joining {} sessions…", holders.len(), rooms.len() * 2);
        let reports = futures_util::future::join_all(holders.iter_mut().map(|h| h.read::<Joins>("joins"))).await;
        let mut joins =
            Joins { sessions: 0, failed: 0, failures: BTreeMap::new(), join_us: Vec::new(), elapsed_s: 0.0 };
        for report in reports {
            joins.add(report?);
        }
        Ok((Holding::Elsewhere(holders), joins))
    }

    /// Ends the hold: closes every session and says which had ended before.
    async fn release(self) -> anyhow::Result<Closes> {
        let mut closes = Closes::default();
        match self {
            Holding::Here { stop, sessions } => {
                let _ = stop.send(true);
                for task in sessions {
                    let early = task.await.unwrap_or_else(|err| Some(format!("session task failed: {err}")));
                    if let Some(reason) = early {
                        closes.closed += 1;
                        bump(&mut closes.closes, reason, 1);
                    }
                }
            }
            Holding::Elsewhere(mut holders) => {
                for holder in &mut holders {
                    holder.stdin.write_all(b"stop\n").await?;
                }
                for holder in &mut holders {
                    let theirs: Closes = holder.read("closes").await?;
                    closes.closed += theirs.closed;
                    for (reason, n) in theirs.closes {
                        bump(&mut closes.closes, reason, n);
                    }
                    holder.child.wait().await?;
                }
            }
        }
        Ok(closes)
    }
}

/// The flags a holder process needs: how to connect, not what to set up.
fn holder_flags(target: &Target, processes: usize) -> Vec<String> {
    let protocol = target.protocol.to_possible_value().expect("every protocol has a name");
    let mut flags = vec![
        "--url".to_owned(),
        target.urls.join(","),
        "--protocol".into(),
        protocol.get_name().to_owned(),
        "--connect-concurrency".into(),
        (target.connect_concurrency / processes).max(1).to_string(),
        "--ramp".into(),
        format!("{}ms", target.ramp.as_millis()),
        "--connect-timeout".into(),
        format!("{}ms", target.connect_timeout.as_millis()),
    ];
    if let Some(peer) = &target.peer_url {
        flags.extend(["--peer-url".to_owned(), peer.clone()]);
    }
    if !target.source_addrs.is_empty() {
        let addrs: Vec<String> = target.source_addrs.iter().map(ToString::to_string).collect();
        flags.extend(["--source-addrs".to_owned(), addrs.join(",")]);
    }
    flags
}

/// A holder process (`--holder`): joins the sessions of the rooms on its
/// standard input, reports them, holds them until told to stop (or until
/// the process that started it is gone), and reports which ended early.
async fn serve_parent(target: &Target) -> anyhow::Result<bool> {
    serve(target, BufReader::new(tokio::io::stdin()), tokio::io::stdout()).await
}

/// [`serve_parent`] over any pair of streams.
async fn serve(
    target: &Target,
    input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> anyhow::Result<bool> {
    let mut input = input.lines();
    let line = input.next_line().await?.context("no rooms on standard input")?;
    let rooms: Vec<RoomSetup> = serde_json::from_str(&line).context("bad rooms on standard input")?;
    check_open_files(rooms.len() * 2)?;
    let (holding, joins) = Holding::here(target, &rooms).await?;
    let mut line = serde_json::to_vec(&joins)?;
    line.push(b'\n');
    output.write_all(&line).await?;
    output.flush().await?;
    let _ = input.next_line().await;
    let closes = holding.release().await?;
    let mut line = serde_json::to_vec(&closes)?;
    line.push(b'\n');
    output.write_all(&line).await?;
    output.flush().await?;
    Ok(joins.failed == 0 && closes.closed == 0)
}

/// Runs the scenario; returns whether every session joined and stayed.
pub async fn run(args: IdleArgs) -> anyhow::Result<bool> {
    if args.holder {
        return serve_parent(&args.target).await;
    }
    let target = &args.target;
    target.validate()?;
    let processes = usize::from(args.processes);
    // Each process holds its share of the sessions.
    check_open_files(target.sessions().div_ceil(processes))?;
    // Fail before any setup if the hub's memory cannot be read.
    if let Some(pid) = args.pid {
        rss_kib(pid)?;
    }
    let rooms = create_rooms(target).await?;
    let rss_before = match args.pid {
        Some(pid) => Some(settled_rss(pid).await?),
        None => None,
    };

    let (holding, joins) = if processes > 1 {
        Holding::elsewhere(target, &rooms, processes).await?
    } else {
        Holding::here(target, &rooms).await?
    };
    let sessions = joins.sessions;

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
    let Closes { closed: closed_sessions, closes } = holding.release().await?;

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
    let latency = joins.latency();
    let report = IdleReport {
        scenario,
        sessions,
        failed_sessions: joins.failed,
        failures: joins.failures,
        join_per_s: per_second(sessions as u64, Duration::from_secs_f64(joins.elapsed_s)),
        latency_ms: IdleLatency { join: Summary::of(&latency) },
        closed_sessions,
        closes,
        rss_kib_before: rss_before,
        rss_kib_after: rss_after,
        rss_kib_end: rss_end,
        rss_kib_per_session,
        clean: joins.failed == 0 && closed_sessions == 0,
    };
    report.print();
    let judged = crate::thresholds::judge(&report, &target.thresholds)?;
    if let Some(path) = &target.json {
        write_json(path, &judged.json)?;
    }
    Ok(report.clean && judged.met())
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

    /// `telehub-loadtest idle --api-key k` with `flags`.
    fn idle_args<'a>(flags: impl IntoIterator<Item = &'a str>) -> IdleArgs {
        use clap::Parser;
        let argv = ["telehub-loadtest", "idle", "--api-key", "k"].into_iter().chain(flags);
        let crate::cli::Command::Idle(args) = crate::cli::Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        args
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn holds_sessions_and_reports_memory() {
        let hub = crate::mock_hub::MockHub::start(crate::mock_hub::Faults::default()).await;
        let json = std::env::temp_dir().join(format!("telehub-loadtest-idle-{}.json", std::process::id()));
        let pid = std::process::id().to_string();
        let args = idle_args([
            "--url",
            &hub.url,
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
        ]);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_holder_joins_its_rooms_reports_them_and_lets_go_when_told() {
        let hub = crate::mock_hub::MockHub::start(crate::mock_hub::Faults::default()).await;
        let args = idle_args(["--url", &hub.url, "--rooms", "3", "--room-offset", "300"]);
        let rooms = create_rooms(&args.target).await.unwrap();
        let (mut to_holder, holder_in) = tokio::io::duplex(1 << 16);
        let (holder_out, from_holder) = tokio::io::duplex(1 << 16);
        let holder = serve(&args.target, BufReader::new(holder_in), holder_out);
        let parent = async {
            let mut lines = BufReader::new(from_holder).lines();
            to_holder.write_all(format!("{}\n", serde_json::to_string(&rooms).unwrap()).as_bytes()).await.unwrap();
            let joins: Joins = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            to_holder.write_all(b"stop\n").await.unwrap();
            let closes: Closes = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            (joins, closes)
        };
        let (clean, (joins, closes)) = tokio::join!(holder, parent);
        assert_eq!((joins.sessions, joins.failed), (6, 0), "{joins:?}");
        assert_eq!(joins.latency().len(), 6, "a join latency per session");
        assert_eq!(closes.closed, 0, "{closes:?}");
        assert!(clean.unwrap(), "the holder is clean");
    }

    #[test]
    fn holders_are_told_how_to_connect_not_what_to_set_up() {
        let args = idle_args([
            "--url",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--rooms",
            "9000",
            "--connect-concurrency",
            "300",
            "--ramp",
            "2s",
            "--source-addrs",
            "127.0.0.2,127.0.0.3",
        ]);
        let flags = holder_flags(&args.target, 3);
        // (The API key goes by the environment, TELEHUB_API_KEY.)
        let holder = idle_args(["--holder"].into_iter().chain(flags.iter().map(String::as_str)));
        assert!(holder.holder);
        let t = &holder.target;
        assert_eq!(t.urls, args.target.urls);
        assert_eq!(t.source_addrs, args.target.source_addrs);
        assert_eq!((t.ramp, t.connect_timeout), (args.target.ramp, args.target.connect_timeout));
        assert_eq!(t.connect_concurrency, 100, "the concurrency is shared out");
        assert!(!flags.contains(&"--rooms".to_owned()), "{flags:?}");
    }
}
