//! A `freeDiameterd` process for interoperability tests.
//!
//! ```text
//! FdConfig --render--> <tmp>/freeDiameter.conf (+ acl_wl.conf, rt_default.conf)
//!          --spawn---> freeDiameterd -c <tmp>/freeDiameter.conf   (stdout+stderr captured)
//!          <--ready--- "freeDiameterd daemon initialized." in the log
//! drop: SIGKILL if still running, wait, remove <tmp>; the log is printed when a test panicked
//! ```
//!
//! The configuration follows freeDiameter 1.2.1's `doc/freediameter.conf.sample`: plain TCP
//! (`No_SCTP`, `SecPort = 0` and no `TLS_old_method`, under which 1.2.1 runs without
//! `TLS_Cred`, logging "TLS is disabled"), IPv4 only, `ListenOn = "127.0.0.1"` (1.2.1 from
//! Debian still binds every address, so the port is chosen at run time), `dict_nasreq` then
//! `dict_dcca` loaded, `acl_wl` whitelisting the gateways that dial in (`ALLOW_IPSEC`: admitted
//! without TLS), and `rt_default` when
//! routing rules are given. Peers freeDiameter dials are `ConnectPeer` entries with `No_TLS`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where freeDiameter's loadable extensions (`*.fdx`) may be installed.
const EXTENSION_DIRS: [&str; 4] = [
    "/usr/lib/freeDiameter",
    "/usr/lib/x86_64-linux-gnu/freeDiameter",
    "/usr/lib/aarch64-linux-gnu/freeDiameter",
    "/usr/local/lib/freeDiameter",
];

/// The extensions every configuration loads.
const EXTENSIONS: [&str; 5] = [
    "dict_nasreq",
    "dict_dcca",
    "acl_wl",
    "rt_default",
    "dbg_msg_dumps",
];

/// A located freeDiameter installation.
#[derive(Clone, Debug)]
pub struct Install {
    pub binary: PathBuf,
    pub extensions: PathBuf,
    /// `freeDiameterd --version`, first line.
    pub version: String,
}

impl Install {
    /// Finds `freeDiameterd` on the PATH and its extensions. When they are missing: with
    /// `CI=true` the test fails with a clear message; otherwise it prints that it is skipped
    /// and the caller returns.
    pub fn find_or_skip(test: &str) -> Option<Self> {
        match Self::find() {
            Ok(i) => Some(i),
            Err(why) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                assert!(
                    !ci,
                    "{test}: {why}. CI=true: the interoperability tests must run; install the \
                     Debian packages freediameterd and freediameter-extensions (.ci/run does)"
                );
                // Straight to the process's stderr, past the test harness's output capture,
                // so that a skip is seen in a normal `cargo test` run.
                let _ = writeln!(
                    std::io::stderr(),
                    "{test}: SKIPPED: {why} (install freediameterd freediameter-extensions)"
                );
                None
            }
        }
    }

    fn find() -> Result<Self, String> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let binary = std::env::split_paths(&path)
            .map(|d| d.join("freeDiameterd"))
            .find(|p| p.is_file())
            .ok_or("freeDiameterd is not on the PATH")?;
        let extensions = std::env::var_os("FD_EXTENSIONS_DIR")
            .map(PathBuf::from)
            .into_iter()
            .chain(EXTENSION_DIRS.iter().map(PathBuf::from))
            .find(|d| {
                EXTENSIONS
                    .iter()
                    .all(|e| d.join(format!("{e}.fdx")).is_file())
            })
            .ok_or_else(|| {
                format!(
                    "freeDiameter extensions {EXTENSIONS:?} not found in {EXTENSION_DIRS:?} \
                     (or FD_EXTENSIONS_DIR)"
                )
            })?;
        let out = Command::new(&binary)
            .arg("--version")
            .output()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        Ok(Self {
            binary,
            extensions,
            version,
        })
    }
}

/// A peer freeDiameter dials itself (`ConnectPeer`).
#[derive(Clone, Debug)]
pub struct FdPeer {
    pub identity: String,
    /// Refuse the peer unless its CER/CEA says this realm.
    pub realm: Option<String>,
    pub port: u16,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct FdConfig {
    pub identity: String,
    pub realm: String,
    /// Tw (freeDiameter refuses values under 6; it adds 0 to 4 s of jitter around Tw - 2).
    pub tw_timer: u32,
    /// Tc: delay before redialling a `ConnectPeer`.
    pub tc_timer: u32,
    /// Origin-Hosts allowed to dial in without TLS (acl_wl `ALLOW_IPSEC`: FQDNs of two labels
    /// or more, `*.` allowed as the first label).
    pub whitelist: Vec<String>,
    pub connect_peers: Vec<FdPeer>,
    /// rt_default rules, one per line (`dr="realm" : "peer" += 100 ;`).
    pub routes: Vec<String>,
}

impl FdConfig {
    fn render(&self, dir: &Path, ext: &Path, port: u16) -> String {
        let ext = |name: &str| ext.join(format!("{name}.fdx")).display().to_string();
        let mut c = String::new();
        c.push_str(&format!(
            "# Generated by tests/support/freediameter.rs\n\
             Identity = \"{}\";\n\
             Realm = \"{}\";\n\
             Port = {port};\n\
             SecPort = 0;\n\
             No_SCTP;\n\
             No_IPv6;\n\
             Prefer_TCP;\n\
             ListenOn = \"127.0.0.1\";\n\
             TwTimer = {};\n\
             TcTimer = {};\n",
            self.identity, self.realm, self.tw_timer, self.tc_timer
        ));
        c.push_str(&format!("LoadExtension = \"{}\";\n", ext("dict_nasreq")));
        c.push_str(&format!("LoadExtension = \"{}\";\n", ext("dict_dcca")));
        // Connection, routing, message and error events, one compact line each.
        c.push_str(&format!(
            "LoadExtension = \"{}\" : \"0x2222\";\n",
            ext("dbg_msg_dumps")
        ));
        if !self.whitelist.is_empty() {
            let acl = dir.join("acl_wl.conf");
            // Without a flag acl_wl only admits TLS-protected peers; ALLOW_IPSEC admits a peer
            // whose connection is "implicitly protected" (Inband-Security-Id NO_INBAND_SECURITY),
            // which is how a plain TCP peer is let in.
            let lines: Vec<String> = self
                .whitelist
                .iter()
                .map(|h| format!("ALLOW_IPSEC {h}"))
                .collect();
            let _ = std::fs::write(&acl, lines.join("\n") + "\n");
            c.push_str(&format!(
                "LoadExtension = \"{}\" : \"{}\";\n",
                ext("acl_wl"),
                acl.display()
            ));
        }
        if !self.routes.is_empty() {
            let rt = dir.join("rt_default.conf");
            let _ = std::fs::write(&rt, self.routes.join("\n") + "\n");
            c.push_str(&format!(
                "LoadExtension = \"{}\" : \"{}\";\n",
                ext("rt_default"),
                rt.display()
            ));
        }
        for p in &self.connect_peers {
            let realm = p
                .realm
                .as_ref()
                .map(|r| format!(" Realm = \"{r}\";"))
                .unwrap_or_default();
            c.push_str(&format!(
                "ConnectPeer = \"{}\" {{ ConnectTo = \"127.0.0.1\"; Port = {}; No_TLS; No_SCTP; \
                 Prefer_TCP;{realm} }};\n",
                p.identity, p.port
            ));
        }
        c
    }
}

/// A running `freeDiameterd`.
pub struct FreeDiameterd {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
    pub config: String,
    log: Arc<Mutex<String>>,
}

/// A free TCP port on 127.0.0.1 at this moment.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

fn scratch_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fd-interop-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

fn capture(stream: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
            l.push_str(&line);
            l.push('\n');
        }
    });
}

impl FreeDiameterd {
    /// Generates the configuration, starts the daemon on a free loopback port and waits until
    /// it says it is initialized. A port taken between choosing and binding is retried.
    pub async fn start(install: &Install, cfg: &FdConfig) -> Self {
        Self::start_with(install, cfg, |_| ()).await.0
    }

    /// As `start`, calling `before(port)` with the port the daemon is about to listen on,
    /// just before each attempt spawns it (a capture of that port, say). What `before`
    /// returned for an attempt that failed is dropped with it.
    pub async fn start_with<T>(
        install: &Install,
        cfg: &FdConfig,
        mut before: impl FnMut(u16) -> T,
    ) -> (Self, T) {
        let mut last = String::new();
        for _ in 0..3 {
            let dir = scratch_dir();
            let port = free_port();
            let config = cfg.render(&dir, &install.extensions, port);
            let conf = dir.join("freeDiameter.conf");
            std::fs::write(&conf, &config).expect("write freeDiameter.conf");
            let log = Arc::new(Mutex::new(String::new()));
            let extra = before(port);
            let mut child = Command::new(&install.binary)
                .arg("-c")
                .arg(&conf)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn freeDiameterd");
            if let Some(out) = child.stdout.take() {
                capture(out, log.clone());
            }
            if let Some(err) = child.stderr.take() {
                capture(err, log.clone());
            }
            let mut fd = Self {
                child: Some(child),
                dir,
                port,
                config,
                log,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if fd.log().contains("freeDiameterd daemon initialized.") {
                    return (fd, extra);
                }
                let exited = fd.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                if exited.is_some() || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Give the reader threads a moment to collect the last lines.
            tokio::time::sleep(Duration::from_millis(100)).await;
            last = fd.log();
            fd.kill();
            if !last.contains("Address already in use") {
                break;
            }
        }
        panic!("freeDiameterd did not start; its log:\n{last}");
    }

    /// Everything the daemon printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Log lines containing every one of `needles`.
    pub fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect()
    }

    /// Graceful stop: SIGTERM (freeDiameter then sends DPR to its open peers), waiting up to
    /// `within` for the exit, then SIGKILL.
    pub async fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        None
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for FreeDiameterd {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- freeDiameterd configuration ----\n{}\n---- freeDiameterd log ----\n{}",
                self.config,
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
