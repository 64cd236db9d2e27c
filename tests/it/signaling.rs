//! WebRTC signaling relay: to the target only, with SDP checked.

use serde_json::json;

use crate::helpers::*;

const OFFER: &str = "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n";

#[tokio::test]
async fn signals_go_to_the_target_only() {
    let app = spawn_app().await;
    app.consultation("c-sig").await;
    let mut doctor = app.doctor("c-sig").await;
    doctor.join("c-sig", None).await;
    let mut patient = app.patient("c-sig").await;
    patient.join("c-sig", None).await;
    let mut bystander = app.patient("c-sig").await;
    bystander.join("c-sig", None).await;
    doctor.recv_type("presence").await;
    doctor.recv_type("presence").await;
    patient.recv_type("presence").await;

    let offer = json!({"description": {"type": "offer", "sdp": OFFER}});
    let ok = patient.request(json!({"type": "signal", "room": "c-sig", "to": doctor.session, "data": offer})).await;
    assert_eq!(ok["type"], "ok");
    let relayed = doctor.recv().await;
    assert_eq!(relayed["type"], "signal");
    assert_eq!(relayed["from"], patient.session.as_str());
    assert_eq!(relayed["user"]["id"], "p-c-sig");
    assert_eq!(relayed["data"], offer);

    let answer = json!({"description": {"type": "answer", "sdp": OFFER.replace("actpass", "active")}});
    doctor.send(json!({"type": "signal", "room": "c-sig", "to": patient.session, "data": answer})).await;
    assert_eq!(patient.recv().await["data"], answer);

    for i in 0..3 {
        let candidate = json!({"candidate": {"candidate": format!("candidate:{i} 1 udp 2122260223 127.0.0.1 5000{i} typ host"), "sdp_mid": "0", "sdp_mline_index": 0}});
        doctor.send(json!({"type": "signal", "room": "c-sig", "to": patient.session, "data": candidate})).await;
        assert_eq!(patient.recv().await["data"], candidate);
    }
    doctor.send(json!({"type": "signal", "room": "c-sig", "to": patient.session, "data": {"bye": true}})).await;
    assert_eq!(patient.recv().await["data"], json!({"bye": true}));
    bystander.assert_quiet().await;
}

#[tokio::test]
async fn bad_sdp_and_unknown_targets_are_refused() {
    let app = spawn_app().await;
    let (mut doctor, mut patient) = app.pair("c-sig2").await;

    let garbage = json!({"description": {"type": "offer", "sdp": "this is not sdp"}});
    let refused =
        patient.request(json!({"type": "signal", "room": "c-sig2", "to": doctor.session, "data": garbage})).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "bad_request");
    let two = json!({"bye": true, "candidate": {"candidate": ""}});
    let refused = patient.request(json!({"type": "signal", "room": "c-sig2", "to": doctor.session, "data": two})).await;
    assert_eq!(refused["code"], "bad_request");
    let refused =
        patient.request(json!({"type": "signal", "room": "c-sig2", "to": "s_nobody", "data": {"bye": true}})).await;
    assert_eq!(refused["code"], "not_found");
    let myself = patient.session.clone();
    let refused =
        patient.request(json!({"type": "signal", "room": "c-sig2", "to": myself, "data": {"bye": true}})).await;
    assert_eq!(
        (refused["code"].as_str(), refused["message"].as_str()),
        (Some("bad_request"), Some("a session does not signal itself"))
    );
    doctor.assert_quiet().await;
}
