//! Building and running a node.
//!
//! [`run`] takes a bound listener and a shutdown future, as mini-redis does,
//! so tests start real nodes on port 0 and stop them when they like.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, middleware, web};
use telehub_actors::{Broker, QueueConfig, RoomConfig, Rooms};
use telehub_signaling::Limits;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::app::{AppState, Metrics};
use crate::auth::TokenKeys;
use crate::broker::RedisBroker;
use crate::config::Settings;
use crate::http;
use crate::media::ConfiguredMedia;
use crate::notify;
use crate::store::{self, Store};

/// Random hex, for demo mode's secrets.
fn random_secret() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// Builds the shared state: storage, rooms, keys; and the notification
/// worker, to run beside it.
async fn build(settings: Settings, addr: SocketAddr) -> anyhow::Result<(AppState, notify::Worker)> {
    // The address listened on decides, not only the setting: a caller of
    // `run` may hand in any listener.
    let demo = settings.demo_mode() && addr.ip().is_loopback();
    if settings.jwt_secret.is_none() && settings.jwt_public_key.is_none() && !demo {
        anyhow::bail!(
            "no TELEHUB_JWT_SECRET (or TELEHUB_JWT_PUBLIC_KEY) configured and {addr} is not a loopback address: \
             demo mode only runs on loopback; set a secret to serve other machines"
        );
    }
    let (secret, api_key) = if demo {
        let secret = random_secret();
        let api_key = settings.api_key.clone().unwrap_or_else(random_secret);
        warn!("demo mode: no secret configured, so tokens are signed with a random secret that dies with this process");
        if settings.api_key.is_none() {
            warn!(demo_api_key = %api_key, "demo mode: the HTTP API takes this random API key until the process stops");
        }
        (Some(secret), Some(api_key))
    } else {
        (settings.jwt_secret.clone(), settings.api_key.clone())
    };
    let tokens = TokenKeys::new(&settings, secret.as_deref())?;
    let http_rate = (settings.http_rate_per_s, settings.http_rate_burst);
    let outbox = notify::policy(&settings);
    let store: Arc<dyn Store> = store::connect(
        &settings.database_url,
        store::WriteLimits {
            busy: Duration::from_millis(settings.database_busy_ms),
            max_pending_messages: settings.max_pending_messages,
        },
        outbox.clone(),
    )
    .await?;
    let public_url: Arc<str> = settings.public_base(addr).into();
    let tokens = Arc::new(tokens);
    let metrics = Arc::new(Metrics::default());
    let worker = notify::Worker::new(&settings, store.clone(), outbox, tokens.clone(), &public_url, metrics.clone())?;
    let stripe = match &settings.stripe_secret_key {
        Some(key) => Some(Arc::new(crate::payments::StripeApi::new(key, &settings.stripe_api_base)?)),
        None => None,
    };
    let broker = match &settings.redis_url {
        Some(url) => {
            Some(RedisBroker::start(url, &settings.node_id, Duration::from_millis(settings.cluster_ttl_ms)).await?)
        }
        None => None,
    };
    let room_config = RoomConfig { idle_timeout: Duration::from_secs(settings.room_idle_s), ..RoomConfig::default() };
    let queue_config = QueueConfig {
        grace: Duration::from_secs(settings.queue_grace_s),
        no_show: (settings.no_show_s > 0).then(|| Duration::from_secs(settings.no_show_s)),
        per_consultation: Duration::from_secs(settings.consultation_estimate_s),
        idle_timeout: Duration::from_secs(settings.room_idle_s),
        ..QueueConfig::default()
    };
    let rooms = Rooms::start(
        (store.clone(), store.clone()),
        Arc::new(ConfiguredMedia::new(&settings)),
        room_config,
        queue_config,
        settings.room_threads(),
        broker.clone().map(|b| b as Arc<dyn Broker>),
    );
    let limits = Limits {
        max_frame_bytes: settings.max_frame_bytes,
        max_text_chars: settings.max_text_chars,
        ..Limits::default()
    };
    let app = AppState {
        settings: Arc::new(settings),
        tokens,
        rooms,
        store,
        stripe,
        broker,
        limits: Arc::new(limits),
        api_key: api_key.map(Into::into),
        demo,
        shutdown: CancellationToken::new(),
        sessions: TaskTracker::new(),
        metrics,
        http_limiter: Arc::new(crate::http::limit::HttpLimiter::new(http_rate.0, http_rate.1)),
        public_url,
    };
    Ok((app, worker))
}

/// Serves on `listener` until `shutdown` completes, then shuts down
/// gracefully: every session gets `goaway` and a 1001 close, pending writes
/// are flushed, connections close. Must run inside an actix system.
pub async fn run(settings: Settings, listener: TcpListener, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    run_with(settings, listener, shutdown, |_| {}).await
}

/// [`run`], handing the node's state to `ready` once it is built and
/// before the node serves: for a program that embeds the hub, or a test
/// that reaches into the node it runs.
pub async fn run_with(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(&AppState),
) -> anyhow::Result<()> {
    let workers = settings.http_workers();
    // A listener made with the standard library has a short accept queue;
    // a reconnect storm would overflow it and clients would wait a second
    // for their SYN to be retried. Listening again only lengthens the queue.
    socket2::SockRef::from(&listener).listen(4096)?;
    let addr = listener.local_addr()?;
    let (app, worker) = build(settings, addr).await?;
    ready(&app);
    let notifications = tokio::spawn(worker.run(app.shutdown.clone()));
    let state = app.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .wrap(middleware::from_fn(http::limit::limit))
            .wrap(middleware::NormalizePath::trim())
            .configure(http::routes)
    })
    .workers(workers)
    // Frames are small and latency matters more than packet count: without
    // this, Nagle's algorithm holds a frame back until the previous one is
    // acknowledged.
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(2)
    .listen(listener)?
    .run();
    let handle = server.handle();
    info!(%addr, node = %app.settings.node_id, demo = app.demo, "telehub listening");
    if app.demo {
        info!("demo mode: open http://{addr}/ in a browser");
    }
    let server_task = actix_web::rt::spawn(server);
    tokio::select! {
        () = shutdown => info!("shutting down"),
        result = server_task => {
            result??;
            return Ok(());
        }
    }
    app.shutdown.cancel();
    app.sessions.close();
    let grace = Duration::from_millis(app.settings.shutdown_grace_ms);
    if tokio::time::timeout(grace, app.sessions.wait()).await.is_err() {
        warn!(left = app.sessions.len(), "sessions still open after the grace period");
    }
    handle.stop(true).await;
    // A send under way is finished and its outcome stored before the
    // store closes; the sends themselves time out after 20 s.
    if tokio::time::timeout(Duration::from_secs(25), notifications).await.is_err() {
        warn!("the notification worker did not stop in time");
    }
    if let Some(broker) = &app.broker {
        broker.close().await;
    }
    app.store.close().await;
    info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn signals() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
