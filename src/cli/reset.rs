//! `gateway reset`: start the demo from a clean state. Removes what `gateway serve` keeps
//! between runs with the configuration given: the SQLite store (`<store.data_dir>/
//! gateway.sqlite3` and its `-wal` / `-shm` files) and, when the bundled simulator is enabled,
//! its journal (`journal_path` of `ocs_sim.config`), from which its books are rebuilt. Refuses
//! while the gateway (its REST address or the simulator's Diameter address) still answers, and
//! refuses a PostgreSQL store (a database is the operator's to drop).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::config::GatewayConfig;
use crate::ocs::OcsSimConfig;

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Configuration file (the one `gateway serve` runs with).
    #[arg(long, short = 'c', default_value = "conf/gateway.toml")]
    pub config: PathBuf,
}

/// Whether something accepts connections at `addr` (a running gateway or simulator).
fn listening(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .ok()
        .filter(|a| a.port() != 0)
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

fn remove(path: &Path, removed: &mut Vec<String>) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            removed.push(path.display().to_string());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

pub fn run(args: &ResetArgs) -> Result<String, String> {
    let cfg =
        GatewayConfig::load(&args.config).map_err(|e| format!("configuration refused: {e}"))?;
    let sim = if cfg.ocs_sim.enabled {
        Some(
            OcsSimConfig::load(&cfg.ocs_sim.config)
                .map_err(|e| format!("configuration refused: ocs_sim.config: {e}"))?,
        )
    } else {
        None
    };
    for addr in std::iter::once(&cfg.http.listen).chain(sim.as_ref().map(|s| &s.listen)) {
        if listening(addr) {
            return Err(format!(
                "something answers at {addr}: stop the gateway first (Ctrl-C), then reset"
            ));
        }
    }
    let mut removed = Vec::new();
    match cfg.store.backend.as_str() {
        "sqlite" => {
            let db = cfg.store.data_dir.join("gateway.sqlite3");
            for suffix in ["", "-wal", "-shm"] {
                let mut p = db.clone().into_os_string();
                p.push(suffix);
                remove(Path::new(&p), &mut removed)?;
            }
        }
        "postgres" => {
            return Err(
                "store.backend is postgres: reset drops no database; drop and re-create it \
                 yourself (the gateway creates its tables on its next start)"
                    .into(),
            );
        }
        _ => {}
    }
    if let Some(path) = sim.as_ref().and_then(|s| s.journal_path.as_ref()) {
        remove(path, &mut removed)?;
    }
    Ok(if removed.is_empty() {
        "nothing to remove: the next start is a clean one\n".into()
    } else {
        let mut out = String::from("removed (the next start is a clean one):\n");
        for r in removed {
            out.push_str(&format!("  {r}\n"));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> PathBuf {
        let sim = dir.join("ocs-sim.toml");
        std::fs::write(
            &sim,
            format!(
                "listen = \"127.0.0.1:0\"\njournal_path = \"{}\"\n",
                dir.join("journal.jsonl").display()
            ),
        )
        .unwrap();
        let gw = dir.join("gateway.toml");
        std::fs::write(
            &gw,
            format!(
                "[diameter]\norigin_host = \"gw.charging.local\"\norigin_realm = \"charging.local\"\n\
                 [[diameter.peers]]\nhost = \"ocs.charging.local\"\nrealm = \"charging.local\"\n\
                 address = \"127.0.0.1:1\"\n\
                 [http]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n\
                 [ocs_sim]\nenabled = true\nconfig = \"{}\"\n",
                dir.join("data").display(),
                sim.display()
            ),
        )
        .unwrap();
        gw
    }

    #[test]
    fn reset_removes_the_store_and_the_journal_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("gw-reset-{}", fastrand::u32(..)));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let gw = config(&dir);
        for f in [
            "data/gateway.sqlite3",
            "data/gateway.sqlite3-wal",
            "journal.jsonl",
        ] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        std::fs::write(dir.join("data/keep.txt"), b"x").unwrap();
        let out = run(&ResetArgs { config: gw.clone() }).unwrap();
        assert!(out.contains("gateway.sqlite3-wal"), "{out}");
        assert!(!dir.join("data/gateway.sqlite3").exists());
        assert!(!dir.join("journal.jsonl").exists());
        assert!(dir.join("data/keep.txt").exists(), "only its own files");
        let again = run(&ResetArgs { config: gw }).unwrap();
        assert!(again.starts_with("nothing to remove"), "{again}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reset_refuses_while_something_answers_at_the_rest_address() {
        let dir = std::env::temp_dir().join(format!("gw-reset-{}", fastrand::u32(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let gw = config(&dir);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let text = std::fs::read_to_string(&gw).unwrap().replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{}\"", l.local_addr().unwrap()),
        );
        std::fs::write(&gw, text).unwrap();
        std::fs::write(dir.join("journal.jsonl"), b"x").unwrap();
        let e = run(&ResetArgs { config: gw }).unwrap_err();
        assert!(e.contains("stop the gateway first"), "{e}");
        assert!(dir.join("journal.jsonl").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
