//! Command-line flags of the scenarios.
//!
//! The flag structs also serialize (without the API key) into the
//! `"scenario"` object of the JSON reports, so that a report always says
//! exactly what produced it. Durations serialize as seconds under a `_s` key.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::{Serialize, Serializer};

#[derive(Debug, Parser)]
#[command(
    name = "telehub-loadtest",
    version,
    about = "Load tester for Telehub: offered-rate chat with delivery verification, and idle session holding",
    after_help = "A scenario file sets the same flags in TOML: `telehub-loadtest --scenario bench.toml` \
                  (keys are flag names with `_` for `-`, and `scenario = \"chat\"` names the subcommand; \
                  flags on the command line win)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Rooms of a patient and a doctor chatting at a fixed offered rate (or a
    /// list of rates, one step each), with latency and delivery checks.
    Chat(ChatArgs),
    /// Many joined sessions held idle: join rate, failures and the hub's
    /// memory per session.
    Idle(IdleArgs),
    /// Runs a minimal broadcast server instead of driving one: a few lines
    /// of tokio-tungstenite that answer the same setup calls and relay chat
    /// with an ack, without storage or any of the hub's checks. The chat
    /// scenario against it shows what this machine and this load generator
    /// can do at all, the baseline for the hub's figures.
    Baseline(BaselineArgs),
    /// Whole consultations: check-in, admit, join, a call negotiated
    /// through the relay (a real offer and answer, trickled candidates),
    /// chat with typing and read receipts, end; every step timed and every
    /// message checked.
    Consult(ConsultArgs),
}

#[derive(Debug, Args, Serialize)]
pub struct ConsultArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub target: Target,
    /// Chat rounds per consultation; in each, the patient and then the
    /// doctor send a message.
    #[arg(long, default_value_t = 10)]
    pub messages: usize,
    /// The time between two messages of a consultation.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    #[serde(rename = "interval_s", serialize_with = "as_secs")]
    pub interval: Duration,
    /// ICE candidates each side trickles after the offer and answer.
    #[arg(long, default_value_t = 6)]
    pub candidates: usize,
    /// How long one step (a reply, a relayed frame) may take before the
    /// consultation counts as failed at that step.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(rename = "step_timeout_s", serialize_with = "as_secs")]
    pub step_timeout: Duration,
    /// The clinic of every consultation and token, which scopes queues and
    /// displays.
    #[arg(long, default_value = "c-load")]
    pub clinic: String,
    /// Doctors sharing the consultations, so that queues hold several
    /// patients: consultation N gets doctor d-(N mod M) and that doctor's
    /// queue (counted from --room-offset). Default: one per consultation.
    #[arg(long)]
    pub doctors: Option<usize>,
    /// Waiting-room displays watching the queues for the whole run, spread
    /// over them round-robin; each checks that it sees tickets only and
    /// hears every admitted patient of its queue `called` exactly once.
    #[arg(long, default_value_t = 0)]
    pub displays: usize,
    /// The share of consultations (0 to 1, every k-th) whose patient loses
    /// the connection halfway through the chat, without a close frame, and
    /// rejoins on a fresh one with `since`.
    #[arg(long, default_value_t = 0.0)]
    pub reconnect_share: f64,
    /// A reconnect storm: every chosen patient drops at this time since the
    /// start of the run, all at once, instead of each at its own halfway
    /// point (one that gets there early waits for it).
    #[arg(long, value_parser = parse_duration)]
    #[serde(rename = "storm_at_s", serialize_with = "as_secs_opt")]
    pub storm_at: Option<Duration>,
    /// How often to send a chat message again, with the same client_id,
    /// when the hub refuses it with `unavailable` or `rate_limited` (as for
    /// chat); 0 fails the consultation at the first refusal.
    #[arg(long, default_value_t = 5)]
    pub resends: u32,
    /// Also write an HTML report with plots (latency distribution per kind,
    /// messages and signals per second, connections over time) to this
    /// file.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

impl ConsultArgs {
    /// Refuses flag combinations that cannot run.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.target.validate()?;
        anyhow::ensure!(!self.interval.is_zero(), "--interval must be longer than 0s");
        anyhow::ensure!((0.0..=1.0).contains(&self.reconnect_share), "--reconnect-share must be between 0 and 1");
        anyhow::ensure!(self.doctors != Some(0), "--doctors must be at least 1");
        anyhow::ensure!(
            self.storm_at.is_none() || self.reconnect_share > 0.0,
            "--storm-at needs a --reconnect-share above 0"
        );
        anyhow::ensure!(
            self.target.protocol == Protocol::Telehub,
            "the consult scenario speaks Telehub's protocol only (the Socket.IO peer has no waiting room or signaling)"
        );
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub bind: String,
}

/// Where the hub is, how many rooms to set up there, and how to connect.
#[derive(Debug, Args, Clone, Serialize)]
pub struct Target {
    /// Base URL of the hub's HTTP API (http only); the WebSocket URL is
    /// derived from it. Several nodes of one cluster, comma-separated:
    /// sessions go to them round-robin, so with two or more a room's patient
    /// and doctor are on different nodes (the `peer` latency in the report);
    /// setup calls go to the first.
    #[arg(long = "url", value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    #[serde(rename = "url")]
    pub urls: Vec<String>,
    /// Another node of the same cluster, as if appended to --url: each
    /// room's doctor connects here, its patient to --url.
    #[arg(long)]
    pub peer_url: Option<String>,
    /// The wire protocol to speak: Telehub's, or Socket.IO 4 (for the
    /// Socket.IO peer of the benchmark suite, `loadtest/peers/socketio`;
    /// the chat and idle scenarios only).
    #[arg(long, value_enum, default_value_t = Protocol::Telehub)]
    pub protocol: Protocol,
    /// The hub's API key, sent as `Authorization: Bearer`.
    #[arg(long, env = "TELEHUB_API_KEY", hide_env_values = true)]
    #[serde(skip)]
    pub api_key: String,
    /// Consultations to create; each gets a patient and a doctor session.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// First room number, so that several processes run side by side with
    /// distinct patient and doctor ids (p-N, d-N).
    #[arg(long, default_value_t = 0)]
    pub room_offset: usize,
    /// Local IP addresses to connect from, round-robin (e.g.
    /// 127.0.0.2,127.0.0.3), to get past the ephemeral ports of one address.
    #[arg(long, value_delimiter = ',')]
    pub source_addrs: Vec<IpAddr>,
    /// HTTP calls during setup, and connection attempts, under way at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Spread the connection attempts evenly over this long (0s: as fast as
    /// --connect-concurrency allows).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    #[serde(rename = "ramp_s", serialize_with = "as_secs")]
    pub ramp: Duration,
    /// Give up on one connect-and-join attempt after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(rename = "connect_timeout_s", serialize_with = "as_secs")]
    pub connect_timeout: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Fail the run unless a figure of its report meets a bound, as k6's
    /// thresholds: the figure's path in the JSON report, a comparison
    /// (< <= > >= == !=) and a number in the report's unit, e.g.
    /// `latency_ms.delivery.p99<50`, `delivered_per_s>=40000`, `errors==0`
    /// (a map of counts is their sum). Comma-separated or repeated.
    #[arg(long = "threshold", value_delimiter = ',')]
    pub thresholds: Vec<crate::thresholds::Threshold>,
}

/// The wire protocol a run speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Telehub's WebSocket protocol (`/v1/ws`).
    Telehub,
    /// Socket.IO 4 over a WebSocket (Engine.IO 4, `/socket.io/`).
    #[value(name = "socketio")]
    SocketIo,
}

impl Target {
    /// Every node's base URL: --url, then --peer-url.
    pub fn nodes(&self) -> Vec<&str> {
        self.urls.iter().map(String::as_str).chain(self.peer_url.as_deref()).collect()
    }

    /// Where setup calls go: the first node.
    pub fn api_url(&self) -> &str {
        self.urls.first().map_or("http://127.0.0.1:8080", String::as_str)
    }

    /// The number of WebSocket sessions the scenario opens.
    pub fn sessions(&self) -> usize {
        self.rooms * 2
    }

    /// Refuses flag combinations that cannot run.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.rooms > 0, "--rooms must be at least 1");
        anyhow::ensure!(!self.urls.is_empty(), "--url must name at least one node");
        anyhow::ensure!(self.connect_concurrency > 0, "--connect-concurrency must be at least 1");
        anyhow::ensure!(!self.api_key.is_empty(), "--api-key (or TELEHUB_API_KEY) must not be empty");
        Ok(())
    }
}

#[derive(Debug, Args, Serialize)]
pub struct ChatArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub target: Target,
    /// Offered chat sends per second over all sessions (each message is
    /// then delivered to both sessions of its room). A comma-separated list
    /// runs one step per rate on the same connections, to find saturation.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub rate: Vec<f64>,
    /// Measured time of each step.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(rename = "duration_s", serialize_with = "as_secs")]
    pub duration: Duration,
    /// Unmeasured time at the start of each step, before --duration.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(rename = "warmup_s", serialize_with = "as_secs")]
    pub warmup: Duration,
    /// Bytes of chat text per message (the send timestamp plus padding).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// After sending stops, wait at most this long for outstanding acks and
    /// deliveries before counting what is missing as lost.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(rename = "drain_s", serialize_with = "as_secs")]
    pub drain: Duration,
    /// How often to send a message again, with the same client_id, when the
    /// hub refuses it with `unavailable` (an overloaded node sheds load) or
    /// `rate_limited`: after the refusal's retry_ms, or a backoff from
    /// 100 ms without one, as the browser SDK does. 0 sends nothing again
    /// and counts the refusals under the errors.
    #[arg(long, default_value_t = 5)]
    pub resends: u32,
    /// Also write an HTML report with plots (latency distribution,
    /// throughput and connections over time) to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

impl ChatArgs {
    /// Refuses flag combinations that cannot run.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.target.validate()?;
        anyhow::ensure!(!self.rate.is_empty(), "--rate needs at least one rate");
        anyhow::ensure!(
            self.rate.iter().all(|r| r.is_finite() && *r > 0.0),
            "every --rate must be a positive number of messages per second"
        );
        anyhow::ensure!(!self.duration.is_zero(), "--duration must be longer than 0s");
        Ok(())
    }
}

#[derive(Debug, Args, Serialize)]
pub struct IdleArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub target: Target,
    /// How long to hold the sessions once all are joined (and the hub's
    /// memory has settled).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    #[serde(rename = "hold_s", serialize_with = "as_secs")]
    pub hold: Duration,
    /// The hub's process id (same machine), to read its VmRSS before
    /// connecting and once all sessions are joined. With several load-test
    /// processes started by hand, give it to one process only (its figure
    /// then counts only its own sessions); --processes measures them all.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Hold the sessions in this many processes, since the open-file limit
    /// is per process: this one sets up the rooms, starts the others with a
    /// share of the rooms each, and measures the hub once all have joined.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub processes: u16,
    /// Run as one of the processes of --processes: take the rooms from
    /// standard input and report on standard output.
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub holder: bool,
}

/// Parses `500ms`, `20s`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("bad duration {s:?}"))?;
    // `Duration::from_secs_f64` panics on negative or non-finite input, and
    // a flag must never be able to do that.
    if !value.is_finite() || value < 0.0 {
        return Err(format!("bad duration {s:?}: must be zero or more"));
    }
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("bad duration unit in {s:?}: use ms, s or m")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Writes a duration as (fractional) seconds in the JSON report.
fn as_secs<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// Writes an optional duration as seconds, or `null`.
fn as_secs_opt<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => as_secs(duration, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("nan").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn chat_flags_parse_and_serialize_without_the_key() {
        let cli = Cli::try_parse_from([
            "telehub-loadtest",
            "chat",
            "--api-key",
            "secret",
            "--rooms",
            "1000",
            "--rate",
            "10000,20000",
            "--duration",
            "30s",
            "--ramp",
            "10s",
            "--source-addrs",
            "127.0.0.2,127.0.0.3",
        ])
        .unwrap();
        let Command::Chat(args) = cli.command else { panic!("expected chat") };
        args.validate().unwrap();
        assert_eq!(args.rate, vec![10_000.0, 20_000.0]);
        assert_eq!(args.target.source_addrs.len(), 2);
        let json = serde_json::to_value(&args).unwrap();
        assert!(json.get("api_key").is_none(), "{json}");
        assert_eq!(json["rooms"], 1000);
        assert_eq!(json["ramp_s"], 10.0);
        assert_eq!(json["duration_s"], 30.0);
        assert_eq!(json["rate"][1], 20_000.0);
    }

    #[test]
    fn bad_rates_are_refused() {
        let cli = Cli::try_parse_from(["telehub-loadtest", "chat", "--api-key", "k", "--rate", "100,0"]).unwrap();
        let Command::Chat(args) = cli.command else { panic!("expected chat") };
        assert!(args.validate().is_err());
    }

    #[test]
    fn consult_flags_are_checked() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["telehub-loadtest", "consult", "--api-key", "k"];
            argv.extend_from_slice(extra);
            let Command::Consult(args) = Cli::try_parse_from(argv).unwrap().command else { panic!("consult") };
            args
        };
        let args = parse(&[]);
        args.validate().unwrap();
        assert_eq!((args.reconnect_share, args.displays, args.doctors, args.clinic.as_str()), (0.0, 0, None, "c-load"));
        assert_eq!(serde_json::to_value(&args).unwrap()["storm_at_s"], serde_json::Value::Null);
        assert!(parse(&["--reconnect-share", "1.5"]).validate().is_err());
        assert!(parse(&["--reconnect-share", "NaN"]).validate().is_err());
        assert!(parse(&["--doctors", "0"]).validate().is_err());
        assert!(parse(&["--storm-at", "10s"]).validate().is_err(), "a storm of nobody");
        let args = parse(&["--reconnect-share", "0.5", "--storm-at", "10s"]);
        args.validate().unwrap();
        assert_eq!(serde_json::to_value(&args).unwrap()["storm_at_s"], 10.0);
        let args = parse(&["--html", "consult.html"]);
        assert_eq!(args.html.as_deref(), Some(std::path::Path::new("consult.html")));
        assert_eq!(serde_json::to_value(&args).unwrap()["html"], "consult.html");
    }
}
