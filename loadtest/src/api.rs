//! Setup through the hub's HTTP API: one consultation per room, and a token
//! for its patient and for its doctor.
//!
//! Room number N (counted from `--room-offset`) has patient `p-N` and
//! doctor `d-N`, so several load-test processes with distinct offsets never
//! share a user. The hub chooses the consultation ids.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::cli::Target;

/// Tokens outlive any run: two hours.
const TOKEN_TTL_S: u64 = 7200;

/// How long one HTTP call may take before it counts as failed.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One consultation and the tokens of its two members.
#[derive(Debug, Clone)]
pub struct RoomSetup {
    /// The room number N (offset included).
    pub number: usize,
    /// The consultation id, which is the room id.
    pub room: String,
    pub patient_token: String,
    pub doctor_token: String,
}

/// A client of the hub's HTTP API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    api_key: String,
}

impl Api {
    pub fn new(target: &Target) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(target.connect_concurrency)
            .timeout(HTTP_TIMEOUT)
            .build()?;
        Ok(Api { http, base: target.api_url().trim_end_matches('/').to_owned(), api_key: target.api_key.clone() })
    }

    /// POSTs JSON and returns the JSON answer of a 2xx response. A 429
    /// (the hub's rate limit per caller) is waited out as `retry_ms` says,
    /// as a well-behaved backend would, and the call repeated.
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let (status, text) = loop {
            let response = self.http.post(&url).bearer_auth(&self.api_key).json(body).send().await?;
            let status = response.status();
            let text = response.text().await?;
            if status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                break (status, text);
            }
            let retry_ms =
                serde_json::from_str::<Value>(&text).ok().and_then(|v| v["error"]["retry_ms"].as_u64()).unwrap_or(100);
            tokio::time::sleep(std::time::Duration::from_millis(retry_ms.clamp(1, 10_000))).await;
        };
        anyhow::ensure!(status.is_success(), "POST {path}: {status}: {}", text.trim());
        serde_json::from_str(&text)
            .map_err(|err| anyhow::anyhow!("POST {path}: {status} with a body that is not JSON ({err}): {text}"))
    }

    /// Creates the consultation of room `n`; returns its id.
    pub async fn create_consultation(&self, n: usize) -> anyhow::Result<String> {
        let body = json!({
            "patient": {"id": format!("p-{n}"), "name": format!("Patient {n}")},
            "doctor": {"id": format!("d-{n}"), "name": format!("Doctor {n}")},
        });
        let created = self.post("/v1/consultations", &body).await?;
        match created.get("id").and_then(Value::as_str) {
            Some(id) => Ok(id.to_owned()),
            None => anyhow::bail!("POST /v1/consultations: no \"id\" in {created}"),
        }
    }

    /// Issues a token for the user `sub` in `role`.
    pub async fn token(&self, sub: &str, name: &str, role: &str) -> anyhow::Result<String> {
        let body = json!({"sub": sub, "name": name, "role": role, "ttl_s": TOKEN_TTL_S});
        let issued = self.post("/v1/tokens", &body).await?;
        match issued.get("token").and_then(Value::as_str) {
            Some(token) => Ok(token.to_owned()),
            None => anyhow::bail!("POST /v1/tokens: no \"token\" in {issued}"),
        }
    }

    /// The consultation of room `n` and both members' tokens.
    async fn room(&self, n: usize) -> anyhow::Result<RoomSetup> {
        let room = self.create_consultation(n).await?;
        let (patient, patient_name) = (format!("p-{n}"), format!("Patient {n}"));
        let (doctor, doctor_name) = (format!("d-{n}"), format!("Doctor {n}"));
        // One call after the other, so that --connect-concurrency bounds
        // the calls under way, not the rooms.
        let patient_token = self.token(&patient, &patient_name, "patient").await?;
        let doctor_token = self.token(&doctor, &doctor_name, "doctor").await?;
        Ok(RoomSetup { number: n, room, patient_token, doctor_token })
    }
}

/// Sets up every room, `--connect-concurrency` rooms at a time, in room
/// order. A run with rooms missing would measure something else than asked
/// for, so any failure fails the whole setup, naming how many failed.
pub async fn create_rooms(target: &Target) -> anyhow::Result<Vec<RoomSetup>> {
    eprintln!("setting up {} consultations and {} tokens…", target.rooms, target.sessions());
    let started = Instant::now();
    let api = Api::new(target)?;
    let numbers = target.room_offset..target.room_offset + target.rooms;
    let results: Vec<anyhow::Result<RoomSetup>> = stream::iter(numbers)
        .map(|n| {
            let api = api.clone();
            async move { api.room(n).await }
        })
        .buffer_unordered(target.connect_concurrency)
        .collect()
        .await;
    let mut rooms = Vec::with_capacity(results.len());
    let mut failed = 0usize;
    let mut first_error = None;
    for result in results {
        match result {
            Ok(room) => rooms.push(room),
            Err(err) => {
                failed += 1;
                first_error.get_or_insert(err);
            }
        }
    }
    if let Some(err) = first_error {
        anyhow::bail!("{failed} of {} rooms could not be set up; the first error: {err:#}", target.rooms);
    }
    rooms.sort_by_key(|r| r.number);
    eprintln!("  done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(rooms)
}
