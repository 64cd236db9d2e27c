//! `telehub-loadtest`: drives a Telehub hub the way consultations do and
//! measures what it delivers.
//!
//! `chat` runs rooms of a patient and a doctor chatting at a fixed offered
//! rate (or a list of rates, to find the saturation point), measures
//! send-to-delivery and ack latency with HDR histograms, and verifies that
//! every acknowledged message reached every member in order exactly once.
//! `idle` holds many joined sessions open to measure the hub's memory per
//! session and its join rate. The full scenario tester (waiting room,
//! signaling, reconnect storms, reports) builds on these pieces.

mod chat;
mod cli;
mod client;
mod idle;
mod setup;
mod stats;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Each session is a socket: take every file descriptor the hard limit allows.
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
    let cli = cli::Cli::parse();
    let ok = match cli.command {
        cli::Command::Chat(args) => chat::run(args).await?,
        cli::Command::Idle(args) => idle::run(args).await?,
    };
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
