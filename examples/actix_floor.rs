//! The memory floor of the hub's WebSocket stack: actix-web, actix-ws and
//! jemalloc as the hub uses them, and nothing else. It answers the load
//! tester's setup calls (`POST /v1/consultations`, `POST /v1/tokens`) and,
//! at `GET /v1/ws`, sends `welcome` and answers `join` with `joined`; it
//! keeps no rooms, checks no tokens and stores nothing.
//!
//! `scripts/bench/core.sh floor` holds idle sessions on it as on the hub,
//! so the gap between the two RSS figures is what the hub itself adds per
//! session, and the floor is what any server on this stack pays.
//!
//!     cargo run --release --example actix_floor -- 127.0.0.1:8090

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

static NEXT: AtomicU64 = AtomicU64::new(1);

async fn consultation(body: web::Json<Value>) -> HttpResponse {
    let id = format!("c-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    HttpResponse::Created().json(json!({"id": id, "patient": body["patient"], "doctor": body["doctor"]}))
}

async fn token(body: web::Json<Value>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"token": body["sub"], "exp": 0}))
}

async fn ws(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (response, mut session, mut frames) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(async move {
        let id = format!("s_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let welcome = json!({"type": "welcome", "session": id, "user": {"id": id, "name": "", "role": "patient"},
                             "heartbeat_ms": 25000, "node": "floor", "protocol": 1});
        if session.text(welcome.to_string()).await.is_err() {
            return;
        }
        while let Some(Ok(frame)) = frames.next().await {
            let actix_ws::Message::Text(text) = frame else { continue };
            let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
            if frame["type"] == "join" {
                let joined = json!({"type": "joined", "ref": frame["ref"], "room": frame["room"], "status": "active",
                                    "seq": 0, "peers": [], "history": [], "history_complete": true,
                                    "media": {"mode": "p2p", "ice_servers": []}});
                if session.text(joined.to_string()).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(response)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".into());
    HttpServer::new(|| {
        App::new()
            .route("/v1/consultations", web::post().to(consultation))
            .route("/v1/tokens", web::post().to(token))
            .route("/v1/ws", web::get().to(ws))
    })
    .tcp_nodelay(true)
    .backlog(4096)
    .bind(bind)?
    .run()
    .await
}
