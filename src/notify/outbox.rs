//! The outbox's delivery worker: one per instance, posting the store's due events to their
//! URLs at least once, under a lease so that one instance at a time posts an event.
//!
//! ```text
//! wait: events_written (a commit of this process wrote a pending event), the next retry
//!       this worker scheduled, or notifications.poll_interval (others' events, lapsed leases)
//! due_events(now, concurrency*2) -> claim_event (lease: instance id, until now +
//!       max(2*request_timeout, cluster.lease)) -> POST, at most `concurrency` at once
//! answer: 2xx delivered | 410 dead | else attempts+1, retry after a back-off with jitter
//!         (Retry-After on 429/503, within backoff_max), dead after max_attempts
//! -> put_event (lease cleared). A store failure leaves the event to its lease: never lost.
//! ```
//!
//! The HTTP client follows no redirect, uses no proxy, and resolves names through
//! [`PolicyResolver`], which drops the addresses [`Destinations`] refuses; an address literal
//! is checked before the request (the resolver is not asked for literals). A `mailto:` event
//! is sent by SMTP instead ([`super::mail`]), under the same rules: 4xx retried, 5xx dead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use super::destinations::Destinations;
use super::mail::{self, Mailer};
use crate::config::GatewayConfig;
use crate::config::notifications::{NotificationsConfig, SmtpConfig};
use crate::store::{EventFilter, EventRow, EventState, Lease, Store, now_ms};

/// Events waiting for delivery now (gauge, refreshed from the store each poll).
pub const EVENTS_PENDING: &str = "gateway_events_pending";
/// Events the receiver took (2xx).
pub const EVENTS_DELIVERED: &str = "gateway_events_delivered_total";
/// Attempts that failed, by `reason` (`status`, `timeout`, `connect`, `destination`,
/// `redirect`, `request`; for mail, `status` is an SMTP 4xx reply).
pub const EVENTS_FAILED: &str = "gateway_events_failed_total";
/// Events given up (attempts used up, 410 Gone, a URL or header that can never be sent).
pub const EVENTS_DEAD: &str = "gateway_events_dead_total";
/// From an event's creation to its delivery (seconds, histogram).
pub const EVENT_DELIVERY: &str = "gateway_event_delivery_seconds";

/// Buckets of [`EVENT_DELIVERY`]: a delivery after retries takes minutes or hours.
pub const DELIVERY_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
    86400.0,
];

/// Describes the outbox's metrics to the installed recorder.
pub fn describe_metrics() {
    metrics::describe_gauge!(EVENTS_PENDING, "Outbox events waiting for delivery");
    metrics::describe_counter!(EVENTS_DELIVERED, "Outbox events the receiver took (2xx)");
    metrics::describe_counter!(
        EVENTS_FAILED,
        "Outbox delivery attempts that failed, by reason"
    );
    metrics::describe_counter!(EVENTS_DEAD, "Outbox events given up (dead letters)");
    metrics::describe_histogram!(
        EVENT_DELIVERY,
        metrics::Unit::Seconds,
        "Time from an outbox event's creation to its delivery"
    );
}

/// What the worker needs of the configuration.
#[derive(Clone, Debug)]
pub struct OutboxSettings {
    /// The lease owner (`cluster.instance_id`, else the Origin-Host).
    pub instance_id: String,
    /// `cluster.lease`: the shortest delivery lease.
    pub lease: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub max_response_bytes: usize,
    pub destinations: Destinations,
    /// `[notifications.smtp]`: the mail server of `mailto:` events.
    pub smtp: SmtpConfig,
    /// The name this instance gives in SMTP EHLO (the Origin-Host).
    pub hello_name: String,
    /// Event kinds that carry a secret (a one-time code): once delivered or dead, the body
    /// is replaced by [`REDACTED`], so the store keeps the code only as its hash.
    pub secret_kinds: Vec<String>,
}

/// The body of a secret event once final (see [`OutboxSettings::secret_kinds`]).
pub const REDACTED: &str = r#"{"redacted": "a one-time secret, removed once the event was final"}"#;

impl OutboxSettings {
    /// From `[notifications]` with this instance's id and lease.
    pub fn new(n: &NotificationsConfig, instance_id: String, lease: Duration) -> Self {
        Self {
            lease,
            connect_timeout: n.connect_timeout,
            request_timeout: n.request_timeout,
            max_attempts: n.max_attempts.max(1),
            backoff_min: n.backoff_min,
            backoff_max: n.backoff_max.max(n.backoff_min),
            concurrency: n.concurrency.max(1),
            poll_interval: n.poll_interval.max(Duration::from_millis(1)),
            max_response_bytes: n.max_response_bytes,
            destinations: Destinations::from(n),
            smtp: n.smtp.clone(),
            hello_name: instance_id.clone(),
            instance_id,
            secret_kinds: Vec::new(),
        }
    }

    /// From the whole configuration.
    pub fn from_config(cfg: &GatewayConfig) -> Self {
        Self {
            hello_name: cfg.diameter.origin_host.clone(),
            ..Self::new(&cfg.notifications, cfg.instance_id(), cfg.cluster.lease)
        }
    }

    /// The longest one attempt takes (an HTTP request, or an SMTP exchange).
    pub fn attempt_timeout(&self) -> Duration {
        self.request_timeout.max(self.smtp.timeout)
    }

    /// How long a claim holds: past any attempt's end, and never shorter than the cluster's.
    fn lease_for(&self) -> Duration {
        (self.attempt_timeout() * 2).max(self.lease)
    }

    /// The pause before attempt `attempts + 1` after `attempts` failed ones (at least 1):
    /// `backoff_min * 2^(attempts-1)`, capped at `backoff_max`, with equal jitter (half
    /// fixed, half random), so that retries of many events spread out.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let min = self.backoff_min.as_millis().min(u128::from(u64::MAX)) as u64;
        let max = self.backoff_max.as_millis().min(u128::from(u64::MAX)) as u64;
        let shift = attempts.saturating_sub(1).min(63);
        let base = min.saturating_mul(1u64 << shift).min(max).max(1);
        let half = base / 2;
        Duration::from_millis(half + fastrand::u64(0..=base - half))
    }
}

/// The resolver of the delivery client: the system's (`getaddrinfo`), keeping only the
/// addresses the policy allows; a name left with none fails, and nothing is connected to.
#[derive(Clone, Debug)]
pub struct PolicyResolver {
    policy: Destinations,
}

impl PolicyResolver {
    pub fn new(policy: Destinations) -> Self {
        Self { policy }
    }
}

/// A name that resolves only to refused addresses.
#[derive(Debug)]
pub struct RefusedName(pub String);

impl std::fmt::Display for RefusedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RefusedName {}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (ok, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                found.into_iter().partition(|a| policy.allows(a.ip()));
            if ok.is_empty() {
                let shown: Vec<String> =
                    refused.iter().take(4).map(|a| a.ip().to_string()).collect();
                let why = if shown.is_empty() {
                    format!("the name {host} resolves to no address")
                } else {
                    format!(
                        "the name {host} resolves only to addresses that are not public and not \
                         in notifications.allowed_networks ({})",
                        shown.join(", ")
                    )
                };
                return Err(Box::new(RefusedName(why)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Delivered,
    /// Never to be sent again: 410 Gone, a URL the policy refuses as written, a header that
    /// cannot be sent.
    Dead(String),
    /// Try again later.
    Failed {
        /// Metric label: `status`, `timeout`, `connect`, `destination`, `redirect`, `request`.
        reason: &'static str,
        error: String,
        /// What the receiver asked for (`Retry-After` on 429 or 503).
        retry_after: Option<Duration>,
    },
}

/// Request headers an event may not set: the worker sets them, or they describe the
/// connection rather than the request.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "x-event-id",
];

/// The delivery worker (cheap to clone: a store handle, settings, an HTTP client).
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    settings: Arc<OutboxSettings>,
    client: reqwest::Client,
    mailer: Mailer,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("instance_id", &self.settings.instance_id)
            .finish()
    }
}

/// A running worker: [`OutboxHandle::stop`] ends it.
#[derive(Debug)]
pub struct OutboxHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Outbox {
    /// The worker, its HTTP client and its mail sender (fails only if the TLS roots cannot be
    /// loaded at all, or `[notifications.smtp]` cannot be used).
    pub fn new(store: Store, settings: OutboxSettings) -> Result<Self, String> {
        let mailer = Mailer::new(&settings.smtp, &settings.hello_name)?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .dns_resolver(Arc::new(PolicyResolver::new(settings.destinations.clone())))
            .user_agent(concat!("charging-gateway/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("the notification HTTP client: {e}"))?;
        Ok(Self {
            store,
            settings: Arc::new(settings),
            client,
            mailer,
        })
    }

    pub fn settings(&self) -> &OutboxSettings {
        &self.settings
    }

    /// Starts the worker loop.
    pub fn spawn(self) -> OutboxHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run(stopped));
        OutboxHandle { stop, task }
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let s = Arc::clone(&self.settings);
        info!(
            instance = %s.instance_id,
            concurrency = s.concurrency,
            poll = ?s.poll_interval,
            "outbox delivery started"
        );
        let wake = self.store.events_written();
        let permits = Arc::new(Semaphore::new(s.concurrency));
        let mut inflight: JoinSet<Option<i64>> = JoinSet::new();
        // The soonest retry this worker scheduled (ms since the epoch).
        let mut next_retry: Option<i64> = None;
        let mut counted = Instant::now()
            .checked_sub(s.poll_interval)
            .unwrap_or_else(Instant::now);
        loop {
            if *stopped.borrow() {
                break;
            }
            if counted.elapsed() >= s.poll_interval {
                counted = Instant::now();
                self.refresh_pending().await;
            }
            let room = (s.concurrency * 2).saturating_sub(inflight.len());
            if room > 0 {
                let now = now_ms();
                if next_retry.is_some_and(|t| t <= now) {
                    next_retry = None;
                }
                for ev in self.claim_due(now, room).await {
                    let me = self.clone();
                    let permits = Arc::clone(&permits);
                    inflight.spawn(async move {
                        let _permit = permits.acquire_owned().await.ok()?;
                        me.deliver(ev).await
                    });
                }
            }
            let sleep_for = next_retry
                .map(|t| {
                    Duration::from_millis(u64::try_from(t.saturating_sub(now_ms())).unwrap_or(0))
                })
                .map_or(s.poll_interval, |d| d.min(s.poll_interval));
            tokio::select! {
                _ = stopped.changed() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep_for) => {}
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    if let Ok(Some(t)) = done {
                        next_retry = Some(next_retry.map_or(t, |n| n.min(t)));
                    }
                }
            }
        }
        // In-flight posts end within request_timeout (the client's own timeout; a mail within
        // smtp.timeout); a little more for the store write of their result, then they are
        // abandoned (their leases run out and another pass delivers them).
        let grace = s.attempt_timeout() + Duration::from_secs(2);
        let drain = async { while inflight.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            warn!(
                left = inflight.len(),
                "outbox posts still running at stop: abandoned (their leases run out)"
            );
            inflight.abort_all();
        }
        info!(instance = %s.instance_id, "outbox delivery stopped");
    }

    async fn refresh_pending(&self) {
        match self
            .store
            .events(EventFilter {
                state: Some(EventState::Pending),
                limit: 1,
                ..EventFilter::default()
            })
            .await
        {
            Ok((_, total)) => metrics::gauge!(EVENTS_PENDING).set(total as f64),
            Err(e) => warn!(error = %e, "outbox: counting pending events failed"),
        }
    }

    /// Due events this instance won the lease of.
    async fn claim_due(&self, now: i64, limit: usize) -> Vec<EventRow> {
        let due = match self.store.due_events(now, limit).await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "outbox: reading due events failed");
                return Vec::new();
            }
        };
        let until = now.saturating_add(ms(self.settings.lease_for()));
        let mut won = Vec::with_capacity(due.len());
        for mut ev in due {
            let lease = Lease {
                owner: self.settings.instance_id.clone(),
                until_ms: until,
            };
            match self.store.claim_event(&ev.id, lease.clone(), now).await {
                Ok(true) => {
                    ev.lease = Some(lease);
                    won.push(ev);
                }
                Ok(false) => debug!(event = %ev.id, "outbox: event taken by another instance"),
                Err(e) => warn!(event = %ev.id, error = %e, "outbox: claiming an event failed"),
            }
        }
        won
    }

    /// One attempt at `ev` (claimed), and its outcome recorded. Returns when the event is due
    /// again, if it was rescheduled.
    async fn deliver(&self, mut ev: EventRow) -> Option<i64> {
        let outcome = self.attempt(&ev).await;
        let now = now_ms();
        ev.attempts = ev.attempts.saturating_add(1);
        ev.updated_ms = now;
        ev.lease = None;
        let mut retry_at = None;
        match &outcome {
            Attempt::Delivered => {
                ev.state = EventState::Delivered;
                ev.delivered_ms = Some(now);
                ev.last_error = None;
            }
            Attempt::Dead(why) => {
                ev.state = EventState::Dead;
                ev.last_error = Some(why.clone());
            }
            Attempt::Failed {
                error, retry_after, ..
            } => {
                ev.last_error = Some(error.clone());
                if ev.attempts >= self.settings.max_attempts {
                    ev.state = EventState::Dead;
                } else {
                    let mut pause = self.settings.backoff(ev.attempts);
                    if let Some(asked) = retry_after {
                        pause = pause.max((*asked).min(self.settings.backoff_max));
                    }
                    ev.next_ms = now.saturating_add(ms(pause));
                    retry_at = Some(ev.next_ms);
                }
            }
        }
        if ev.state != EventState::Pending && self.settings.secret_kinds.contains(&ev.kind) {
            ev.body = REDACTED.into();
        }
        let (id, state, attempts) = (ev.id.clone(), ev.state, ev.attempts);
        let created = ev.created_ms;
        let error = ev.last_error.clone();
        if let Err(e) = self.store.put_event(ev).await {
            // The lease stays: once it runs out, a pass (here or elsewhere) tries again.
            warn!(event = %id, error = %e, "outbox: recording a delivery outcome failed");
            return None;
        }
        match &outcome {
            Attempt::Delivered => {
                metrics::counter!(EVENTS_DELIVERED).increment(1);
                let secs = now.saturating_sub(created).max(0) as f64 / 1000.0;
                metrics::histogram!(EVENT_DELIVERY).record(secs);
                debug!(event = %id, attempts, "outbox: delivered");
            }
            Attempt::Dead(_) => {}
            Attempt::Failed { reason, .. } => {
                metrics::counter!(EVENTS_FAILED, "reason" => *reason).increment(1);
            }
        }
        if state == EventState::Dead {
            metrics::counter!(EVENTS_DEAD).increment(1);
            warn!(event = %id, attempts, error = error.as_deref().unwrap_or(""), "outbox: event given up");
        } else if state == EventState::Pending {
            debug!(event = %id, attempts, error = error.as_deref().unwrap_or(""), "outbox: attempt failed");
        }
        retry_at
    }

    /// Posts `ev` once, or mails it for a `mailto:` URL (no store access).
    pub async fn attempt(&self, ev: &EventRow) -> Attempt {
        if ev.body == REDACTED {
            return Attempt::Dead(
                "its one-time secret was removed once the event was final: it cannot be sent \
                 again (ask for a new code)"
                    .into(),
            );
        }
        if mail::is_mail(&ev.url) {
            return self.mailer.attempt(ev).await;
        }
        // The form of the URL and an address literal (the resolver is not asked for those).
        let url = match self.settings.destinations.parse(&ev.url) {
            Ok(u) => u,
            Err(e) => return Attempt::Dead(format!("the URL is refused: {e}")),
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &ev.headers {
            let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
                return Attempt::Dead(format!("header name {:?} cannot be sent", clip(name)));
            };
            if RESERVED_HEADERS.contains(&n.as_str()) {
                continue;
            }
            let Ok(v) = HeaderValue::from_str(value) else {
                return Attempt::Dead(format!("the value of header {n} cannot be sent"));
            };
            headers.append(n, v);
        }
        let Ok(ct) = HeaderValue::from_str(&ev.content_type) else {
            return Attempt::Dead("the content type cannot be sent".into());
        };
        headers.insert(reqwest::header::CONTENT_TYPE, ct);
        if let Ok(id) = HeaderValue::from_str(&ev.id) {
            headers.insert(HeaderName::from_static("x-event-id"), id);
        }
        let sent = self
            .client
            .post(url)
            .headers(headers)
            .body(ev.body.clone())
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => return self.failure(&e),
        };
        let status = resp.status();
        let retry_after = if matches!(status.as_u16(), 429 | 503) {
            resp.headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
        } else {
            None
        };
        // Read at most max_response_bytes of the answer (within the request timeout); the rest
        // goes with the connection.
        let mut read = 0usize;
        while read < self.settings.max_response_bytes {
            match resp.chunk().await {
                Ok(Some(c)) => read = read.saturating_add(c.len()),
                Ok(None) | Err(_) => break,
            }
        }
        drop(resp);
        if status.is_success() {
            Attempt::Delivered
        } else if status == reqwest::StatusCode::GONE {
            Attempt::Dead("the receiver answered 410 Gone".into())
        } else if status.is_redirection() {
            Attempt::Failed {
                reason: "redirect",
                error: format!("HTTP {}: redirect not followed", status.as_u16()),
                retry_after: None,
            }
        } else {
            Attempt::Failed {
                reason: "status",
                error: format!("HTTP {}", status.as_u16()),
                retry_after,
            }
        }
    }

    /// A concise account of a request that got no answer.
    fn failure(&self, e: &reqwest::Error) -> Attempt {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        // reqwest's own message names the URL, which may carry a token (`?apikey=`).
        let mut innermost = match e.url() {
            Some(u) => e
                .to_string()
                .replace(u.as_str(), &crate::notify::redact_url(u.as_str())),
            None => e.to_string(),
        };
        while let Some(s) = source {
            if let Some(r) = s.downcast_ref::<RefusedName>() {
                return Attempt::Failed {
                    reason: "destination",
                    error: r.0.clone(),
                    retry_after: None,
                };
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        return Attempt::Failed {
                            reason: "connect",
                            error: "connection refused".into(),
                            retry_after: None,
                        };
                    }
                    std::io::ErrorKind::ConnectionReset => {
                        return Attempt::Failed {
                            reason: "request",
                            error: "connection reset".into(),
                            retry_after: None,
                        };
                    }
                    _ => {}
                }
            }
            if !std::ptr::addr_eq(s, e as &(dyn std::error::Error + 'static)) {
                innermost = s.to_string();
            }
            source = s.source();
        }
        if e.is_timeout() {
            let (reason, error) = if e.is_connect() {
                (
                    "timeout",
                    format!(
                        "connect timed out after {}",
                        humantime::format_duration(self.settings.connect_timeout)
                    ),
                )
            } else {
                (
                    "timeout",
                    format!(
                        "timed out after {}",
                        humantime::format_duration(self.settings.request_timeout)
                    ),
                )
            };
            return Attempt::Failed {
                reason,
                error,
                retry_after: None,
            };
        }
        let (reason, what) = if e.is_connect() {
            ("connect", "connection failed")
        } else {
            ("request", "request failed")
        };
        Attempt::Failed {
            reason,
            error: format!("{what}: {}", clip(&innermost)),
            retry_after: None,
        }
    }
}

impl OutboxHandle {
    /// Signals the worker to stop, and waits for it (in-flight posts finish, or are abandoned
    /// after their request timeout) at most `grace`, after which it is aborted.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(grace, self.task).await.is_err() {
            warn!("outbox worker did not stop in time: aborted");
            abort.abort();
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// At most 200 characters of `s` (error texts from the network).
pub(crate) fn clip(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;

    fn settings() -> OutboxSettings {
        let n = NotificationsConfig {
            allow_http: true,
            allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..NotificationsConfig::default()
        };
        OutboxSettings::new(&n, "gw-test".into(), Duration::from_secs(30))
    }

    fn event(url: &str) -> EventRow {
        EventRow {
            id: "ev-u".into(),
            app: "shop".into(),
            kind: "k".into(),
            resource: None,
            url: url.into(),
            headers: Vec::new(),
            content_type: "application/json".into(),
            body: "{}".into(),
            state: EventState::Pending,
            attempts: 0,
            next_ms: 0,
            last_error: None,
            lease: None,
            created_ms: 0,
            updated_ms: 0,
            delivered_ms: None,
        }
    }

    #[tokio::test]
    async fn a_secret_event_keeps_no_secret_once_final() {
        let dir = std::env::temp_dir().join(format!("gw-outbox-secret-{}", fastrand::u64(..)));
        let mut set = settings();
        set.smtp.mailbox_dir = dir.display().to_string();
        set.secret_kinds = vec!["identity.code".into()];
        let store = Store::memory();
        let outbox = Outbox::new(store.clone(), set).unwrap();
        let mut ev = event("mailto:ana@example.com");
        ev.kind = "identity.code".into();
        ev.body = r#"{"subject": "Your code", "text": "your code is 123456"}"#.into();
        store.put_event(ev.clone()).await.unwrap();
        assert_eq!(outbox.deliver(ev).await, None);
        let kept = store.event("ev-u").await.unwrap().unwrap();
        assert_eq!(kept.state, EventState::Delivered);
        assert_eq!(kept.body, REDACTED);
        assert!(!kept.body.contains("123456"));
        // The mail itself went out with the code.
        let mail: String = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert!(mail.contains("your code is 123456"), "{mail}");
        // Sent again (an operator's retry): dead, saying why, nothing sent.
        assert!(matches!(outbox.attempt(&kept).await, Attempt::Dead(w) if w.contains("secret")));
        // Another kind keeps its body.
        let mut other = event("mailto:ana@example.com");
        other.id = "ev-o".into();
        other.body = r#"{"subject": "s", "text": "t"}"#.into();
        store.put_event(other.clone()).await.unwrap();
        outbox.deliver(other).await;
        assert_ne!(store.event("ev-o").await.unwrap().unwrap().body, REDACTED);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn backoff_doubles_with_equal_jitter_up_to_the_cap() {
        let s = settings();
        for _ in 0..200 {
            for (attempts, base) in [
                (1, 100),
                (2, 200),
                (3, 400),
                (4, 800),
                (5, 1000),
                (40, 1000),
            ] {
                let d = s.backoff(attempts).as_millis() as u64;
                assert!((base / 2..=base).contains(&d), "attempt {attempts}: {d} ms");
            }
        }
        assert!(s.backoff(u32::MAX).as_millis() <= 1000);
    }

    #[test]
    fn the_lease_outlasts_an_attempt_and_the_cluster_lease() {
        let mut s = settings();
        assert_eq!(s.lease_for(), Duration::from_secs(30));
        s.request_timeout = Duration::from_secs(20);
        assert_eq!(s.lease_for(), Duration::from_secs(40));
    }

    #[tokio::test]
    async fn the_resolver_keeps_allowed_addresses_only() {
        let allowed = PolicyResolver::new(Destinations::new(
            true,
            vec!["127.0.0.0/8".parse().unwrap()],
        ));
        let addrs: Vec<SocketAddr> = allowed
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.is_ipv4()),
            "{addrs:?}"
        );
        let public = PolicyResolver::new(Destinations::new(true, Vec::new()));
        let Err(e) = public.resolve("localhost".parse().unwrap()).await else {
            panic!("localhost resolved under the public-only policy");
        };
        assert!(e.to_string().contains("not public"), "{e}");
    }

    #[tokio::test]
    async fn attempts_that_cannot_succeed_are_told_apart() {
        let outbox = Outbox::new(Store::memory(), settings()).unwrap();
        // A port nothing listens on (bound, then closed).
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = event(&format!("http://127.0.0.1:{port}/hook"));
        assert_eq!(
            outbox.attempt(&e).await,
            Attempt::Failed {
                reason: "connect",
                error: "connection refused".into(),
                retry_after: None,
            }
        );
        let mut bad = e.clone();
        bad.headers = vec![("Bad Name".into(), "x".into())];
        assert!(matches!(outbox.attempt(&bad).await, Attempt::Dead(w) if w.contains("header")));
        let mut bad = e.clone();
        bad.headers = vec![("X-Ok".into(), "line\nbreak".into())];
        assert!(
            matches!(outbox.attempt(&bad).await, Attempt::Dead(w) if w.contains("X-Ok") || w.contains("x-ok"))
        );
        let ftp = event("ftp://127.0.0.1/x");
        assert!(
            matches!(outbox.attempt(&ftp).await, Attempt::Dead(w) if w.starts_with("the URL is refused"))
        );
    }

    #[test]
    fn clip_keeps_short_texts_and_cuts_long_ones_on_characters() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(300);
        let c = clip(&long);
        assert_eq!(c.chars().count(), 203);
        assert!(c.ends_with("..."));
    }
}
