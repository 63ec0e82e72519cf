//! A real SMTP server for the tests that send mail: Python's aiosmtpd (Debian
//! `python3-aiosmtpd`, installed by .ci/run) on a loopback port chosen at run time. Every
//! message taken is kept as one JSON line (`{"from", "to", "data"}`); a recipient starting
//! with `reject` is refused with 550, one starting with `busy` with 451. Under `CI=true` a
//! missing aiosmtpd fails the test; otherwise the test says it is skipped.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const SERVER: &str = r#"
import json, sys, threading
from aiosmtpd.controller import Controller

port, out = int(sys.argv[1]), sys.argv[2]

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("busy"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        line = json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                           "data": envelope.content.decode("utf-8", "replace")})
        with open(out, "a") as f:
            f.write(line + "\n")
        return "250 Message accepted"

c = Controller(Handler(), hostname="127.0.0.1", port=port)
c.start()
print("READY", flush=True)
threading.Event().wait()
"#;

/// A Python that has aiosmtpd: `AIOSMTPD_PYTHON`, else `python3` on the PATH, else the
/// system's.
fn python_with_aiosmtpd() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("AIOSMTPD_PYTHON") {
        candidates.push(p.into());
    }
    candidates.push("python3".into());
    candidates.push("/usr/bin/python3".into());
    for p in &candidates {
        let ok = Command::new(p)
            .args(["-c", "import aiosmtpd.controller"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(p.clone());
        }
    }
    Err(format!("no Python with aiosmtpd (tried {candidates:?})"))
}

/// aiosmtpd on 127.0.0.1; killed on drop.
pub struct SmtpServer {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    /// Started in `dir` (its script and its mail there), or `None` when aiosmtpd is missing
    /// outside CI (`test` names the test that skips).
    pub fn start_or_skip(test: &str, dir: &Path) -> Option<Self> {
        let python = match python_with_aiosmtpd() {
            Ok(p) => p,
            Err(why) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                assert!(
                    !ci,
                    "{test}: {why}. CI=true: the SMTP test must run; install the Debian \
                     package python3-aiosmtpd (.ci/run does)"
                );
                let _ = writeln!(
                    std::io::stderr(),
                    "{test}: SKIPPED: {why} (install python3-aiosmtpd)"
                );
                return None;
            }
        };
        let port = {
            let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let script = dir.join("smtpd.py");
        std::fs::write(&script, SERVER).unwrap();
        let out = dir.join("mail.jsonl");
        let mut child = Command::new(python)
            .arg(&script)
            .arg(port.to_string())
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "READY", "aiosmtpd did not start");
        Some(Self { child, out, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message taken so far, oldest first.
    pub fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The messages to `address`, oldest first.
    pub fn to(&self, address: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| m["to"].as_array().unwrap().iter().any(|t| t == address))
            .collect()
    }

    /// The texts of the messages to `address` (headers and body), quoted-printable undone.
    pub fn texts_to(&self, address: &str) -> Vec<String> {
        self.to(address)
            .iter()
            .map(|m| qp_decoded(m["data"].as_str().unwrap()))
            .collect()
    }
}

/// `data` with quoted-printable soft breaks and `=XX` escapes undone.
pub fn qp_decoded(data: &str) -> String {
    let joined = data.replace("=\r\n", "").replace("=\n", "");
    let b = joined.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'=', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
