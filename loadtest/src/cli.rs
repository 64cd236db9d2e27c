//! Command-line flags.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "telehub-loadtest", version, about = "Load tester for Telehub")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Rooms of two sessions chatting at a fixed offered rate.
    Chat(ChatArgs),
    /// Many joined sessions held idle, for memory per session and join rate.
    Idle(IdleArgs),
}

/// Where the hub is and how to reach it.
#[derive(Debug, Args, Clone)]
pub struct Target {
    /// Base URL of the hub's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The hub's API key.
    #[arg(long, env = "TELEHUB_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Rooms (consultations) to create; each gets a patient and a doctor.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Offset of room numbers, so that several processes use distinct ids.
    #[arg(long, default_value_t = 0)]
    pub room_offset: usize,
    /// Local addresses to connect from, round-robin (e.g. 127.0.0.2,127.0.0.3),
    /// to get past the ports of one address.
    #[arg(long, value_delimiter = ',')]
    pub source_addrs: Vec<IpAddr>,
    /// Connections and HTTP calls under way at once during setup.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub target: Target,
    /// Offered chat messages per second over all sessions; a list runs one
    /// step per rate on the same connections.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub rate: Vec<f64>,
    /// Measured time of each step.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time at the start of each step.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Bytes of chat text per message.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// How long to wait for stragglers after sending stops.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
}

#[derive(Debug, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub target: Target,
    /// How long to hold the sessions once all are joined.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub hold: Duration,
    /// The hub's process id, to read its memory (VmRSS) before and after.
    #[arg(long)]
    pub pid: Option<u32>,
}

/// Parses `500ms`, `20s`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("bad duration unit in {s:?}: use ms, s or m")),
    };
    Ok(Duration::from_secs_f64(seconds))
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
        assert!(parse_duration("3h").is_err());
    }
}
