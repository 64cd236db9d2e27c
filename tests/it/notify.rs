//! Notifications: SMS through a Twilio stand-in that checks requests as
//! Twilio documents them and answers as Twilio does, email to a real SMTP
//! server (`aiosmtpd`, from PyPI), Twilio's signed status callbacks, the
//! outbox's retries across a restart, and two nodes sharing one outbox.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use telehub::config::Settings;

use crate::helpers::*;
use crate::waiting_room::{check_in, doctor, patient, watch};

const SID: &str = "AC00000000000000000000000000000001";
const AUTH_TOKEN: &str = "twilio-auth-token";
const FROM: &str = "+15005550006";
/// The hub's public address in these tests: links and Twilio's callback
/// URL name it (nobody connects to it).
const PUBLIC: &str = "https://hub.telehub.test";

/// How the stand-in answers one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Created,
    /// Created, but the answer waits for [`TwilioStandIn::release`]; the
    /// SID it will carry is in [`Seen::held`] meanwhile.
    Held,
    /// HTTP status and Twilio error code.
    Refused(u16, i64),
}

#[derive(Default)]
struct Seen {
    /// Every accepted-format request's form, in order.
    requests: Vec<HashMap<String, String>>,
    /// Scripted answers per `To`; then 201.
    script: HashMap<String, VecDeque<Answer>>,
    /// The SIDs of answers being held.
    held: Vec<String>,
    /// Told when an answer is held.
    arrived: Arc<tokio::sync::Notify>,
    /// Lets a held answer go.
    release: Arc<tokio::sync::Notify>,
}

/// Answers `POST /2010-04-01/Accounts/{sid}/Messages.json` as Twilio does,
/// after checking Basic auth and the form fields.
struct TwilioStandIn {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

async fn messages(
    req: HttpRequest,
    sid: web::Path<String>,
    form: web::Form<HashMap<String, String>>,
    seen: web::Data<Mutex<Seen>>,
) -> HttpResponse {
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{AUTH_TOKEN}")));
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    if sid.as_str() != SID || auth != Some(expected.as_str()) {
        return HttpResponse::Unauthorized().json(json!({"code": 20003, "message": "Authenticate", "status": 401}));
    }
    let form = form.into_inner();
    let missing = ["To", "Body"].into_iter().find(|f| form.get(*f).is_none_or(|v| v.is_empty()));
    if let Some(field) = missing {
        let message = format!("A '{field}' parameter is required.");
        return HttpResponse::BadRequest().json(json!({"code": 21604, "message": message, "status": 400}));
    }
    if !form.contains_key("From") && !form.contains_key("MessagingServiceSid") {
        return HttpResponse::BadRequest()
            .json(json!({"code": 21603, "message": "A 'From' phone number is required.", "status": 400}));
    }
    let to = form["To"].clone();
    let (answer, sid, release) = {
        let mut seen = seen.lock().unwrap();
        seen.requests.push(form.clone());
        let answer = seen.script.get_mut(&to).and_then(VecDeque::pop_front).unwrap_or(Answer::Created);
        let sid = format!("SM{:032}", seen.requests.len());
        if let Answer::Held = answer {
            seen.held.push(sid.clone());
            seen.arrived.notify_one();
        }
        (answer, sid, seen.release.clone())
    };
    let created = |sid: String| {
        HttpResponse::Created().json(json!({"sid": sid, "status": "queued", "to": to, "from": form.get("From"),
            "body": form["Body"], "error_code": null, "account_sid": SID}))
    };
    match answer {
        Answer::Created => created(sid),
        Answer::Held => {
            release.notified().await;
            created(sid)
        }
        Answer::Refused(status, code) => {
            let message = match code {
                21211 => format!("The 'To' number {to} is not a valid phone number."),
                20429 => "Too Many Requests".to_owned(),
                _ => "Internal Server Error".to_owned(),
            };
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(json!({
                "code": code, "message": message, "status": status,
                "more_info": format!("https://www.twilio.com/docs/errors/{code}")
            }))
        }
    }
}

impl TwilioStandIn {
    fn start() -> TwilioStandIn {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let data = web::Data::from(seen.clone());
        let url = stand_in(move |cfg| {
            cfg.app_data(data.clone()).route("/2010-04-01/Accounts/{sid}/Messages.json", web::post().to(messages));
        });
        TwilioStandIn { url, seen }
    }

    fn script(&self, to: &str, answers: &[Answer]) {
        self.seen.lock().unwrap().script.insert(to.to_owned(), answers.iter().copied().collect());
    }

    /// The SID of the first answer held, once its request has come.
    async fn held(&self) -> String {
        let arrived = self.seen.lock().unwrap().arrived.clone();
        tokio::time::timeout(PATIENCE, arrived.notified()).await.expect("the held send never came");
        self.seen.lock().unwrap().held[0].clone()
    }

    /// Lets the held answer go.
    fn release(&self) {
        self.seen.lock().unwrap().release.notify_one();
    }

    /// The requests that reached it for `to`.
    fn sent_to(&self, to: &str) -> Vec<HashMap<String, String>> {
        self.seen.lock().unwrap().requests.iter().filter(|r| r["To"] == to).cloned().collect()
    }
}

/// A real SMTP server (`python -m aiosmtpd`) that files every message in a
/// Maildir.
struct Smtp {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Smtp {
    /// Starts aiosmtpd with `$TELEHUB_TEST_PYTHON` (scripts/test makes a
    /// virtualenv with it), or `python3`, on a free port.
    fn start() -> Smtp {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let python = std::env::var("TELEHUB_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let maildir = tempfile::tempdir().unwrap();
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("{python} with aiosmtpd is needed (scripts/test installs it): {err}"));
        let mut smtp = Smtp { child, port, maildir };
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = smtp.child.try_wait() {
                panic!("aiosmtpd exited with {status}: is it installed for {python}? (pip install aiosmtpd)");
            }
            assert!(Instant::now() < deadline, "aiosmtpd did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        smtp
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, as raw text.
    fn messages(&self) -> Vec<String> {
        let new: PathBuf = self.maildir.path().join("mail").join("new");
        let Ok(entries) = std::fs::read_dir(&new) else { return Vec::new() };
        entries.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A received email: its headers and its decoded body.
struct Email {
    headers: Vec<(String, String)>,
    body: String,
}

impl Email {
    fn parse(raw: &str) -> Email {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").expect("headers, then a body");
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                headers.last_mut().unwrap().1.push_str(line.trim_start());
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let mut email = Email { headers, body: String::new() };
        email.body = match email.header("content-transfer-encoding") {
            Some(e) if e.eq_ignore_ascii_case("quoted-printable") => quoted_printable(body),
            Some(e) if e.eq_ignore_ascii_case("base64") => {
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(body.replace('\n', "")).unwrap())
                    .unwrap()
            }
            _ => body.to_owned(),
        };
        email
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Settings that send SMS to `twilio` and, given one, email to `smtp`; the
/// outbox retries after 200 ms (doubling) and looks for due rows every 50 ms.
fn notifying(s: &mut Settings, twilio: &TwilioStandIn, smtp: Option<&Smtp>) {
    s.twilio_account_sid = Some(SID.into());
    s.twilio_auth_token = Some(AUTH_TOKEN.into());
    s.twilio_from = Some(FROM.into());
    s.twilio_api_base = twilio.url.clone();
    if let Some(smtp) = smtp {
        s.smtp_url = Some(smtp.url());
        s.mail_from = Some("Klinik Sehat <noreply@klinik.test>".into());
    }
    s.public_url = Some(PUBLIC.into());
    s.notify_backoff_ms = 200;
    s.notify_poll_ms = 50;
}

/// Creates consultation `room` in queue `q-ana` for a patient with these
/// contacts; `scheduled_in` puts it that far ahead.
async fn consultation(app: &TestApp, room: &str, patient: Value, scheduled_in: Option<chrono::Duration>) {
    let mut patient = patient;
    patient["id"] = json!(format!("p-{room}"));
    patient["name"] = json!(format!("Patient {room}"));
    let mut body = json!({"id": room, "clinic": "k1", "queue": "q-ana", "patient": patient,
                          "doctor": {"id": "d-ana", "name": "Dr Ana"}});
    if let Some(ahead) = scheduled_in {
        body["scheduled_at"] = json!((chrono::Utc::now() + ahead).to_rfc3339());
    }
    let (status, body) = app.post("/v1/consultations", body).await;
    assert_eq!(status, 201, "{body}");
}

async fn notifications(app: &TestApp, room: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/v1/notifications?room={room}")).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

/// Polls the room's notifications until `done` holds of them; a bound
/// against hangs, not a timing assertion.
async fn until(app: &TestApp, room: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let list = notifications(app, room).await;
        if done(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "notifications of {room} never got there: {list:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_in(list: &[Value], states: &[&str]) -> bool {
    !list.is_empty() && list.iter().all(|n| states.contains(&n["state"].as_str().unwrap()))
}

/// Waits for an SMTP message to `to`.
async fn mail_to(smtp: &Smtp, to: &str) -> Email {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(raw) =
            smtp.messages().into_iter().find(|m| Email::parse(m).header("to").is_some_and(|t| t.contains(to)))
        {
            return Email::parse(&raw);
        }
        assert!(Instant::now() < deadline, "no email to {to} arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The token in a patient link, checked against the hub's secret.
fn link_token(text: &str, room: &str) -> Value {
    let prefix = format!("{PUBLIC}/patient?room={room}#token=");
    let start = text.find(&prefix).unwrap_or_else(|| panic!("no link to {room} in {text:?}")) + prefix.len();
    let token: String = text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let key = jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes());
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("a token the hub signed").claims;
    json!({"token": token, "claims": claims})
}

/// The patient of `room` checks in, then closes the page; the doctor has
/// seen them go offline and lets them in.
async fn admit_absent(app: &TestApp, room: &str) {
    let mut doctor = doctor(app).await;
    watch(&mut doctor, "q-ana").await;
    let mut p = patient(app, room).await;
    check_in(&mut p, room).await;
    drop(p);
    loop {
        let state = doctor.recv_type("queue_state").await;
        let entry = state["entries"].as_array().unwrap().iter().find(|e| e["room"] == room).cloned();
        if entry.is_some_and(|e| e["online"] == false) {
            break;
        }
    }
    let reply = doctor.request(json!({"type": "admit", "room": room})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
}

#[tokio::test]
async fn an_absent_patient_is_called_in_by_sms_and_email_in_their_language() {
    let twilio = TwilioStandIn::start();
    let smtp = Smtp::start();
    let app = spawn_app_with(|s| notifying(s, &twilio, Some(&smtp))).await;
    let contacts = json!({"phone": "+6281200000001", "email": "budi@pasien.test", "locale": "id-ID"});
    consultation(&app, "c-n1", contacts, None).await;
    consultation(&app, "c-n2", json!({"phone": "+6281200000002", "email": "siti@pasien.test"}), None).await;

    // c-n2's patient is on the page when admitted: no call-in for them.
    let mut doctor_client = doctor(&app).await;
    let mut present = patient(&app, "c-n2").await;
    check_in(&mut present, "c-n2").await;
    let reply = doctor_client.request(json!({"type": "admit", "room": "c-n2"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    present.recv_type("admitted").await;

    admit_absent(&app, "c-n1").await;
    let list = until(&app, "c-n1", |l| l.len() == 2 && all_in(l, &["sent"])).await;
    let channels: Vec<&str> = list.iter().map(|n| n["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["sms", "email"]);
    for n in &list {
        assert_eq!((&n["kind"], &n["attempts"], &n["locale"]), (&json!("call_in"), &json!(1), &json!("id-ID")));
        assert!(n["provider_ref"].is_string() && n["sent_at"].is_string(), "{n}");
    }
    assert_eq!(list[0]["to"], "+6281200000001");

    // The SMS, as Twilio received it.
    let sms = twilio.sent_to("+6281200000001");
    assert_eq!(sms.len(), 1, "one SMS: {sms:?}");
    assert_eq!(sms[0]["From"], FROM);
    assert_eq!(sms[0]["StatusCallback"], format!("{PUBLIC}/v1/webhooks/twilio"));
    assert!(sms[0]["Body"].contains("Dr Ana sudah siap"), "Indonesian: {}", sms[0]["Body"]);
    assert_eq!(list[0]["provider_ref"].as_str(), Some(format!("SM{:032}", 1).as_str()), "Twilio's sid is kept");

    // The email, as the SMTP server received it.
    let email = mail_to(&smtp, "budi@pasien.test").await;
    assert_eq!(email.header("subject"), Some("Dokter Anda sudah siap"));
    assert!(email.header("from").unwrap().contains("noreply@klinik.test"));
    assert_eq!(email.header("message-id"), list[1]["provider_ref"].as_str());
    assert!(email.body.contains("Halo Patient c-n1"), "{}", email.body);

    // The links let this patient into this consultation, and no other.
    for text in [&sms[0]["Body"], &email.body] {
        let link = link_token(text, "c-n1");
        assert_eq!(link["claims"]["sub"], "p-c-n1");
        assert_eq!(link["claims"]["role"], "patient");
        assert_eq!(link["claims"]["rooms"], json!(["c-n1"]));
        let mut back = Client::connect(&app, link["token"].as_str().unwrap()).await;
        back.join("c-n1", None).await;
    }

    // The patient who was there got nothing (their admission was stored
    // before c-n1's, whose notifications are stored now).
    assert_eq!(notifications(&app, "c-n2").await, Vec::<Value>::new());
    assert!(twilio.sent_to("+6281200000002").is_empty());
}

#[tokio::test]
async fn a_receipt_follows_a_payment_in_english_by_default() {
    let twilio = TwilioStandIn::start();
    let smtp = Smtp::start();
    let app = spawn_app_with(|s| notifying(s, &twilio, Some(&smtp))).await;
    let (status, body) = app
        .post(
            "/v1/consultations",
            json!({"id": "c-r1", "clinic": "k1", "patient": {"id": "p-r1", "name": "Budi", "email": "budi@pasien.test",
                   "phone": "+6281200000009", "locale": "en-US"},
                   "doctor": {"id": "d-ana", "name": "Dr Ana"}, "payment": {"amount": 15000000, "currency": "idr"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(notifications(&app, "c-r1").await.is_empty(), "nothing before the payment");
    let (status, body) = app
        .post(
            "/v1/consultations/c-r1/payments",
            json!({"method": "bank_transfer", "reference": "BCA-778", "amount": 15000000}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let list = until(&app, "c-r1", |l| all_in(l, &["sent"])).await;
    assert_eq!(list.len(), 1, "a receipt is an email only: {list:?}");
    assert_eq!((&list[0]["kind"], &list[0]["channel"]), (&json!("receipt"), &json!("email")));
    let email = mail_to(&smtp, "budi@pasien.test").await;
    assert_eq!(email.header("subject"), Some("Payment received"));
    assert!(email.body.contains("IDR 150000.00"), "{}", email.body);
    // The same transfer confirmed again changes nothing and sends nothing.
    let (status, _) = app
        .post(
            "/v1/consultations/c-r1/payments",
            json!({"method": "bank_transfer", "reference": "BCA-778", "amount": 15000000}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(notifications(&app, "c-r1").await.len(), 1);
    assert!(twilio.sent_to("+6281200000009").is_empty(), "no SMS receipt");
}

/// A reminder is due at once for a consultation less than the lead time
/// ahead; the tests use that to queue SMS.
async fn reminded(app: &TestApp, room: &str, phone: &str) {
    consultation(app, room, json!({"phone": phone}), Some(chrono::Duration::minutes(5))).await;
}

#[tokio::test]
async fn twilio_refusals_are_final_rate_limits_are_retried_and_tries_run_out() {
    let twilio = TwilioStandIn::start();
    twilio.script("+15005550001", &[Answer::Refused(400, 21211)]);
    twilio.script("+15005550002", &[Answer::Refused(429, 20429)]);
    twilio.script("+15005550003", &[Answer::Refused(500, 20500); 3]);
    let app = spawn_app_with(|s| notifying(s, &twilio, None)).await;
    reminded(&app, "c-t1", "+15005550001").await;
    reminded(&app, "c-t2", "+15005550002").await;
    reminded(&app, "c-t3", "+15005550003").await;

    let invalid = until(&app, "c-t1", |l| all_in(l, &["failed"])).await;
    assert_eq!((&invalid[0]["kind"], &invalid[0]["attempts"]), (&json!("reminder"), &json!(1)), "not retried");
    assert!(invalid[0]["last_error"].as_str().unwrap().contains("21211"), "{}", invalid[0]);

    let limited = until(&app, "c-t2", |l| all_in(l, &["sent"])).await;
    assert_eq!(limited[0]["attempts"], 2, "sent on the second try");
    assert!(limited[0]["last_error"].as_str().unwrap().contains("20429"), "the first try's error stays");

    let broken = until(&app, "c-t3", |l| all_in(l, &["failed"])).await;
    assert_eq!(broken[0]["attempts"], 3, "three tries by default");
    assert!(broken[0]["last_error"].as_str().unwrap().contains("500"), "{}", broken[0]);

    assert_eq!(twilio.sent_to("+15005550001").len(), 1);
    assert_eq!(twilio.sent_to("+15005550002").len(), 2);
    assert_eq!(twilio.sent_to("+15005550003").len(), 3);
    // Every request carried the reminder in English, the default.
    assert!(twilio.sent_to("+15005550002")[1]["Body"].contains("your consultation with Dr Ana"));
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for (outcome, n) in [("sent", 1), ("retried", 3), ("failed", 2), ("skipped", 0)] {
        let line = format!("telehub_notification_tries_total{{node=\"test-node\",outcome=\"{outcome}\"}} {n}\n");
        assert!(metrics.contains(&line), "{line:?} in {metrics}");
    }
}

/// A callback's form.
type Form = Vec<(String, String)>;

fn form(pairs: &[(&str, &str)]) -> Form {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Twilio's signature over a callback to `url`, computed here from
/// Twilio's description (the hub's own is checked against Twilio's
/// published example in its unit tests).
fn twilio_signature(token: &str, url: &str, params: &Form) -> String {
    let mut sorted = params.clone();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

const CALLBACK_URL: &str = "https://hub.telehub.test/v1/webhooks/twilio";

fn signed(params: &Form) -> String {
    twilio_signature(AUTH_TOKEN, CALLBACK_URL, params)
}

async fn callback(app: &TestApp, params: &Form, signature: &str) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/v1/webhooks/twilio"))
        .header("X-Twilio-Signature", signature)
        .form(params)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn signed_status_callbacks_move_a_message_forward_only_and_forgeries_change_nothing() {
    let twilio = TwilioStandIn::start();
    let app = spawn_app_with(|s| notifying(s, &twilio, None)).await;
    reminded(&app, "c-s1", "+15005550011").await;
    let sent = until(&app, "c-s1", |l| all_in(l, &["sent"])).await;
    let sid = sent[0]["provider_ref"].as_str().unwrap().to_owned();
    let report = |status: &str| form(&[("MessageSid", &sid), ("MessageStatus", status), ("AccountSid", SID)]);

    // Forged: another token, the signature of another body, none at all.
    let delivered = report("delivered");
    let other_token = twilio_signature("another-token", CALLBACK_URL, &delivered);
    assert_eq!(callback(&app, &delivered, &other_token).await.0, 400);
    assert_eq!(callback(&app, &report("failed"), &signed(&delivered)).await.0, 400, "another body");
    assert_eq!(callback(&app, &delivered, "").await.0, 400);
    assert_eq!(notifications(&app, "c-s1").await[0]["state"], "sent", "forgeries changed nothing");

    // Genuine: delivered; then late reports move nothing back.
    let (status, body) = callback(&app, &delivered, &signed(&delivered)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(notifications(&app, "c-s1").await[0]["state"], "delivered");
    for late in ["sent", "failed", "undelivered"] {
        let late = report(late);
        assert_eq!(callback(&app, &late, &signed(&late)).await.0, 200);
    }
    assert_eq!(notifications(&app, "c-s1").await[0]["state"], "delivered", "never backwards");

    // Twilio may sign the URL with the default port.
    reminded(&app, "c-s2", "+15005550012").await;
    let sent = until(&app, "c-s2", |l| all_in(l, &["sent"])).await;
    let sid2 = sent[0]["provider_ref"].as_str().unwrap().to_owned();
    let params = form(&[("MessageSid", &sid2), ("MessageStatus", "undelivered"), ("ErrorCode", "30003")]);
    let with_port = twilio_signature(AUTH_TOKEN, "https://hub.telehub.test:443/v1/webhooks/twilio", &params);
    assert_eq!(callback(&app, &params, &with_port).await.0, 200);
    let after = notifications(&app, "c-s2").await;
    assert_eq!(after[0]["state"], "undelivered");
    assert_eq!(after[0]["last_error"], "Twilio error 30003");
}

#[tokio::test]
async fn a_status_callback_that_comes_before_the_send_is_recorded_is_applied_after() {
    let twilio = TwilioStandIn::start();
    twilio.script("+15005550013", &[Answer::Held]);
    let app = spawn_app_with(|s| notifying(s, &twilio, None)).await;
    reminded(&app, "c-early", "+15005550013").await;
    // Twilio has the message and reports on it while the hub still waits
    // for the answer that names it.
    let sid = twilio.held().await;
    assert_eq!(notifications(&app, "c-early").await[0]["state"], "sending");
    let report = form(&[("MessageSid", &sid), ("MessageStatus", "undelivered"), ("ErrorCode", "30005")]);
    let (status, body) = callback(&app, &report, &signed(&report)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["outcome"].as_str().unwrap().contains("not known yet"), "{body}");
    twilio.release();
    let after = until(&app, "c-early", |l| all_in(l, &["undelivered"])).await;
    assert_eq!((&after[0]["provider_ref"], &after[0]["last_error"]), (&json!(sid), &json!("Twilio error 30005")));
    // A later report on it moves nothing back.
    let late = form(&[("MessageSid", &sid), ("MessageStatus", "delivered")]);
    let (_, body) = callback(&app, &late, &signed(&late)).await;
    assert!(body["outcome"].as_str().unwrap().ends_with("unchanged"), "{body}");
    assert_eq!(notifications(&app, "c-early").await[0]["state"], "undelivered");
}

#[tokio::test]
async fn a_retry_pending_across_a_restart_is_sent_once() {
    let twilio = TwilioStandIn::start();
    twilio.script("+15005550021", &[Answer::Refused(429, 20429)]);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    if let Some(server) = postgres_server() {
        settings.database_url = fresh_postgres_database(&server).await;
    }
    notifying(&mut settings, &twilio, None);
    // Long enough that the node is stopped before the retry is due.
    settings.notify_backoff_ms = 3000;
    let app = start(settings.clone(), dir.clone()).await;
    reminded(&app, "c-x1", "+15005550021").await;
    let waiting = until(&app, "c-x1", |l| l.len() == 1 && l[0]["attempts"] == 1 && l[0]["state"] == "pending").await;
    assert!(waiting[0]["last_error"].as_str().unwrap().contains("20429"));
    app.stop().await;
    assert_eq!(twilio.sent_to("+15005550021").len(), 1);

    let app = start(settings, dir).await;
    let sent = until(&app, "c-x1", |l| all_in(l, &["sent"])).await;
    assert_eq!(sent[0]["attempts"], 2);
    // Another notification goes through the same worker afterwards: by
    // then the first would have gone again if it were going to.
    reminded(&app, "c-x2", "+15005550022").await;
    until(&app, "c-x2", |l| all_in(l, &["sent"])).await;
    assert_eq!(twilio.sent_to("+15005550021").len(), 2, "the try before the restart and one after");
}

#[tokio::test]
async fn with_two_nodes_each_notification_is_sent_once() {
    let twilio = TwilioStandIn::start();
    let pg = crate::postgres::Server::get();
    let database = fresh_postgres_database(&pg.url).await;
    let redis = crate::cluster::Redis::start();
    let mut nodes = Vec::new();
    for node in ["node-a", "node-b"] {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut settings = test_settings(&dir);
        settings.database_url = database.clone();
        settings.redis_url = Some(redis.url());
        settings.node_id = node.into();
        notifying(&mut settings, &twilio, None);
        nodes.push(start(settings, dir).await);
    }
    // Each node queues half; both workers race for all of them.
    let rooms: Vec<String> = (0..24).map(|i| format!("c-2n{i}")).collect();
    for (i, room) in rooms.iter().enumerate() {
        reminded(&nodes[i % 2], room, &format!("+150055510{i:02}")).await;
    }
    for room in &rooms {
        until(&nodes[0], room, |l| all_in(l, &["sent"])).await;
    }
    for (i, room) in rooms.iter().enumerate() {
        assert_eq!(twilio.sent_to(&format!("+150055510{i:02}")).len(), 1, "{room} sent once");
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn disabled_channels_queue_nothing_and_refuse_clearly() {
    let twilio = TwilioStandIn::start();
    let smtp = Smtp::start();
    let app = spawn_app_with(|s| {
        notifying(s, &twilio, Some(&smtp));
        s.enable_sms = false;
    })
    .await;
    consultation(
        &app,
        "c-d1",
        json!({"phone": "+15005550031", "email": "d1@pasien.test"}),
        Some(chrono::Duration::minutes(5)),
    )
    .await;
    let list = notifications(&app, "c-d1").await;
    let channels: Vec<&str> = list.iter().map(|n| n["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["email"], "SMS is off: only the email reminder is queued");
    let params = form(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")]);
    let (status, body) = callback(&app, &params, &signed(&params)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("TELEHUB_ENABLE_SMS"), "{body}");
    // Not a form at all: the API's own error body.
    let response = app.http.post(app.url("/v1/webhooks/twilio")).json(&json!({"MessageSid": "SM1"})).send().await;
    let response = response.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    until(&app, "c-d1", |l| all_in(l, &["sent"])).await;
    assert!(twilio.sent_to("+15005550031").is_empty());

    // Neither channel configured: nothing is queued at all.
    let quiet = spawn_app().await;
    consultation(&quiet, "c-d2", json!({"phone": "+15005550032"}), Some(chrono::Duration::minutes(5))).await;
    assert!(notifications(&quiet, "c-d2").await.is_empty());
}

#[tokio::test]
async fn contacts_are_checked_when_a_consultation_is_made() {
    let app = spawn_app().await;
    for (patient, what) in [
        (json!({"phone": "0812345678"}), "patient.phone"),
        (json!({"phone": "+62 812"}), "patient.phone"),
        (json!({"email": "not-an-address"}), "patient.email"),
        (json!({"email": "two@@ats.test"}), "patient.email"),
        (json!({"locale": "en US!"}), "patient.locale"),
    ] {
        let mut patient = patient;
        patient["id"] = json!("p-v");
        patient["name"] = json!("Budi");
        let (status, body) =
            app.post("/v1/consultations", json!({"patient": patient, "doctor": {"id": "d-ana", "name": "Ana"}})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(what), "{body}");
    }
    let (status, body) = app
        .post(
            "/v1/consultations",
            json!({"id": "c-v1", "patient": {"id": "p-v", "name": "Budi", "phone": "+628123456789", "locale": "id"},
                   "doctor": {"id": "d-ana", "name": "Ana"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["patient"]["locale"], "id");
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_retried_then_the_email_fails_with_its_error() {
    let twilio = TwilioStandIn::start();
    // A port nobody listens on: every connection is refused.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app_with(|s| {
        notifying(s, &twilio, None);
        s.smtp_url = Some(format!("smtp://127.0.0.1:{closed}"));
        s.mail_from = Some("noreply@klinik.test".into());
    })
    .await;
    consultation(&app, "c-e1", json!({"email": "e1@pasien.test"}), Some(chrono::Duration::minutes(5))).await;
    let failed = until(&app, "c-e1", |l| all_in(l, &["failed"])).await;
    assert_eq!(failed[0]["attempts"], 3, "{failed:?}");
    assert!(failed[0]["last_error"].as_str().unwrap().starts_with("SMTP"), "{failed:?}");
}
