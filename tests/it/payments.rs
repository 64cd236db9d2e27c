//! Payments gate admission: bank transfers confirmed by staff, Stripe
//! webhooks checked over the raw body, and the `payment` frame.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::*;
use crate::waiting_room as wr;

const WEBHOOK_SECRET: &str = "whsec_test_0123456789";

/// Creates consultation `room` of patient `p-<room>` and doctor `d-ana` in
/// queue `q-ana` of clinic k1, priced at 150,000 IDR.
async fn priced(app: &TestApp, room: &str) -> Value {
    let (status, body) = app
        .post(
            "/v1/consultations",
            json!({"id": room, "clinic": "k1", "queue": "q-ana",
                   "patient": {"id": format!("p-{room}"), "name": "Budi"},
                   "doctor": {"id": "d-ana", "name": "Ana"},
                   "payment": {"amount": 150000, "currency": "IDR"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// A staff token of `clinic`.
fn staff(clinic: &str) -> String {
    let claims = json!({"sub": format!("staff-{clinic}"), "name": "Sri", "role": "staff", "clinic": clinic,
                        "exp": chrono::Utc::now().timestamp() + 3600});
    token_with(claims, SECRET)
}

/// The consultation's payment status, as the API shows it.
async fn payment_status(app: &TestApp, room: &str) -> String {
    let (status, body) = app.get(&format!("/v1/consultations/{room}")).await;
    assert_eq!(status, 200, "{body}");
    body["payment"]["status"].as_str().unwrap().to_owned()
}

/// POSTs as someone with a token instead of the API key.
async fn post_as(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    let response = app.http.post(app.url(path)).bearer_auth(token).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn transfer(reference: &str, amount: i64) -> Value {
    json!({"method": "bank_transfer", "reference": reference, "amount": amount})
}

#[tokio::test]
async fn an_unpaid_consultation_is_admitted_once_staff_confirm_the_transfer() {
    let app = spawn_app().await;
    let created = priced(&app, "c-pay").await;
    assert_eq!(created["payment"], json!({"amount": 150000, "currency": "idr", "status": "unpaid"}));

    let mut patient = wr::patient(&app, "c-pay").await;
    wr::check_in(&mut patient, "c-pay").await;
    let mut doctor = wr::doctor(&app).await;
    let seen = wr::watch(&mut doctor, "q-ana").await;
    assert_eq!(seen["entries"][0]["paid"], false, "{seen}");
    doctor.join("c-pay", None).await;

    // Not before it is paid, and a doctor cannot override.
    let refused = doctor.request(json!({"type": "admit", "room": "c-pay"})).await;
    assert_eq!(refused["code"], "conflict", "{refused}");
    let refused = doctor.request(json!({"type": "admit", "room": "c-pay", "override_payment": true})).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert_eq!(app.consultation_status("c-pay").await, "waiting");

    // Who may confirm, and what a confirmation must cover.
    let path = "/v1/consultations/c-pay/payments";
    let (status, _) = post_as(&app, &staff("k2"), path, transfer("BCA-1", 150000)).await;
    assert_eq!(status, 403, "staff of another clinic");
    let narrowed = token_with(
        json!({"sub": "staff-k1", "name": "Sri", "role": "staff", "clinic": "k1", "rooms": ["c-other"],
               "exp": chrono::Utc::now().timestamp() + 3600}),
        SECRET,
    );
    let (status, _) = post_as(&app, &narrowed, path, transfer("BCA-1", 150000)).await;
    assert_eq!(status, 403, "staff whose token is narrowed to other consultations");
    let patient_token = token("p-c-pay", "Budi", "patient", 3600);
    assert_eq!(post_as(&app, &patient_token, path, transfer("BCA-1", 150000)).await.0, 403);
    let (status, body) = post_as(&app, &staff("k1"), path, transfer("BCA-0", 100000)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    let (status, body) = app.post(path, json!({"method": "cash", "reference": "x", "amount": 150000})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.post(path, transfer("BCA-neg", -5)).await;
    assert_eq!(status, 400, "{body}");

    // Staff of the clinic confirm: the room and the queue's watchers hear.
    let (status, body) = post_as(&app, &staff("k1"), path, transfer("BCA-1", 150000)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "paid");
    let told = doctor.recv_type("payment").await;
    assert_eq!(told, json!({"type": "payment", "room": "c-pay", "status": "paid"}));
    let state = doctor.recv_type("queue_state").await;
    assert_eq!(state["entries"][0]["paid"], true, "{state}");
    // The waiting patient hears too.
    assert_eq!(patient.recv_type("payment").await["status"], "paid");
    // The same transfer again changes nothing and tells nobody.
    let (status, body) = app.post(path, transfer("BCA-1", 150000)).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("paid")), "{body}");
    // Another transfer for a paid consultation is refused, not recorded as
    // a second payment.
    let (status, body) = post_as(&app, &staff("k1"), path, transfer("BCA-9", 150000)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    doctor.assert_quiet().await;

    doctor.send(json!({"type": "admit", "room": "c-pay"})).await;
    assert_eq!(patient.recv_type("admitted").await["room"], "c-pay");
    assert_eq!(payment_status(&app, "c-pay").await, "paid");
    let (_, audit) = app.get("/v1/audit?room=c-pay").await;
    let payments: Vec<&Value> =
        audit["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "payment").collect();
    assert_eq!(payments.len(), 2, "both confirmations are on record: {audit}");
    assert_eq!(payments[0]["user"], "staff-k1");
    assert_eq!(payments[0]["detail"]["reference"], "BCA-1");

    // A consultation without a price has nothing to pay.
    app.consultation("c-free").await;
    let (status, _) = app.post("/v1/consultations/c-free/payments", transfer("BCA-2", 1)).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn staff_may_admit_an_unpaid_consultation_and_it_is_on_record() {
    let app = spawn_app().await;
    priced(&app, "c-owed").await;
    let mut staff = Client::connect(&app, &staff("k1")).await;
    staff.join("c-owed", None).await;
    let ok = staff.request(json!({"type": "admit", "room": "c-owed", "override_payment": true})).await;
    assert_eq!(ok["type"], "ok", "{ok}");
    assert_eq!(app.consultation_status("c-owed").await, "active");
    assert_eq!(payment_status(&app, "c-owed").await, "unpaid", "admitted, still owed");
    // Audit entries queue in order with the room's writes: once this chat
    // is acked, the admit's entry is in the trail.
    staff.chat("c-owed", "flush", "in").await;
    let (_, audit) = app.get("/v1/audit?room=c-owed").await;
    let admit = audit["entries"].as_array().unwrap().iter().find(|e| e["action"] == "admit").cloned().unwrap();
    assert_eq!((&admit["user"], &admit["detail"]["override_payment"]), (&json!("staff-k1"), &json!(true)));
}

/// Signs `body` as Stripe does, at `t`.
fn stripe_signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn webhook(app: &TestApp, signature: &str, body: &str) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/v1/webhooks/stripe"))
        .header("Stripe-Signature", signature)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn intent_event(id: &str, kind: &str, room: &str) -> String {
    json!({"id": id, "type": kind, "data": {"object": {
        "id": "pi_1", "amount": 150000, "amount_received": 150000, "currency": "idr",
        "metadata": {"consultation": room}}}})
    .to_string()
}

fn checkout_event(id: &str, room: &str, status: &str) -> String {
    json!({"id": id, "type": "checkout.session.completed", "data": {"object": {
        "id": "cs_1", "payment_status": status, "client_reference_id": room, "payment_intent": "pi_1",
        "amount_total": 150000, "currency": "idr"}}})
    .to_string()
}

#[tokio::test]
async fn stripe_webhooks_pay_only_when_signed_fresh_and_paid() {
    let app = spawn_app_with(|s| s.stripe_webhook_secret = Some(WEBHOOK_SECRET.into())).await;
    priced(&app, "c-stripe").await;
    let mut patient = app.patient("c-stripe").await;
    patient.join("c-stripe", None).await;
    let now = chrono::Utc::now().timestamp();

    // A failed attempt is recorded and changes nothing.
    let failed = intent_event("evt_1", "payment_intent.payment_failed", "c-stripe");
    let (status, body) = webhook(&app, &stripe_signature(WEBHOOK_SECRET, now, &failed), &failed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(payment_status(&app, "c-stripe").await, "unpaid");

    // Forged, tampered and stale deliveries are refused and change nothing.
    let paid = checkout_event("evt_2", "c-stripe", "paid");
    let good = stripe_signature(WEBHOOK_SECRET, now, &paid);
    for (signature, body) in [
        (stripe_signature("whsec_someone_else", now, &paid), paid.clone()),
        (good.clone(), paid.replace("150000", "150001")),
        (stripe_signature(WEBHOOK_SECRET, now - 301, &paid), paid.clone()),
        ("t=1,v1=nothex".to_owned(), paid.clone()),
    ] {
        let (status, answer) = webhook(&app, &signature, &body).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad_request")), "{answer}");
    }
    assert_eq!(payment_status(&app, "c-stripe").await, "unpaid");
    let unpaid = checkout_event("evt_3", "c-stripe", "unpaid");
    let (status, _) = webhook(&app, &stripe_signature(WEBHOOK_SECRET, now, &unpaid), &unpaid).await;
    assert_eq!(status, 200);
    assert_eq!(payment_status(&app, "c-stripe").await, "unpaid", "a session not paid pays nothing");

    // The real one: the room hears at once.
    let (status, body) = webhook(&app, &good, &paid).await;
    assert_eq!((status, &body["duplicate"]), (200, &json!(false)), "{body}");
    assert_eq!(patient.recv_type("payment").await, json!({"type": "payment", "room": "c-stripe", "status": "paid"}));
    // Redelivered, and a late failure of the same intent: nothing moves back.
    let (status, body) = webhook(&app, &good, &paid).await;
    assert_eq!((status, &body["duplicate"]), (200, &json!(true)), "{body}");
    let late = intent_event("evt_4", "payment_intent.payment_failed", "c-stripe");
    let (status, _) = webhook(&app, &stripe_signature(WEBHOOK_SECRET, now, &late), &late).await;
    assert_eq!(status, 200);
    patient.assert_quiet().await;
    assert_eq!(payment_status(&app, "c-stripe").await, "paid");
}

#[tokio::test]
async fn an_oversized_webhook_is_too_large_in_the_api_shape() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|s| s.stripe_webhook_secret = Some(WEBHOOK_SECRET.into())).await;
    let now = chrono::Utc::now().timestamp();
    let padding = "x".repeat(70 * 1024);
    let body = json!({"id": "evt_big", "type": "payment_intent.created", "data": {"object": {"pad": padding}}});
    let body = body.to_string();
    let signature = stripe_signature(WEBHOOK_SECRET, now, &body);
    let (status, answer) = webhook(&app, &signature, &body).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (413, Some("too_large")), "{answer}");

    // Without a declared length (chunked), the limit holds as it is read.
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/webhooks/stripe HTTP/1.1\r\nHost: {}\r\nStripe-Signature: {signature}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.as_bytes().chunks(16 * 1024) {
        // The hub may answer and close before the last chunk is sent.
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if socket.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"too_large\""), "{answer}");
}

#[tokio::test]
async fn disabled_payments_and_an_unconfigured_webhook_are_refused_clearly() {
    let app = spawn_app_with(|s| s.enable_payments = false).await;
    let (status, body) = app
        .post(
            "/v1/consultations",
            json!({"patient": {"id": "u1", "name": "B"}, "doctor": {"id": "d1", "name": "A"},
                   "payment": {"amount": 100, "currency": "usd"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("TELEHUB_ENABLE_PAYMENTS"), "{body}");
    app.consultation("c-1").await;
    let (status, _) = app.post("/v1/consultations/c-1/payments", transfer("x", 1)).await;
    assert_eq!(status, 403);

    let app = spawn_app().await;
    let body = intent_event("evt_9", "payment_intent.succeeded", "c-1");
    let (status, answer) = webhook(&app, &stripe_signature(WEBHOOK_SECRET, 0, &body), &body).await;
    assert_eq!(status, 403, "no webhook secret configured");
    assert!(answer["error"]["message"].as_str().unwrap().contains("TELEHUB_STRIPE_WEBHOOK_SECRET"), "{answer}");
}
