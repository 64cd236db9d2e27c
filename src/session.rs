//! One WebSocket connection: a task that `select!`s over the socket, its
//! outbox, the heartbeat, token expiry and shutdown.
//!
//! The session parses and validates every frame, applies the rate limit,
//! and hands room work to the room actors through [`RoomHandle`]s. Replies
//! and broadcasts come back through the session's bounded outbox, so the
//! order a client sees is the order its rooms decided. Nothing here waits on
//! a slow client except this session itself.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix_ws::{CloseCode, CloseReason, ProtocolError};
use bytestring::ByteString;
use telehub_actors::{Identity, OutboxReceiver, QueueId, Refusal, RoomHandle, SessionRef};
use telehub_signaling::{ClientFrame, ErrorCode, RefOnly, Role, ServerFrame, UserRef};
use tokio::sync::futures::Notified;
use tracing::{Instrument, debug, info, info_span};

use crate::app::AppState;
use crate::ratelimit::TokenBucket;

/// Close codes of the protocol beyond the standard ones.
pub mod close {
    pub const UNAUTHORIZED: u16 = 4001;
    pub const ABUSE: u16 = 4008;
    pub const TOO_SLOW: u16 = 4009;
}

/// Most rooms one session may be in at once.
const MAX_ROOMS_PER_SESSION: usize = 16;
/// How long a session going away spends on the frames queued for it.
const GOAWAY_DRAIN: Duration = Duration::from_millis(500);

/// Most queues one session may check in to or watch at once.
const MAX_QUEUES_PER_SESSION: usize = 16;
/// Frames written per wake-up before the session looks at its socket again.
const WRITE_BURST: usize = 64;

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed or the connection dropped.
    Gone,
    /// Close with this code and reason.
    Close(u16, &'static str),
}

pub struct Session {
    me: SessionRef,
    /// Shared, not cloned: a clone of the state makes new actor addresses,
    /// a few hundred bytes that every session would keep.
    app: Arc<AppState>,
    rooms: HashMap<String, RoomHandle>,
    /// Queues this session checked in to or watches.
    queues: HashSet<QueueId>,
    /// The consultations it checked in for.
    checked_in: HashSet<String>,
    limiter: TokenBucket,
    /// Bad or rate-limited frames a client may send before it is cut off.
    abuse: TokenBucket,
    expires: Instant,
}

impl Session {
    pub fn new(me: SessionRef, app: Arc<AppState>, expires: Instant) -> Self {
        let now = Instant::now();
        let settings = &app.settings;
        Session {
            limiter: TokenBucket::new(settings.rate_per_s, settings.rate_burst, now),
            abuse: TokenBucket::new(1.0, 20.0, now),
            me,
            app,
            rooms: HashMap::new(),
            queues: HashSet::new(),
            checked_in: HashSet::new(),
            expires,
        }
    }

    /// Runs the session to its end and leaves every room.
    ///
    /// This future is the session's task for as long as it lasts, so it is
    /// kept small: an `async move` block holds its arguments once (the
    /// `async fn` it replaced held them twice, and its task was 4,144
    /// bytes; this one is 1,624), the loop borrows rather than takes them,
    /// and the close at the end, which an idle session never reaches, is
    /// boxed.
    pub fn run(
        mut self,
        mut ws: actix_ws::Session,
        mut stream: actix_ws::AggregatedMessageStream,
        outbox: OutboxReceiver,
    ) -> impl Future<Output = ()> {
        let user = self.me.identity.user.clone();
        let span = info_span!("session", session = %self.me.id, user = %user.id, role = user.role.as_str());
        async move {
            info!("session open");
            self.app.metrics.sessions_open.inc();
            let end = self.serve(&mut ws, &mut stream, &outbox).await;
            // Nothing more is read from the socket; only the close is left.
            drop(stream);
            for (_, room) in self.rooms.drain() {
                room.leave(&self.me, None, false);
            }
            for queue in self.queues.drain() {
                self.app.rooms.queues().session_gone(&queue, self.me.id.clone());
            }
            self.app.metrics.sessions_open.dec();
            info!(?end, "session closed");
            if let End::Close(code, reason) = end {
                let reason = CloseReason { code: CloseCode::Other(code), description: Some(reason.to_owned()) };
                // A client too slow to read may never take the close frame;
                // give it a moment, then drop the connection.
                let _ = Box::pin(tokio::time::timeout(Duration::from_secs(5), ws.close(Some(reason)))).await;
            }
        }
        .instrument(span)
    }

    async fn serve(
        &mut self,
        ws: &mut actix_ws::Session,
        stream: &mut actix_ws::AggregatedMessageStream,
        outbox: &OutboxReceiver,
    ) -> End {
        let settings = self.app.settings.clone();
        let heartbeat = Duration::from_millis(settings.heartbeat_ms);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let expiry = tokio::time::sleep_until(self.expires.into());
        tokio::pin!(expiry);
        let shutdown = self.app.shutdown.clone();
        let mut last_seen = Instant::now();
        // The two waits that end the session are made once, not on every
        // turn of the loop: each new one would register with its `Notify`
        // and unregister again, a lock each, for every frame in or out.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let overflow = outbox.overflowed();
        tokio::pin!(overflow);

        // Only the text lives across the write: the task keeps whatever
        // is held across an await for as long as the session lasts.
        let welcome = ServerFrame::Welcome {
            session: self.me.id.to_string(),
            user: self.me.identity.user.clone(),
            heartbeat_ms: settings.heartbeat_ms,
            node: settings.node_id.clone(),
            protocol: telehub_signaling::PROTOCOL_VERSION,
            video: settings.enable_video,
        }
        .to_json();
        if ws.text(welcome).await.is_err() {
            return End::Gone;
        }

        loop {
            tokio::select! {
                biased;
                () = &mut cancelled => {
                    // What the rooms gave this session already (acks of
                    // stored messages among it) goes out first, for a
                    // moment at most, so that fewer are sent again.
                    let drain = async {
                        while let Some(frame) = outbox.try_recv() {
                            if ws.text(frame).await.is_err() {
                                break;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(GOAWAY_DRAIN, drain).await;
                    let goaway = ServerFrame::Goaway { retry_ms: settings.goaway_retry_ms };
                    let _ = ws.text(goaway.to_json()).await;
                    return End::Close(1001, "server shutting down");
                }
                () = &mut overflow => return End::Close(close::TOO_SLOW, "too slow to read"),
                () = &mut expiry => {
                    let frame = ServerFrame::error(None, ErrorCode::Unauthorized, "token expired");
                    let _ = ws.text(frame.to_json()).await;
                    return End::Close(close::UNAUTHORIZED, "token expired");
                }
                frame = outbox.recv() => {
                    let Some(frame) = frame else { return End::Gone };
                    if let Err(end) = write(ws, overflow.as_mut(), frame, heartbeat * 2).await {
                        return end;
                    }
                    for _ in 1..WRITE_BURST {
                        let Some(frame) = outbox.try_recv() else { break };
                        if let Err(end) = write(ws, overflow.as_mut(), frame, heartbeat * 2).await {
                            return end;
                        }
                    }
                }
                message = stream.recv() => {
                    last_seen = Instant::now();
                    match message {
                        None => return End::Gone,
                        Some(Err(ProtocolError::Overflow)) => return End::Close(1009, "frame too large"),
                        // A message over the limit in fragments: actix-ws
                        // tells it only by this I/O error's text (a test
                        // holds it to that).
                        Some(Err(ProtocolError::Io(err))) if err.to_string().contains("maximum continuation size") => {
                            return End::Close(1009, "message too large");
                        }
                        Some(Err(err)) => {
                            debug!(error = %err, "protocol error");
                            return End::Close(1002, "protocol error");
                        }
                        Some(Ok(actix_ws::AggregatedMessage::Text(text))) => {
                            // Boxed: a frame's handling (a join, an admission) is
                            // large and brief; an idle session should not carry
                            // room for it.
                            if let Err(end) = Box::pin(self.on_text(&text)).await {
                                return end;
                            }
                        }
                        Some(Ok(actix_ws::AggregatedMessage::Binary(_))) => {
                            self.reply(ServerFrame::error(None, ErrorCode::BadRequest, "binary frames are not accepted; send JSON text"));
                            if self.strike() {
                                return End::Close(close::ABUSE, "too many bad frames");
                            }
                        }
                        Some(Ok(actix_ws::AggregatedMessage::Ping(bytes))) => {
                            if ws.pong(&bytes).await.is_err() {
                                return End::Gone;
                            }
                        }
                        Some(Ok(actix_ws::AggregatedMessage::Pong(_))) => {}
                        Some(Ok(actix_ws::AggregatedMessage::Close(_))) => return End::Close(1000, "bye"),
                    }
                }
                _ = ticker.tick() => {
                    if last_seen.elapsed() > heartbeat * 2 {
                        return End::Close(1001, "heartbeat timeout");
                    }
                    if ws.ping(b"").await.is_err() {
                        return End::Gone;
                    }
                }
            }
        }
    }

    /// Queues a reply behind whatever the rooms queued before it.
    fn reply(&self, frame: ServerFrame) {
        let _ = self.me.outbox.push(ByteString::from(frame.to_json()));
    }

    fn refuse(&self, reference: Option<String>, refusal: Refusal) {
        self.reply(ServerFrame::error(reference, refusal.code, refusal.message));
    }

    fn ok(&self, reference: Option<String>) {
        if reference.is_some() {
            self.reply(ServerFrame::Ok { reference });
        }
    }

    /// Spends one unit of the abuse budget; true when it is used up.
    fn strike(&mut self) -> bool {
        self.abuse.take(Instant::now()).is_err()
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        self.app.metrics.frames_in.inc();
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(err) => {
                self.reply(ServerFrame::error(RefOnly::of(text), ErrorCode::BadRequest, describe_json_error(&err)));
                return if self.strike() { Err(End::Close(close::ABUSE, "too many bad frames")) } else { Ok(()) };
            }
        };
        let reference = frame.reference().map(str::to_owned);
        let frame = match self.app.limits.validate(frame) {
            Ok(frame) => frame,
            Err(err) => {
                self.reply(ServerFrame::error(reference, err.code(), err.to_string()));
                return if self.strike() { Err(End::Close(close::ABUSE, "too many bad frames")) } else { Ok(()) };
            }
        };
        if let Err(wait) = self.limiter.take(Instant::now()) {
            let retry_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            self.reply(ServerFrame::Error {
                reference,
                code: ErrorCode::RateLimited,
                message: "rate limit exceeded".into(),
                retry_ms: Some(retry_ms),
            });
            return if self.strike() { Err(End::Close(close::ABUSE, "rate limit abused")) } else { Ok(()) };
        }
        self.dispatch(frame).await;
        Ok(())
    }

    /// Whether this session may follow one more queue.
    fn room_for_queues(&self) -> Result<(), Refusal> {
        if self.queues.len() >= MAX_QUEUES_PER_SESSION {
            return Err(Refusal::new(
                ErrorCode::Conflict,
                format!("a session may follow at most {MAX_QUEUES_PER_SESSION} queues"),
            ));
        }
        Ok(())
    }

    /// The joined room a frame is about, or the refusal to send.
    fn joined(&mut self, room: &str) -> Result<&RoomHandle, Refusal> {
        match self.rooms.get(room) {
            Some(handle) if handle.is_running() => Ok(&self.rooms[room]),
            Some(_) => {
                self.rooms.remove(room);
                Err(Refusal::new(ErrorCode::Unavailable, format!("{room} restarted: join again")))
            }
            None => Err(Refusal::new(ErrorCode::Forbidden, format!("join {room} first"))),
        }
    }

    async fn dispatch(&mut self, frame: ClientFrame) {
        let me = self.me.clone();
        let identity: Arc<Identity> = me.identity.clone();
        match frame {
            ClientFrame::Ping { reference } => self.reply(ServerFrame::Pong { reference }),
            ClientFrame::Join { reference, room, since } => {
                if !self.rooms.contains_key(&room) && self.rooms.len() >= MAX_ROOMS_PER_SESSION {
                    let refusal = Refusal::new(
                        ErrorCode::Conflict,
                        format!("a session may be in at most {MAX_ROOMS_PER_SESSION} rooms"),
                    );
                    return self.refuse(reference, refusal);
                }
                let span = info_span!("join", room = %room);
                // The rare, large awaits are boxed on their own too, so that
                // the box of every frame's handling stays small for chat.
                match Box::pin(self.app.rooms.join(&room, &me, since, reference.clone()).instrument(span)).await {
                    Ok(handle) => {
                        self.rooms.insert(room, handle);
                    }
                    Err(refusal) => self.refuse(reference, refusal),
                }
            }
            ClientFrame::Leave { reference, room } => match self.rooms.remove(&room) {
                // A room that stopped (a fault) has let the session go.
                Some(handle) if handle.is_running() => handle.leave(&me, reference, true),
                _ => self.reply(ServerFrame::Left { reference, room }),
            },
            ClientFrame::Chat { reference, room, client_id, text } => match self.joined(&room) {
                Ok(handle) => handle.chat(&me, reference, client_id, text),
                Err(refusal) => self.refuse(reference, refusal),
            },
            ClientFrame::Typing { reference, room, active } => match self.joined(&room) {
                Ok(handle) => handle.typing(&me, reference, active),
                Err(refusal) => self.refuse(reference, refusal),
            },
            ClientFrame::Read { reference, room, seq } => match self.joined(&room) {
                Ok(handle) => handle.read(&me, reference, seq),
                Err(refusal) => self.refuse(reference, refusal),
            },
            ClientFrame::Signal { reference, .. } | ClientFrame::Media { reference, .. }
                if !self.app.settings.enable_video =>
            {
                let refusal = Refusal::new(
                    ErrorCode::Forbidden,
                    "video calls are disabled on this hub (TELEHUB_ENABLE_VIDEO=false): chat only",
                );
                self.refuse(reference, refusal)
            }
            ClientFrame::Signal { reference, room, to, data } => match self.joined(&room) {
                Ok(handle) => handle.relay(&me, reference, to, data),
                Err(refusal) => self.refuse(reference, refusal),
            },
            ClientFrame::Media { reference, room, event, mode } => {
                match Box::pin(self.app.rooms.switch_media(&room, Some(me.id.clone()), identity, event, mode)).await {
                    Ok(()) => self.ok(reference),
                    Err(refusal) => self.refuse(reference, refusal),
                }
            }
            ClientFrame::Admit { reference, room, override_payment } => {
                match Box::pin(self.app.rooms.admit(&room, Some(identity), override_payment)).await {
                    Ok(()) => self.ok(reference),
                    Err(refusal) => self.refuse(reference, refusal),
                }
            }
            ClientFrame::End { reference, room } => {
                let by = UserRef { id: identity.user.id.clone(), name: identity.user.name.clone() };
                match Box::pin(self.app.rooms.end(&room, Some(identity), by)).await {
                    Ok(()) => self.ok(reference),
                    Err(refusal) => self.refuse(reference, refusal),
                }
            }
            ClientFrame::Checkin { reference, room } => {
                if identity.user.role != Role::Patient {
                    let role = identity.user.role.as_str();
                    return self
                        .refuse(reference, Refusal::new(ErrorCode::Forbidden, format!("a {role} may not check in")));
                }
                // Checking in again for a consultation follows no new queue.
                if !self.checked_in.contains(&room)
                    && let Err(refusal) = self.room_for_queues()
                {
                    return self.refuse(reference, refusal);
                }
                let span = info_span!("checkin", room = %room);
                match Box::pin(self.app.rooms.check_in(&room, &me, reference.clone()).instrument(span)).await {
                    Ok(queue) => {
                        self.queues.insert(queue);
                        self.checked_in.insert(room);
                    }
                    Err(refusal) => self.refuse(reference, refusal),
                }
            }
            ClientFrame::Watch { reference, queue } => {
                if identity.user.role == Role::Patient {
                    return self
                        .refuse(reference, Refusal::new(ErrorCode::Forbidden, "a patient may not watch queues"));
                }
                // Queues are scoped by clinic: the token's clinic says whose.
                let queue = QueueId::new(identity.clinic.as_deref(), &queue);
                if !self.queues.contains(&queue)
                    && let Err(refusal) = self.room_for_queues()
                {
                    return self.refuse(reference, refusal);
                }
                match Box::pin(self.app.rooms.queues().watch(&queue, &me, reference.clone())).await {
                    Ok(()) => {
                        self.queues.insert(queue);
                    }
                    Err(refusal) => self.refuse(reference, refusal),
                }
            }
        }
    }
}

/// Says what is wrong with a frame in words a client developer can act on.
fn describe_json_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof => format!("not a JSON object: {err}"),
        Category::Data => format!("bad frame: {err}"),
        Category::Io => "unreadable frame".into(),
    }
}

/// Writes one frame, unless the client stops reading: then the outbox
/// overflows (`overflow`) or the write stalls, and the session ends. A write
/// that goes through at once, the usual case, sets no timer.
async fn write(
    ws: &mut actix_ws::Session,
    mut overflow: Pin<&mut Notified<'_>>,
    frame: ByteString,
    stall: Duration,
) -> Result<(), End> {
    let send = ws.text(frame);
    tokio::pin!(send);
    if let Poll::Ready(result) = futures_util::poll!(send.as_mut()) {
        return result.map_err(|_| End::Gone);
    }
    tokio::select! {
        biased;
        result = &mut send => result.map_err(|_| End::Gone),
        () = &mut overflow => Err(End::Close(close::TOO_SLOW, "too slow to read")),
        () = tokio::time::sleep(stall) => Err(End::Close(close::TOO_SLOW, "too slow to read")),
    }
}
