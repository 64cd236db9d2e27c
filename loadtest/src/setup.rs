//! Creating consultations and tokens through the HTTP API.

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::cli::Target;

/// One consultation and the tokens of its two members.
#[derive(Debug, Clone)]
pub struct RoomSetup {
    pub room: String,
    pub patient_token: String,
    pub doctor_token: String,
}

async fn post(http: &reqwest::Client, target: &Target, path: &str, body: Value) -> anyhow::Result<Value> {
    let response = http.post(format!("{}{path}", target.url)).bearer_auth(&target.api_key).json(&body).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "POST {path}: {status} {body}");
    Ok(body)
}

async fn token(http: &reqwest::Client, target: &Target, sub: &str, role: &str) -> anyhow::Result<String> {
    let body = post(http, target, "/v1/tokens", json!({"sub": sub, "name": sub, "role": role, "ttl_s": 86_400})).await?;
    body["token"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no token in {body}"))
}

/// Creates `target.rooms` consultations with fresh ids, and their tokens.
pub async fn create_rooms(target: &Target) -> anyhow::Result<Vec<RoomSetup>> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(target.connect_concurrency).build()?;
    let run: u32 = rand::random();
    let rooms = (0..target.rooms).map(|i| format!("lt-{run:08x}-{}", i + target.room_offset));
    let results: Vec<anyhow::Result<RoomSetup>> = stream::iter(rooms)
        .map(|room| {
            let http = http.clone();
            async move {
                let (patient, doctor) = (format!("p-{room}"), format!("d-{room}"));
                post(
                    &http,
                    target,
                    "/v1/consultations",
                    json!({"id": room, "patient": {"id": patient, "name": "Patient"}, "doctor": {"id": doctor, "name": "Doctor"}}),
                )
                .await?;
                let patient_token = token(&http, target, &patient, "patient").await?;
                let doctor_token = token(&http, target, &doctor, "doctor").await?;
                Ok(RoomSetup { room, patient_token, doctor_token })
            }
        })
        .buffer_unordered(target.connect_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}
