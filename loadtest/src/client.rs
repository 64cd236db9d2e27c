//! One WebSocket connection to the hub.

use std::net::{IpAddr, SocketAddr};

use futures_util::{SinkExt, StreamExt};
use telehub_signaling::{ClientFrame, ServerFrame};
use tokio::net::{TcpSocket, TcpStream, lookup_host};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};

pub type Ws = WebSocketStream<TcpStream>;

/// The hub's socket address and WebSocket base URL, from its HTTP URL.
pub async fn resolve(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("only http:// URLs are supported: {url}"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    let addr = lookup_host(host).await?.next().ok_or_else(|| anyhow::anyhow!("cannot resolve {host}"))?;
    Ok((addr, format!("ws://{host}")))
}

/// Opens a WebSocket from `source` (if given) and reads the `welcome`;
/// returns the socket and the session id.
pub async fn connect(addr: SocketAddr, ws_base: &str, token: &str, source: Option<IpAddr>) -> anyhow::Result<(Ws, String)> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = client_async(format!("{ws_base}/v1/ws?token={token}"), stream).await?;
    match next_frame(&mut ws).await? {
        ServerFrame::Welcome { session, .. } => Ok((ws, session)),
        other => anyhow::bail!("expected welcome, got {other:?}"),
    }
}

/// Sends a frame.
pub async fn send(ws: &mut Ws, frame: &ClientFrame) -> anyhow::Result<()> {
    ws.send(Message::Text(serde_json::to_string(frame)?.into())).await?;
    Ok(())
}

/// The next protocol frame, skipping WebSocket pings and pongs.
pub async fn next_frame(ws: &mut Ws) -> anyhow::Result<ServerFrame> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
            Some(Ok(Message::Close(frame))) => anyhow::bail!("closed by the hub: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(err.into()),
            None => anyhow::bail!("connection closed"),
        }
    }
}

/// Joins a room and waits for `joined`; returns the room's last `seq`.
pub async fn join(ws: &mut Ws, room: &str) -> anyhow::Result<i64> {
    send(ws, &ClientFrame::Join { reference: Some("join".into()), room: room.to_owned(), since: None }).await?;
    loop {
        match next_frame(ws).await? {
            ServerFrame::Joined { seq, .. } => return Ok(seq),
            ServerFrame::Error { code, message, .. } => anyhow::bail!("join {room}: {code:?} {message}"),
            _ => continue,
        }
    }
}

/// A joined session of the load test.
pub struct Joined {
    pub room: usize,
    pub room_id: String,
    pub ws: Ws,
    pub session: String,
    /// The room's `seq` at the join.
    pub since: i64,
    /// From starting the TCP connection to `joined`, in microseconds.
    pub join_us: u64,
}

/// Connects and joins both members of every room, `concurrency` at a time.
/// Returns the sessions that joined and the errors of those that did not.
pub async fn connect_all(
    target: &crate::cli::Target,
    rooms: &[crate::setup::RoomSetup],
) -> anyhow::Result<(Vec<Joined>, Vec<String>)> {
    let (addr, ws_base) = resolve(&target.url).await?;
    let jobs = rooms.iter().enumerate().flat_map(|(i, r)| [(i, r.room.clone(), r.patient_token.clone()), (i, r.room.clone(), r.doctor_token.clone())]);
    let sources = target.source_addrs.clone();
    let results: Vec<Result<Joined, String>> = futures_util::stream::iter(jobs.enumerate())
        .map(|(n, (room_index, room, token))| {
            let ws_base = ws_base.clone();
            let source = if sources.is_empty() { None } else { Some(sources[n % sources.len()]) };
            async move {
                let started = std::time::Instant::now();
                let attempt = async {
                    let (mut ws, session) = connect(addr, &ws_base, &token, source).await?;
                    let since = join(&mut ws, &room).await?;
                    anyhow::Ok((ws, session, since))
                };
                match attempt.await {
                    Ok((ws, session, since)) => Ok(Joined {
                        room: room_index,
                        room_id: room.clone(),
                        ws,
                        session,
                        since,
                        join_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    }),
                    Err(err) => Err(format!("{room}: {err}")),
                }
            }
        })
        .buffer_unordered(target.connect_concurrency.max(1))
        .collect()
        .await;
    let mut joined = Vec::new();
    let mut failed = Vec::new();
    for result in results {
        match result {
            Ok(j) => joined.push(j),
            Err(e) => failed.push(e),
        }
    }
    Ok((joined, failed))
}
