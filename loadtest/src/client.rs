//! WebSocket clients of the hub: one connection (optionally from a chosen
//! local address), its `welcome`, its `join`; and connecting every session
//! of a run, bounded and spread over the ramp.
//!
//! Each TCP socket is made by hand (`TcpSocket::bind`, then `connect`) and
//! handed to `tokio_tungstenite::client_async_with_config`, because binding to several
//! local addresses round-robin is the only way past the ~28k ephemeral
//! ports that one source address has towards one hub address.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt, stream};
use hdrhistogram::Histogram;
use reqwest::Url;
use telehub_signaling::{ClientFrame, ErrorCode, ServerFrame};
use tokio::net::{TcpSocket, TcpStream, lookup_host};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::api::RoomSetup;
use crate::cli::{Protocol, Target};
use crate::socketio;
pub use crate::socketio::Incoming;
use crate::stats::{bump, histogram, record};

pub type Ws = WebSocketStream<TcpStream>;

/// The hub's WebSocket endpoint: the socket address to connect to and the
/// URL to ask for, both worked out once from `--url`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    addr: SocketAddr,
    ws_url: Url,
    protocol: Protocol,
}

impl Endpoint {
    /// Resolves the hub's address from its HTTP base URL.
    pub async fn resolve(base: &str, protocol: Protocol) -> anyhow::Result<Self> {
        let mut url = Url::parse(base).map_err(|err| anyhow::anyhow!("bad --url {base:?}: {err}"))?;
        anyhow::ensure!(url.scheme() == "http", "only http:// hub URLs are supported (no TLS): {base}");
        let host = url.host_str().ok_or_else(|| anyhow::anyhow!("no host in --url {base:?}"))?.to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        // `host_str` keeps the brackets of an IPv6 literal, which a socket
        // address lookup does not take.
        let lookup = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let addr = lookup_host((lookup.as_str(), port))
            .await
            .map_err(|err| anyhow::anyhow!("cannot resolve {host}: {err}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{host} resolves to no address"))?;
        url.set_scheme("ws").map_err(|()| anyhow::anyhow!("cannot make a ws:// URL of {base}"))?;
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_query(None);
        match protocol {
            Protocol::Telehub => url.set_path(&format!("{base_path}/v1/ws")),
            Protocol::SocketIo => {
                url.set_path(&format!("{base_path}/socket.io/"));
                url.set_query(Some("EIO=4&transport=websocket"));
            }
        }
        Ok(Endpoint { addr, ws_url: url, protocol })
    }

    /// The WebSocket URL for a session of `token`: the hub takes the token
    /// in the query (encoded), Socket.IO in its connect packet instead.
    fn url_with(&self, token: &str) -> Url {
        let mut url = self.ws_url.clone();
        if self.protocol == Protocol::Telehub {
            url.query_pairs_mut().append_pair("token", token);
        }
        url
    }
}

/// Opens a WebSocket from `source` (if given) and reads the `welcome` (or
/// makes the Socket.IO connection); returns the socket and the session id.
pub async fn connect(endpoint: &Endpoint, token: &str, source: Option<IpAddr>) -> anyhow::Result<(Ws, String)> {
    let socket = if endpoint.addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|err| anyhow::anyhow!("bind {ip}: {err}"))?;
    }
    let stream = socket.connect(endpoint.addr).await.map_err(|err| anyhow::anyhow!("connect: {err}"))?;
    // Chat frames are small and latency is what is measured: no Nagle delay.
    stream.set_nodelay(true)?;
    // tungstenite zero-fills its read buffer up to `read_buffer_size` on
    // every read; the 128 KiB default made that memset the load generator's
    // biggest cost. Hub frames are small, so 4 KiB reads lose nothing.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut ws, _) = client_async_with_config(endpoint.url_with(token).as_str(), stream, Some(config))
        .await
        .map_err(|err| anyhow::anyhow!("websocket handshake: {err}"))?;
    if endpoint.protocol == Protocol::SocketIo {
        let sid = socketio_connect(&mut ws, token).await?;
        return Ok((ws, sid));
    }
    match next_frame(&mut ws).await? {
        ServerFrame::Welcome { session, .. } => Ok((ws, session)),
        other => anyhow::bail!("expected welcome, got {}", frame_type(&other)),
    }
}

/// The next text frame, answering Engine.IO pings on the way.
async fn socketio_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if socketio::is_ping(&text) => {
                ws.send(Message::Text(socketio::PONG.into())).await?
            }
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => anyhow::bail!("closed by the server: {}", close_reason(frame.as_ref())),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err.into()),
            None => anyhow::bail!("connection closed"),
        }
    }
}

/// Sends the Socket.IO connect packet with the token; returns the sid.
async fn socketio_connect(ws: &mut Ws, token: &str) -> anyhow::Result<String> {
    ws.send(Message::Text(socketio::connect_packet(token).into())).await?;
    loop {
        let text = socketio_text(ws).await?;
        if let Some(sid) = socketio::connected(&text).map_err(anyhow::Error::msg)? {
            return Ok(sid);
        }
    }
}

/// A hub frame as the text that `protocol` sends for it.
pub fn encode(protocol: Protocol, frame: &ClientFrame) -> anyhow::Result<String> {
    match protocol {
        Protocol::Telehub => Ok(serde_json::to_string(frame)?),
        Protocol::SocketIo => socketio::encode(frame),
    }
}

/// What a text frame from a server speaking `protocol` means.
pub fn decode(protocol: Protocol, text: &str) -> Incoming {
    match protocol {
        Protocol::Telehub => match serde_json::from_str::<ServerFrame>(text) {
            Ok(frame) => Incoming::Frame(frame),
            Err(_) => Incoming::Unparsable,
        },
        Protocol::SocketIo => socketio::decode(text),
    }
}

/// Sends one client frame.
pub async fn send(ws: &mut Ws, frame: &ClientFrame) -> anyhow::Result<()> {
    ws.send(Message::Text(serde_json::to_string(frame)?.into())).await?;
    Ok(())
}

/// The next protocol frame. WebSocket pings are answered by tungstenite
/// while reading, so they are simply skipped here.
pub async fn next_frame(ws: &mut Ws) -> anyhow::Result<ServerFrame> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text)
                    .map_err(|err| anyhow::anyhow!("unparsable frame ({err}): {}", text.as_str()));
            }
            Some(Ok(Message::Close(frame))) => anyhow::bail!("closed by the hub: {}", close_reason(frame.as_ref())),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err.into()),
            None => anyhow::bail!("connection closed"),
        }
    }
}

/// Joins `room`; returns the room's last `seq` at the join.
pub async fn join(ws: &mut Ws, protocol: Protocol, room: &str) -> anyhow::Result<i64> {
    if protocol == Protocol::SocketIo {
        ws.send(Message::Text(socketio::join_packet(room).into())).await?;
        loop {
            let text = socketio_text(ws).await?;
            if let Some(seq) = socketio::join_reply(&text).map_err(anyhow::Error::msg)? {
                return Ok(seq);
            }
        }
    }
    let reference = "j";
    send(ws, &ClientFrame::Join { reference: Some(reference.into()), room: room.to_owned(), since: None }).await?;
    loop {
        match next_frame(ws).await? {
            ServerFrame::Joined { seq, .. } => return Ok(seq),
            ServerFrame::Error { reference: Some(r), code, message, .. } if r == reference => {
                anyhow::bail!("join refused: {} {message}", code.as_str())
            }
            // Presence of a peer that joined first, or anything else that
            // is not the reply, can come before `joined`.
            _ => {}
        }
    }
}

/// The `type` of a server frame, for messages.
pub fn frame_type(frame: &ServerFrame) -> String {
    serde_json::to_value(frame)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// A close frame as `code reason`, the key under which closes are counted.
pub fn close_reason(frame: Option<&tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(frame) if frame.reason.is_empty() => format!("close {}", u16::from(frame.code)),
        Some(frame) => format!("close {} {}", u16::from(frame.code), frame.reason.as_str()),
        None => "close without a code".into(),
    }
}

/// A session that connected and joined its room.
pub struct Joined {
    /// The session's number in the run (0-based), used to spread work.
    pub index: usize,
    /// The room's position in the run's room list.
    pub room: usize,
    pub room_id: String,
    pub ws: Ws,
    /// The session id from `welcome`.
    pub session: String,
    /// The room's last `seq` at the join.
    pub since: i64,
}

/// The outcome of connecting every session of a run.
pub struct Connected<T> {
    /// What `on_joined` made of each joined session.
    pub sessions: Vec<T>,
    /// Sessions that did not connect or join, by reason.
    pub failures: BTreeMap<String, u64>,
    pub failed: usize,
    /// From the first connection attempt to `joined`, per session, in µs.
    pub join_latency: Histogram<u64>,
    /// How long connecting everything took.
    pub elapsed: Duration,
}

/// Connects and joins the patient and the doctor of every room.
///
/// Attempts start evenly spread over `--ramp` (or all at once) with at most
/// `--connect-concurrency` under way, and bind round-robin to
/// `--source-addrs`. Each joined session is handed to `on_joined` at once,
/// so the caller can start reading it (and so answer the hub's pings)
/// while the others are still connecting.
pub async fn connect_all<T>(
    target: &Target,
    rooms: &[RoomSetup],
    mut on_joined: impl FnMut(Joined) -> T,
) -> anyhow::Result<Connected<T>> {
    let mut endpoints = Vec::new();
    for url in target.nodes() {
        endpoints.push(Endpoint::resolve(url, target.protocol).await?);
    }
    let total = rooms.len() * 2;
    let addrs: Vec<String> = endpoints.iter().map(|e| e.addr.to_string()).collect();
    eprintln!("connecting and joining {total} sessions to {} round-robin…", addrs.join(", "));
    let started = Instant::now();
    let ramp = target.ramp;
    let timeout = target.connect_timeout;
    let sources = target.source_addrs.clone();

    let attempts = rooms
        .iter()
        .enumerate()
        .flat_map(|(room, setup)| [(room, setup, &setup.patient_token), (room, setup, &setup.doctor_token)])
        .enumerate()
        .map(|(index, (room, setup, token))| {
            // Round-robin over the nodes: with two, patients (the even
            // sessions) go to the first and doctors to the second.
            let endpoint = &endpoints[index % endpoints.len()];
            let source = (!sources.is_empty()).then(|| sources[index % sources.len()]);
            // Session `index` may start no earlier than its share of the ramp.
            let not_before = started + ramp.mul_f64(index as f64 / total as f64);
            async move {
                tokio::time::sleep_until(not_before.into()).await;
                let attempt_started = Instant::now();
                let attempt = async {
                    let (mut ws, session) = connect(endpoint, token, source).await?;
                    let since = join(&mut ws, target.protocol, &setup.room).await?;
                    anyhow::Ok((ws, session, since))
                };
                let result = match tokio::time::timeout(timeout, attempt).await {
                    Ok(Ok((ws, session, since))) => {
                        Ok(Joined { index, room, room_id: setup.room.clone(), ws, session, since })
                    }
                    Ok(Err(err)) => Err(format!("{err:#}")),
                    Err(_) => Err(format!("no joined within {timeout:?}")),
                };
                (result, attempt_started.elapsed())
            }
        });

    let mut connected = Connected {
        sessions: Vec::with_capacity(total),
        failures: BTreeMap::new(),
        failed: 0,
        join_latency: histogram(),
        elapsed: Duration::ZERO,
    };
    let mut results = stream::iter(attempts).buffer_unordered(target.connect_concurrency);
    let mut last_progress = Instant::now();
    let bar = crate::progress::bar(total as u64, "joining");
    while let Some((result, took)) = results.next().await {
        match result {
            Ok(joined) => {
                record(&mut connected.join_latency, u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                connected.sessions.push(on_joined(joined));
            }
            Err(reason) => {
                connected.failed += 1;
                bump(&mut connected.failures, reason, 1);
            }
        }
        bar.inc(1);
        bar.set_message(format!("{} failed", connected.failed));
        // Without a terminal the bar is hidden: a line every two seconds.
        if bar.is_hidden() && last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            eprintln!("  {} joined, {} failed of {total}", connected.sessions.len(), connected.failed);
        }
    }
    bar.finish_and_clear();
    connected.elapsed = started.elapsed();
    eprintln!(
        "  {} joined, {} failed in {:.1} s",
        connected.sessions.len(),
        connected.failed,
        connected.elapsed.as_secs_f64()
    );
    Ok(connected)
}

/// Refuses a run that would need more sockets than this process may open,
/// before anything is set up on the hub.
pub fn check_file_limit(target: &Target) -> anyhow::Result<()> {
    check_open_files(target.sessions())
}

/// Refuses a run of `sessions` sockets that this process may not open.
pub fn check_open_files(sessions: usize) -> anyhow::Result<()> {
    // Besides the WebSockets: the HTTP pool during setup, stdio, the runtime.
    const SPARE: u64 = 64;
    let Ok((soft, _)) = rlimit::Resource::NOFILE.get() else { return Ok(()) };
    let needed = sessions as u64 + SPARE;
    anyhow::ensure!(
        needed <= soft,
        "{sessions} sessions need about {needed} open files but this process may open {soft}; \
         run several processes with fewer --rooms each and distinct --room-offset values"
    );
    Ok(())
}

/// The first wait before sending a refused frame again when the refusal
/// says nothing of when; it doubles with each try.
const RESEND_BACKOFF: Duration = Duration::from_millis(100);

/// After how long to send a frame again that the hub refused with `code`,
/// having sent it again `tries` times already: the refusal's `retry_ms`,
/// or a backoff from 100 ms without one. `None` when the refusal is final:
/// only `unavailable` (storage failed, or an overloaded node shed it) and
/// `rate_limited` pass with time, as the browser SDK has it.
pub fn resend_delay(code: ErrorCode, retry_ms: Option<u64>, tries: u32) -> Option<Duration> {
    if !matches!(code, ErrorCode::Unavailable | ErrorCode::RateLimited) {
        return None;
    }
    Some(retry_ms.map_or_else(|| RESEND_BACKOFF.saturating_mul(1 << tries.min(6)), Duration::from_millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_websocket_url_follows_the_http_url() {
        let endpoint = Endpoint::resolve("http://127.0.0.1:8080", Protocol::Telehub).await.unwrap();
        assert_eq!(endpoint.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(endpoint.url_with("a.b-c_d").as_str(), "ws://127.0.0.1:8080/v1/ws?token=a.b-c_d");

        let endpoint = Endpoint::resolve("http://[::1]:9000/hub/", Protocol::Telehub).await.unwrap();
        assert_eq!(endpoint.addr, "[::1]:9000".parse().unwrap());
        assert_eq!(endpoint.url_with("x+y").as_str(), "ws://[::1]:9000/hub/v1/ws?token=x%2By");

        assert!(Endpoint::resolve("https://127.0.0.1", Protocol::Telehub).await.is_err());
        assert!(Endpoint::resolve("not a url", Protocol::Telehub).await.is_err());

        let endpoint = Endpoint::resolve("http://127.0.0.1:8095", Protocol::SocketIo).await.unwrap();
        assert_eq!(
            endpoint.url_with("tok").as_str(),
            "ws://127.0.0.1:8095/socket.io/?EIO=4&transport=websocket",
            "Socket.IO takes the token in its connect packet"
        );
    }

    #[test]
    fn refusals_that_pass_with_time_are_sent_again_after_retry_ms_or_a_backoff() {
        assert_eq!(resend_delay(ErrorCode::Unavailable, Some(312), 0), Some(Duration::from_millis(312)));
        assert_eq!(resend_delay(ErrorCode::RateLimited, Some(40), 3), Some(Duration::from_millis(40)));
        let backoff: Vec<_> = (0..8).map(|tries| resend_delay(ErrorCode::Unavailable, None, tries).unwrap()).collect();
        assert_eq!(backoff[0], Duration::from_millis(100));
        assert_eq!(backoff[1], Duration::from_millis(200));
        assert_eq!(backoff[6], Duration::from_millis(6_400));
        assert_eq!(backoff[7], backoff[6], "the backoff stops doubling");
        for code in [ErrorCode::Conflict, ErrorCode::Forbidden, ErrorCode::BadRequest, ErrorCode::TooLarge] {
            assert_eq!(resend_delay(code, Some(100), 0), None, "{code:?} is final");
        }
    }
}
