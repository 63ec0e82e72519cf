//! The gateway as a separate process for end-to-end tests: `gateway serve` started on a
//! configuration the test writes, its REST address read from its log, readiness awaited, HTTP
//! requests over real TCP, SIGTERM or a hard kill. Only loopback; ports chosen at run time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// A scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "gw-e2e-{name}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The bundled dictionaries of this checkout.
pub fn dictionaries() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dictionaries")
}

/// `Authorization: Basic ...`.
pub fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// An HTTP answer: status, headers, and the body as JSON (a JSON string holding the text
/// when it is not JSON; `null` when empty).
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The gateway process; killed on drop (a hard crash: nothing flushed beyond what was
/// acknowledged).
pub struct GatewayProcess {
    child: Child,
    /// `127.0.0.1:<port>` of its REST API.
    pub host: String,
    /// Every line it has logged so far (stderr, text format).
    log: Arc<Mutex<Vec<String>>>,
    /// The thread reading its stderr; it ends when the process does.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GatewayProcess {
    /// Writes `config` to `dir/gateway.toml`, starts `gateway serve` on it and waits until its
    /// REST API listens and `/health/ready` says an OCS peer is open.
    pub async fn start(dir: &Path, config: &str) -> Self {
        let path = dir.join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.args(["serve", "--config"]).arg(&path);
        Self::spawn(cmd).await
    }

    /// `gateway serve` as a newcomer runs it: with no arguments (so `conf/gateway.toml`),
    /// in `cwd`, with `env` (configuration overrides) set.
    pub async fn start_in(cwd: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.current_dir(cwd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd).await
    }

    async fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gateway binary starts");
        // The REST address is in the "REST API listening" log line.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent
                    && line.contains("REST API listening")
                    && let Some(a) = line.split("address=").nth(1)
                {
                    let _ = tx.send(a.split_whitespace().next().unwrap_or("").to_string());
                    sent = true;
                }
                lines.lock().unwrap().push(line);
            }
        });
        let host = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway logs its REST address");
        let gw = Self {
            child,
            host,
            log,
            reader: Some(reader),
        };
        for _ in 0..200 {
            if let Ok(a) = gw.request("GET", "/health/ready", None, &[], None).await
                && a.status == 200
            {
                return gw;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway never became ready");
    }

    /// One request on a new connection; `Content-Type: application/json` unless `headers`
    /// give another.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Answer, String> {
        let stream = tokio::net::TcpStream::connect(&self.host)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Sends SIGTERM (the graceful stop) without waiting.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// The lines logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, then (up to 20 s) its exit status and every line it logged, to the last.
    pub fn terminate_and_log(mut self) -> (Option<ExitStatus>, Vec<String>) {
        self.terminate();
        let reader = self.reader.take();
        let log = Arc::clone(&self.log);
        let status = self.wait_exit();
        if status.is_some()
            && let Some(r) = reader
        {
            // Its stderr is closed: the reader has seen every line.
            let _ = r.join();
        }
        let lines = log.lock().unwrap().clone();
        (status, lines)
    }

    /// Waits (up to 20 s) for the process to end; its exit status.
    pub fn wait_exit(mut self) -> Option<ExitStatus> {
        for _ in 0..400 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL (a hard crash: nothing flushed beyond what was acknowledged), then waits for
    /// the process to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (a hard kill after 10 s).
    pub fn stop(mut self) {
        self.terminate();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}
