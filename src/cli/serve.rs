//! `gateway serve` (the default command): the REST API on top of the assembled gateway, with
//! one shutdown path.
//!
//! ```text
//! REST: api::server (request heads within http.header_timeout) over api::router
//! SIGINT / SIGTERM -> stop accepting REST connections, let in-flight requests finish
//!                     (http.shutdown_grace) -> the outbox worker stopped (its posts in
//!                     flight finished or abandoned after notifications.request_timeout)
//!                     -> the cart follow-up stopped (its pass in progress finished)
//!                     -> the TMF654 scheduler stopped (its pass in progress finished)
//!                     -> Gateway::shutdown: in-flight Diameter answers drained, DPR
//!                     (REBOOTING) to every peer, store flushed, simulator stopped
//! ```
//!
//! The outbox worker (`notify::Outbox`) runs when `notifications.deliver` is true; events are
//! recorded either way (another instance on the same store may deliver them). The
//! abandoned-cart follow-up (`api::tmf663::followup`) runs when `shop.follow_up` is true.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tracing::{info, warn};

use crate::api::{self, ApiState, Apps};
use crate::config::GatewayConfig;
use crate::gateway::Gateway;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file.
    #[arg(long, short = 'c', default_value = "conf/gateway.toml")]
    pub config: PathBuf,
}

impl ServeArgs {
    /// The arguments of a bare `gateway` (no command).
    pub fn default_args() -> Self {
        Self {
            config: PathBuf::from("conf/gateway.toml"),
        }
    }
}

/// The configured log format, before logging starts (`LOG_FORMAT` overrides it).
pub fn log_format(args: &ServeArgs) -> Option<String> {
    GatewayConfig::load(&args.config)
        .ok()
        .map(|c| c.http.log_format)
}

pub async fn run(args: &ServeArgs) -> Result<String, String> {
    let cfg =
        GatewayConfig::load(&args.config).map_err(|e| format!("configuration refused: {e}"))?;
    let http = cfg.http.clone();
    let mut apps = Apps::new(&cfg.apps);
    // `[oidc]`: access tokens of an external OpenID Connect provider.
    if cfg.oidc.enabled() {
        let v = api::oidc::OidcVerifier::new(&cfg.oidc)?;
        info!(issuer = %cfg.oidc.issuer, "oidc: external access tokens accepted");
        apps = apps.with_verifier(Arc::new(v));
    }
    if cfg.apps.is_empty() {
        warn!("no [[apps]] configured: every REST request will be refused (401)");
    }
    let metrics = api::install_metrics();
    let gw = Gateway::start(cfg, None).await?;
    // The shop customers' own access tokens (`/identity/v1/sign-in`), checked against the
    // sessions in the store.
    let identity = crate::identity::IdentityState::new(
        gw.store.clone(),
        gw.config.identity.clone(),
        &gw.config.notifications,
    );
    let apps =
        Arc::new(apps.with_verifier(Arc::new(api::identity::IdentityVerifier(identity.clone()))));
    // TMF639: the demo (or operator's) pool, when `[inventory] file` is set and the
    // inventory is empty.
    match api::tmf639::load_pool(&gw.store, &gw.config.inventory).await {
        Ok(0) => {}
        Ok(n) => {
            info!(resources = n, file = %gw.config.inventory.file.display(), "inventory pool imported")
        }
        Err(e) => {
            gw.shutdown().await;
            return Err(e);
        }
    }
    if !gw.wait_ready(Duration::from_secs(10)).await {
        warn!("no OCS peer is open yet: /health/ready answers 503 until one is");
    }
    // TMF620: `[catalog] file` imported when it changed (an invalid one stops the start).
    let catalog = match api::tmf620::catalog::start(&gw.store, &gw.config.catalog).await {
        Ok(reload) => reload,
        Err(e) => {
            gw.shutdown().await;
            return Err(e);
        }
    };
    // TMF654: automatic top-up periods and pending top-ups (stopped before the gateway).
    let topups = api::tmf654::Scheduler::new(
        Arc::clone(&gw.charging),
        (&gw.config.tmf654).into(),
        Arc::new(api::tmf654::SystemClock),
    )
    .spawn();
    // TMF663: the abandoned-cart follow-up (its events go through the outbox; stopped after
    // the REST server, before the outbox).
    let followup = match start_followup(&gw) {
        Ok(f) => f,
        Err(e) => {
            topups.stop(http.shutdown_grace).await;
            gw.shutdown().await;
            return Err(e);
        }
    };
    // The outbox: events delivered by this instance (stopped after the REST server, so that
    // the events of the last requests are posted too, and before the gateway).
    let outbox = if gw.config.notifications.deliver {
        let mut settings = crate::notify::OutboxSettings::from_config(&gw.config);
        // Sign-up codes (and the CAMARA validation codes to come) are kept only as hashes.
        settings.secret_kinds = vec![crate::identity::CODE_EVENT.to_string()];
        match crate::notify::Outbox::new(gw.store.clone(), settings) {
            Ok(o) => Some(o.spawn()),
            Err(e) => {
                if let Some(f) = followup {
                    f.stop(http.shutdown_grace).await;
                }
                topups.stop(http.shutdown_grace).await;
                gw.shutdown().await;
                return Err(e);
            }
        }
    } else {
        info!("notifications.deliver = false: this instance posts no events");
        None
    };
    let router = gw.node.router().clone();
    let ready = Arc::new(move || router.any_usable());
    let state = ApiState::new(Arc::clone(&gw.charging), apps, ready, Some(metrics))
        .with_notifications(gw.config.notifications.clone());
    // CAMARA: async payments and refunds left `processing` (a restart, an unknown outcome),
    // reservations past their expiry, checkout purchases to notify, brought to their state
    // and their events recorded, every 5 s (aborted once the REST server has stopped: an
    // operation cut there is resolved by the next pass, here or on another instance).
    let recovery = api::camara::events::spawn_recovery(state.clone(), Duration::from_secs(5));
    // TMF622: the order pipeline; new orders start at once, the passes retry steps and take
    // up orders a stopped instance left (aborted once the REST server has stopped: a step cut
    // there is run again by the next pass, here or on another instance).
    let pipeline = api::tmf622::pipeline::Pipeline::new(
        state.clone(),
        gw.config.orders.clone(),
        gw.config.inventory.hold,
    );
    let orders = pipeline.clone().spawn();
    let app = api::router(state, &http)
        .layer(axum::Extension(api::tmf639::Settings::from(
            &gw.config.inventory,
        )))
        .layer(axum::Extension(pipeline))
        .layer(axum::Extension(identity));
    let listener = tokio::net::TcpListener::bind(&http.listen)
        .await
        .map_err(|e| format!("http.listen {}: {e}", http.listen))?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    info!(address = %local, "REST API listening");
    let gauges = spawn_gauges(&gw);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(api::server::serve(
        listener,
        app,
        http.header_timeout,
        async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    shutdown_signal().await;
    info!("shutting down: no new REST requests");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(http.shutdown_grace, server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "REST server task failed"),
        Err(_) => warn!("in-flight REST requests still running after the grace period"),
    }
    gauges.abort();
    if let Some(reload) = catalog {
        reload.abort();
    }
    recovery.abort();
    orders.abort();
    if let Some(f) = followup {
        f.stop(http.shutdown_grace).await;
    }
    if let Some(outbox) = outbox {
        let n = &gw.config.notifications;
        outbox
            .stop(n.request_timeout.max(n.smtp.timeout) + Duration::from_secs(5))
            .await;
    }
    topups.stop(http.shutdown_grace).await;
    gw.shutdown().await;
    Ok(String::new())
}

/// The abandoned-cart follow-up when `shop.follow_up` is true, with warnings for channels
/// that cannot carry it; an SMS webhook the destination policy refuses stops the start.
fn start_followup(gw: &Gateway) -> Result<Option<api::tmf663::followup::SweeperHandle>, String> {
    use api::tmf663::followup::{Sweeper, SweeperSettings};
    let n = &gw.config.notifications;
    if n.sms.enabled() {
        crate::notify::Destinations::from(n)
            .parse(&n.sms.url)
            .map_err(|e| format!("notifications.sms.url is refused: {e}"))?;
    }
    if !n.smtp.host.is_empty() && n.smtp.log {
        warn!("notifications.smtp.log is ignored: notifications.smtp.host is set");
    }
    if !gw.config.shop.follow_up {
        return Ok(None);
    }
    let settings = SweeperSettings::from_config(&gw.config);
    if !settings.email {
        warn!(
            "shop.follow_up = true without [notifications.smtp] host: carts whose only contact \
             is an email address are not followed up"
        );
    } else if n.smtp.host.is_empty() {
        warn!("shop.follow_up by email with notifications.smtp.log: mails are logged, not sent");
    }
    if !settings.any_channel() {
        warn!(
            "shop.follow_up = true with neither [notifications.smtp] nor [notifications.sms]: no cart is followed up"
        );
    }
    let locks = gw.charging.locks().clone();
    Ok(Some(
        Sweeper::new(gw.store.clone(), locks, settings).spawn(),
    ))
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Keeps the gauges of `/metrics` current: each peer open or not, open reservations, the
/// store's average commit time over the last second.
fn spawn_gauges(gw: &Gateway) -> tokio::task::JoinHandle<()> {
    let router = gw.node.router().clone();
    let charging = Arc::clone(&gw.charging);
    let store = gw.store.clone();
    tokio::spawn(async move {
        use std::sync::atomic::Ordering::Relaxed;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let (mut batches, mut micros) = (0u64, 0u64);
        loop {
            tick.tick().await;
            for p in router.peers() {
                api::set_peer_open(&p.spec.host, p.is_usable());
            }
            api::set_open_reservations(charging.open_reservations());
            let m = store.metrics();
            let (b, us) = (m.batches.load(Relaxed), m.commit_micros.load(Relaxed));
            if b > batches {
                let avg = us.saturating_sub(micros) as f64 / (b - batches) as f64 / 1e6;
                api::set_store_commit_seconds(avg);
            }
            (batches, micros) = (b, us);
        }
    })
}
