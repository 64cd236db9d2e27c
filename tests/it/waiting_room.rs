//! The waiting room: check-in, positions, watchers, admit, grace period,
//! no-show, restart, and who may see what.

use serde_json::{Value, json};

use crate::helpers::*;

/// Creates consultation `room` in queue `q-ana` of clinic `clinic`, for
/// patient `p-<room>` and doctor `d-ana`.
pub(crate) async fn queued(app: &TestApp, room: &str, clinic: &str) {
    queued_in(app, room, clinic, "q-ana", ("d-ana", "Ana")).await;
}

/// Creates consultation `room` in `queue` of `clinic`, for patient
/// `p-<room>` ("Patient <room>") and `doctor` (id, name).
async fn queued_in(app: &TestApp, room: &str, clinic: &str, queue: &str, doctor: (&str, &str)) {
    let (status, body) = app
        .post(
            "/v1/consultations",
            json!({"id": room, "clinic": clinic, "queue": queue,
                   "patient": {"id": format!("p-{room}"), "name": format!("Patient {room}")},
                   "doctor": {"id": doctor.0, "name": doctor.1}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

pub(crate) async fn patient(app: &TestApp, room: &str) -> Client {
    Client::connect(app, &token(&format!("p-{room}"), &format!("Patient {room}"), "patient", 3600)).await
}

pub(crate) async fn doctor(app: &TestApp) -> Client {
    Client::connect(app, &token("d-ana", "Ana", "doctor", 3600)).await
}

/// A display or staff member of `clinic`.
pub(crate) async fn clinic_client(app: &TestApp, role: &str, clinic: &str) -> Client {
    let claims = json!({"sub": format!("{role}-{clinic}"), "name": "Lobby", "role": role, "clinic": clinic,
                        "exp": chrono::Utc::now().timestamp() + 3600});
    Client::connect(app, &token_with(claims, SECRET)).await
}

pub(crate) async fn check_in(client: &mut Client, room: &str) -> Value {
    let queue = client.request(json!({"type": "checkin", "room": room})).await;
    assert_eq!(queue["type"], "queue", "{queue}");
    queue
}

pub(crate) async fn watch(client: &mut Client, queue: &str) -> Value {
    let state = client.request(json!({"type": "watch", "queue": queue})).await;
    assert_eq!(state["type"], "queue_state", "{state}");
    state
}

pub(crate) fn tickets(state: &Value) -> Vec<&str> {
    state["entries"].as_array().unwrap().iter().map(|e| e["ticket"].as_str().unwrap()).collect()
}

/// Waits for a `queue_state` with `n` entries (earlier ones may be stale).
pub(crate) async fn state_with(client: &mut Client, n: usize) -> Value {
    loop {
        let state = client.recv_type("queue_state").await;
        if state["entries"].as_array().unwrap().len() == n {
            return state;
        }
    }
}

/// Waits for a `queue` frame that puts the patient at `position`.
pub(crate) async fn place(client: &mut Client, position: u64) -> Value {
    loop {
        let queue = client.recv_type("queue").await;
        if queue["position"] == position {
            return queue;
        }
    }
}

#[tokio::test]
async fn patients_wait_in_order_and_move_up_when_one_is_admitted() {
    let app = spawn_app().await;
    for room in ["c-w1", "c-w2", "c-w3"] {
        queued(&app, room, "k1").await;
    }
    let mut p1 = patient(&app, "c-w1").await;
    let mut p2 = patient(&app, "c-w2").await;
    let mut p3 = patient(&app, "c-w3").await;

    let first = check_in(&mut p1, "c-w1").await;
    assert_eq!(first["queue"], "q-ana");
    assert_eq!(first["room"], "c-w1");
    assert_eq!(
        (first["ticket"].as_str().unwrap(), &first["position"], &first["ahead"]),
        ("A-001", &json!(1), &json!(0))
    );
    assert_eq!(first["eta_s"], 0);
    let second = check_in(&mut p2, "c-w2").await;
    assert_eq!((second["ticket"].as_str().unwrap(), &second["position"]), ("A-002", &json!(2)));
    assert_eq!(second["eta_s"], 600, "one consultation ahead, at the default estimate");
    let third = check_in(&mut p3, "c-w3").await;
    assert_eq!(
        (third["ticket"].as_str().unwrap(), &third["ahead"], &third["eta_s"]),
        ("A-003", &json!(2), &json!(1200))
    );
    assert_eq!(app.consultation_status("c-w1").await, "waiting");

    // The doctor sees names; a display of the clinic sees tickets only.
    let mut doctor = doctor(&app).await;
    let seen = watch(&mut doctor, "q-ana").await;
    assert_eq!(tickets(&seen), ["A-001", "A-002", "A-003"]);
    let entry = &seen["entries"][0];
    assert_eq!(entry["room"], "c-w1");
    assert_eq!(entry["patient"], json!({"id": "p-c-w1", "name": "Patient c-w1"}));
    assert_eq!((&entry["online"], &entry["paid"]), (&json!(true), &json!(true)));
    let mut display = clinic_client(&app, "display", "k1").await;
    let board = watch(&mut display, "q-ana").await;
    assert_eq!(tickets(&board), ["A-001", "A-002", "A-003"]);
    for entry in board["entries"].as_array().unwrap() {
        let keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["since", "ticket"], "a display sees no name, id or room: {entry}");
    }

    // Admitting the first: the patient is told, displays call the ticket,
    // everyone else moves up.
    doctor.join("c-w1", None).await;
    // Without a `ref`: success is silent, so no frame is skipped waiting for it.
    doctor.send(json!({"type": "admit", "room": "c-w1"})).await;
    assert_eq!(p1.recv_type("admitted").await, json!({"type": "admitted", "room": "c-w1"}));
    let called = display.recv_type("called").await;
    assert_eq!((&called["queue"], &called["ticket"]), (&json!("q-ana"), &json!("A-001")));
    assert!(called["at"].is_string());
    let moved = place(&mut p2, 1).await;
    assert_eq!((&moved["ahead"], &moved["eta_s"], &moved["ticket"]), (&json!(0), &json!(0), &json!("A-002")));
    assert_eq!(place(&mut p3, 2).await["ahead"], 1);
    assert_eq!(tickets(&state_with(&mut doctor, 2).await), ["A-002", "A-003"]);
    assert_eq!(tickets(&state_with(&mut display, 2).await), ["A-002", "A-003"]);
    assert_eq!(app.consultation_status("c-w1").await, "active");

    // The clinic's backend sees the same queue over HTTP.
    let (status, body) = app.get("/v1/queues/q-ana?clinic=k1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"].as_array().unwrap().len(), 2);
    assert_eq!(body["entries"][0]["patient"]["name"], "Patient c-w2");

    // The admitted patient joins; checking in again is refused.
    p1.join("c-w1", None).await;
    let again = p1.request(json!({"type": "checkin", "room": "c-w1"})).await;
    assert_eq!(again["code"], "conflict", "{again}");
}

#[tokio::test]
async fn who_may_check_in_watch_and_admit() {
    let app = spawn_app().await;
    queued(&app, "c-r1", "k1").await;
    queued(&app, "c-r2", "k1").await;
    let mut p1 = patient(&app, "c-r1").await;
    check_in(&mut p1, "c-r1").await;

    let code = |v: Value| v["code"].as_str().unwrap_or(v["type"].as_str().unwrap()).to_owned();
    // A patient: not another's consultation, no admit, no watching.
    assert_eq!(code(p1.request(json!({"type": "checkin", "room": "c-r2"})).await), "forbidden");
    assert_eq!(code(p1.request(json!({"type": "checkin", "room": "c-none"})).await), "not_found");
    assert_eq!(code(p1.request(json!({"type": "admit", "room": "c-r1"})).await), "forbidden");
    assert_eq!(code(p1.request(json!({"type": "watch", "queue": "q-ana"})).await), "forbidden");
    // A doctor: watches the queues they serve, never checks in.
    let mut ana = doctor(&app).await;
    assert_eq!(code(ana.request(json!({"type": "checkin", "room": "c-r1"})).await), "forbidden");
    assert_eq!(code(ana.request(json!({"type": "watch", "queue": "d-ana"})).await), "queue_state", "own id");
    let mut other = Client::connect(&app, &token("d-other", "Bob", "doctor", 3600)).await;
    assert_eq!(code(other.request(json!({"type": "watch", "queue": "q-ana"})).await), "forbidden");
    // A display: watches, nothing else; never another clinic's patients.
    let mut display = clinic_client(&app, "display", "k1").await;
    assert_eq!(code(display.request(json!({"type": "checkin", "room": "c-r1"})).await), "forbidden");
    assert_eq!(code(display.request(json!({"type": "join", "room": "c-r1"})).await), "forbidden");
    assert_eq!(code(display.request(json!({"type": "admit", "room": "c-r1"})).await), "forbidden");
    // Queues are scoped by clinic: another clinic has no queue q-ana, and
    // a queue no consultation is in is unknown.
    let mut elsewhere = clinic_client(&app, "display", "k2").await;
    assert_eq!(code(elsewhere.request(json!({"type": "watch", "queue": "q-ana"})).await), "not_found");
    assert_eq!(code(display.request(json!({"type": "watch", "queue": "q-nobody"})).await), "not_found");
    assert_eq!(code(other.request(json!({"type": "watch", "queue": "q-nobody"})).await), "not_found");
    let nameless = token_with(
        json!({"sub": "lobby", "name": "Lobby", "role": "display", "exp": chrono::Utc::now().timestamp() + 60}),
        SECRET,
    );
    let mut nameless = Client::connect(&app, &nameless).await;
    assert_eq!(code(nameless.request(json!({"type": "watch", "queue": "q-ana"})).await), "forbidden");
    // Staff of the clinic see names and may admit.
    let mut staff = clinic_client(&app, "staff", "k1").await;
    let seen = watch(&mut staff, "q-ana").await;
    assert_eq!(seen["entries"][0]["patient"]["id"], "p-c-r1");
    assert_eq!(code(staff.request(json!({"type": "admit", "room": "c-r1"})).await), "ok");
    assert_eq!(p1.recv_type("admitted").await["room"], "c-r1");
    // Over HTTP a display token reads nothing.
    let display_token = token_with(
        json!({"sub": "lobby", "name": "Lobby", "role": "display", "clinic": "k1", "exp": chrono::Utc::now().timestamp() + 60}),
        SECRET,
    );
    let response = app.http.get(app.url("/v1/queues/q-ana")).bearer_auth(display_token).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    // With a k1 patient waiting, staff of another clinic find no such
    // queue while the backend sees them; a doctor who does not serve the
    // queue reads nothing.
    let mut p2 = patient(&app, "c-r2").await;
    check_in(&mut p2, "c-r2").await;
    assert_eq!(app.get("/v1/queues/q-ana?clinic=k1").await.1["entries"].as_array().unwrap().len(), 1);
    let elsewhere = token_with(
        json!({"sub": "s-2", "name": "Sam", "role": "staff", "clinic": "k2", "exp": chrono::Utc::now().timestamp() + 60}),
        SECRET,
    );
    let response = app.http.get(app.url("/v1/queues/q-ana")).bearer_auth(elsewhere).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(app.get("/v1/queues/q-nobody?clinic=k1").await.0, 404);
    let bob = token("d-other", "Bob", "doctor", 60);
    let response = app.http.get(app.url("/v1/queues/q-ana")).bearer_auth(bob).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

/// A person of `clinic` with `role`, by id `sub`.
fn of_clinic(sub: &str, role: &str, clinic: &str) -> String {
    token_with(
        json!({"sub": sub, "name": sub, "role": role, "clinic": clinic, "exp": chrono::Utc::now().timestamp() + 3600}),
        SECRET,
    )
}

#[tokio::test]
async fn one_queue_name_in_two_clinics_is_two_lines() {
    let app = spawn_app().await;
    for (room, clinic, doctor) in [("c-g1", "k1", "d-one"), ("c-g2", "k2", "d-two"), ("c-g3", "k2", "d-two")] {
        queued_in(&app, room, clinic, "general", (doctor, doctor)).await;
    }
    // Each clinic's line has its own tickets and places.
    let mut p1 = Client::connect(&app, &of_clinic("p-c-g1", "patient", "k1")).await;
    let mut p2 = Client::connect(&app, &of_clinic("p-c-g2", "patient", "k2")).await;
    let mut p3 = Client::connect(&app, &of_clinic("p-c-g3", "patient", "k2")).await;
    let first = check_in(&mut p1, "c-g1").await;
    assert_eq!((&first["ticket"], &first["position"], &first["ahead"]), (&json!("A-001"), &json!(1), &json!(0)));
    let other = check_in(&mut p2, "c-g2").await;
    assert_eq!((&other["ticket"], &other["position"], &other["ahead"]), (&json!("A-001"), &json!(1), &json!(0)));
    assert_eq!(check_in(&mut p3, "c-g3").await["ticket"], "A-002");

    // Each clinic's doctor, staff and displays see their own line only.
    let mut one = Client::connect(&app, &of_clinic("d-one", "doctor", "k1")).await;
    let seen = watch(&mut one, "general").await;
    let rooms: Vec<&Value> = seen["entries"].as_array().unwrap().iter().map(|e| &e["room"]).collect();
    assert_eq!(rooms, [&json!("c-g1")], "{seen}");
    let mut two = Client::connect(&app, &of_clinic("d-two", "doctor", "k2")).await;
    let seen = watch(&mut two, "general").await;
    let rooms: Vec<&Value> = seen["entries"].as_array().unwrap().iter().map(|e| &e["room"]).collect();
    assert_eq!(rooms, [&json!("c-g2"), &json!("c-g3")], "{seen}");
    let mut display = clinic_client(&app, "display", "k1").await;
    assert_eq!(tickets(&watch(&mut display, "general").await), ["A-001"]);
    // A doctor of one clinic does not serve the other's queue of that name.
    let mut stray = Client::connect(&app, &of_clinic("d-one", "doctor", "k2")).await;
    let refused = stray.request(json!({"type": "watch", "queue": "general"})).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");

    // Over HTTP the backend names the clinic; a token reads its own only.
    let rooms = |view: &Value| -> Vec<String> {
        view["entries"].as_array().unwrap().iter().map(|e| e["room"].as_str().unwrap().to_owned()).collect()
    };
    let (status, view) = app.get("/v1/queues/general?clinic=k2").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(rooms(&view), ["c-g2", "c-g3"]);
    assert_eq!(rooms(&app.get("/v1/queues/general?clinic=k1").await.1), ["c-g1"]);
    assert_eq!(app.get("/v1/queues/general").await.0, 404, "no consultation without a clinic is in general");
    let staff = of_clinic("s-one", "staff", "k1");
    let response = app.http.get(app.url("/v1/queues/general")).bearer_auth(&staff).send().await.unwrap();
    assert_eq!(rooms(&response.json::<Value>().await.unwrap()), ["c-g1"]);
    let response = app.http.get(app.url("/v1/queues/general?clinic=k2")).bearer_auth(&staff).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    // A `rooms` claim narrows staff to the listed consultations.
    let narrowed = token_with(
        json!({"sub": "s-two", "name": "S", "role": "staff", "clinic": "k2", "rooms": ["c-g3"],
               "exp": chrono::Utc::now().timestamp() + 3600}),
        SECRET,
    );
    let response = app.http.get(app.url("/v1/queues/general")).bearer_auth(&narrowed).send().await.unwrap();
    assert_eq!(rooms(&response.json::<Value>().await.unwrap()), ["c-g3"]);
    let mut narrowed = Client::connect(&app, &narrowed).await;
    let seen = watch(&mut narrowed, "general").await;
    let listed: Vec<&Value> = seen["entries"].as_array().unwrap().iter().map(|e| &e["room"]).collect();
    assert_eq!(listed, [&json!("c-g3")], "{seen}");

    // Admitting in one clinic moves up nobody of the other.
    assert_eq!(two.request(json!({"type": "admit", "room": "c-g2"})).await["type"], "ok");
    assert_eq!(place(&mut p3, 1).await["ticket"], "A-002");
    // The next change the k1 doctor hears of is k1's own.
    queued_in(&app, "c-g4", "k1", "general", ("d-one", "d-one")).await;
    let mut p4 = Client::connect(&app, &of_clinic("p-c-g4", "patient", "k1")).await;
    assert_eq!(check_in(&mut p4, "c-g4").await["ticket"], "A-002");
    let next = one.recv_type("queue_state").await;
    let rooms: Vec<&Value> = next["entries"].as_array().unwrap().iter().map(|e| &e["room"]).collect();
    assert_eq!(rooms, [&json!("c-g1"), &json!("c-g4")], "{next}");
}

#[tokio::test]
async fn a_patient_who_drops_keeps_their_place_and_ticket() {
    let app = spawn_app().await;
    queued(&app, "c-g1", "k1").await;
    queued(&app, "c-g2", "k1").await;
    let mut p1 = patient(&app, "c-g1").await;
    let ticket = check_in(&mut p1, "c-g1").await["ticket"].clone();
    let mut p2 = patient(&app, "c-g2").await;
    check_in(&mut p2, "c-g2").await;
    let mut doctor = doctor(&app).await;
    watch(&mut doctor, "q-ana").await;

    drop(p1);
    let state = doctor.recv_type("queue_state").await;
    assert_eq!(tickets(&state), ["A-001", "A-002"], "still in line during the grace period");
    assert_eq!(state["entries"][0]["online"], false);

    let mut back = patient(&app, "c-g1").await;
    let again = check_in(&mut back, "c-g1").await;
    assert_eq!((&again["ticket"], &again["position"]), (&ticket, &json!(1)), "same ticket, same place");
    let state = doctor.recv_type("queue_state").await;
    assert_eq!(state["entries"][0]["online"], true);
}

/// Two consultations of clinic k1 whose patients check in to `q-ana` in
/// order; the second's `queue` reply with them.
async fn two_in_line(app: &TestApp, first: &str, second: &str) -> (Client, Client, Value) {
    queued(app, first, "k1").await;
    queued(app, second, "k1").await;
    let mut p1 = patient(app, first).await;
    check_in(&mut p1, first).await;
    let mut p2 = patient(app, second).await;
    let place = check_in(&mut p2, second).await;
    (p1, p2, place)
}

#[tokio::test]
async fn an_ended_consultation_leaves_the_line_at_once() {
    let app = spawn_app().await;
    let (mut p1, mut p2, second) = two_in_line(&app, "c-e1", "c-e2").await;
    assert_eq!(second["position"], 2);
    let mut doctor = doctor(&app).await;
    watch(&mut doctor, "q-ana").await;

    // Ended while its patient still waits, online: out of the line, and
    // the patient behind moves up, without waiting for any grace period.
    // The waiting patient, who never joined the room, hears it ended.
    let (status, body) = app.post("/v1/consultations/c-e1/end", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(tickets(&state_with(&mut doctor, 1).await), ["A-002"]);
    assert_eq!(place(&mut p2, 1).await["ticket"], "A-002");
    let ended = p1.recv_type("ended").await;
    assert_eq!((&ended["room"], &ended["by"]["id"]), (&json!("c-e1"), &json!("system")), "{ended}");
    let (_, view) = app.get("/v1/queues/q-ana?clinic=k1").await;
    assert_eq!(tickets(&view), ["A-002"], "{view}");
    // The same through the doctor's `end` frame. A waiting patient who is
    // in the room too hears `ended` once: the queue tells only the
    // sessions the room did not.
    doctor.join("c-e2", None).await;
    p2.join("c-e2", None).await;
    doctor.send(json!({"type": "end", "room": "c-e2"})).await;
    state_with(&mut doctor, 0).await;
    // The queue pushed whatever it had for p2 before it told the doctor, so
    // all of it is ahead of this pong.
    p2.send(json!({"type": "ping", "ref": "after"})).await;
    let mut ended = 0;
    loop {
        let frame = p2.recv().await;
        match frame["type"].as_str().unwrap() {
            "ended" => ended += 1,
            "pong" => break,
            _ => {}
        }
    }
    assert_eq!(ended, 1);
}

#[tokio::test]
async fn a_patient_gone_past_the_grace_period_leaves_the_line() {
    let app = spawn_app_with(|s| s.queue_grace_s = 1).await;
    let (p1, mut p2, second) = two_in_line(&app, "c-l1", "c-l2").await;
    assert_eq!(second["position"], 2);
    let mut doctor = doctor(&app).await;
    watch(&mut doctor, "q-ana").await;

    drop(p1);
    assert_eq!(tickets(&state_with(&mut doctor, 1).await), ["A-002"]);
    assert_eq!(place(&mut p2, 1).await["ticket"], "A-002");

    // Coming back after that is a new check-in, at the back of the line.
    let mut back = patient(&app, "c-l1").await;
    let again = check_in(&mut back, "c-l1").await;
    assert_eq!((&again["ticket"], &again["position"]), (&json!("A-003"), &json!(2)));
}

#[tokio::test]
async fn an_admitted_patient_who_never_comes_is_a_no_show() {
    let app = spawn_app_with(|s| s.no_show_s = 1).await;
    queued(&app, "c-n1", "k1").await;
    let mut p1 = patient(&app, "c-n1").await;
    check_in(&mut p1, "c-n1").await;
    let mut doctor = doctor(&app).await;
    doctor.join("c-n1", None).await;
    assert_eq!(doctor.request(json!({"type": "admit", "room": "c-n1"})).await["type"], "ok");
    p1.recv_type("admitted").await;

    let ended = doctor.recv_type("ended").await;
    assert_eq!(ended["by"], json!({"id": "system", "name": "No-show"}));
    // The patient's page that never joined hears it too.
    assert_eq!(p1.recv_type("ended").await["by"], ended["by"]);
    let (_, consultation) = app.get("/v1/consultations/c-n1").await;
    assert_eq!(consultation["status"], "cancelled");
    assert_eq!(consultation["ended_by"], ended["by"]);
    let chat = doctor.request(json!({"type": "chat", "room": "c-n1", "client_id": "x", "text": "hello?"})).await;
    assert_eq!(chat["code"], "conflict");
}

#[tokio::test]
async fn the_queue_is_rebuilt_after_a_restart() {
    let app = spawn_app().await;
    queued(&app, "c-s1", "k1").await;
    queued(&app, "c-s2", "k1").await;
    let mut p1 = patient(&app, "c-s1").await;
    check_in(&mut p1, "c-s1").await;
    let mut p2 = patient(&app, "c-s2").await;
    check_in(&mut p2, "c-s2").await;
    drop((p1, p2));

    let app = app.restart().await;
    let mut doctor = doctor(&app).await;
    let state = watch(&mut doctor, "q-ana").await;
    assert_eq!(tickets(&state), ["A-001", "A-002"]);
    assert_eq!(state["entries"][1]["online"], false, "nobody has reconnected yet");
    let mut p2 = patient(&app, "c-s2").await;
    let again = check_in(&mut p2, "c-s2").await;
    assert_eq!((&again["ticket"], &again["position"]), (&json!("A-002"), &json!(2)));
    // Numbering goes on from the stored counter.
    queued(&app, "c-s3", "k1").await;
    let mut p3 = patient(&app, "c-s3").await;
    assert_eq!(check_in(&mut p3, "c-s3").await["ticket"], "A-003");
}

#[tokio::test]
async fn each_queue_of_a_clinic_gets_its_own_letter() {
    let app = spawn_app().await;
    queued(&app, "c-a1", "k1").await;
    queued_in(&app, "c-b1", "k1", "q-bob", ("d-bob", "Bob")).await;
    let mut first = patient(&app, "c-a1").await;
    assert_eq!(check_in(&mut first, "c-a1").await["ticket"], "A-001");
    let mut second = patient(&app, "c-b1").await;
    let other = check_in(&mut second, "c-b1").await;
    assert_eq!((&other["queue"], &other["ticket"]), (&json!("q-bob"), &json!("B-001")));
}

#[tokio::test]
async fn a_patient_already_in_the_room_when_admitted_is_never_a_no_show() {
    let app = spawn_app_with(|s| s.no_show_s = 1).await;
    queued(&app, "c-h1", "k1").await;
    queued(&app, "c-h2", "k1").await;
    let mut first = patient(&app, "c-h1").await;
    check_in(&mut first, "c-h1").await;
    let mut second = patient(&app, "c-h2").await;
    check_in(&mut second, "c-h2").await;
    // The first patient waits inside the consultation room itself.
    first.join("c-h1", None).await;
    let mut doctor = doctor(&app).await;
    doctor.join("c-h1", None).await;
    doctor.join("c-h2", None).await;
    doctor.send(json!({"type": "admit", "room": "c-h1"})).await;
    first.recv_type("admitted").await;
    drop(first);
    doctor.recv_type("presence").await;

    // The second is admitted later and never comes: its timeout, started
    // after any the first could have had, runs out.
    doctor.send(json!({"type": "admit", "room": "c-h2"})).await;
    let ended = doctor.recv_type("ended").await;
    assert_eq!(ended["room"], "c-h2", "only the absent patient is a no-show: {ended}");
    assert_eq!(app.consultation_status("c-h2").await, "cancelled");
    assert_eq!(app.consultation_status("c-h1").await, "active");
}

#[tokio::test]
async fn a_session_follows_at_most_sixteen_queues_and_coming_back_to_one_is_no_new_one() {
    let app = spawn_app().await;
    // One patient with a consultation in each of 17 queues.
    for n in 0..17 {
        let (status, body) = app
            .post(
                "/v1/consultations",
                json!({"id": format!("c-m{n}"), "clinic": "k1", "queue": format!("q-{n}"),
                       "patient": {"id": "p-many", "name": "Budi"}, "doctor": {"id": "d-ana", "name": "Ana"}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let mut patient = Client::connect(&app, &token("p-many", "Budi", "patient", 3600)).await;
    for n in 0..16 {
        check_in(&mut patient, &format!("c-m{n}")).await;
    }
    let over = patient.request(json!({"type": "checkin", "room": "c-m16"})).await;
    assert_eq!(over["code"], "conflict", "{over}");
    // Checking in again for a consultation it follows is fine.
    assert_eq!(check_in(&mut patient, "c-m3").await["room"], "c-m3");

    let mut staff = clinic_client(&app, "staff", "k1").await;
    for n in 0..16 {
        watch(&mut staff, &format!("q-{n}")).await;
    }
    let over = staff.request(json!({"type": "watch", "queue": "q-16"})).await;
    assert_eq!(over["code"], "conflict", "{over}");
    assert_eq!(watch(&mut staff, "q-0").await["queue"], "q-0", "watching one it follows again");
}
