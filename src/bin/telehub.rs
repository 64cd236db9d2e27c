//! The `telehub` server binary: settings, telemetry, run until a signal.

use clap::Parser;

/// jemalloc: the hub allocates many small, short-lived buffers on several
/// threads at once, where glibc's allocator spends much of its time on locks
/// and consolidation; and unlike mimalloc, which writes into every block it
/// hands out, it leaves the untouched part of a connection's 8 KiB buffers
/// out of memory (about 8 KiB an idle session, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
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
