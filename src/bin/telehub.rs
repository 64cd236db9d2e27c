//! The `telehub` server binary: settings, telemetry, run until a signal.

use clap::Parser;

/// jemalloc: the hub allocates many small, short-lived buffers on several
/// threads at once, where glibc's allocator spends much of its time on locks
/// and consolidation. It carries chat as fast as mimalloc did and holds an
/// idle session in about 8 KiB less (measured in docs/benchmarks.md, "The
/// allocator, and a smaller session").
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
