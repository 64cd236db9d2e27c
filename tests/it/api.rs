//! The HTTP API for clinic backends.

use serde_json::{Value, json};

use crate::helpers::*;

async fn with_token(app: &TestApp, method: reqwest::Method, path: &str, token: &str) -> (u16, Value) {
    let response = app.http.request(method, app.url(path)).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn consultations_are_created_and_read() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/v1/consultations",
            json!({"id": "c-1001", "patient": {"id": "u7", "name": "Budi", "phone": "+628123456789"}, "doctor": {"id": "u42", "name": "Ana"}, "clinic": "k1", "scheduled_at": "2026-12-01T09:00:00+07:00"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "c-1001");
    assert_eq!(body["status"], "scheduled");
    assert_eq!(body["queue"], "u42", "the doctor's queue by default");
    assert_eq!(body["scheduled_at"], "2026-12-01T02:00:00.000Z");
    assert_eq!(body["media_mode"], "p2p");
    assert_eq!(body["last_seq"], 0);
    assert_eq!(body["members"].as_array().unwrap().len(), 2);

    let (status, body) = app
        .post(
            "/v1/consultations",
            json!({"id": "c-1001", "patient": {"id": "u7", "name": "B"}, "doctor": {"id": "u42", "name": "A"}}),
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")));

    let (status, body) = app
        .post(
            "/v1/consultations",
            json!({"patient": {"id": "u8", "name": "Citra"}, "doctor": {"id": "u42", "name": "Ana"}}),
        )
        .await;
    assert_eq!(status, 201);
    assert!(body["id"].as_str().unwrap().starts_with("c-"), "an id is made up");
    assert_eq!(body["status"], "waiting");

    for bad in [
        json!({"patient": {"id": "u8", "name": "Citra"}}),
        json!({"id": "has space", "patient": {"id": "u8", "name": "C"}, "doctor": {"id": "d", "name": "D"}}),
        json!({"patient": {"id": "u8", "name": ""}, "doctor": {"id": "d", "name": "D"}}),
        json!({"patient": {"id": "u8", "name": "C"}, "doctor": {"id": "d", "name": "D"}, "scheduled_at": "tomorrow"}),
        json!({"patient": {"id": "u8", "name": "C"}, "doctor": {"id": "d", "name": "D"}, "scheduled_at": "0000-01-01T00:00:00+01:00"}),
        json!({"patient": {"id": "u8", "name": "C"}, "doctor": {"id": "d", "name": "D"}, "scheduled_at": "9999-12-31T23:59:59-01:00"}),
        json!({"patient": {"id": "u8", "name": "C"}, "doctor": {"id": "d", "name": "D"}, "payment": {"amount": 0, "currency": "IDR"}}),
        json!({"patient": {"id": "u8", "name": "C"}, "doctor": {"id": "d", "name": "D"}, "payment": {"amount": 100, "currency": "rupiah"}}),
        json!({"patient": {"id": "u8", "name": "C"}, "doctor": {"id": "d", "name": "D"}, "surprise": 1}),
        json!({"patient": {"id": "u8", "name": "C"}, "doctor": {"id": "d", "name": "D"},
               "payment": {"amount": 100, "currency": "IDR", "capture": "later"}}),
    ] {
        let (status, body) = app.post("/v1/consultations", bad.clone()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}");
    }
    let (status, body) = app.get("/v1/consultations/c-1001").await;
    assert_eq!(status, 200);
    assert_eq!(body["patient"]["phone"], "+628123456789");
    let (status, body) = app.get("/v1/consultations/nope").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    // An id no consultation can have is a bad request, and no room is
    // started for it.
    for path in ["/v1/consultations/a%20b", "/v1/consultations/a%20b/messages", "/v1/consultations/a%20b/presence"] {
        let (status, body) = app.get(path).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{path}");
    }
    for path in ["/v1/consultations/a%20b/end", "/v1/consultations/a%20b/messages"] {
        let (status, body) = app.post(path, json!({"text": "x"})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{path}");
    }
}

#[tokio::test]
async fn the_api_needs_the_key_and_tokens_only_read() {
    let app = spawn_app().await;
    app.consultation("c-auth").await;
    let response = app.http.get(app.url("/v1/consultations/c-auth")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = with_token(&app, reqwest::Method::GET, "/v1/consultations/c-auth", "wrong-key").await;
    assert_eq!(status, 401);
    // Who is asking comes first: a caller who does not authenticate gets
    // 401 whatever the body, the name or the hub's configuration.
    for (path, body) in [
        ("/v1/consultations", "{not json"),
        ("/v1/consultations", &*"x".repeat(100 * 1024)),
        ("/v1/consultations/c-auth/payments", "{}"),
        ("/v1/consultations/c-auth/checkout", ""),
        ("/v1/tokens", "[]"),
    ] {
        let response = app
            .http
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path} {}", &body[..body.len().min(20)]);
    }
    let response = app.http.get(app.url("/v1/queues/not%20a%20name")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let (status, body) = with_token(&app, reqwest::Method::GET, "/v1/queues/not%20a%20name", API_KEY).await;
    assert_eq!(status, 400, "{body}");
    let response = app
        .http
        .post(app.url("/v1/consultations"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "the key's caller hears what is wrong with the body");

    let staff = token_with(
        json!({"sub": "s1", "name": "S", "role": "staff", "clinic": "k1", "exp": chrono::Utc::now().timestamp() + 60}),
        SECRET,
    );
    let other_staff = token_with(
        json!({"sub": "s2", "name": "S", "role": "staff", "clinic": "k2", "exp": chrono::Utc::now().timestamp() + 60}),
        SECRET,
    );
    let patient = token("p-c-auth", "Budi", "patient", 60);
    let stranger = token("p-x", "X", "patient", 60);
    assert_eq!(with_token(&app, reqwest::Method::GET, "/v1/consultations/c-auth", &staff).await.0, 200);
    assert_eq!(with_token(&app, reqwest::Method::GET, "/v1/consultations/c-auth/messages", &patient).await.0, 200);
    assert_eq!(with_token(&app, reqwest::Method::GET, "/v1/consultations/c-auth", &other_staff).await.0, 403);
    assert_eq!(with_token(&app, reqwest::Method::GET, "/v1/consultations/c-auth", &stranger).await.0, 403);
    // As on the WebSocket, a `rooms` claim grants a patient or doctor token
    // access to the listed consultations, and narrows staff.
    let exp = chrono::Utc::now().timestamp() + 60;
    let guest =
        token_with(json!({"sub": "guest", "name": "G", "role": "patient", "rooms": ["c-auth"], "exp": exp}), SECRET);
    assert_eq!(with_token(&app, reqwest::Method::GET, "/v1/consultations/c-auth", &guest).await.0, 200);
    let narrowed = token_with(
        json!({"sub": "s1", "name": "S", "role": "staff", "clinic": "k1", "rooms": ["c-x"], "exp": exp}),
        SECRET,
    );
    assert_eq!(with_token(&app, reqwest::Method::GET, "/v1/consultations/c-auth", &narrowed).await.0, 403);
    assert_eq!(with_token(&app, reqwest::Method::POST, "/v1/consultations/c-auth/end", &staff).await.0, 403);
    assert_eq!(with_token(&app, reqwest::Method::GET, "/v1/audit?room=c-auth", &staff).await.0, 200);
    assert_eq!(with_token(&app, reqwest::Method::GET, "/v1/audit?room=c-auth", &other_staff).await.0, 403);

    // Without a room, staff read their own clinic's trail and nothing else.
    let (status, _) = app
        .post(
            "/v1/consultations",
            json!({"id": "c-k2", "clinic": "k2", "patient": {"id": "p-k2", "name": "B"}, "doctor": {"id": "d-k2", "name": "A"}}),
        )
        .await;
    assert_eq!(status, 201);
    app.post("/v1/tokens", json!({"sub": "p-c-auth", "name": "Budi", "role": "patient"})).await;
    let mut member = app.patient("c-auth").await;
    member.join("c-auth", None).await;
    // Once this is acked, the entries recorded before it are in the trail.
    member.chat("c-auth", "flush", "hello").await;
    let rooms_seen = |trail: &Value| -> Vec<Value> {
        let mut rooms: Vec<Value> = trail["entries"].as_array().unwrap().iter().map(|e| e["room"].clone()).collect();
        rooms.dedup();
        rooms
    };
    let (status, everything) = app.get("/v1/audit").await;
    assert_eq!(status, 200);
    assert!(rooms_seen(&everything).contains(&Value::Null), "the key sees entries of no room: {everything}");
    for (who, room) in [(&staff, "c-auth"), (&other_staff, "c-k2")] {
        let (status, trail) = with_token(&app, reqwest::Method::GET, "/v1/audit", who).await;
        assert_eq!(status, 200, "{trail}");
        assert_eq!(rooms_seen(&trail), vec![json!(room)], "{trail}");
    }
    assert_eq!(with_token(&app, reqwest::Method::GET, "/v1/audit", &narrowed).await.0, 403);
    let no_clinic = token_with(json!({"sub": "s3", "name": "S", "role": "staff", "exp": exp}), SECRET);
    assert_eq!(with_token(&app, reqwest::Method::GET, "/v1/audit", &no_clinic).await.0, 403);
}

#[tokio::test]
async fn system_messages_are_stored_and_broadcast() {
    let app = spawn_app().await;
    app.consultation("c-sys").await;
    let mut patient = app.patient("c-sys").await;
    patient.join("c-sys", None).await;
    let (status, body) =
        app.post("/v1/consultations/c-sys/messages", json!({"text": "The doctor will join in 5 minutes"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["seq"], 1);
    assert_eq!(body["kind"], "system");
    let live = patient.recv_type("message").await;
    assert_eq!(live["kind"], "system");
    assert_eq!(live["from"], json!({"id": "system", "name": "Telehub", "role": "system"}));
    assert_eq!(live["id"], body["id"]);
    patient.chat("c-sys", "c1", "ok").await;
    let (_, page) = app.get("/v1/consultations/c-sys/messages?after=0&limit=1").await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_after"], 1);
    let (_, page) = app.get("/v1/consultations/c-sys/messages?after=1").await;
    assert_eq!(page["messages"][0]["text"], "ok");
    assert_eq!(page["next_after"], Value::Null);
    let (status, _) = app.get("/v1/consultations/c-sys/messages?limit=501").await;
    assert_eq!(status, 400);
    let (status, body) = app.post("/v1/consultations/c-sys/messages", json!({"text": "x".repeat(4001)})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("too_large")));
    let (status, _) = app.post("/v1/consultations/c-none/messages", json!({"text": "hello"})).await;
    assert_eq!(status, 404);
    let (_, consultation) = app.get("/v1/consultations/c-sys").await;
    assert_eq!(consultation["last_seq"], 2);
}

#[tokio::test]
async fn tokens_audit_presence_and_operations() {
    let app = spawn_app().await;
    app.consultation("c-ops").await;
    let (status, issued) =
        app.post("/v1/tokens", json!({"sub": "p-c-ops", "name": "Budi", "role": "patient", "ttl_s": 120})).await;
    assert_eq!(status, 200, "{issued}");
    let now = chrono::Utc::now().timestamp();
    assert!((issued["exp"].as_i64().unwrap() - now - 120).abs() <= 2);
    let mut patient = Client::connect(&app, issued["token"].as_str().unwrap()).await;
    patient.join("c-ops", None).await;
    for bad in [
        json!({"sub": "x", "name": "X", "role": "king"}),
        json!({"sub": "x", "name": "X", "role": "patient", "ttl_s": 0}),
        json!({"sub": "x"}),
        json!({"sub": "x", "name": "X", "role": "staff", "clinic": "k 1"}),
        json!({"sub": "x", "name": "X", "role": "patient", "rooms": ["c-ops", "c/../x"]}),
        json!({"sub": "x", "name": "X", "role": "patient", "rooms": [""]}),
    ] {
        assert_eq!(app.post("/v1/tokens", bad.clone()).await.0, 400, "{bad}");
    }
    let (_, presence) = app.get("/v1/consultations/c-ops/presence").await;
    assert_eq!(presence["sessions"][0]["session"], patient.session.as_str());
    assert_eq!(presence["sessions"][0]["node"], "test-node");

    // Audit entries queue in order with the room's writes, so once this
    // message is acked the join before it is in the trail.
    patient.chat("c-ops", "flush", "hello").await;
    let (status, audit) = app.get("/v1/audit?room=c-ops").await;
    assert_eq!(status, 200);
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"api.create"), "{actions:?}");
    let (_, audit) = app.get("/v1/audit?room=c-ops&user=p-c-ops").await;
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["action"] == "join" && e["detail"]["session"] == patient.session.as_str()),
        "{audit}"
    );

    assert_eq!(app.get("/healthz").await, (200, json!({"status": "ok", "node": "test-node"})));
    assert_eq!(app.get("/readyz").await.0, 200);
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("telehub_sessions{node=\"test-node\"} 1"), "{metrics}");
    // Every series the node exports is described in docs/http-api.md.
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/http-api.md")).unwrap();
    let names: Vec<&str> = metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    assert!(names.len() > 10, "{metrics}");
    for name in names {
        assert!(docs.contains(&format!("`{name}`")), "{name} is not described in docs/http-api.md");
    }
    let (status, spec) = app.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    for path in ["/v1/consultations", "/v1/consultations/{id}/messages", "/v1/tokens", "/v1/audit", "/readyz"] {
        assert!(spec["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    // OpenAPI requires every operation's id to be unique (generators key on it).
    let mut ids: Vec<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|operation| operation["operationId"].as_str())
        .collect();
    let operations = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), operations, "operation ids repeat: {ids:?}");
    assert!(operations > 15, "{operations} operations");
    // Every route that takes a credential documents 401, every route under
    // the rate limit 429, and each of them as the error body.
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = &operation["responses"];
            let secured = operation["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                assert!(responses["401"].is_object(), "{method} {path} lists no 401");
            }
            if path.starts_with("/v1/") && path != "/v1/ws" && path != "/v1/openapi.json" {
                let schema = &responses["429"]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path}");
            }
        }
    }
    // The documented bounds of the paging parameters are the ones the
    // handlers keep.
    for (path, route) in
        [("/v1/consultations/c-ops/messages", "/v1/consultations/{id}/messages"), ("/v1/audit", "/v1/audit")]
    {
        let params = spec["paths"][route]["get"]["parameters"].as_array().unwrap();
        let limit = &params.iter().find(|p| p["name"] == "limit").unwrap()["schema"];
        let (low, high) = (limit["minimum"].as_u64().unwrap(), limit["maximum"].as_u64().unwrap());
        assert_eq!(app.get(&format!("{path}?limit={low}")).await.0, 200, "{path}");
        assert_eq!(app.get(&format!("{path}?limit={high}")).await.0, 200, "{path}");
        assert_eq!(app.get(&format!("{path}?limit={}", low - 1)).await.0, 400, "{path}");
        assert_eq!(app.get(&format!("{path}?limit={}", high + 1)).await.0, 400, "{path}");
    }
    let demo = &spec["paths"]["/v1/demo/consultation"]["post"]["requestBody"];
    assert_ne!(demo["required"], true, "the demo body may be left out: {demo}");
    let (status, body) = app.get("/v1/nothing-here").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, _) = app.post("/v1/demo/consultation", json!({})).await;
    assert_eq!(status, 404, "no demo mode with a secret configured");
}

#[tokio::test]
async fn demo_mode_creates_a_consultation_with_working_links() {
    let app = spawn_app_with(|s| {
        s.jwt_secret = None;
        s.api_key = None;
    })
    .await;
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let response =
        app.http.post(app.url("/v1/demo/consultation")).json(&json!({"patient_name": "Sari"})).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let demo: Value = response.json().await.unwrap();
    let room = demo["consultation"]["id"].as_str().unwrap().to_owned();
    let doctor_id = demo["consultation"]["doctor"]["id"].as_str().unwrap().to_owned();
    let token = |side: &str| demo[side]["token"].as_str().unwrap().to_owned();
    assert_eq!(demo["patient"]["url"], format!("/patient?room={room}#token={}", token("patient")));
    assert_eq!(demo["doctor"]["url"], format!("/doctor?queue={doctor_id}#token={}", token("doctor")));
    assert_eq!(demo["display"]["url"], format!("/display?queue={doctor_id}#token={}", token("display")));

    // The three sides work: the patient checks in, the display sees the
    // ticket, the doctor lets the patient in and they chat.
    let mut patient = Client::connect(&app, &token("patient")).await;
    assert_eq!(patient.request(json!({"type": "checkin", "room": &room})).await["ticket"], "A-001");
    let mut display = Client::connect(&app, &token("display")).await;
    let board = display.request(json!({"type": "watch", "queue": &doctor_id})).await;
    assert_eq!(board["entries"], json!([{"ticket": "A-001", "since": board["entries"][0]["since"]}]));
    let mut doctor = Client::connect(&app, &token("doctor")).await;
    doctor.join(&room, None).await;
    doctor.send(json!({"type": "admit", "room": &room})).await;
    assert_eq!(patient.recv_type("admitted").await["room"], room.as_str());
    patient.join(&room, None).await;
    patient.chat(&room, "1", "hello from the demo").await;
    assert_eq!(doctor.recv_type("message").await["from"]["name"], "Sari");
    // The creation is on the audit trail: queued before the chat, so in
    // storage once the chat is acknowledged. (Demo mode's API key is made
    // up, so the trail is read from the database itself.)
    use sqlx::Connection;
    let trail = "SELECT user_id, detail FROM audit_log WHERE room = $1 AND action = 'demo.create'";
    let (user, detail): (String, String) = if app.db_url.starts_with("postgres") {
        let mut db = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
        sqlx::query_as(trail).bind(&room).fetch_one(&mut db).await.unwrap()
    } else {
        let mut db = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
        sqlx::query_as(trail).bind(&room).fetch_one(&mut db).await.unwrap()
    };
    assert_eq!(user, "demo");
    assert_eq!(serde_json::from_str::<Value>(&detail).unwrap(), json!({"doctor": doctor_id}));

    // Another patient of the same doctor waits in the same line.
    let response = app
        .http
        .post(app.url("/v1/demo/consultation"))
        .json(&json!({"patient_name": "Dewi", "doctor_id": doctor_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["consultation"]["queue"], doctor_id.as_str());
    let response =
        app.http.post(app.url("/v1/demo/consultation")).json(&json!({"doctor_id": "d-real"})).send().await.unwrap();
    assert_eq!(response.status(), 400, "only demo doctors can be reused");
    // The API key is random in demo mode: a guess is refused.
    assert_eq!(app.get("/v1/consultations/x").await.0, 401);
}

#[tokio::test]
async fn demo_mode_refuses_bad_bodies_and_takes_none() {
    let app = spawn_app_with(|s| {
        s.jwt_secret = None;
        s.api_key = None;
    })
    .await;
    let url = app.url("/v1/demo/consultation");
    let response = app.http.post(&url).send().await.unwrap();
    assert_eq!(response.status(), 201, "no body: the defaults");
    let demo: Value = response.json().await.unwrap();
    assert_eq!(demo["consultation"]["patient"]["name"], "Budi");
    let refused = [
        (Some("application/json"), "{\"patient_nam\":\"Sari\"}", "an unknown field"),
        (Some("application/json"), "{\"patient_name\":", "malformed JSON"),
        (Some("application/json"), "{\"doctor_id\":7}", "a number for a string"),
        (None, "{\"patient_name\":\"Sari\"}", "no content type"),
    ];
    for (content_type, body, what) in refused {
        let mut request = app.http.post(&url).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{what}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "bad_request", "{what}");
    }
}

#[tokio::test]
async fn demo_mode_never_starts_on_a_listener_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    // The settings say loopback; the listener handed to `run` is not.
    let settings = telehub::config::Settings { jwt_secret: None, api_key: None, ..test_settings(&dir) };
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let err = telehub::startup::run(settings, listener, std::future::pending()).await.unwrap_err().to_string();
    assert!(err.contains("is not a loopback address"), "{err}");
}

#[tokio::test]
async fn pages_and_the_sdk_are_served_with_a_content_security_policy() {
    let app = spawn_app_with(|s| {
        s.jitsi_domain = Some("meet.example.org".into());
        s.jitsi_app_id = Some("telehub".into());
        s.jitsi_app_secret = Some("secret".into());
    })
    .await;
    for (path, kind) in [
        ("/patient", "text/html"),
        ("/doctor", "text/html"),
        ("/display", "text/html"),
        ("/assets/style.css", "text/css"),
        ("/assets/patient.js", "text/javascript"),
        ("/sdk/telehub.js", "text/javascript"),
        ("/sdk/call.js", "text/javascript"),
        ("/sdk/telehub.d.ts", "text/plain"),
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind), "{path}: {:?}", headers["content-type"]);
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self' https://meet.example.org"), "{csp}");
        assert!(csp.contains("frame-src https://meet.example.org"), "{csp}");
    }
    for missing in ["/sdk/test", "/sdk/..%2FCargo.toml", "/assets/.hidden", "/sdk/nothing.js"] {
        assert_eq!(app.http.get(app.url(missing)).send().await.unwrap().status(), 404, "{missing}");
    }
    // Outside demo mode there is no launcher.
    assert_eq!(app.http.get(app.url("/")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn the_api_answers_429_over_the_rate_limit_per_caller() {
    let app = spawn_app_with(|s| {
        // One token per 10 s: the three requests below fall in one window
        // however slow the machine.
        s.http_rate_per_s = 0.1;
        s.http_rate_burst = 2.0;
    })
    .await;
    assert_eq!(app.get("/v1/consultations/none").await.0, 404);
    assert_eq!(app.get("/v1/consultations/none").await.0, 404);
    let response = app.http.get(app.url("/v1/consultations/none")).bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["retry_ms"].as_u64().unwrap() > 0);
    // Another caller has its own budget; health checks are never counted.
    let staff = token("s-1", "Sam", "staff", 60);
    let other = app.http.get(app.url("/v1/consultations/none")).bearer_auth(staff).send().await.unwrap();
    assert_eq!(other.status().as_u16(), 404);
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status().as_u16(), 200);
    // A made-up credential is no caller of its own: new strings share the
    // address's budget, so they cannot get round the limit.
    for (made_up, expected) in [("made-up-1", 401), ("made-up-2", 401), ("made-up-3", 429)] {
        let response = app.http.get(app.url("/v1/consultations/none")).bearer_auth(made_up).send().await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "{made_up}");
    }
}
