//! A PostgreSQL server for tests, started from the binaries the Debian package `postgresql`
//! installs (or `PG_BIN`, or the PATH), shared by the tests of one test binary that run at the
//! same time. Only the standard library: the crate's unit tests include this file too
//! (`src/store/postgres.rs`).
//!
//! ```text
//! <tmp>/cgw-pg-<pid>-<n>/          owned by the server's user
//!   data/     initdb -U gateway -A scram-sha-256 -E UTF8 --locale=C --no-sync
//!   sock/     its Unix socket (no socket in /var/run/postgresql)
//!   log       the server's output
//! postgres -D data -c listen_addresses=127.0.0.1 -p <free port> -k sock
//!   <--ready-- pg_isready; each test then creates its own database (createdb)
//! last handle dropped: SIGINT (fast shutdown), wait, directory removed
//! ```
//!
//! [`Server::start_tls`] starts a server of its own with `ssl = on` and the certificate a
//! test made (`data/server.crt`, `data/server.key`); plain connections are still accepted
//! (tests read `pg_stat_ssl` to see which they got).
//!
//! initdb and postgres refuse to run as root: as root they run as the `postgres` system user
//! (the Debian package creates it), through `setpriv`, with the directory given to that user.
//! A cluster the package may have started on port 5432 is neither used nor disturbed.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The superuser the tests connect as, and its password.
pub const USER: &str = "gateway";
pub const PASSWORD: &str = "gateway-test-pw";

/// A located PostgreSQL installation: the directory of `initdb`, `postgres`, `pg_isready`
/// and `createdb`.
#[derive(Clone, Debug)]
pub struct Install {
    pub bin: PathBuf,
}

const TOOLS: [&str; 4] = ["initdb", "postgres", "pg_isready", "createdb"];

impl Install {
    /// `PG_BIN`, else the newest `/usr/lib/postgresql/<version>/bin`, else the PATH.
    pub fn find() -> Result<Self, String> {
        let complete = |d: &Path| TOOLS.iter().all(|t| d.join(t).is_file());
        if let Some(dir) = std::env::var_os("PG_BIN") {
            let dir = PathBuf::from(dir);
            return if complete(&dir) {
                Ok(Self { bin: dir })
            } else {
                Err(format!("PG_BIN={} lacks one of {TOOLS:?}", dir.display()))
            };
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .filter(|(_, d)| complete(d))
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Ok(Self { bin });
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .find(|d| complete(d))
            .map(|bin| Self { bin })
            .ok_or_else(|| {
                format!(
                    "PostgreSQL server binaries ({}) not found in /usr/lib/postgresql/*/bin, \
                     PG_BIN or the PATH",
                    TOOLS.join(", ")
                )
            })
    }

    /// Finds the installation. When it is missing: with `CI=true` the test fails with a clear
    /// message; otherwise it prints that it is skipped and the caller returns.
    pub fn find_or_skip(test: &str) -> Option<Self> {
        match Self::find() {
            Ok(i) => Some(i),
            Err(why) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                assert!(
                    !ci,
                    "{test}: {why}. CI=true: the PostgreSQL tests must run; install the Debian \
                     package postgresql (.ci/run does)"
                );
                // Straight to the process's stderr, past the test harness's output capture.
                let _ = writeln!(
                    std::io::stderr(),
                    "{test}: SKIPPED: {why} (install the package postgresql)"
                );
                None
            }
        }
    }

    fn tool(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
}

/// A server certificate (the chain, leaf first) and its private key, in PEM.
pub struct TlsFiles {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A running server; stopped and its directory removed on drop.
pub struct Server {
    install: Install,
    dir: PathBuf,
    child: Child,
    port: u16,
    databases: AtomicU32,
}

/// The server the tests of this binary share while any of them holds it.
static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());

impl Server {
    /// The shared server, started if none runs; `None` when PostgreSQL is not installed
    /// (see [`Install::find_or_skip`]). Panics, naming the cause, when it cannot start.
    pub fn shared_or_skip(test: &str) -> Option<Arc<Self>> {
        let install = Install::find_or_skip(test)?;
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = shared.upgrade() {
            return Some(s);
        }
        let server =
            Arc::new(Self::start(install).unwrap_or_else(|e| panic!("{test}: PostgreSQL: {e}")));
        *shared = Arc::downgrade(&server);
        Some(server)
    }

    /// initdb into a fresh directory, then the server on a free loopback port.
    pub fn start(install: Install) -> Result<Self, String> {
        Self::start_with(install, None)
    }

    /// As [`Server::start`], with TLS on: `tls` is the server's certificate (chain) and its
    /// private key, in PEM.
    pub fn start_tls(install: Install, tls: &TlsFiles) -> Result<Self, String> {
        Self::start_with(install, Some(tls))
    }

    fn start_with(install: Install, tls: Option<&TlsFiles>) -> Result<Self, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cgw-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sock")).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("pw"), PASSWORD).map_err(|e| e.to_string())?;
        let cleanup = |e: String| {
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        let owner = server_user().map_err(cleanup)?;
        if let Some((uid, gid)) = owner {
            for p in [dir.clone(), dir.join("sock"), dir.join("pw")] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                    .map_err(|e| cleanup(format!("chown {}: {e}", p.display())))?;
            }
        }
        let out = as_server_user(owner, &install.tool("initdb"))
            .current_dir(&dir)
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", USER, "-A", "scram-sha-256", "--auth-local=trust"])
            .arg(format!("--pwfile={}", dir.join("pw").display()))
            .args(["-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .map_err(|e| cleanup(format!("initdb: {e}")))?;
        if !out.status.success() {
            return Err(cleanup(format!(
                "initdb failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        if let Some(tls) = tls {
            // The server refuses a key file that others may read.
            use std::os::unix::fs::PermissionsExt;
            for (name, pem, mode) in [
                ("server.crt", &tls.cert_pem, 0o644),
                ("server.key", &tls.key_pem, 0o600),
            ] {
                let p = dir.join("data").join(name);
                std::fs::write(&p, pem).map_err(|e| cleanup(format!("{}: {e}", p.display())))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| cleanup(format!("chmod {}: {e}", p.display())))?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                        .map_err(|e| cleanup(format!("chown {}: {e}", p.display())))?;
                }
            }
        }
        // A port chosen now may be taken before the server binds it: then another one.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port().map_err(cleanup)?;
            match Self::run(&install, &dir, owner, port, tls.is_some()) {
                Ok(child) => {
                    return Ok(Self {
                        install,
                        dir,
                        child,
                        port,
                        databases: AtomicU32::new(0),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(cleanup(last))
    }

    fn run(
        install: &Install,
        dir: &Path,
        owner: Option<(u32, u32)>,
        port: u16,
        tls: bool,
    ) -> Result<Child, String> {
        let log = std::fs::File::create(dir.join("log")).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = as_server_user(owner, &install.tool("postgres"))
            .current_dir(dir)
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
            .arg("-k")
            .arg(dir.join("sock"))
            .args(["-c", "shared_buffers=16MB", "-c", "max_connections=50"])
            .args(if tls {
                &[
                    "-c",
                    "ssl=on",
                    "-c",
                    "ssl_cert_file=server.crt",
                    "-c",
                    "ssl_key_file=server.key",
                ][..]
            } else {
                &[]
            })
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        let log = || std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("postgres exited ({status}):\n{}", log()));
            }
            let ready = Command::new(install.tool("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(child);
            }
            if Instant::now() > deadline {
                stop(&mut child);
                return Err(format!("postgres not ready after 30 s:\n{}", log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new empty database (named after `tag`, made unique), and its URL.
    pub fn database(&self, tag: &str) -> String {
        let clean: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!("{clean}_{}", self.databases.fetch_add(1, Ordering::Relaxed));
        let out = Command::new(self.install.tool("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .arg(&name)
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap_or_else(|e| panic!("createdb: {e}"));
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// The URL of database `name` (password included).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgresql://{USER}:{PASSWORD}@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fast shutdown (SIGINT: sessions ended, then a checkpoint); a hard kill after 10 s.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    for _ in 0..200 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `Some((uid, gid))` of the `postgres` user when this process is root (the server refuses
/// root), `None` otherwise (it runs as this user).
fn server_user() -> Result<Option<(u32, u32)>, String> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1);
    if me != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            match f.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .map(Some)
        .ok_or_else(|| {
            "running as root, and there is no `postgres` user to run the server as (the \
             package postgresql creates it)"
                .to_string()
        })
}

fn as_server_user(owner: Option<(u32, u32)>, program: &Path) -> Command {
    match owner {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .args(["--clear-groups", "--"])
                .arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}
