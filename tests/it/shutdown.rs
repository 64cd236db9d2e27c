//! Graceful shutdown: goaway, 1001, nothing acknowledged lost.

use crate::helpers::*;

#[tokio::test]
async fn shutdown_says_goaway_and_keeps_what_was_acked() {
    let app = spawn_app().await;
    app.consultation("c-bye").await;
    let mut patient = app.patient("c-bye").await;
    patient.join("c-bye", None).await;
    let ack = patient.chat("c-bye", "last", "last words").await;
    let dir_app = tokio::spawn(app.restart());
    let goaway = patient.recv_type("goaway").await;
    assert!(goaway["retry_ms"].as_u64().unwrap() > 0);
    assert_eq!(patient.closed().await, Some(1001));
    let app = dir_app.await.unwrap();
    let (_, page) = app.get("/v1/consultations/c-bye/messages").await;
    assert_eq!(page["messages"][0]["id"], ack["id"]);
}

#[tokio::test]
async fn without_a_secret_the_hub_refuses_to_serve_other_machines() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&dir);
    settings.jwt_secret = None;
    settings.bind = "0.0.0.0:0".into();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let result = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(telehub::startup::run(settings, listener, std::future::pending()))
    })
    .join()
    .unwrap();
    let err = result.expect_err("must refuse").to_string();
    assert!(err.contains("loopback"), "{err}");
}
