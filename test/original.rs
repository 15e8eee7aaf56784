//! The original Node service (`service-sessions-node`, installed from npm by `test/run.sh`) run as
//! a child process, so compatibility tests check real bytes: the same store, config and clients.

use serde_json::Value;
use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUN_TEST_SH: &str = "run the suite with `bash test/run.sh`, which installs the original service from npm";

/// The installed `service-sessions-node` package (bin/main.js, config/config.yml).
pub(crate) fn service_dir() -> PathBuf {
    let dir = crate::requires::value("SESSIONS_NODE_DIR");
    PathBuf::from(dir)
}

/// The original's own `config/config.yml`.
pub(crate) fn config_path() -> PathBuf {
    service_dir().join("config").join("config.yml")
}

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running original service with commandable HTTP on a loopback port; killed on drop.
pub(crate) struct NodeService {
    child: Child,
    /// Its HTTP port.
    pub port: u16,
    client: reqwest::Client,
}

impl NodeService {
    /// Starts the original with its own `config/config.yml`, `HTTP_ENABLED` on a free port and
    /// the given environment (`MONGO_ENABLED`, `MONGO_SERVICE_URI`, `FILE_ENABLED`, ...), and
    /// waits until it answers.
    pub(crate) async fn start(env: &[(&str, &str)]) -> Self {
        Self::start_inner(env, None).await
    }

    /// As [`NodeService::start`], with `GRPC_ENABLED` on a free port too (its gRPC endpoint
    /// serves `sessions_v1.proto` and Pip's commandable gRPC); returns the gRPC port as well.
    pub(crate) async fn start_with_grpc(env: &[(&str, &str)]) -> (Self, u16) {
        let grpc_port = free_port();
        let me = Self::start_inner(env, Some(grpc_port)).await;
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", grpc_port)).await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "the original's gRPC port did not open");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (me, grpc_port)
    }

    async fn start_inner(env: &[(&str, &str)], grpc_port: Option<u16>) -> Self {
        let port = free_port();
        let dir = service_dir();
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("bin").join("main.js"))
            .arg("-c")
            .arg(config_path())
            .current_dir(&dir)
            .env("HTTP_ENABLED", "true")
            .env("HTTP_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(g) = grpc_port {
            cmd.env("GRPC_ENABLED", "true").env("GRPC_PORT", g.to_string());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start node ({e}): {RUN_TEST_SH}"));
        let mut me = Self { child, port, client: reqwest::Client::new() };
        let start = Instant::now();
        loop {
            if let Ok(r) = me.client.get(format!("http://127.0.0.1:{port}/heartbeat")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = me.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("the original service exited ({status}): {err}");
            }
            assert!(start.elapsed() < Duration::from_secs(60), "the original service did not answer within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        me
    }

    /// `POST /v1/sessions/<command>`: the status and the body as JSON (`Null` when empty).
    pub(crate) async fn command(&self, command: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("http://127.0.0.1:{}/v1/sessions/{command}", self.port))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        (status, value)
    }

    /// Stops the process (SIGKILL: the original does not close on SIGTERM).
    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
