//! Setup through the hub's HTTP API: one consultation per room, and a token
//! for its patient and for its doctor.
//!
//! Room number N (counted from `--room-offset`) has patient `p-N` and
//! doctor `d-N`, so several load-test processes with distinct offsets never
//! share a user; the consult scenario may have doctors share rooms and put
//! them all in one clinic ([`Staffing`]), and adds display tokens. The hub
//! chooses the consultation ids.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::cli::Target;

/// Tokens outlive any run: two hours.
const TOKEN_TTL_S: u64 = 7200;

/// How long one HTTP call may take before it counts as failed.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One consultation and the tokens of its two members.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RoomSetup {
    /// The room number N (offset included).
    pub number: usize,
    /// The consultation id, which is the room id.
    pub room: String,
    /// The room's queue: its doctor's id.
    pub queue: String,
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

    /// Creates the consultation of room `n` with `doctor`, in the queue
    /// and clinic `staffing` gives it; returns its id.
    pub async fn create_consultation(&self, n: usize, doctor: &str, staffing: &Staffing) -> anyhow::Result<String> {
        let mut body = json!({
            "patient": {"id": format!("p-{n}"), "name": format!("Patient {n}")},
            "doctor": {"id": doctor, "name": doctor_name(doctor)},
        });
        if let Some(clinic) = &staffing.clinic {
            // The queue is the hub's default (the doctor's id), said
            // explicitly so the displays know which queue to watch.
            body["clinic"] = json!(clinic);
            body["queue"] = json!(doctor);
        }
        let created = self.post("/v1/consultations", &body).await?;
        match created.get("id").and_then(Value::as_str) {
            Some(id) => Ok(id.to_owned()),
            None => anyhow::bail!("POST /v1/consultations: no \"id\" in {created}"),
        }
    }

    /// Issues a token for the user `sub` in `role`, of `clinic` if given.
    pub async fn token(&self, sub: &str, name: &str, role: &str, clinic: Option<&str>) -> anyhow::Result<String> {
        let mut body = json!({"sub": sub, "name": name, "role": role, "ttl_s": TOKEN_TTL_S});
        if let Some(clinic) = clinic {
            body["clinic"] = json!(clinic);
        }
        let issued = self.post("/v1/tokens", &body).await?;
        match issued.get("token").and_then(Value::as_str) {
            Some(token) => Ok(token.to_owned()),
            None => anyhow::bail!("POST /v1/tokens: no \"token\" in {issued}"),
        }
    }

    /// The consultation of room `n` and both members' tokens.
    async fn room(&self, n: usize, staffing: &Staffing) -> anyhow::Result<RoomSetup> {
        let doctor = staffing.doctor_of(n);
        let room = self.create_consultation(n, &doctor, staffing).await?;
        let clinic = staffing.clinic.as_deref();
        let (patient, patient_name) = (format!("p-{n}"), format!("Patient {n}"));
        let doctor_name = doctor_name(&doctor);
        // One call after the other, so that --connect-concurrency bounds
        // the calls under way, not the rooms.
        let patient_token = self.token(&patient, &patient_name, "patient", clinic).await?;
        let doctor_token = self.token(&doctor, &doctor_name, "doctor", clinic).await?;
        Ok(RoomSetup { number: n, room, queue: doctor, patient_token, doctor_token })
    }
}

/// Who serves the rooms of a run: their clinic, and how many doctors share
/// them. The default is what the chat and idle scenarios use: no clinic,
/// and doctor `d-N` for room N alone.
#[derive(Debug, Clone, Default)]
pub struct Staffing {
    /// The clinic of every consultation and token.
    pub clinic: Option<String>,
    /// Doctors sharing the rooms, counted from `--room-offset`: room N gets
    /// `d-(offset + (N - offset) mod M)`, so processes whose offsets lie M
    /// or more apart still never share a doctor.
    pub doctors: Option<usize>,
    /// The run's `--room-offset`.
    pub offset: usize,
}

impl Staffing {
    /// The doctor of room `n`, whose id is also the room's queue.
    pub fn doctor_of(&self, n: usize) -> String {
        match self.doctors {
            Some(m) if m > 0 => format!("d-{}", self.offset + n.saturating_sub(self.offset) % m),
            _ => format!("d-{n}"),
        }
    }
}

/// `Doctor N` for doctor `d-N`.
fn doctor_name(doctor: &str) -> String {
    format!("Doctor {}", doctor.trim_start_matches("d-"))
}

/// Sets up every room with the default [`Staffing`].
pub async fn create_rooms(target: &Target) -> anyhow::Result<Vec<RoomSetup>> {
    create_staffed_rooms(target, &Staffing::default()).await
}

/// Issues `count` display tokens of `clinic`: users `w-OFFSET-K`.
pub async fn display_tokens(target: &Target, clinic: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let api = Api::new(target)?;
    let mut tokens = Vec::with_capacity(count);
    for k in 0..count {
        let sub = format!("w-{}-{k}", target.room_offset);
        tokens.push(api.token(&sub, &format!("Display {k}"), "display", Some(clinic)).await?);
    }
    Ok(tokens)
}

/// Sets up every room, `--connect-concurrency` rooms at a time, in room
/// order. A run with rooms missing would measure something else than asked
/// for, so any failure fails the whole setup, naming how many failed.
pub async fn create_staffed_rooms(target: &Target, staffing: &Staffing) -> anyhow::Result<Vec<RoomSetup>> {
    eprintln!("setting up {} consultations and {} tokens…", target.rooms, target.sessions());
    let started = Instant::now();
    let api = Api::new(target)?;
    let numbers = target.room_offset..target.room_offset + target.rooms;
    let results: Vec<anyhow::Result<RoomSetup>> = stream::iter(numbers)
        .map(|n| {
            let api = api.clone();
            async move { api.room(n, staffing).await }
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
