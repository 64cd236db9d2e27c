//! The `telehub` server binary: settings, telemetry, run until a signal.

use clap::Parser;
use telehub::config::{Args, Settings};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(Args::parse())?;
    telehub::telemetry::init(settings.log_format);
    tracing::debug!(?settings, "settings");
    let listener = std::net::TcpListener::bind(&settings.bind)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind))?;
    telehub::startup::run(settings, listener, telehub::startup::signals()).await
}
