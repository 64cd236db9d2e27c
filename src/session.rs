//! One WebSocket connection: a task that `select!`s over the socket, its
//! outbox, the heartbeat, token expiry and shutdown.
//!
//! The session parses and validates every frame, applies the rate limit,
//! and hands room work to the room actors through [`RoomHandle`]s. Replies
//! and broadcasts come back through the session's bounded outbox, so the
//! order a client sees is the order its rooms decided. Nothing here waits on
//! a slow client except this session itself.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix_ws::{CloseCode, CloseReason, ProtocolError};
use bytestring::ByteString;
use telehub_actors::{Identity, Lost, Next, OutboxReceiver, QueueId, Refusal, RoomHandle, SessionRef};
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

/// A room the session joined.
struct Joined {
    room: String,
    handle: RoomHandle,
    /// The room stopped under the session (a fault), which has let go of
    /// it and told the client; kept until the client joins or leaves, so
    /// that a frame for it, which may have left before the client heard, is
    /// told the same.
    let_go: bool,
}

pub struct Session {
    me: SessionRef,
    /// Shared, not cloned: a clone of the state makes new actor addresses,
    /// a few hundred bytes that every session would keep.
    app: Arc<AppState>,
    /// The rooms joined. This and the two sets below are vectors searched
    /// in turn: a session is in a room or two, and a hash table's first
    /// allocation (about 200 bytes) would outweigh what it holds.
    rooms: Vec<Joined>,
    /// Queues this session checked in to or watches.
    queues: Vec<QueueId>,
    /// The consultations it checked in for.
    checked_in: Vec<String>,
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
            rooms: Vec::new(),
            queues: Vec::new(),
            checked_in: Vec::new(),
            expires,
        }
    }

    /// Runs the session to its end and leaves every room.
    ///
    /// This future is the session's task for as long as it lasts, so it is
    /// kept small: an `async move` block holds its arguments once (an
    /// `async fn` holds them twice), the loop borrows rather than takes
    /// them, and the close at the end, which an idle session never reaches,
    /// is boxed. It is 1,096 bytes, and its task a 1,280-byte allocation
    /// with 32 bytes of padding left; more would take it to the next
    /// class, 1,408 (`cargo +nightly rustc --release --lib --
    /// -Zprint-type-sizes`, the task's `Cell`).
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
            for joined in std::mem::take(&mut self.rooms) {
                self.part(joined, None, false);
            }
            for queue in std::mem::take(&mut self.queues) {
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

    /// The session's loop. Only what an idle session waits on lives in
    /// this future for the session's lifetime: the socket, the outbox, one
    /// timer and the two waits that end it. Whatever a wake-up does (a
    /// burst of writes, a frame's handling, a ping, a goodbye) is boxed and
    /// gone again once done.
    ///
    /// A plain function returning an `async` block, like [`Session::run`],
    /// so that the future holds its arguments once.
    #[expect(clippy::manual_async_fn, reason = "an `async fn` would hold its arguments twice")]
    fn serve<'a>(
        &'a mut self,
        ws: &'a mut actix_ws::Session,
        stream: &'a mut actix_ws::AggregatedMessageStream,
        outbox: &'a OutboxReceiver,
    ) -> impl Future<Output = End> + 'a {
        async move {
            // One timer for the two deadlines: the next heartbeat and the
            // token's expiry, whichever comes first.
            let timer = tokio::time::sleep_until(self.next_deadline());
            tokio::pin!(timer);
            let shutdown = self.app.shutdown.clone();
            let mut last_seen = Instant::now();
            // The two waits that end the session are made once, not on every
            // turn of the loop: each new one would register with its `Notify`
            // and unregister again, a lock each, for every frame in or out.
            let cancelled = shutdown.cancelled();
            tokio::pin!(cancelled);
            let overflow = outbox.overflowed();
            tokio::pin!(overflow);

            if Box::pin(self.welcome(ws)).await.is_err() {
                return End::Gone;
            }

            loop {
                // The expiry is checked on every turn too, so that a busy
                // session, whose timer branch may not win, still ends on
                // time.
                if Instant::now() >= self.expires {
                    return Box::pin(expired(ws)).await;
                }
                tokio::select! {
                    biased;
                    () = &mut cancelled => return Box::pin(goaway(ws, outbox, self.app.settings.goaway_retry_ms)).await,
                    () = &mut overflow => return End::Close(close::TOO_SLOW, "too slow to read"),
                    next = outbox.recv() => match next {
                        None => return End::Gone,
                        Some(Next::Frame(frame)) => {
                            if let Err(end) = Box::pin(write_burst(ws, overflow.as_mut(), outbox, frame, self.heartbeat() * 2)).await {
                                return end;
                            }
                        }
                        Some(Next::Lost(lost)) => Box::pin(self.lost(*lost)).await,
                    },
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
                                if Box::pin(ws.pong(&bytes)).await.is_err() {
                                    return End::Gone;
                                }
                            }
                            Some(Ok(actix_ws::AggregatedMessage::Pong(_))) => {}
                            Some(Ok(actix_ws::AggregatedMessage::Close(_))) => return End::Close(1000, "bye"),
                        }
                    }
                    // Last, as the heartbeat's silence counts only once
                    // whatever the socket holds has been read.
                    () = &mut timer => {
                        if timer.deadline() == self.expires.into() {
                            return Box::pin(expired(ws)).await;
                        }
                        if last_seen.elapsed() > self.heartbeat() * 2 {
                            return End::Close(1001, "heartbeat timeout");
                        }
                        if Box::pin(ws.ping(b"")).await.is_err() {
                            return End::Gone;
                        }
                        // The next beat counts from now, so a late one does
                        // not bring the one after it closer.
                        timer.as_mut().reset(self.next_deadline());
                    }
                }
            }
        }
    }

    fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.app.settings.heartbeat_ms)
    }

    /// When the session's timer is due next: a heartbeat from now, or the
    /// token's expiry if that comes first.
    fn next_deadline(&self) -> tokio::time::Instant {
        (tokio::time::Instant::now() + self.heartbeat()).min(self.expires.into())
    }

    /// Sends `welcome`, the session's first frame.
    async fn welcome(&self, ws: &mut actix_ws::Session) -> Result<(), actix_ws::Closed> {
        let settings = &self.app.settings;
        let welcome = ServerFrame::Welcome {
            session: self.me.id.to_string(),
            user: self.me.identity.user.clone(),
            heartbeat_ms: settings.heartbeat_ms,
            node: settings.node_id.clone(),
            protocol: telehub_signaling::PROTOCOL_VERSION,
            video: settings.enable_video,
        }
        .to_json();
        ws.text(welcome).await
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
                room: None,
                queue: None,
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

    fn position(&self, room: &str) -> Option<usize> {
        self.rooms.iter().position(|joined| joined.room == room)
    }

    fn take_room(&mut self, room: &str) -> Option<Joined> {
        let at = self.position(room)?;
        Some(self.rooms.swap_remove(at))
    }

    /// Leaves a room this session has let go of; with `reply` the session
    /// gets `left`. A room that stopped under it (a fault) can no longer
    /// say so, so the session withdraws its presence itself and answers.
    fn part(&self, joined: Joined, reference: Option<String>, reply: bool) {
        if !joined.let_go && joined.handle.is_running() {
            return joined.handle.leave(&self.me, reference, reply);
        }
        if !joined.let_go {
            self.app.rooms.let_go(&joined.room, &self.me.id);
        }
        if reply {
            self.reply(ServerFrame::Left { reference, room: joined.room });
        }
    }

    /// The joined room a frame is about, or the refusal to send. A room
    /// that stopped under the session is let go of, if it was not yet, and
    /// the frame told to join again (once: the next is `forbidden`).
    fn joined(&mut self, room: &str) -> Result<&RoomHandle, Refusal> {
        let Some(at) = self.position(room) else {
            return Err(Refusal::new(ErrorCode::Forbidden, format!("join {room} first")));
        };
        if !self.rooms[at].let_go && self.rooms[at].handle.is_running() {
            return Ok(&self.rooms[at].handle);
        }
        if !self.rooms.swap_remove(at).let_go {
            self.app.rooms.let_go(room, &self.me.id);
        }
        Err(Refusal::new(ErrorCode::Unavailable, format!("{room} restarted: join again")))
    }

    /// Takes up what the session lost when a room or queue it follows
    /// stopped under it (a fault in the hub). A queue is followed again at
    /// once, from its stored line, and the client sees only a fresh update;
    /// a room, whose history the client must ask for with its own `since`,
    /// is let go of and the client told to join again. So is a queue that
    /// cannot be followed again now (storage down).
    async fn lost(&mut self, lost: Lost) {
        match lost {
            Lost::Room { room, handle } => {
                // Not if the session let go of that run of the room already
                // (a frame found it gone) and maybe joined the next.
                let Some(joined) = self
                    .rooms
                    .iter_mut()
                    .find(|joined| joined.room == room && joined.handle == handle && !joined.let_go)
                else {
                    return;
                };
                joined.let_go = true;
                self.app.rooms.let_go(&room, &self.me.id);
                self.notice(format!("{room} restarted: join again"), Some(room), None);
            }
            Lost::Watch(queue) => {
                if !self.queues.contains(&queue) {
                    return;
                }
                let watched = self.app.rooms.queues().watch(&queue, &self.me, None).await;
                if let Err(refusal) = watched {
                    take(&mut self.queues, &queue);
                    let name = queue.name().to_owned();
                    debug!(queue = %queue, error = %refusal.message, "queue not followed again after its restart");
                    self.notice(format!("queue {name} restarted: watch again"), None, Some(name));
                }
            }
            Lost::CheckIn(room) => {
                if !self.checked_in.contains(&room) {
                    return;
                }
                if let Err(refusal) = self.app.rooms.check_in(&room, &self.me, None).await {
                    take(&mut self.checked_in, &room);
                    debug!(room = %room, error = %refusal.message, "not checked in again after the queue's restart");
                    self.notice(format!("the queue of {room} restarted: check in again"), Some(room), None);
                }
            }
        }
    }

    /// An `unavailable` notice without `ref`, about a room or a queue.
    fn notice(&self, message: String, room: Option<String>, queue: Option<String>) {
        self.reply(ServerFrame::Error {
            reference: None,
            code: ErrorCode::Unavailable,
            message,
            retry_ms: None,
            room,
            queue,
        });
    }

    async fn dispatch(&mut self, frame: ClientFrame) {
        let me = self.me.clone();
        let identity: Arc<Identity> = me.identity.clone();
        match frame {
            ClientFrame::Ping { reference } => self.reply(ServerFrame::Pong { reference }),
            ClientFrame::Join { reference, room, since } => {
                if self.position(&room).is_none() && self.rooms.len() >= MAX_ROOMS_PER_SESSION {
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
                    Ok(handle) => match self.position(&room) {
                        Some(at) => (self.rooms[at].handle, self.rooms[at].let_go) = (handle, false),
                        None => push_one(&mut self.rooms, Joined { room, handle, let_go: false }),
                    },
                    Err(refusal) => self.refuse(reference, refusal),
                }
            }
            ClientFrame::Leave { reference, room } => match self.take_room(&room) {
                Some(joined) => self.part(joined, reference, true),
                None => self.reply(ServerFrame::Left { reference, room }),
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
                        add(&mut self.queues, queue);
                        add(&mut self.checked_in, room);
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
                    Ok(()) => add(&mut self.queues, queue),
                    Err(refusal) => self.refuse(reference, refusal),
                }
            }
        }
    }
}

/// Adds `item` to a short set kept as a vector.
fn add<T: PartialEq>(set: &mut Vec<T>, item: T) {
    if !set.contains(&item) {
        push_one(set, item);
    }
}

/// Removes `item` from a short set kept as a vector; whether it was there.
fn take<T: PartialEq<Q>, Q: ?Sized>(set: &mut Vec<T>, item: &Q) -> bool {
    let Some(at) = set.iter().position(|x| x == item) else { return false };
    set.swap_remove(at);
    true
}

/// Pushes growing by one slot, not by doubling: these vectors stay short.
fn push_one<T>(items: &mut Vec<T>, item: T) {
    items.reserve_exact(1);
    items.push(item);
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

/// Writes `first` and what else is queued, up to a burst, unless the client
/// stops reading (see [`write`]).
async fn write_burst(
    ws: &mut actix_ws::Session,
    mut overflow: Pin<&mut Notified<'_>>,
    outbox: &OutboxReceiver,
    first: ByteString,
    stall: Duration,
) -> Result<(), End> {
    write(ws, overflow.as_mut(), first, stall).await?;
    for _ in 1..WRITE_BURST {
        let Some(frame) = outbox.try_recv() else { break };
        write(ws, overflow.as_mut(), frame, stall).await?;
    }
    Ok(())
}

/// Tells the client its token expired.
async fn expired(ws: &mut actix_ws::Session) -> End {
    let frame = ServerFrame::error(None, ErrorCode::Unauthorized, "token expired").to_json();
    let _ = ws.text(frame).await;
    End::Close(close::UNAUTHORIZED, "token expired")
}

/// Says goodbye to a session on a node shutting down: what the rooms gave
/// it already (acks of stored messages among it) goes out first, for a
/// moment at most, so that fewer are sent again; then `goaway`.
async fn goaway(ws: &mut actix_ws::Session, outbox: &OutboxReceiver, retry_ms: u64) -> End {
    let drain = async {
        while let Some(frame) = outbox.try_recv() {
            if ws.text(frame).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(GOAWAY_DRAIN, drain).await;
    let _ = ws.text(ServerFrame::Goaway { retry_ms }.to_json()).await;
    End::Close(1001, "server shutting down")
}
