//! The state shared by every HTTP handler and session.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use telehub_actors::Rooms;
use telehub_signaling::Limits;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::TokenKeys;
use crate::config::Settings;
use crate::store::Store;

/// Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub tokens: Arc<TokenKeys>,
    pub rooms: Rooms,
    pub store: Arc<dyn Store>,
    /// Stripe's API, when a secret key is configured.
    pub stripe: Option<Arc<crate::payments::StripeApi>>,
    /// The cluster's broker; `None` on a node of its own.
    pub broker: Option<Arc<crate::broker::RedisBroker>>,
    pub limits: Arc<Limits>,
    /// The API key in force (configured, or demo mode's random one).
    pub api_key: Option<Arc<str>>,
    pub demo: bool,
    /// Cancelled when the node shuts down; sessions then say `goaway`.
    pub shutdown: CancellationToken,
    /// Every session task, so shutdown can wait for them.
    pub sessions: TaskTracker,
    pub metrics: Arc<Metrics>,
    /// The HTTP API's rate limit per caller.
    pub http_limiter: Arc<crate::http::limit::HttpLimiter>,
    /// The hub's address as patients and Twilio reach it, without a final
    /// slash (`public_url`, or the address this node listens on).
    pub public_url: Arc<str>,
}

/// A counter or gauge for `/metrics`.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What `/metrics` reports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub sessions_open: Gauge,
    pub sessions_total: Gauge,
    pub frames_in: Gauge,
    pub upgrades_refused: Gauge,
    pub http_requests: Gauge,
    /// Tries of notifications by this node, by outcome.
    pub notifications: NotificationCounts,
}

/// What this node's notification tries came to.
#[derive(Debug, Default)]
pub struct NotificationCounts {
    pub sent: Gauge,
    pub retried: Gauge,
    pub failed: Gauge,
    pub skipped: Gauge,
}
