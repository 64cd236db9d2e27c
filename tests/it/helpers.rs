//! Test helpers: a real node on port 0 with a fresh database, and a small
//! WebSocket client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use telehub::config::Settings;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};

pub const SECRET: &str = "test-secret-0123456789abcdef";
pub const API_KEY: &str = "test-api-key";

/// How long a test waits for something that should happen promptly. It is a
/// bound against hangs, not a synchronisation: tests wait for events.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Waits until `check` holds, asking again every 50 ms, for at most
/// [`PATIENCE`]. For conditions that have no event to wait for (a node's
/// readiness or a gauge, as seen over HTTP).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running node.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db_url: String,
    pub http: reqwest::Client,
    /// The node's rooms, for tests that inject a fault into one.
    pub rooms: telehub_actors::Rooms,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    pub dir: Arc<tempfile::TempDir>,
}

/// Settings for tests: a fresh SQLite file in its own folder.
pub fn test_settings(dir: &tempfile::TempDir) -> Settings {
    Settings {
        bind: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}/telehub.db", dir.path().display()),
        jwt_secret: Some(SECRET.into()),
        api_key: Some(API_KEY.into()),
        node_id: "test-node".into(),
        http_workers: 2,
        shutdown_grace_ms: 5000,
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A node on a fresh database: SQLite in the test's folder, or, when
/// `TELEHUB_TEST_POSTGRES` names a PostgreSQL server (scripts/test starts
/// one and runs the suite again against it), a new database there.
pub async fn spawn_app_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    if let Some(server) = postgres_server() {
        settings.database_url = fresh_postgres_database(&server).await;
    }
    change(&mut settings);
    start(settings, dir).await
}

/// A node on SQLite whatever the suite runs against, for tests of SQLite
/// itself (its file locks, say).
pub async fn spawn_sqlite_app_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    change(&mut settings);
    start(settings, dir).await
}

/// The PostgreSQL server the suite runs against, if any.
pub fn postgres_server() -> Option<String> {
    std::env::var("TELEHUB_TEST_POSTGRES").ok().filter(|url| !url.is_empty())
}

/// Creates an empty database on `server` and returns its URL. A server that
/// was named but does not answer fails the test: it never falls back.
pub async fn fresh_postgres_database(server: &str) -> String {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .unwrap_or_else(|err| panic!("TELEHUB_TEST_POSTGRES={server} does not answer: {err}"));
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    let (base, _) = server.rsplit_once('/').expect("a postgres:// URL with a database");
    format!("{base}/{name}")
}

/// Starts a node on its own thread and actix system; waits until it answers.
pub async fn start(settings: Settings, dir: Arc<tempfile::TempDir>) -> TestApp {
    if std::env::var_os("RUST_LOG").is_some() {
        telehub::telemetry::init(telehub::config::LogFormat::Text);
    }
    let listener = std::net::TcpListener::bind(&settings.bind).unwrap();
    let addr = listener.local_addr().unwrap();
    let db_url = settings.database_url.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (rooms_tx, rooms_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        let shutdown = async {
            let _ = rx.await;
        };
        let ready = |app: &telehub::app::AppState| {
            let _ = rooms_tx.send(app.rooms.clone());
        };
        actix_web::rt::System::new().block_on(telehub::startup::run_with(settings, listener, shutdown, ready))
    });
    // Dropped unsent when the node fails before it is built.
    let rooms =
        tokio::time::timeout(PATIENCE, rooms_rx).await.expect("node was not built").expect("node did not start");
    let app =
        TestApp { addr, db_url, http: reqwest::Client::new(), rooms, shutdown: Some(tx), thread: Some(thread), dir };
    // The listener is bound and listening already, so this request waits in
    // its accept queue until the node serves; if the node fails to start, the
    // listener closes and the request fails.
    let response = tokio::time::timeout(PATIENCE, app.http.get(app.url("/healthz")).send())
        .await
        .expect("node did not answer")
        .expect("node did not start");
    assert_eq!(response.status(), 200);
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A series of the node's `/metrics` (labelled with the node only), if
    /// the node has it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.starts_with(&format!("{name}{{")))?;
        Some(line.rsplit(' ').next().unwrap().parse().unwrap())
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/v1/ws?token={}", self.addr, token)
    }

    /// Stops the node gracefully and waits for it; returns its folder so a
    /// new node can start on the same database.
    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        let _ = self.shutdown.take().unwrap().send(());
        let thread = self.thread.take().unwrap();
        tokio::task::spawn_blocking(move || thread.join().unwrap()).await.unwrap().unwrap();
        self.dir.clone()
    }

    /// Restarts a node on the same database.
    pub async fn restart(self) -> TestApp {
        let db_url = self.db_url.clone();
        let dir = self.stop().await;
        let mut settings = test_settings(&dir);
        settings.database_url = db_url;
        start(settings, dir).await
    }

    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(API_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.api(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.api(reqwest::Method::GET, path, None).await
    }

    /// Creates a consultation `id` for patient `p-<id>` and doctor `d-<id>`.
    pub async fn consultation(&self, id: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/consultations",
                json!({"id": id, "clinic": "k1", "patient": {"id": format!("p-{id}"), "name": "Budi"}, "doctor": {"id": format!("d-{id}"), "name": "Ana"}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// The consultation's stored status.
    pub async fn consultation_status(&self, id: &str) -> String {
        let (status, body) = self.get(&format!("/v1/consultations/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body["status"].as_str().unwrap().to_owned()
    }

    /// Creates consultation `room`; its doctor joins, then its patient; the
    /// doctor has seen the patient arrive. Returns (doctor, patient).
    pub async fn pair(&self, room: &str) -> (Client, Client) {
        self.consultation(room).await;
        let mut doctor = self.doctor(room).await;
        doctor.join(room, None).await;
        let mut patient = self.patient(room).await;
        patient.join(room, None).await;
        let presence = doctor.recv_type("presence").await;
        assert_eq!(presence["peer"]["session"], patient.session.as_str());
        (doctor, patient)
    }

    pub async fn patient(&self, room: &str) -> Client {
        Client::connect(self, &token(&format!("p-{room}"), "Budi", "patient", 3600)).await
    }

    pub async fn doctor(&self, room: &str) -> Client {
        Client::connect(self, &token(&format!("d-{room}"), "Ana", "doctor", 3600)).await
    }
}

/// Signs a client token with the test secret.
pub fn token(sub: &str, name: &str, role: &str, ttl: i64) -> String {
    token_with(
        json!({"sub": sub, "name": name, "role": role, "clinic": "k1", "exp": chrono::Utc::now().timestamp() + ttl}),
        SECRET,
    )
}

pub fn token_with(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A WebSocket client that speaks JSON frames.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub session: String,
    /// The `welcome` this connection began with.
    pub welcome: Value,
    next_ref: u64,
}

impl Client {
    pub async fn connect(app: &TestApp, token: &str) -> Client {
        Client::connect_to(&app.ws_url(token)).await
    }

    /// Connects to any WebSocket URL of a hub (through a proxy, say).
    pub async fn connect_to(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
        let mut client = Client { ws, session: String::new(), welcome: Value::Null, next_ref: 0 };
        let welcome = client.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        client.session = welcome["session"].as_str().unwrap().to_owned();
        client.welcome = welcome;
        client
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::Text(frame.to_string().into())).await.unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.unwrap();
    }

    /// The next JSON frame; panics on close or after [`PATIENCE`].
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("timed out waiting for a frame");
            match message {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    /// Skips frames until one of type `kind`; returns it.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Sends a frame with a fresh `ref` and returns the reply with that ref.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        self.next_ref += 1;
        let reference = format!("r{}", self.next_ref);
        frame["ref"] = json!(reference);
        self.send(frame).await;
        loop {
            let reply = self.recv().await;
            if reply["ref"] == json!(reference) {
                return reply;
            }
        }
    }

    pub async fn join(&mut self, room: &str, since: Option<i64>) -> Value {
        let mut frame = json!({"type": "join", "room": room});
        if let Some(since) = since {
            frame["since"] = json!(since);
        }
        let joined = self.request(frame).await;
        assert_eq!(joined["type"], "joined", "{joined}");
        joined
    }

    /// Sends a chat message and returns its ack.
    pub async fn chat(&mut self, room: &str, client_id: &str, text: &str) -> Value {
        let ack = self.request(json!({"type": "chat", "room": room, "client_id": client_id, "text": text})).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        ack
    }

    /// Waits for the connection to close; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("timed out waiting for close") {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Expects that nothing arrives before the reply to a `ping`. The hub
    /// answers frames in order, so anything sent to this session before the
    /// ping was handled would show up first.
    pub async fn assert_quiet(&mut self) {
        self.send(json!({"type": "ping", "ref": "quiet"})).await;
        let pong = self.recv().await;
        assert_eq!(pong, json!({"type": "pong", "ref": "quiet"}), "unexpected frame");
    }
}

/// Tries an upgrade and returns the HTTP status and body of a refusal.
pub async fn refused_upgrade(url: &str) -> (u16, Value) {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("upgrade should have been refused"),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().as_ref().map(|b| serde_json::from_slice(b).unwrap()).unwrap_or(Value::Null);
            (status, body)
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// Serves the routes `configure` adds on a free loopback port, on a thread
/// and actix system of its own, for as long as the test runs: a stand-in
/// for an outside service. Returns its base URL.
pub fn stand_in<F>(configure: F) -> String
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            actix_web::HttpServer::new(move || actix_web::App::new().configure(configure.clone()))
                .workers(1)
                .listen(listener)
                .unwrap()
                .run()
                .await
                .unwrap();
        });
    });
    url
}
