//! The cluster's nginx configuration (docs/cluster/nginx.conf) in a real
//! nginx: HTTP and WebSocket upgrades reach the hub through it, and a node
//! that does not answer is skipped.

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::json;

use crate::helpers::*;

/// A running nginx with the repository's configuration, stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The site's access log, once it has a line for `path`.
    async fn access_log_with(&self, path: &str) -> String {
        let started = Instant::now();
        loop {
            let log = std::fs::read_to_string(self.dir.path().join("telehub-access.log")).unwrap_or_default();
            if log.contains(path) {
                return log;
            }
            assert!(started.elapsed() < PATIENCE, "no access log line for {path}: {log}");
            tokio::task::yield_now().await;
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts nginx in front of `nodes`, with the repository's site file.
async fn nginx(nodes: &[String]) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    let port = free_port();
    let site = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cluster/nginx.conf")).unwrap();
    assert!(site.contains("    listen 80;"), "the site file listens on port 80");
    let site = site.replace("    listen 80;", &format!("    listen 127.0.0.1:{port};"));
    assert!(site.contains("/var/log/nginx/telehub-access.log"), "the site file names its access log");
    let site = site.replace("/var/log/nginx/telehub-access.log", &format!("{path}/telehub-access.log"));
    std::fs::write(dir.path().join("nginx.conf"), site).unwrap();
    let upstreams: String = nodes.iter().map(|n| format!("server {n} max_fails=1 fail_timeout=30s;\n")).collect();
    std::fs::write(dir.path().join("telehub-nodes.conf"), upstreams).unwrap();
    // One process running as the test's user, every file in the temp folder.
    let main = format!(
        "daemon off; master_process off; worker_processes 1; pid {path}/nginx.pid; error_log {path}/error.log info;
         events {{ worker_connections 256; }}
         http {{
             access_log {path}/access.log;
             client_body_temp_path {path}/body; proxy_temp_path {path}/proxy; fastcgi_temp_path {path}/fastcgi;
             uwsgi_temp_path {path}/uwsgi; scgi_temp_path {path}/scgi;
             include {path}/nginx.conf;
         }}"
    );
    std::fs::write(dir.path().join("main.conf"), main).unwrap();
    // Debian puts it in /usr/sbin, which is not on every user's PATH.
    let binary = if std::path::Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" };
    let child = Command::new(binary)
        .args(["-p", &path, "-c", &format!("{path}/main.conf")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start nginx ({err}): run scripts/test, which installs it"));
    let mut proxy = Nginx { child, port, dir };
    // Ready once it accepts connections; an nginx that exits says why.
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return proxy;
        }
        if let Some(status) = proxy.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(format!("{path}/error.log")).unwrap_or_default();
            panic!("nginx exited with {status}: {log}");
        }
        assert!(started.elapsed() < PATIENCE, "nginx did not listen");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn http_and_websockets_pass_through_nginx_and_a_dead_node_is_skipped() {
    let app = spawn_app().await;
    // A port nobody listens on: a node that is down.
    let dead = format!("127.0.0.1:{}", free_port());
    let proxy = nginx(&[dead, app.addr.to_string()]).await;
    let base = format!("http://127.0.0.1:{}", proxy.port);

    // The clinic backend's API through the proxy.
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/v1/consultations"))
        .bearer_auth(API_KEY)
        .json(&json!({"id": "c-nginx", "clinic": "k1", "patient": {"id": "p-c-nginx", "name": "Budi"}, "doctor": {"id": "d-c-nginx", "name": "Ana"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    for _ in 0..4 {
        assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status().as_u16(), 200);
    }
    // Every request succeeded, and nginx did meet the dead node on the way.
    assert!(proxy.error_log().contains("Connection refused"), "the dead node was tried: {}", proxy.error_log());

    // WebSockets upgrade through it, both sides, and chat flows.
    let ws = |token: String| format!("ws://127.0.0.1:{}/v1/ws?token={token}", proxy.port);
    let mut doctor = Client::connect_to(&ws(token("d-c-nginx", "Ana", "doctor", 3600))).await;
    doctor.join("c-nginx", None).await;
    let mut patient = Client::connect_to(&ws(token("p-c-nginx", "Budi", "patient", 3600))).await;
    patient.join("c-nginx", None).await;
    let ack = patient.chat("c-nginx", "1", "through the proxy").await;
    assert_eq!(ack["seq"], 1);
    let seen = doctor.recv_type("message").await;
    assert_eq!(seen["text"], "through the proxy");

    // A refused upgrade keeps its status and JSON body through the proxy.
    let (status, body) = refused_upgrade(&ws("not-a-token".into())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    // The access log has the path but never the token in its query.
    let log = proxy.access_log_with("/v1/ws").await;
    assert!(log.contains("\"GET /v1/ws HTTP/1.1\" 401"), "{log}");
    assert!(!log.contains("token="), "{log}");
}
