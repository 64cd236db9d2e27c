//! Configuration: one [`Settings`] struct from four layers.
//!
//! Defaults, then an optional TOML file (`--config` or `TELEHUB_CONFIG`),
//! then `TELEHUB_*` environment variables, then command-line flags; a later
//! layer wins. Secrets are never printed: `Debug` redacts them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Everything that can be configured.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub bind: String,
    /// `sqlite://path` (embedded) or `postgres://…`.
    pub database_url: String,
    /// How long a write waits for a database lock before it fails with
    /// `unavailable` (SQLite).
    pub database_busy_ms: u64,
    /// Messages that may wait for storage at once; more are refused with
    /// `unavailable` and a `retry_ms`, so that an overloaded node answers at
    /// once instead of queueing for seconds.
    pub max_pending_messages: usize,
    /// Redis for a cluster of nodes (`redis://host:6379`); unset runs one
    /// node on its own. Needs a PostgreSQL `database_url`.
    pub redis_url: Option<String>,
    /// In a cluster, how long a node's sessions stay listed after the node
    /// stops refreshing them (it refreshes every third of this).
    pub cluster_ttl_ms: u64,
    /// HS256 secret for client tokens. Unset on loopback means demo mode.
    pub jwt_secret: Option<String>,
    /// `HS256` (default), `RS256` or `ES256`.
    pub jwt_algorithm: String,
    /// PEM public key (or a path to one) for RS256/ES256 tokens.
    pub jwt_public_key: Option<String>,
    /// Key that clinic backends present to the HTTP API.
    pub api_key: Option<String>,
    /// This node's name in `welcome` and logs.
    pub node_id: String,
    pub log_format: LogFormat,
    /// Interval of server pings; a peer silent for two intervals is dropped.
    pub heartbeat_ms: u64,
    /// Largest accepted WebSocket frame.
    pub max_frame_bytes: usize,
    /// Longest chat text, in characters after trimming.
    pub max_text_chars: usize,
    /// Frames queued for one session before it counts as too slow (4009).
    pub outbox_frames: usize,
    /// Frames per second a session may send, sustained.
    pub rate_per_s: f64,
    /// Frames a session may send in a burst.
    pub rate_burst: f64,
    /// HTTP API requests a caller may make per second, sustained.
    pub http_rate_per_s: f64,
    /// HTTP API requests a caller may make in a burst.
    pub http_rate_burst: f64,
    /// Seconds an empty room stays in memory.
    pub room_idle_s: u64,
    /// Threads that run rooms; 0 means one per core.
    pub room_threads: usize,
    /// HTTP worker threads; 0 means one per core.
    pub http_workers: usize,
    /// What `goaway` tells clients to wait before reconnecting.
    pub goaway_retry_ms: u64,
    /// How long shutdown waits for sessions to close.
    pub shutdown_grace_ms: u64,
    /// STUN/TURN URLs handed to clients in `joined`.
    pub ice_urls: Vec<String>,
    /// The sender name of system messages.
    pub system_name: String,
    /// coturn's `static-auth-secret`: with it, every `turn:`/`turns:` URL
    /// gets per-session credentials.
    pub turn_secret: Option<String>,
    /// How long TURN credentials stay valid.
    pub turn_ttl_s: u64,
    /// The Jitsi deployment for the fallback (e.g. `meet.example.org`).
    pub jitsi_domain: Option<String>,
    /// Jitsi's token issuer (`app_id`).
    pub jitsi_app_id: Option<String>,
    /// Jitsi's token secret (`app_secret`).
    pub jitsi_app_secret: Option<String>,
    /// Jitsi's accepted token audience.
    pub jitsi_audience: String,
    /// How long a Jitsi token stays valid.
    pub jitsi_ttl_s: u64,
    /// Members in a peer-to-peer call before the room moves to Jitsi.
    pub mesh_limit: usize,
    /// How long a waiting patient whose last session dropped keeps their place.
    pub queue_grace_s: u64,
    /// How long an admitted patient has to join before the consultation is
    /// cancelled as a no-show; 0 waits for ever.
    pub no_show_s: u64,
    /// The expected consultation length for ETAs until a queue has finished
    /// consultations to average.
    pub consultation_estimate_s: u64,
    /// Consultations may have a price that must be paid before admission.
    /// Off: a price is refused, and so are the payment endpoints.
    pub enable_payments: bool,
    /// The signing secret of the Stripe webhook endpoint (`whsec_…`);
    /// without it, Stripe webhooks are refused.
    pub stripe_webhook_secret: Option<String>,
    /// Stripe's secret API key (`sk_…`), for Checkout Sessions,
    /// PaymentIntents and refunds; without it those are refused.
    pub stripe_secret_key: Option<String>,
    /// Where Stripe's API is (a stand-in in tests).
    pub stripe_api_base: String,
    /// Where Stripe Checkout sends the patient after paying, and after
    /// giving up; both are needed for Checkout.
    pub payment_success_url: Option<String>,
    pub payment_cancel_url: Option<String>,
    /// Video calls (WebRTC signaling and the Jitsi fallback). Off: `signal`
    /// and `media` are refused and `joined` offers no ICE servers.
    pub enable_video: bool,
    /// SMS notifications through Twilio (needs the three Twilio settings).
    pub enable_sms: bool,
    /// Email notifications over SMTP (needs `smtp_url` and `mail_from`).
    pub enable_email: bool,
    /// The hub's address as patients and Twilio reach it
    /// (`https://hub.example.org`): links in notifications and Twilio's
    /// status callbacks. Unset: `http://` and the bind address.
    pub public_url: Option<String>,
    /// Twilio's account SID (`AC…`).
    pub twilio_account_sid: Option<String>,
    /// Twilio's auth token: HTTP Basic password and the key of
    /// `X-Twilio-Signature`.
    pub twilio_auth_token: Option<String>,
    /// The sender: an E.164 number, or a Messaging Service SID (`MG…`).
    pub twilio_from: Option<String>,
    /// Where Twilio's API is (a stand-in in tests).
    pub twilio_api_base: String,
    /// `smtp://host:port` (plain; `?tls=opportunistic` or `?tls=required`
    /// for STARTTLS),
    /// `smtps://host:465` (TLS); user and password may be in the URL.
    pub smtp_url: Option<String>,
    /// The `From` of notification emails (`Clinic <noreply@example.org>`).
    pub mail_from: Option<String>,
    /// How long before `scheduled_at` the reminder goes out; 0: no reminders.
    pub reminder_lead_s: u64,
    /// Tries of a notification before it is `failed`.
    pub notify_max_attempts: u32,
    /// The wait after a failed try; it doubles with every further try.
    pub notify_backoff_ms: u64,
    /// How often the notification worker looks for due notifications
    /// (it also wakes at once when this node queues one).
    pub notify_poll_ms: u64,
    /// How long the link in a notification lets the patient in.
    pub notify_link_ttl_s: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bind: "127.0.0.1:8080".into(),
            database_url: "sqlite://./data/telehub.db".into(),
            database_busy_ms: 5000,
            max_pending_messages: 4096,
            redis_url: None,
            cluster_ttl_ms: 6000,
            jwt_secret: None,
            jwt_algorithm: "HS256".into(),
            jwt_public_key: None,
            api_key: None,
            node_id: default_node_id(),
            log_format: LogFormat::Text,
            heartbeat_ms: 25_000,
            max_frame_bytes: 64 * 1024,
            max_text_chars: 4000,
            outbox_frames: 512,
            rate_per_s: 50.0,
            rate_burst: 100.0,
            http_rate_per_s: 500.0,
            http_rate_burst: 1000.0,
            room_idle_s: 30,
            room_threads: 0,
            http_workers: 0,
            goaway_retry_ms: 1000,
            shutdown_grace_ms: 5000,
            ice_urls: Vec::new(),
            system_name: "Telehub".into(),
            turn_secret: None,
            turn_ttl_s: 86_400,
            jitsi_domain: None,
            jitsi_app_id: None,
            jitsi_app_secret: None,
            jitsi_audience: "jitsi".into(),
            jitsi_ttl_s: 7_200,
            mesh_limit: 4,
            queue_grace_s: 120,
            no_show_s: 300,
            consultation_estimate_s: 600,
            enable_payments: true,
            stripe_webhook_secret: None,
            stripe_secret_key: None,
            stripe_api_base: "https://api.stripe.com".into(),
            payment_success_url: None,
            payment_cancel_url: None,
            enable_video: true,
            enable_sms: true,
            enable_email: true,
            public_url: None,
            twilio_account_sid: None,
            twilio_auth_token: None,
            twilio_from: None,
            twilio_api_base: "https://api.twilio.com".into(),
            smtp_url: None,
            mail_from: None,
            reminder_lead_s: 900,
            notify_max_attempts: 3,
            notify_backoff_ms: 30_000,
            notify_poll_ms: 1000,
            notify_link_ttl_s: 86_400,
        }
    }
}

fn default_node_id() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "node-1".into())
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_busy_ms", &self.database_busy_ms)
            .field("max_pending_messages", &self.max_pending_messages)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("cluster_ttl_ms", &self.cluster_ttl_ms)
            .field("jwt_secret", &redact(&self.jwt_secret))
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field("jwt_public_key", &self.jwt_public_key.as_ref().map(|_| "<set>"))
            .field("api_key", &redact(&self.api_key))
            .field("node_id", &self.node_id)
            .field("log_format", &self.log_format)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_text_chars", &self.max_text_chars)
            .field("outbox_frames", &self.outbox_frames)
            .field("rate_per_s", &self.rate_per_s)
            .field("rate_burst", &self.rate_burst)
            .field("room_idle_s", &self.room_idle_s)
            .field("room_threads", &self.room_threads)
            .field("http_workers", &self.http_workers)
            .field("ice_urls", &self.ice_urls)
            .field("turn_secret", &redact(&self.turn_secret))
            .field("turn_ttl_s", &self.turn_ttl_s)
            .field("jitsi_domain", &self.jitsi_domain)
            .field("jitsi_app_id", &self.jitsi_app_id)
            .field("jitsi_app_secret", &redact(&self.jitsi_app_secret))
            .field("jitsi_audience", &self.jitsi_audience)
            .field("mesh_limit", &self.mesh_limit)
            .field("queue_grace_s", &self.queue_grace_s)
            .field("no_show_s", &self.no_show_s)
            .field("enable_payments", &self.enable_payments)
            .field("stripe_webhook_secret", &redact(&self.stripe_webhook_secret))
            .field("stripe_secret_key", &redact(&self.stripe_secret_key))
            .field("stripe_api_base", &self.stripe_api_base)
            .field("enable_video", &self.enable_video)
            .field("enable_sms", &self.enable_sms)
            .field("enable_email", &self.enable_email)
            .field("public_url", &self.public_url)
            .field("twilio_account_sid", &self.twilio_account_sid)
            .field("twilio_auth_token", &redact(&self.twilio_auth_token))
            .field("twilio_from", &self.twilio_from)
            .field("twilio_api_base", &self.twilio_api_base)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("mail_from", &self.mail_from)
            .field("reminder_lead_s", &self.reminder_lead_s)
            .field("notify_max_attempts", &self.notify_max_attempts)
            .field("notify_backoff_ms", &self.notify_backoff_ms)
            .finish_non_exhaustive()
    }
}

/// Hides the password of a database URL.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://<redacted>{}", &url[..scheme], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Command-line flags; each also reads its `TELEHUB_*` variable.
#[derive(Debug, Parser, Default)]
#[command(name = "telehub", version, about = "Real-time hub for telemedicine consultations")]
pub struct Args {
    /// TOML file with settings (keys as in the README).
    #[arg(long, env = "TELEHUB_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "TELEHUB_BIND")]
    pub bind: Option<String>,
    /// May hold a password: `--help` does not print its value.
    #[arg(long, env = "TELEHUB_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[arg(long, env = "TELEHUB_DATABASE_BUSY_MS")]
    pub database_busy_ms: Option<u64>,
    #[arg(long, env = "TELEHUB_MAX_PENDING_MESSAGES")]
    pub max_pending_messages: Option<usize>,
    #[arg(long, env = "TELEHUB_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    #[arg(long, env = "TELEHUB_CLUSTER_TTL_MS")]
    pub cluster_ttl_ms: Option<u64>,
    #[arg(long, env = "TELEHUB_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    #[arg(long, env = "TELEHUB_JWT_ALGORITHM")]
    pub jwt_algorithm: Option<String>,
    #[arg(long, env = "TELEHUB_JWT_PUBLIC_KEY", hide_env_values = true)]
    pub jwt_public_key: Option<String>,
    #[arg(long, env = "TELEHUB_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[arg(long, env = "TELEHUB_NODE_ID")]
    pub node_id: Option<String>,
    #[arg(long, env = "TELEHUB_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[arg(long, env = "TELEHUB_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    #[arg(long, env = "TELEHUB_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    #[arg(long, env = "TELEHUB_MAX_TEXT_CHARS")]
    pub max_text_chars: Option<usize>,
    #[arg(long, env = "TELEHUB_OUTBOX_FRAMES")]
    pub outbox_frames: Option<usize>,
    #[arg(long, env = "TELEHUB_RATE_PER_S")]
    pub rate_per_s: Option<f64>,
    #[arg(long, env = "TELEHUB_RATE_BURST")]
    pub rate_burst: Option<f64>,
    #[arg(long, env = "TELEHUB_HTTP_RATE_PER_S")]
    pub http_rate_per_s: Option<f64>,
    #[arg(long, env = "TELEHUB_HTTP_RATE_BURST")]
    pub http_rate_burst: Option<f64>,
    #[arg(long, env = "TELEHUB_ROOM_IDLE_S")]
    pub room_idle_s: Option<u64>,
    #[arg(long, env = "TELEHUB_ROOM_THREADS")]
    pub room_threads: Option<usize>,
    #[arg(long, env = "TELEHUB_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
    #[arg(long, env = "TELEHUB_GOAWAY_RETRY_MS")]
    pub goaway_retry_ms: Option<u64>,
    #[arg(long, env = "TELEHUB_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Comma-separated STUN/TURN URLs.
    #[arg(long, env = "TELEHUB_ICE_URLS", value_delimiter = ',')]
    pub ice_urls: Option<Vec<String>>,
    #[arg(long, env = "TELEHUB_SYSTEM_NAME")]
    pub system_name: Option<String>,
    #[arg(long, env = "TELEHUB_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    #[arg(long, env = "TELEHUB_TURN_TTL_S")]
    pub turn_ttl_s: Option<u64>,
    #[arg(long, env = "TELEHUB_JITSI_DOMAIN")]
    pub jitsi_domain: Option<String>,
    #[arg(long, env = "TELEHUB_JITSI_APP_ID")]
    pub jitsi_app_id: Option<String>,
    #[arg(long, env = "TELEHUB_JITSI_APP_SECRET", hide_env_values = true)]
    pub jitsi_app_secret: Option<String>,
    #[arg(long, env = "TELEHUB_JITSI_AUDIENCE")]
    pub jitsi_audience: Option<String>,
    #[arg(long, env = "TELEHUB_JITSI_TTL_S")]
    pub jitsi_ttl_s: Option<u64>,
    #[arg(long, env = "TELEHUB_MESH_LIMIT")]
    pub mesh_limit: Option<usize>,
    #[arg(long, env = "TELEHUB_QUEUE_GRACE_S")]
    pub queue_grace_s: Option<u64>,
    #[arg(long, env = "TELEHUB_NO_SHOW_S")]
    pub no_show_s: Option<u64>,
    #[arg(long, env = "TELEHUB_CONSULTATION_ESTIMATE_S")]
    pub consultation_estimate_s: Option<u64>,
    #[arg(long, env = "TELEHUB_ENABLE_PAYMENTS")]
    pub enable_payments: Option<bool>,
    #[arg(long, env = "TELEHUB_STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<String>,
    #[arg(long, env = "TELEHUB_STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    #[arg(long, env = "TELEHUB_STRIPE_API_BASE")]
    pub stripe_api_base: Option<String>,
    #[arg(long, env = "TELEHUB_PAYMENT_SUCCESS_URL")]
    pub payment_success_url: Option<String>,
    #[arg(long, env = "TELEHUB_PAYMENT_CANCEL_URL")]
    pub payment_cancel_url: Option<String>,
    #[arg(long, env = "TELEHUB_ENABLE_VIDEO")]
    pub enable_video: Option<bool>,
    #[arg(long, env = "TELEHUB_ENABLE_SMS")]
    pub enable_sms: Option<bool>,
    #[arg(long, env = "TELEHUB_ENABLE_EMAIL")]
    pub enable_email: Option<bool>,
    #[arg(long, env = "TELEHUB_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[arg(long, env = "TELEHUB_TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    #[arg(long, env = "TELEHUB_TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    #[arg(long, env = "TELEHUB_TWILIO_FROM")]
    pub twilio_from: Option<String>,
    #[arg(long, env = "TELEHUB_TWILIO_API_BASE")]
    pub twilio_api_base: Option<String>,
    #[arg(long, env = "TELEHUB_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    #[arg(long, env = "TELEHUB_MAIL_FROM")]
    pub mail_from: Option<String>,
    #[arg(long, env = "TELEHUB_REMINDER_LEAD_S")]
    pub reminder_lead_s: Option<u64>,
    #[arg(long, env = "TELEHUB_NOTIFY_MAX_ATTEMPTS")]
    pub notify_max_attempts: Option<u32>,
    #[arg(long, env = "TELEHUB_NOTIFY_BACKOFF_MS")]
    pub notify_backoff_ms: Option<u64>,
    #[arg(long, env = "TELEHUB_NOTIFY_POLL_MS")]
    pub notify_poll_ms: Option<u64>,
    #[arg(long, env = "TELEHUB_NOTIFY_LINK_TTL_S")]
    pub notify_link_ttl_s: Option<u64>,
}

impl Settings {
    /// Builds the settings from every layer.
    pub fn load(args: Args) -> anyhow::Result<Settings> {
        let mut settings = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("bad config file {}: {e}", path.display()))?
            }
            None => Settings::default(),
        };
        settings.apply(args);
        settings.validate()?;
        Ok(settings)
    }

    fn apply(&mut self, args: Args) {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = args.$field { self.$field = v; } )* };
        }
        macro_rules! set_opt {
            ($($field:ident),*) => { $( if let Some(v) = args.$field { self.$field = Some(v); } )* };
        }
        set!(
            bind,
            database_url,
            database_busy_ms,
            max_pending_messages,
            jwt_algorithm,
            node_id,
            log_format,
            heartbeat_ms,
            max_frame_bytes,
            max_text_chars
        );
        set!(outbox_frames, rate_per_s, rate_burst, room_idle_s, room_threads, http_workers, goaway_retry_ms);
        set!(shutdown_grace_ms, ice_urls, system_name, turn_ttl_s, jitsi_audience, jitsi_ttl_s, mesh_limit);
        set!(queue_grace_s, no_show_s, consultation_estimate_s, http_rate_per_s, http_rate_burst, cluster_ttl_ms);
        set!(enable_payments, stripe_api_base, enable_video, enable_sms, enable_email, twilio_api_base);
        set!(reminder_lead_s, notify_max_attempts, notify_backoff_ms, notify_poll_ms, notify_link_ttl_s);
        set_opt!(public_url, twilio_account_sid, twilio_auth_token, twilio_from, smtp_url, mail_from);
        set_opt!(jwt_secret, jwt_public_key, api_key, turn_secret, jitsi_domain, jitsi_app_id, jitsi_app_secret);
        set_opt!(redis_url, stripe_webhook_secret, stripe_secret_key, payment_success_url, payment_cancel_url);
        // An empty variable means unset, as operators expect.
        for secret in [
            &mut self.jwt_secret,
            &mut self.api_key,
            &mut self.jwt_public_key,
            &mut self.turn_secret,
            &mut self.jitsi_domain,
            &mut self.jitsi_app_id,
            &mut self.jitsi_app_secret,
            &mut self.redis_url,
            &mut self.stripe_webhook_secret,
            &mut self.stripe_secret_key,
            &mut self.payment_success_url,
            &mut self.payment_cancel_url,
            &mut self.public_url,
            &mut self.twilio_account_sid,
            &mut self.twilio_auth_token,
            &mut self.twilio_from,
            &mut self.smtp_url,
            &mut self.mail_from,
        ] {
            if secret.as_deref().is_some_and(str::is_empty) {
                *secret = None;
            }
        }
        self.ice_urls.retain(|u| !u.trim().is_empty());
    }

    /// Refuses settings that cannot work, with a message that says why.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.heartbeat_ms >= 10, "heartbeat_ms must be at least 10");
        anyhow::ensure!(self.max_frame_bytes >= 1024, "max_frame_bytes must be at least 1024");
        anyhow::ensure!(self.max_text_chars >= 1, "max_text_chars must be at least 1");
        anyhow::ensure!(self.outbox_frames >= 1, "outbox_frames must be at least 1");
        anyhow::ensure!(self.max_pending_messages >= 1, "max_pending_messages must be at least 1");
        anyhow::ensure!(
            self.rate_per_s > 0.0 && self.rate_burst >= 1.0,
            "rate_per_s must be positive and rate_burst at least 1"
        );
        anyhow::ensure!(
            matches!(self.jwt_algorithm.as_str(), "HS256" | "RS256" | "ES256"),
            "jwt_algorithm must be HS256, RS256 or ES256"
        );
        if self.jwt_algorithm != "HS256" {
            anyhow::ensure!(self.jwt_public_key.is_some(), "{} needs jwt_public_key", self.jwt_algorithm);
        }
        anyhow::ensure!(self.mesh_limit >= 2, "mesh_limit must be at least 2");
        anyhow::ensure!(
            self.http_rate_per_s > 0.0 && self.http_rate_burst >= 1.0,
            "http_rate_per_s must be positive and http_rate_burst at least 1"
        );
        anyhow::ensure!(
            self.turn_ttl_s >= 60 && self.jitsi_ttl_s >= 60,
            "turn_ttl_s and jitsi_ttl_s must be at least 60"
        );
        if self.redis_url.is_some() {
            anyhow::ensure!(
                self.database_url.starts_with("postgres://") || self.database_url.starts_with("postgresql://"),
                "redis_url is set but database_url is not PostgreSQL: the nodes of a cluster share one \
                 PostgreSQL database (SQLite is a single node's file); set TELEHUB_DATABASE_URL=postgres://… \
                 or unset TELEHUB_REDIS_URL to run one node"
            );
        }
        anyhow::ensure!(self.cluster_ttl_ms >= 300, "cluster_ttl_ms must be at least 300");
        // A TURN entry without credentials is worse than none: browsers
        // refuse to make a peer connection with it at all.
        anyhow::ensure!(
            self.turn_secret.is_some()
                || !self.ice_urls.iter().any(|url| url.starts_with("turn:") || url.starts_with("turns:")),
            "ice_urls has a turn: or turns: URL but turn_secret is not set: TURN needs coturn's \
             static-auth-secret for the per-session credentials (or leave the TURN URL out)"
        );
        for (key, value) in [
            ("node_id", &self.node_id),
            ("system_name", &self.system_name),
            ("jitsi_audience", &self.jitsi_audience),
            ("stripe_api_base", &self.stripe_api_base),
            ("twilio_api_base", &self.twilio_api_base),
        ] {
            anyhow::ensure!(!value.trim().is_empty(), "{key} must not be empty (leave it out for the default)");
        }
        let jitsi = [&self.jitsi_domain, &self.jitsi_app_id, &self.jitsi_app_secret];
        anyhow::ensure!(
            jitsi.iter().all(|v| v.is_some()) || jitsi.iter().all(|v| v.is_none()),
            "the Jitsi fallback needs jitsi_domain, jitsi_app_id and jitsi_app_secret together"
        );
        let twilio = [&self.twilio_account_sid, &self.twilio_auth_token, &self.twilio_from];
        anyhow::ensure!(
            twilio.iter().all(|v| v.is_some()) || twilio.iter().all(|v| v.is_none()),
            "SMS needs twilio_account_sid, twilio_auth_token and twilio_from together"
        );
        anyhow::ensure!(
            self.smtp_url.is_some() == self.mail_from.is_some(),
            "email needs smtp_url and mail_from together"
        );
        anyhow::ensure!(self.notify_max_attempts >= 1, "notify_max_attempts must be at least 1");
        anyhow::ensure!(self.notify_poll_ms >= 10, "notify_poll_ms must be at least 10");
        anyhow::ensure!(self.notify_link_ttl_s >= 60, "notify_link_ttl_s must be at least 60");
        Ok(())
    }

    /// SMS goes out: enabled, and Twilio configured.
    pub fn sms_on(&self) -> bool {
        self.enable_sms && self.twilio_account_sid.is_some()
    }

    /// Email goes out: enabled, and SMTP configured.
    pub fn email_on(&self) -> bool {
        self.enable_email && self.smtp_url.is_some()
    }

    /// The hub's address as others reach it, without a final slash; unset,
    /// the address the node listens on.
    pub fn public_base(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{bound}"),
        }
    }

    /// Whether the bind address is on loopback.
    pub fn binds_loopback(&self) -> bool {
        let host = self.bind.rsplit_once(':').map_or(self.bind.as_str(), |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost" || self.bind.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
    }

    /// Demo mode: no token secret configured and only reachable from this
    /// machine. The caller refuses to start without a secret otherwise.
    pub fn demo_mode(&self) -> bool {
        self.jwt_secret.is_none() && self.jwt_public_key.is_none() && self.binds_loopback()
    }

    /// Dedicated threads for rooms; 0 runs each room on the HTTP worker of
    /// the session (or request) that started it.
    pub fn room_threads(&self) -> usize {
        self.room_threads
    }

    /// HTTP workers, resolving 0 to the number of cores.
    pub fn http_workers(&self) -> usize {
        resolve_threads(self.http_workers)
    }
}

fn resolve_threads(n: usize) -> usize {
    if n > 0 { n } else { std::thread::available_parallelism().map_or(2, |n| n.get()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let file: Settings =
            toml::from_str("bind = \"127.0.0.1:9000\"\nnode_id = \"from-file\"\nheartbeat_ms = 1000").unwrap();
        assert_eq!(file.bind, "127.0.0.1:9000");
        assert_eq!(file.database_url, Settings::default().database_url, "unset keys keep defaults");
        let mut settings = file;
        settings.apply(Args { node_id: Some("from-flag".into()), api_key: Some(String::new()), ..Args::default() });
        assert_eq!(settings.node_id, "from-flag");
        assert_eq!(settings.heartbeat_ms, 1000);
        assert_eq!(settings.api_key, None, "empty means unset");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("bnid = \"x\"").is_err());
    }

    #[test]
    fn demo_mode_only_on_loopback_without_secret() {
        let mut s = Settings::default();
        assert!(s.demo_mode());
        s.bind = "0.0.0.0:8080".into();
        assert!(!s.demo_mode());
        s.bind = "[::1]:8080".into();
        assert!(s.demo_mode());
        s.bind = "localhost:8080".into();
        assert!(s.demo_mode());
        s.jwt_secret = Some("x".into());
        assert!(!s.demo_mode());
    }

    #[test]
    fn help_prints_no_secret_from_the_environment() {
        use clap::CommandFactory;
        // Keys and tokens, and the URLs that carry a password.
        let secret = |env: &str| {
            ["_SECRET", "_KEY", "_TOKEN"].iter().any(|end| env.ends_with(end))
                || ["TELEHUB_DATABASE_URL", "TELEHUB_REDIS_URL", "TELEHUB_SMTP_URL"].contains(&env)
        };
        let command = Args::command();
        let mut checked = 0;
        for arg in command.get_arguments() {
            let Some(env) = arg.get_env().and_then(|e| e.to_str()) else { continue };
            if secret(env) {
                assert!(arg.is_hide_env_values_set(), "--help would print the value of {env}");
                checked += 1;
            }
        }
        assert!(checked >= 8, "only {checked} secret variables found");
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = Settings {
            jwt_secret: Some("hunter2".into()),
            api_key: Some("k-secret".into()),
            database_url: "postgres://u:pw@db/telehub".into(),
            ..Settings::default()
        };
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("k-secret") && !printed.contains("pw@"), "{printed}");
    }

    #[test]
    fn redis_needs_postgres() {
        let s = Settings { redis_url: Some("redis://127.0.0.1:6379".into()), ..Settings::default() };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("PostgreSQL"), "{err}");
        let s = Settings { database_url: "postgres://u@db/telehub".into(), ..s };
        assert!(s.validate().is_ok());
    }

    #[test]
    fn empty_values_with_a_default_are_refused() {
        let mut settings = Settings::default();
        settings.apply(Args { jitsi_audience: Some(String::new()), ..Args::default() });
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("jitsi_audience must not be empty"), "{err}");
        let settings = Settings { system_name: " ".into(), ..Settings::default() };
        assert!(settings.validate().unwrap_err().to_string().contains("system_name"));
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn a_turn_url_needs_the_turn_secret() {
        let s = Settings { ice_urls: vec!["stun:stun.example.org:3478".into()], ..Settings::default() };
        assert!(s.validate().is_ok(), "STUN alone needs no secret");
        let s = Settings { ice_urls: vec!["turns:turn.example.org:5349".into()], ..s };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("turn_secret"), "{err}");
        let s = Settings { turn_secret: Some("north".into()), ..s };
        assert!(s.validate().is_ok());
    }

    #[test]
    fn asymmetric_algorithms_need_a_key() {
        let s = Settings { jwt_algorithm: "RS256".into(), ..Settings::default() };
        assert!(s.validate().is_err());
        let s = Settings { jwt_algorithm: "none".into(), ..Settings::default() };
        assert!(s.validate().is_err());
    }
}
