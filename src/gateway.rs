//! The assembled gateway: dictionaries, the (optional) embedded OCS simulator, the Diameter
//! node, the credit-control client, the store and the charging service, started from one
//! [`GatewayConfig`] and stopped along one path. `gateway serve`, the load benchmark and the
//! end-to-end tests all start it through [`Gateway::start`].
//!
//! ```text
//! start:    dictionaries -> [OCS simulator] -> store -> node (peers dialled) -> client
//!           -> charging (open reservations restored, unresolved requests re-sent)
//! shutdown: (REST stopped by the caller) -> node: drain in-flight answers, DPR to peers
//!           -> store closed (SQLite: write-ahead log checkpointed and removed; a store
//!              the caller supplied is only flushed) -> [simulator stopped]
//! ```

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::charging::{Charging, ChargingSettings};
use crate::config::GatewayConfig;
use crate::credit_control::CreditControlClient;
use crate::diameter::dict::Dictionary;
use crate::diameter::node::Node;
use crate::diameter::router::NoApplications;
use crate::ocs::{OcsSim, OcsSimConfig, SimPeer};
use crate::store::Store;

/// A running gateway (without its REST server, which the caller runs on top).
pub struct Gateway {
    pub config: GatewayConfig,
    pub dict: Arc<Dictionary>,
    /// The embedded OCS simulator, when enabled.
    pub sim: Option<OcsSim>,
    pub node: Node,
    pub client: Arc<CreditControlClient>,
    pub store: Store,
    pub charging: Arc<Charging>,
    /// Whether the gateway opened `store` (then its shutdown closes it).
    owns_store: bool,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("sim", &self.sim.is_some())
            .field("node", &self.node)
            .finish()
    }
}

/// The dictionaries of `cfg`: its directory when present, else the bundled copy.
pub fn dictionaries(cfg: &GatewayConfig) -> Result<Dictionary, String> {
    let dir = &cfg.diameter.dictionaries;
    if dir.is_dir() {
        Dictionary::load_dir(dir).map_err(|e| format!("diameter.dictionaries: {e}"))
    } else {
        warn!(dir = %dir.display(), "dictionary directory not found: using the bundled dictionaries");
        Dictionary::builtin().map_err(|e| format!("bundled dictionaries: {e}"))
    }
}

/// What a caller may supply instead of the configuration's own (tests, benchmarks).
#[derive(Debug, Default)]
pub struct StartOptions {
    /// The simulator's configuration, instead of reading `ocs_sim.config`.
    pub sim: Option<OcsSimConfig>,
    /// An open store, instead of opening `store`.
    pub store: Option<Store>,
}

impl Gateway {
    /// Starts everything `cfg` describes. `sim` overrides the simulator's configuration file
    /// (tests); when the simulator runs, the peer with its Origin-Host is pointed at the
    /// address it actually listens on (so that `listen = "127.0.0.1:0"` works).
    pub async fn start(cfg: GatewayConfig, sim: Option<OcsSimConfig>) -> Result<Self, String> {
        Self::start_with(cfg, StartOptions { sim, store: None }).await
    }

    /// As [`Gateway::start`], with parts supplied by the caller.
    pub async fn start_with(cfg: GatewayConfig, opts: StartOptions) -> Result<Self, String> {
        let mut cfg = cfg;
        let sim = opts.sim;
        let dict = Arc::new(dictionaries(&cfg)?);
        let sim = start_embedded_sim(&mut cfg, &dict, sim).await?;
        let owns_store = opts.store.is_none();
        let store = match opts.store {
            Some(s) => s,
            None => open_store(&cfg)?,
        };
        let node = Node::start(
            cfg.node_config(),
            Arc::clone(&dict),
            Arc::new(NoApplications),
        )
        .await
        .map_err(|e| format!("diameter node: {e}"))?;
        let cc = cfg
            .credit_control
            .client_config(&dict, cfg.diameter.timers.request_timeout)
            .map_err(|e| e.to_string())?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client = CreditControlClient::new(node.router().clone(), cc, Some(tx));
        let charging = Charging::start(
            Arc::clone(&client),
            store.clone(),
            Some(rx),
            ChargingSettings {
                inflight_wait: cfg.diameter.timers.request_timeout + Duration::from_secs(5),
                reaper_interval: cfg.credit_control.reaper_interval,
                resolve_interval: cfg.credit_control.resolve_interval,
                instance_id: cfg.instance_id(),
                lease: cfg.cluster.lease,
                ..ChargingSettings::default()
            },
        )
        .await
        .map_err(|e| format!("charging: {e}"))?;
        info!(
            peers = cfg.diameter.peers.len(),
            store = store.backend_name(),
            simulator = sim.is_some(),
            "gateway started"
        );
        Ok(Self {
            config: cfg,
            dict,
            sim,
            node,
            client,
            store,
            charging,
            owns_store,
        })
    }

    /// Whether at least one OCS peer is open for traffic.
    pub fn ready(&self) -> bool {
        self.node.router().any_usable()
    }

    /// Waits (up to `within`) until a peer is open; false if none opened.
    pub async fn wait_ready(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.ready() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.ready()
    }

    /// The one shutdown path: in-flight answers drained and DPR sent (the node), the store
    /// closed (everything committed; SQLite's write-ahead log folded into the database and
    /// removed, so a clean stop leaves `gateway.sqlite3` alone) or, when the caller supplied
    /// it, flushed; the simulator stopped.
    pub async fn shutdown(self) {
        self.node.shutdown().await;
        let stored = if self.owns_store {
            self.store.close().await
        } else {
            self.store.flush().await
        };
        if let Err(e) = stored {
            warn!(error = %e, "store flush on shutdown failed");
        }
        if let Some(sim) = self.sim {
            sim.shutdown().await;
        }
        info!("gateway stopped");
    }
}

/// Starts the embedded simulator when `ocs_sim.enabled` (from `sim`, else `ocs_sim.config`,
/// with `ocs_sim.profile` applied) and points the peer with its Origin-Host at the address it
/// really listens on. `gateway serve` and `gateway conformance` both start it so.
pub async fn start_embedded_sim(
    cfg: &mut GatewayConfig,
    dict: &Arc<Dictionary>,
    sim: Option<OcsSimConfig>,
) -> Result<Option<OcsSim>, String> {
    if !cfg.ocs_sim.enabled {
        return Ok(None);
    }
    let mut sim_cfg = match sim {
        Some(c) => c,
        None => {
            OcsSimConfig::load(&cfg.ocs_sim.config).map_err(|e| format!("ocs_sim.config: {e}"))?
        }
    };
    if let Some(p) = &cfg.ocs_sim.profile {
        sim_cfg.profile = p.clone();
    }
    // The simulator knows the gateway it runs for: its CER comes from a configured peer, not
    // from an unknown one it happens to accept.
    let me = &cfg.diameter;
    if !sim_cfg
        .peers
        .iter()
        .any(|p| p.host.eq_ignore_ascii_case(&me.origin_host))
    {
        sim_cfg.peers.push(SimPeer {
            host: me.origin_host.clone(),
            realm: me.origin_realm.clone(),
        });
    }
    let host = sim_cfg.origin_host.clone();
    let sim = OcsSim::start(sim_cfg, Arc::clone(dict))
        .await
        .map_err(|e| format!("embedded OCS simulator: {e}"))?;
    if let Some(addr) = sim.local_addr() {
        for p in &mut cfg.diameter.peers {
            if p.host.eq_ignore_ascii_case(&host) {
                p.address = Some(addr.to_string());
            }
        }
    }
    Ok(Some(sim))
}

fn open_store(cfg: &GatewayConfig) -> Result<Store, String> {
    Store::open(&cfg.store).map_err(|e| format!("store ({}): {e}", cfg.store.backend))
}

/// The assembled gateway for the crate's own tests: the simulator (when `accounts` are given)
/// on a run-time loopback port, the given store (else memory), Tx `tx`, reservations released
/// after `reservation_ttl`, the resolver every 100 ms.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::Duration;

    use rust_decimal::Decimal;

    use super::{Gateway, StartOptions};
    use crate::config::GatewayConfig;
    use crate::ocs::{OcsSimConfig, SimAccount};
    use crate::store::Store;

    pub(crate) struct TestGateway<'a> {
        /// (subscriber, balance, currency); `None`: no simulator, no peer.
        pub accounts: Option<&'a [(String, Decimal, &'a str)]>,
        pub tx: Duration,
        pub reservation_ttl: Duration,
        /// How often the reaper runs (tests that reap themselves set an hour).
        pub reaper_interval: Duration,
        pub store: Option<Store>,
    }

    pub(crate) async fn start(t: TestGateway<'_>) -> Gateway {
        let mut cfg = GatewayConfig::from_toml(
            r#"
[diameter]
origin_host = "gw.charging.local"
origin_realm = "charging.local"
[diameter.timers]
reconnect_min = "100ms"
reconnect_max = "500ms"
drain_timeout = "1s"
[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "127.0.0.1:1"
[credit_control]
max_sessions = 1000
resolve_interval = "100ms"
resolve_attempts = 200
[http]
request_timeout = "1h"
[store]
backend = "memory"
"#,
        )
        .expect("the test configuration is valid");
        cfg.diameter.timers.request_timeout = t.tx;
        cfg.credit_control.reservation_ttl = t.reservation_ttl;
        cfg.credit_control.reaper_interval = t.reaper_interval;
        cfg.ocs_sim.enabled = t.accounts.is_some();
        let sim = t.accounts.map(|accounts| OcsSimConfig {
            listen: "127.0.0.1:0".into(),
            accounts: accounts
                .iter()
                .map(|(s, b, c)| SimAccount {
                    subscriber: s.clone(),
                    balance: *b,
                    currency: (*c).into(),
                })
                .collect(),
            ..OcsSimConfig::default()
        });
        let with_sim = sim.is_some();
        let gw = Gateway::start_with(
            cfg,
            StartOptions {
                sim,
                store: t.store,
            },
        )
        .await
        .expect("the test gateway starts");
        if with_sim {
            assert!(
                gw.wait_ready(Duration::from_secs(5)).await,
                "never connected to the simulator"
            );
        }
        gw
    }
}
