//! Paying through Stripe: PaymentIntents against `localstripe` (a stateful
//! fake of Stripe's API, from PyPI), and Checkout Sessions, which
//! localstripe lacks, against a stand-in here that checks the request as
//! Stripe documents it.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::*;

const KEY: &str = "sk_test_telehub";
const WEBHOOK_SECRET: &str = "whsec_stripe_tests";

/// A running `localstripe`.
struct LocalStripe {
    child: Child,
    url: String,
}

impl LocalStripe {
    /// Starts localstripe (`$LOCALSTRIPE`, or `localstripe` on the PATH;
    /// scripts/test installs it) on a free port and waits until it accepts
    /// connections.
    fn start() -> LocalStripe {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let program = std::env::var("LOCALSTRIPE").unwrap_or_else(|_| "localstripe".into());
        let child = Command::new(&program)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("{program} is needed (pip install localstripe; scripts/test does): {err}"));
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "localstripe did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        LocalStripe { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the Checkout stand-in saw: each request's idempotency key and form.
#[derive(Default)]
struct Seen {
    requests: Vec<(Option<String>, HashMap<String, String>)>,
    sessions: HashMap<String, String>,
}

/// Answers `POST /v1/checkout/sessions` as Stripe does, after checking the
/// request: bearer auth with the key, a form body, an idempotency key (the
/// same key gets the same session back).
struct CheckoutStandIn {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

async fn create_session(
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
    seen: web::Data<Mutex<Seen>>,
) -> HttpResponse {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if header("authorization").as_deref() != Some(&format!("Bearer {KEY}")) {
        return HttpResponse::Unauthorized()
            .json(json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}));
    }
    let key = header("idempotency-key");
    let mut seen = seen.lock().unwrap();
    seen.requests.push((key.clone(), form.into_inner()));
    let next = format!("cs_test_{}", seen.sessions.len() + 1);
    let id = match key {
        Some(key) => seen.sessions.entry(key).or_insert(next).clone(),
        None => next,
    };
    HttpResponse::Ok()
        .json(json!({"id": id, "object": "checkout.session", "url": format!("https://checkout.stripe.test/pay/{id}")}))
}

impl CheckoutStandIn {
    fn start() -> CheckoutStandIn {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let data = web::Data::from(seen.clone());
        let url = stand_in(move |cfg| {
            cfg.app_data(data.clone()).route("/v1/checkout/sessions", web::post().to(create_session));
        });
        CheckoutStandIn { url, seen }
    }
}

/// Consultation `room` of patient `p-<room>` and doctor Ana in clinic k1,
/// priced at 150,000 IDR.
async fn priced(app: &TestApp, room: &str) {
    let (status, body) = app
        .post(
            "/v1/consultations",
            json!({"id": room, "clinic": "k1", "patient": {"id": format!("p-{room}"), "name": "Budi"},
                   "doctor": {"id": "d-ana", "name": "Ana"}, "payment": {"amount": 150000, "currency": "idr"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn post_as(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let response = app.http.post(app.url(path)).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn checkout_sessions_are_asked_for_as_stripe_documents_them_and_only_once() {
    let standin = CheckoutStandIn::start();
    let base = standin.url.clone();
    let app = spawn_app_with(move |s| {
        s.stripe_secret_key = Some(KEY.into());
        s.stripe_api_base = base;
        s.payment_success_url = Some("https://clinic.example/paid?session={CHECKOUT_SESSION_ID}".into());
        s.payment_cancel_url = Some("https://clinic.example/cancelled".into());
    })
    .await;
    priced(&app, "c-co").await;
    let patient = token("p-c-co", "Budi", "patient", 3600);

    let (status, first) = post_as(&app, &patient, "/v1/consultations/c-co/checkout").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["url"], format!("https://checkout.stripe.test/pay/{}", first["id"].as_str().unwrap()));
    let (status, again) = post_as(&app, &patient, "/v1/consultations/c-co/checkout").await;
    assert_eq!((status, &again["id"]), (200, &first["id"]), "a retried call gets the same session");

    let requests = standin.seen.lock().unwrap().requests.clone();
    assert_eq!(requests.len(), 2);
    let (key, form) = &requests[0];
    assert!(key.is_some(), "an idempotency key is sent");
    assert_eq!(key, &requests[1].0, "the same key both times");
    let expected = [
        ("mode", "payment"),
        ("client_reference_id", "c-co"),
        ("success_url", "https://clinic.example/paid?session={CHECKOUT_SESSION_ID}"),
        ("cancel_url", "https://clinic.example/cancelled"),
        ("line_items[0][quantity]", "1"),
        ("line_items[0][price_data][currency]", "idr"),
        ("line_items[0][price_data][unit_amount]", "150000"),
        ("line_items[0][price_data][product_data][name]", "Consultation with Ana"),
    ];
    for (field, value) in expected {
        assert_eq!(form.get(field).map(String::as_str), Some(value), "{field} in {form:?}");
    }

    // Who may, and when.
    let doctor = token("d-ana", "Ana", "doctor", 3600);
    assert_eq!(post_as(&app, &doctor, "/v1/consultations/c-co/checkout").await.0, 403);
    let other = token("p-other", "Eko", "patient", 3600);
    assert_eq!(post_as(&app, &other, "/v1/consultations/c-co/checkout").await.0, 403);
    app.consultation("c-free").await;
    assert_eq!(app.post("/v1/consultations/c-free/checkout", json!({})).await.0, 409);
}

fn sign(t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn a_payment_intent_made_at_stripe_pays_the_consultation_through_its_webhook() {
    let stripe = LocalStripe::start();
    let base = stripe.url.clone();
    let app = spawn_app_with(move |s| {
        s.stripe_secret_key = Some(KEY.into());
        s.stripe_api_base = base;
        s.stripe_webhook_secret = Some(WEBHOOK_SECRET.into());
    })
    .await;
    priced(&app, "c-pi").await;
    let mut doctor = Client::connect(&app, &token("d-ana", "Ana", "doctor", 3600)).await;
    doctor.join("c-pi", None).await;

    let patient = token("p-c-pi", "Budi", "patient", 3600);
    let (status, intent) = post_as(&app, &patient, "/v1/consultations/c-pi/payment_intent").await;
    assert_eq!(status, 200, "{intent}");
    let id = intent["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("pi_") && intent["client_secret"].as_str().unwrap().starts_with(&id), "{intent}");

    // Stripe has it, for the price, naming the consultation.
    let stored: Value = reqwest::Client::new()
        .get(format!("{}/v1/payment_intents/{id}", stripe.url))
        .basic_auth(KEY, Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((&stored["amount"], &stored["currency"]), (&json!(150000), &json!("idr")), "{stored}");
    assert_eq!(stored["metadata"]["consultation"], "c-pi");

    // The patient pays with Stripe Elements (played here at localstripe:
    // a test card attached, then confirmed).
    let http = reqwest::Client::new();
    let at = |path: &str| format!("{}{path}", stripe.url);
    let card: Value = http
        .post(at("/v1/payment_methods"))
        .basic_auth(KEY, Some(""))
        .form(&[
            ("type", "card"),
            ("card[number]", "4242424242424242"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pm = card["id"].as_str().unwrap();
    http.post(at(&format!("/v1/payment_intents/{id}")))
        .basic_auth(KEY, Some(""))
        .form(&[("payment_method", pm)])
        .send()
        .await
        .unwrap();
    let confirmed: Value = http
        .post(at(&format!("/v1/payment_intents/{id}/confirm")))
        .basic_auth(KEY, Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(confirmed["status"], "succeeded", "{confirmed}");

    // Stripe says it succeeded: paid, and the room hears.
    let event = json!({"id": "evt_pi_1", "type": "payment_intent.succeeded", "data": {"object": {
        "id": id, "amount": 150000, "amount_received": 150000, "currency": "idr",
        "metadata": {"consultation": "c-pi"}}}})
    .to_string();
    let response = app
        .http
        .post(app.url("/v1/webhooks/stripe"))
        .header("Stripe-Signature", sign(chrono::Utc::now().timestamp(), &event))
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(doctor.recv_type("payment").await["status"], "paid");
    let (status, again) = post_as(&app, &patient, "/v1/consultations/c-pi/payment_intent").await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("conflict")), "paid already: {again}");

    // The clinic gives it back: Stripe refunds the intent, and the room hears.
    assert_eq!(post_as(&app, &patient, "/v1/consultations/c-pi/refund").await.0, 403, "not the patient's to refund");
    let (status, refunded) = app.post("/v1/consultations/c-pi/refund", json!({})).await;
    assert_eq!((status, refunded["status"].as_str()), (200, Some("refunded")), "{refunded}");
    assert_eq!(doctor.recv_type("payment").await["status"], "refunded");
    let after: Value = http
        .get(at(&format!("/v1/payment_intents/{id}")))
        .basic_auth(KEY, Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let charge = &after["charges"]["data"][0];
    assert_eq!((&charge["refunded"], &charge["amount_refunded"]), (&json!(true), &json!(150000)), "{after}");
    let (status, twice) = app.post("/v1/consultations/c-pi/refund", json!({})).await;
    assert_eq!(status, 409, "nothing left to refund: {twice}");
    // Audit entries queue in order with the room's writes: once this chat
    // is acked, the refund's entry is in the trail.
    doctor.chat("c-pi", "flush", "refunded").await;
    let (_, audit) = app.get("/v1/audit?room=c-pi").await;
    assert!(audit["entries"].as_array().unwrap().iter().any(|e| e["action"] == "payment.refund"), "{audit}");
}

#[tokio::test]
async fn without_a_secret_key_stripe_payments_are_refused_clearly() {
    let app = spawn_app().await;
    priced(&app, "c-nokey").await;
    for path in ["/v1/consultations/c-nokey/checkout", "/v1/consultations/c-nokey/payment_intent"] {
        let (status, body) = app.post(path, json!({})).await;
        assert_eq!(status, 403, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("TELEHUB_STRIPE_SECRET_KEY"), "{body}");
    }
}
