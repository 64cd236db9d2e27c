//! `telehub-loadtest`: drives a Telehub hub the way consultations do and
//! checks what it delivers.
//!
//! - `chat`: rooms of a patient and a doctor chatting at a fixed offered
//!   rate (or a list of rates, one step each, to find the saturation point).
//!   Measures send-to-delivery, ack and join latency with HDR histograms and
//!   verifies that every stored message reached every session of its room
//!   once and in order. Reports as a table, as JSON (`--json`) and as an
//!   HTML page with plots (`--html`).
//! - `idle`: many joined sessions held open, for the join rate and the hub's
//!   memory per session.
//! - `consult`: whole consultations (check-in, admit, join, a call's
//!   negotiation, chat, end), with reconnects and waiting-room displays if
//!   asked; every step timed and every message checked. Reports like
//!   `chat`, `--html` included.
//! - `baseline`: not a scenario but a minimal broadcast server (`mock_hub`),
//!   to measure what the machine and the generator can do without the hub.
//!
//! Modules: `cli` (flags), `api` (setup over HTTP), `client` (WebSocket
//! connections), `chat`, `idle` and `consult` (the scenarios), `verify`
//! (the delivery checks), `stats` (clock, histograms, reports), `timeline`
//! (events per second), `html` (the HTML reports), `progress` (the live
//! bars), `scenario_file` (a run's flags from a TOML file, `--scenario`),
//! `thresholds` (pass/fail bounds on a report's figures, `--threshold`).
//!
//! Exit status: 0 when the run passed, 1 when it ran but failed its checks
//! or a `--threshold`,
//! 2 when it could not run (bad flags, setup refused, hub unreachable).

mod api;
mod chat;
mod cli;
mod client;
mod consult;
mod html;
mod idle;
mod mock_hub;
mod progress;
mod scenario_file;
mod socketio;
mod stats;
mod thresholds;
mod timeline;
mod verify;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // Fix the measurement clock's epoch before any timestamp is taken.
    stats::epoch();
    // Every session is a socket: take every file descriptor the hard limit
    // allows. If raising fails, the limit check of each scenario says so.
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: cannot raise the open-file limit: {err}");
    }
    let args = match scenario_file::expand(std::env::args().collect()) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(2);
        }
    };
    let cli = cli::Cli::parse_from(args);
    let result = match cli.command {
        cli::Command::Chat(args) => chat::run(args).await,
        cli::Command::Idle(args) => idle::run(args).await,
        cli::Command::Baseline(args) => mock_hub::run(&args.bind).await,
        cli::Command::Consult(args) => consult::run(args).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
