//! The use cases every REST family shares: charge, refund, split charge and reservations,
//! made durable and idempotent over the credit-control client.
//!
//! ```text
//! api::<family> --Key + request--> Charging
//!    1. same (app, key) in flight here?   wait for it, answer its outcome
//!    2. store.begin(row: pending, Session-Id, recorded CCR)      -- durable before sending
//!         existing row, other request hash   -> KeyReused
//!         existing row, final                -> its stored outcome (no second CCR)
//!         existing row, pending / unknown    -> re-send the recorded CCR with the T flag
//!    3. CreditControlClient (CCR/CCA, Tx, failover, resolver)
//!    4. store.update(row: outcome)                                 -- durable before answering
//! ```
//!
//! Reservations live in a map of slots (one async lock each: one operation at a time per
//! reservation) mirrored in the store; on start-up open ones are restored into the client and
//! operations left unresolved by a crash are re-sent with the T flag before their reservation
//! takes new work. A reaper releases reservations past their expiry (CCR-T).
//!
//! This layer knows nothing of HTTP: families map [`Failure`] onto their own error models.

pub mod learnt;
pub mod locks;
pub mod outcome;
pub mod record;
pub mod split;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

pub use outcome::{Done, Failure, OpResult, result_name};
pub use record::Recorded;

use crate::credit_control::{
    Charged, CreditControlClient, EventRequest, Money, Outcome, RequestKind, RequestType,
    RequestedAction, Resolution, ServiceParameter, ServiceParameterType, SessionError,
    SubscriptionId, UnitsStyle,
};
use crate::store::{
    Begun, Lease, OpState, OperationRow, ReservationRow, ReservationState, Store, now_ms,
};

/// Who asks, and the idempotency key of the request (if it has one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub app: String,
    /// `referenceCode`, `clientCorrelator` or `Idempotency-Key`: one outcome per key.
    pub key: Option<String>,
}

impl Key {
    pub fn new(app: &str, key: Option<&str>) -> Self {
        Self {
            app: app.to_string(),
            key: key.map(str::to_string),
        }
    }
}

/// The charging information of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChargeInfo {
    /// Text for the bill.
    pub description: Option<String>,
    /// Charging code from a contract.
    pub code: Option<String>,
    /// Reference for disputes.
    pub reference_code: Option<String>,
    /// Merchant (defaults to the application).
    pub merchant: Option<String>,
}

impl ChargeInfo {
    fn parameters(&self, app: &str, operation: &str) -> Vec<ServiceParameter> {
        let mut p = Vec::with_capacity(5);
        if let Some(r) = &self.reference_code {
            p.push(ServiceParameter::new(
                ServiceParameterType::ReferenceCode,
                r,
            ));
        }
        p.push(ServiceParameter::new(
            ServiceParameterType::Merchant,
            self.merchant.as_deref().unwrap_or(app),
        ));
        if let Some(d) = &self.description {
            p.push(ServiceParameter::new(ServiceParameterType::Description, d));
        }
        if let Some(c) = &self.code {
            p.push(ServiceParameter::new(ServiceParameterType::ChargingCode, c));
        }
        p.push(ServiceParameter::new(
            ServiceParameterType::Operation,
            operation,
        ));
        p
    }
}

/// A reservation as the API may show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReservationView {
    pub id: String,
    pub session_id: String,
    pub subscriber: String,
    pub currency: String,
    pub reserved: Decimal,
    pub charged: Decimal,
    pub state: &'static str,
    pub expires_ms: i64,
}

/// Tunables.
#[derive(Clone, Debug)]
pub struct ChargingSettings {
    /// How long a duplicate of an in-flight request waits for the first one's outcome.
    pub inflight_wait: Duration,
    /// How often expired reservations are released.
    pub reaper_interval: Duration,
    /// How often unresolved operations are re-sent with the T flag.
    pub resolve_interval: Duration,
    /// How often the units styles other instances learnt are read from the store.
    pub style_refresh: Duration,
    /// This instance's name among the gateways sharing the store (`cluster.instance_id`).
    pub instance_id: String,
    /// How long a lease on an unresolved operation (or a reservation step, a resource) holds
    /// without being renewed (`cluster.lease`): an instance that dies leaves its work to the
    /// others after this. Renewed every third of it.
    pub lease: Duration,
}

impl Default for ChargingSettings {
    fn default() -> Self {
        Self {
            inflight_wait: Duration::from_secs(15),
            reaper_interval: Duration::from_secs(5),
            resolve_interval: Duration::from_secs(5),
            style_refresh: Duration::from_secs(30),
            instance_id: "gateway".into(),
            lease: Duration::from_secs(30),
        }
    }
}

struct Slot {
    app: String,
    row: Mutex<SlotState>,
}

struct SlotState {
    row: ReservationRow,
    /// An operation from before a restart is still to be re-sent: no new work until then.
    unresolved: bool,
}

type InFlight = (String, watch::Receiver<Option<OpResult>>);

/// The charging service.
pub struct Charging {
    client: Arc<CreditControlClient>,
    store: Store,
    settings: ChargingSettings,
    inflight: DashMap<(String, String), InFlight>,
    /// Operation ids running in this process (not for the background resolver).
    active: DashMap<String, ()>,
    /// Unknown outcomes the client's resolver pursues: Session-Id -> operation id.
    awaiting: DashMap<(String, u32), String>,
    reservations: DashMap<String, Arc<Slot>>,
    ids: IdGen,
    /// When the store was last read for reservations to reap that another instance opened.
    last_scan: std::sync::Mutex<std::time::Instant>,
    locks: locks::Locks,
}

impl std::fmt::Debug for Charging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charging")
            .field("reservations", &self.reservations.len())
            .field("in_flight", &self.active.len())
            .finish()
    }
}

struct IdGen {
    prefix: String,
    next: AtomicU64,
}

impl IdGen {
    fn new() -> Self {
        // Unique across restarts: start time in ms plus a random part, then a counter.
        let prefix = format!("{:x}{:04x}", now_ms(), fastrand::u16(..));
        Self {
            prefix,
            next: AtomicU64::new(1),
        }
    }

    fn next(&self, kind: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{kind}-{}-{n:x}", self.prefix)
    }
}

/// An operation being worked on in this process (see [`Charging::claim`]); released on drop,
/// also when the future holding it is dropped.
struct Claim<'a> {
    map: &'a DashMap<String, ()>,
    id: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.map.remove(&self.id);
    }
}

/// Removes the in-flight entry when the first request of a key is done (or dropped).
struct InFlightGuard<'a> {
    map: &'a DashMap<(String, String), InFlight>,
    key: Option<(String, String)>,
    tx: Option<watch::Sender<Option<OpResult>>>,
}

impl InFlightGuard<'_> {
    fn finish(&mut self, result: &OpResult) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(result.clone()));
        }
        if let Some(k) = self.key.take() {
            self.map.remove(&k);
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.map.remove(&k);
        }
    }
}

fn hash_of(kind: &str, body: &impl Serialize) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(body).unwrap_or_default());
    hex::encode(h.finalize())
}

fn state_of(result: &OpResult) -> OpState {
    match result {
        Ok(_) => OpState::Succeeded,
        Err(f) if f.is_unknown() => OpState::Unknown,
        Err(f) if f.is_retryable() => OpState::Retryable,
        Err(_) => OpState::Refused,
    }
}

fn outcome_json(result: &OpResult) -> String {
    serde_json::to_string(result).unwrap_or_default()
}

fn replay(row: &OperationRow) -> Option<OpResult> {
    let mut r: OpResult = serde_json::from_str(row.outcome.as_deref()?).ok()?;
    if let Ok(done) = &mut r {
        done.replayed = true;
    }
    Some(r)
}

fn store_failure(e: impl std::fmt::Display) -> Failure {
    Failure::Store {
        reason: e.to_string(),
    }
}

impl Charging {
    /// Starts the service: restores open reservations from the store, then starts the
    /// reaper, the resolver of operations left unresolved, and the listener of late outcomes.
    pub async fn start(
        client: Arc<CreditControlClient>,
        store: Store,
        resolutions: Option<mpsc::UnboundedReceiver<Resolution>>,
        settings: ChargingSettings,
    ) -> Result<Arc<Self>, Failure> {
        let locks = locks::Locks::new(
            store.clone(),
            settings.instance_id.clone(),
            settings.lease,
            store.shared(),
        );
        let me = Arc::new(Self {
            client,
            store,
            settings,
            inflight: DashMap::new(),
            active: DashMap::new(),
            awaiting: DashMap::new(),
            reservations: DashMap::new(),
            ids: IdGen::new(),
            last_scan: std::sync::Mutex::new(std::time::Instant::now()),
            locks,
        });
        me.restore().await?;
        // What was learnt before is a head start, not a condition to serve.
        match learnt::load(&me.client, &me.store).await {
            Ok(0) => {}
            Ok(known) => info!(known, "units styles learnt earlier read from the store"),
            Err(e) => warn!(error = %e, "cannot read the learnt units styles: learning anew"),
        }
        learnt::spawn(&me.client, me.store.clone(), me.settings.style_refresh);
        // The leases this instance holds on unresolved operations, renewed every third of
        // their length while it lives.
        let weak = Arc::downgrade(&me);
        let renew_every = (me.settings.lease / 3).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(renew_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { break };
                let until = now_ms().saturating_add(millis(me.settings.lease));
                if let Err(e) = me.store.renew(&me.settings.instance_id, until).await {
                    warn!(error = %e, "leases not renewed");
                }
            }
        });
        let weak = Arc::downgrade(&me);
        let reaper_every = me.settings.reaper_interval;
        tokio::spawn(async move {
            // The first pass one interval after the start (not at once: a test, or an
            // operator, that just opened a short reservation sees it before it is reaped).
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + reaper_every, reaper_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { break };
                me.reap().await;
            }
        });
        let weak = Arc::downgrade(&me);
        let resolve_every = me.settings.resolve_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(resolve_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { break };
                me.resolve_unresolved().await;
            }
        });
        if let Some(mut rx) = resolutions {
            let weak = Arc::downgrade(&me);
            tokio::spawn(async move {
                while let Some(r) = rx.recv().await {
                    let Some(me) = weak.upgrade() else { break };
                    me.on_resolution(r).await;
                }
            });
        }
        Ok(me)
    }

    pub fn client(&self) -> &Arc<CreditControlClient> {
        &self.client
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Locks on names (resources, jobs) shared with the other instances on this store.
    pub fn locks(&self) -> &locks::Locks {
        &self.locks
    }

    /// Reservations open now.
    pub fn open_reservations(&self) -> usize {
        self.reservations.len()
    }

    // ---- the idempotent frame --------------------------------------------------------------

    /// Marks operation `id` as worked on here (the resolver leaves it alone) until the claim
    /// is dropped; `None` when something else holds it.
    fn claim(&self, id: &str) -> Option<Claim<'_>> {
        match self.active.entry(id.to_string()) {
            dashmap::Entry::Occupied(_) => None,
            dashmap::Entry::Vacant(v) => {
                v.insert(());
                Some(Claim {
                    map: &self.active,
                    id: id.to_string(),
                })
            }
        }
    }

    /// Runs `go` once per `(app, key)`: records `row` first, replays a final outcome, re-sends
    /// an unresolved one, and records the outcome before returning it.
    async fn once<F, Fut>(&self, key: &Key, row: OperationRow, go: F) -> OpResult
    where
        F: FnOnce(OperationRow) -> Fut,
        Fut: std::future::Future<Output = (OpResult, OperationRow)>,
    {
        let mut guard = InFlightGuard {
            map: &self.inflight,
            key: None,
            tx: None,
        };
        if let Some(k) = &key.key {
            let map_key = (key.app.clone(), k.clone());
            let waiting = match self.inflight.entry(map_key.clone()) {
                dashmap::Entry::Occupied(e) => Some(e.get().clone()),
                dashmap::Entry::Vacant(v) => {
                    let (tx, rx) = watch::channel(None);
                    v.insert((row.request_hash.clone(), rx));
                    guard.key = Some(map_key);
                    guard.tx = Some(tx);
                    None
                }
            };
            if let Some((hash, mut rx)) = waiting {
                if hash != row.request_hash {
                    return Err(Failure::KeyReused { key: k.clone() });
                }
                let first = tokio::time::timeout(self.settings.inflight_wait, async {
                    loop {
                        if let Some(r) = rx.borrow().clone() {
                            return Some(r);
                        }
                        if rx.changed().await.is_err() {
                            return None;
                        }
                    }
                })
                .await;
                return match first {
                    Ok(Some(mut r)) => {
                        if let Ok(d) = &mut r {
                            d.replayed = true;
                        }
                        r
                    }
                    _ => Err(Failure::InProgress {
                        operation_id: String::new(),
                    }),
                };
            }
        }
        let result = self.once_inner(key, row, go).await;
        guard.finish(&result);
        result
    }

    async fn once_inner<F, Fut>(&self, key: &Key, mut row: OperationRow, go: F) -> OpResult
    where
        F: FnOnce(OperationRow) -> Fut,
        Fut: std::future::Future<Output = (OpResult, OperationRow)>,
    {
        // Claimed before the row is durable and released only after its outcome is: the
        // background resolver never finds it pending and unclaimed while it is in flight.
        let Some(claim) = self.claim(&row.id) else {
            return Err(Failure::InProgress {
                operation_id: row.id.clone(),
            });
        };
        match self.store.begin(row.clone()).await {
            Err(e) => return Err(store_failure(e)),
            Ok(Begun::Existing(old)) => {
                drop(claim);
                if old.request_hash != row.request_hash {
                    return Err(Failure::KeyReused {
                        key: key.key.clone().unwrap_or_default(),
                    });
                }
                if old.state.is_final()
                    && let Some(r) = replay(&old)
                {
                    return r;
                }
                if self.leased_elsewhere(&old) {
                    // Another gateway instance is working on it: it records the outcome.
                    return Err(Failure::InProgress {
                        operation_id: old.id.clone(),
                    });
                }
                // Pending or unknown, from before a restart, pursued in the background, or left
                // by an instance whose lease ran out: learn the outcome by sending the
                // recorded request again (T flag).
                return self.resolve_row(*old).await;
            }
            Ok(Begun::Inserted) => {}
        }
        // `go` hands the row back: a request sent again in the other units style changed its
        // Session-Id and recorded request (durably, before sending it).
        let (result, sent) = go(row.clone()).await;
        row = sent;
        row.state = state_of(&result);
        row.result_code = match &result {
            Ok(d) => Some(d.result_code),
            Err(f) => f.result_code(),
        };
        row.outcome = Some(outcome_json(&result));
        row.updated_ms = now_ms();
        if let Err(e) = self.store.update(row).await {
            warn!(error = %e, "outcome not recorded");
            return Err(store_failure(e));
        }
        result
    }

    fn new_row(
        &self,
        id: String,
        key: &Key,
        kind: &str,
        hash: String,
        session_id: String,
        recorded: &mut Recorded,
    ) -> OperationRow {
        if recorded.style.is_none() {
            // The style is fixed when the request is recorded: a re-send rebuilds it as sent.
            recorded.style = Some(
                self.client
                    .units_style(RequestKind::of(recorded.request_type)),
            );
        }
        let now = now_ms();
        OperationRow {
            id,
            app: key.app.clone(),
            key: key.key.clone(),
            kind: kind.to_string(),
            request_hash: hash,
            parent: None,
            reservation_id: None,
            session_id,
            request_number: recorded.number,
            subscriber: Some(recorded.subscriber.clone()),
            amount: recorded.requested.or(recorded.used),
            currency: Some(recorded.currency.clone()),
            reference_code: None,
            state: OpState::Pending,
            result_code: None,
            request: recorded.to_json(),
            outcome: None,
            created_ms: now,
            updated_ms: now,
            lease: Some(self.lease_from(now)),
        }
    }

    /// A lease for this instance from `now` (ms).
    fn lease_from(&self, now: i64) -> Lease {
        Lease {
            owner: self.settings.instance_id.clone(),
            until_ms: now.saturating_add(millis(self.settings.lease)),
        }
    }

    /// Whether another instance holds `row`'s lease now.
    fn leased_elsewhere(&self, row: &OperationRow) -> bool {
        row.lease
            .as_ref()
            .is_some_and(|l| l.held_by_other(&self.settings.instance_id, now_ms()))
    }

    // ---- one-time events -------------------------------------------------------------------

    /// Charges `amount` to `subscriber` (CCR EVENT, DIRECT_DEBITING).
    pub async fn charge(
        &self,
        key: &Key,
        subscriber: &SubscriptionId,
        subscriber_uri: &str,
        amount: Money,
        info: &ChargeInfo,
    ) -> OpResult {
        self.event(
            key,
            "charge",
            RequestedAction::DirectDebiting,
            subscriber,
            subscriber_uri,
            amount,
            info,
            None,
        )
        .await
    }

    /// Refunds `amount` to `subscriber` (CCR EVENT, REFUND_ACCOUNT); `original` is the
    /// Session-Id of the charge refunded, when known (Service-Parameter-Info 6).
    #[allow(clippy::too_many_arguments)]
    pub async fn refund(
        &self,
        key: &Key,
        subscriber: &SubscriptionId,
        subscriber_uri: &str,
        amount: Money,
        info: &ChargeInfo,
        original: Option<&str>,
    ) -> OpResult {
        self.event(
            key,
            "refund",
            RequestedAction::RefundAccount,
            subscriber,
            subscriber_uri,
            amount,
            info,
            original,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn event(
        &self,
        key: &Key,
        kind: &str,
        action: RequestedAction,
        subscriber: &SubscriptionId,
        subscriber_uri: &str,
        amount: Money,
        info: &ChargeInfo,
        original: Option<&str>,
    ) -> OpResult {
        let hash = hash_of(
            kind,
            &(subscriber_uri, amount.amount, amount.currency.code(), info),
        );
        let id = self.ids.next("op");
        let session_id = self.client.new_session_id(Some(&id));
        let mut params = info.parameters(&key.app, kind);
        if let Some(o) = original {
            params.push(ServiceParameter::new(
                ServiceParameterType::OriginalSessionId,
                o,
            ));
        }
        let mut recorded = Recorded::event(action, subscriber_uri.to_string(), amount, &params);
        let mut row = self.new_row(id, key, kind, hash, session_id, &mut recorded);
        row.reference_code = info.reference_code.clone();
        let span = info_span!("charge", kind, op = %row.id, session_id = %row.session_id);
        let style = recorded.style;
        self.once(key, row, |row| {
            self.send_event(row, subscriber.clone(), action, amount, params, style)
        })
        .instrument(span)
        .await
    }

    /// Sends the recorded event in its recorded `style`; in `auto`, once more in the other
    /// style (recorded first, under a new Session-Id) when the OCS refused where its units
    /// were. Returns the row as it now stands.
    async fn send_event(
        &self,
        mut row: OperationRow,
        subscriber: SubscriptionId,
        action: RequestedAction,
        amount: Money,
        params: Vec<ServiceParameter>,
        style: Option<UnitsStyle>,
    ) -> (OpResult, OperationRow) {
        let ev = EventRequest {
            subscription: subscriber,
            action,
            amount: Some(amount),
            service_identifier: None,
            parameters: params,
            tag: None,
        };
        let kind = RequestKind::Events;
        let style = style.unwrap_or_else(|| self.client.units_style(kind));
        let mut charged = self
            .client
            .event_as(row.session_id.clone(), ev.clone(), style, None)
            .await;
        let mut fell_back = false;
        if let Some(next) = self.client.fallback(kind, &charged) {
            if let Err(f) = self.record_other_style(&mut row, next).await {
                return (Err(f), row);
            }
            fell_back = true;
            charged = self
                .client
                .event_as(row.session_id.clone(), ev, next, Some(&charged))
                .await;
        }
        if let Outcome::Unknown { kept: true, .. } = &charged.outcome {
            self.awaiting
                .insert((row.session_id.clone(), 0), row.id.clone());
        }
        let result = self.decided(kind, &charged, fell_back, &row, None, None);
        (result, row)
    }

    /// Before a request goes once more in `style`: a new Session-Id and the request as it will
    /// be sent, recorded durably (a restart then re-sends this one, never the refused one).
    async fn record_other_style(
        &self,
        row: &mut OperationRow,
        style: UnitsStyle,
    ) -> Result<(), Failure> {
        let mut recorded = Recorded::from_json(&row.request).ok_or_else(|| Failure::Store {
            reason: format!("the recorded request of {} is unreadable", row.id),
        })?;
        recorded.style = Some(style);
        let tag = row.reservation_id.clone().unwrap_or_else(|| row.id.clone());
        row.session_id = self.client.new_session_id(Some(&tag));
        row.request = recorded.to_json();
        row.updated_ms = now_ms();
        self.store.update(row.clone()).await.map_err(store_failure)
    }

    /// The charging result of what the client got, with a hint for the operator when the OCS
    /// refused where the units were and nothing more can be tried.
    fn decided(
        &self,
        kind: RequestKind,
        charged: &Charged,
        fell_back: bool,
        row: &OperationRow,
        reservation_id: Option<&str>,
        requested: Option<String>,
    ) -> OpResult {
        let units = charged.outcome.units_refusal().is_some();
        let mut result = outcome::from_outcome(
            charged.outcome.clone(),
            &row.id,
            &row.session_id,
            reservation_id,
            requested,
        );
        if units && let Err(Failure::OcsError { hint, .. }) = &mut result {
            let key = format!("credit_control.style.{}", kind.name());
            let other = crate::credit_control::style::style_name(
                crate::credit_control::style::other(charged.style),
            );
            *hint = Some(if fell_back {
                format!(
                    "the OCS refused the units in both styles: check {key} and what the OCS \
                     expects (gateway conformance)"
                )
            } else {
                format!("the OCS wants the units elsewhere: set {key} = \"{other}\" or \"auto\"")
            });
        }
        if let Err(f) = &result
            && f.is_malformed_request()
        {
            warn!(
                op = %row.id,
                session_id = %row.session_id,
                ocs = %match &charged.outcome {
                    Outcome::Refused(r) => r.origin_host.as_str(),
                    _ => "",
                },
                error = %f,
                "the OCS refused the gateway's request as malformed"
            );
        }
        result
    }

    /// Charges `total` split among end users by whole percentages (exact shares, see
    /// [`split`]); all or nothing: when a leg fails, the legs already charged are refunded.
    pub async fn charge_split(
        &self,
        key: &Key,
        total: Money,
        legs: &[(SubscriptionId, String, u32)],
        info: &ChargeInfo,
    ) -> OpResult {
        let percents: Vec<u32> = legs.iter().map(|l| l.2).collect();
        let shares = split::split(total, &percents).map_err(|e| Failure::Invalid {
            field: "splitInfo".into(),
            reason: e.to_string(),
        })?;
        for (i, l) in legs.iter().enumerate() {
            if legs[..i].iter().any(|m| m.0.key() == l.0.key()) {
                return Err(Failure::Invalid {
                    field: format!("splitInfo[{i}].endUserIdentifier"),
                    reason: format!("{} is listed twice", l.1),
                });
            }
        }
        let uris: Vec<(&str, u32)> = legs.iter().map(|l| (l.1.as_str(), l.2)).collect();
        let hash = hash_of("split", &(&uris, total.amount, total.currency.code(), info));
        let id = self.ids.next("op");
        let mut recorded = Recorded {
            request_type: RequestType::Event,
            number: 0,
            subscriber: String::new(),
            action: Some(RequestedAction::DirectDebiting),
            requested: Some(total.amount),
            used: None,
            currency: total.currency.code().to_string(),
            parameters: Vec::new(),
            style: None,
        };
        let mut row = self.new_row(id, key, "split", hash, String::new(), &mut recorded);
        row.subscriber = None;
        row.reference_code = info.reference_code.clone();
        let span = info_span!("split", op = %row.id, legs = legs.len());
        self.once(key, row, |row| async move {
            let result = self.drive_split(row.clone(), legs, shares, info).await;
            (result, row)
        })
        .instrument(span)
        .await
    }

    /// Charges each leg in turn (a leg already recorded is resolved rather than charged
    /// again), and refunds the charged legs if one fails.
    async fn drive_split(
        &self,
        parent: OperationRow,
        legs: &[(SubscriptionId, String, u32)],
        shares: Vec<Money>,
        info: &ChargeInfo,
    ) -> OpResult {
        let leg_key = Key::new(&parent.app, None);
        let mut charged: Vec<(usize, String, Money, String)> = Vec::new();
        for (i, ((sub, uri, _), share)) in legs.iter().zip(shares.iter()).enumerate() {
            let leg_id = format!("{}-leg{i}", parent.id);
            let result = self
                .split_leg(&parent, &leg_key, &leg_id, sub, uri, *share, info)
                .await;
            match result {
                Ok(done) => charged.push((i, uri.clone(), *share, done.session_id)),
                Err(cause) if cause.is_unknown() => {
                    return Err(Failure::OutcomeUnknown {
                        operation_id: parent.id.clone(),
                        reason: format!("leg {i} ({uri}): {cause}"),
                    });
                }
                Err(cause) => {
                    let (refunded, unresolved) =
                        self.compensate(&parent, &leg_key, &charged, info).await;
                    return Err(Failure::SplitFailed {
                        leg: i,
                        subscriber: uri.clone(),
                        cause: Box::new(cause),
                        refunded,
                        unresolved,
                    });
                }
            }
        }
        Ok(Done {
            operation_id: parent.id.clone(),
            session_id: charged
                .iter()
                .map(|c| c.3.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            result_code: 2001,
            reservation_id: None,
            replayed: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn split_leg(
        &self,
        parent: &OperationRow,
        leg_key: &Key,
        leg_id: &str,
        sub: &SubscriptionId,
        uri: &str,
        share: Money,
        info: &ChargeInfo,
    ) -> OpResult {
        // A leg from an earlier attempt of this split (same parent id only happens when the
        // parent is re-driven): its stored or resolved outcome stands.
        if let Ok(Some(existing)) = self.store.operation(leg_id).await {
            if existing.state.is_final()
                && let Some(r) = replay(&existing)
            {
                return r;
            }
            return self.resolve_row(existing).await;
        }
        let params = info.parameters(&parent.app, "charge-split-amount");
        let session_id = self.client.new_session_id(Some(leg_id));
        let mut recorded = Recorded::event(
            RequestedAction::DirectDebiting,
            uri.to_string(),
            share,
            &params,
        );
        let mut row = self.new_row(
            leg_id.to_string(),
            leg_key,
            "split-leg",
            parent.request_hash.clone(),
            session_id,
            &mut recorded,
        );
        row.parent = Some(parent.id.clone());
        row.reference_code = parent.reference_code.clone();
        let style = recorded.style;
        self.once(leg_key, row, |row| {
            self.send_event(
                row,
                sub.clone(),
                RequestedAction::DirectDebiting,
                share,
                params,
                style,
            )
        })
        .await
    }

    /// Refunds the legs charged so far; returns (refunded, not confirmed) descriptions.
    async fn compensate(
        &self,
        parent: &OperationRow,
        leg_key: &Key,
        charged: &[(usize, String, Money, String)],
        info: &ChargeInfo,
    ) -> (Vec<String>, Vec<String>) {
        let mut refunded = Vec::new();
        let mut unresolved = Vec::new();
        for (i, uri, share, session) in charged {
            let what = format!("leg {i} ({uri}, {share})");
            let Ok(sub) = SubscriptionId::parse(uri) else {
                unresolved.push(what);
                continue;
            };
            let id = format!("{}-leg{i}-refund", parent.id);
            let mut params = info.parameters(&parent.app, "charge-split-amount");
            params.push(ServiceParameter::new(
                ServiceParameterType::OriginalSessionId,
                session,
            ));
            let session_id = self.client.new_session_id(Some(&id));
            let mut recorded =
                Recorded::event(RequestedAction::RefundAccount, uri.clone(), *share, &params);
            let mut row = self.new_row(
                id,
                leg_key,
                "compensation",
                parent.request_hash.clone(),
                session_id,
                &mut recorded,
            );
            row.parent = Some(parent.id.clone());
            let style = recorded.style;
            let r = self
                .once(leg_key, row, |row| {
                    self.send_event(
                        row,
                        sub,
                        RequestedAction::RefundAccount,
                        *share,
                        params,
                        style,
                    )
                })
                .await;
            match r {
                Ok(_) => refunded.push(what),
                Err(e) => {
                    warn!(leg = i, error = %e, "split compensation not confirmed");
                    unresolved.push(what);
                }
            }
        }
        (refunded, unresolved)
    }

    // ---- reservations ----------------------------------------------------------------------

    /// Reserves `amount` (CCR INITIAL); the answer carries the reservation id.
    pub async fn reserve(
        &self,
        key: &Key,
        subscriber: &SubscriptionId,
        subscriber_uri: &str,
        amount: Money,
        info: &ChargeInfo,
    ) -> OpResult {
        let hash = hash_of(
            "reserve",
            &(subscriber_uri, amount.amount, amount.currency.code(), info),
        );
        let id = self.ids.next("op");
        let reservation_id = self.ids.next("rsv");
        let session_id = self.client.new_session_id(Some(&reservation_id));
        let params = info.parameters(&key.app, "reserve-amount");
        let mut recorded = Recorded {
            request_type: RequestType::Initial,
            number: 0,
            subscriber: subscriber_uri.to_string(),
            action: None,
            requested: Some(amount.amount),
            used: None,
            currency: amount.currency.code().to_string(),
            parameters: Recorded::params(&params),
            style: None,
        };
        let mut row = self.new_row(id, key, "reserve", hash, session_id, &mut recorded);
        row.reservation_id = Some(reservation_id);
        row.reference_code = info.reference_code.clone();
        let span = info_span!("reserve", op = %row.id, session_id = %row.session_id);
        let style = recorded.style;
        self.once(key, row, |row| async move {
            self.send_reserve(
                row,
                subscriber.clone(),
                subscriber_uri,
                amount,
                params,
                style,
            )
            .await
        })
        .instrument(span)
        .await
    }

    /// The INITIAL in its recorded `style` (in `auto`, once more in the other style, as
    /// [`Charging::send_event`] does), then the reservation made durable.
    async fn send_reserve(
        &self,
        mut row: OperationRow,
        subscriber: SubscriptionId,
        subscriber_uri: &str,
        amount: Money,
        params: Vec<ServiceParameter>,
        style: Option<UnitsStyle>,
    ) -> (OpResult, OperationRow) {
        let result = self
            .send_reserve_in(&mut row, subscriber, subscriber_uri, amount, params, style)
            .await;
        (result, row)
    }

    async fn send_reserve_in(
        &self,
        row: &mut OperationRow,
        subscriber: SubscriptionId,
        subscriber_uri: &str,
        amount: Money,
        params: Vec<ServiceParameter>,
        style: Option<UnitsStyle>,
    ) -> OpResult {
        let reservation_id = row.reservation_id.clone().unwrap_or_default();
        let kind = RequestKind::Sessions;
        let style = style.unwrap_or_else(|| self.client.units_style(kind));
        let reserve = |session_id: String, style, after: Option<Charged>| {
            let (subscriber, params) = (subscriber.clone(), params.clone());
            async move {
                match self
                    .client
                    .reserve_as(
                        session_id,
                        subscriber,
                        amount,
                        params,
                        style,
                        after.as_ref(),
                    )
                    .await
                {
                    Ok(c) => Ok(c),
                    Err(SessionError::TooMany(_)) => Err(Failure::TooManyReservations),
                    Err(e) => Err(Failure::Unavailable {
                        reason: e.to_string(),
                    }),
                }
            }
        };
        let mut charged = reserve(row.session_id.clone(), style, None).await?;
        let mut fell_back = false;
        if let Some(next) = self.client.fallback(kind, &charged) {
            self.record_other_style(row, next).await?;
            fell_back = true;
            charged = reserve(row.session_id.clone(), next, Some(charged)).await?;
        }
        let result = match &charged.outcome {
            // The client releases a reservation whose INITIAL went unanswered.
            Outcome::Unknown { reason, .. } => Err(Failure::NotReserved {
                reason: reason.clone(),
            }),
            _ => self.decided(
                kind,
                &charged,
                fell_back,
                row,
                Some(&reservation_id),
                Some(amount.to_string()),
            ),
        };
        if result.is_ok() {
            let Some(rec) = self.client.reservation(&row.session_id) else {
                return Err(Failure::NotReserved {
                    reason: "the reservation closed at once".into(),
                });
            };
            let now = now_ms();
            let r = ReservationRow {
                id: reservation_id.clone(),
                app: row.app.clone(),
                session_id: row.session_id.clone(),
                subscriber: subscriber_uri.to_string(),
                currency: amount.currency.code().to_string(),
                reserved: rec.granted.amount,
                charged: Decimal::ZERO,
                last_request_number: rec.last_request_number,
                state: ReservationState::Open,
                expires_ms: now.saturating_add(millis(rec.expires_in)),
                created_ms: now,
                updated_ms: now,
                pending: None,
            };
            if let Err(e) = self.store.put_reservation(r.clone()).await {
                // Not durable: do not hand out a reservation a restart would forget.
                let _ = self
                    .client
                    .terminate(&row.session_id, None, Vec::new())
                    .await;
                return Err(store_failure(e));
            }
            self.reservations.insert(
                reservation_id,
                Arc::new(Slot {
                    app: row.app.clone(),
                    row: Mutex::new(SlotState {
                        row: r,
                        unresolved: false,
                    }),
                }),
            );
        }
        result
    }

    /// The final outcome recorded for `key` (replayed), or `KeyReused` when the key was used
    /// for another request; `None` when there is none, or it is not final (the idempotent
    /// frame then takes it as usual).
    async fn earlier(&self, key: &Key, hash: &str) -> Option<OpResult> {
        let k = key.key.as_deref()?;
        let old = self.store.operation_by_key(&key.app, k).await.ok()??;
        if old.request_hash != hash {
            return Some(Err(Failure::KeyReused { key: k.to_string() }));
        }
        if old.state.is_final() {
            return replay(&old);
        }
        None
    }

    /// The slot of a reservation the caller owns.
    async fn slot(&self, app: &str, id: &str) -> Result<Arc<Slot>, Failure> {
        if let Some(s) = self.reservations.get(id).map(|s| Arc::clone(&s))
            && s.app == app
        {
            return Ok(s);
        }
        match self.store.reservation(id).await {
            // Opened through another gateway instance on this store (or before a restart):
            // taken up here, the store's row being the truth of it.
            Ok(Some(r)) if r.app == app && r.state == ReservationState::Open => {
                Ok(self.adopt(r).await)
            }
            Ok(Some(r)) if r.app == app => Err(Failure::ReservationClosed {
                id: id.to_string(),
                state: r.state.name().to_string(),
            }),
            Ok(_) => Err(Failure::ReservationUnknown { id: id.to_string() }),
            Err(e) => Err(store_failure(e)),
        }
    }

    /// A slot for the open reservation `r` read from the store, with its session in the
    /// client; the slot already here if another task made one meanwhile.
    async fn adopt(&self, r: ReservationRow) -> Arc<Slot> {
        let (r, unresolved) = self.settle_pending(r).await;
        self.ensure_session(&r);
        let id = r.id.clone();
        let slot = Arc::new(Slot {
            app: r.app.clone(),
            row: Mutex::new(SlotState { row: r, unresolved }),
        });
        Arc::clone(self.reservations.entry(id).or_insert(slot).value())
    }

    /// `r` with its step in flight settled when that is done: the operation resolved and
    /// nobody else working on it (its lease ran out, or it is this instance's), its effect
    /// applied to the reservation in the store. The flag says a step is still in flight.
    async fn settle_pending(&self, r: ReservationRow) -> (ReservationRow, bool) {
        let Some(op_id) = r.pending.clone() else {
            return (r, false);
        };
        let op = match self.store.operation(&op_id).await {
            Ok(Some(o)) => o,
            Ok(None) => {
                let mut clear = r.clone();
                clear.pending = None;
                return match self
                    .store
                    .step_reservation(clear.clone(), r.last_request_number)
                    .await
                {
                    Ok(true) => (clear, false),
                    _ => (r, true),
                };
            }
            Err(_) => return (r, true),
        };
        if matches!(op.state, OpState::Pending | OpState::Unknown) || self.leased_elsewhere(&op) {
            return (r, true);
        }
        let (Some(recorded), Some(result)) = (Recorded::from_json(&op.request), replay(&op)) else {
            return (r, true);
        };
        let settled = effect_of(&r, &op, &recorded, &result);
        match self
            .store
            .step_reservation(settled.clone(), r.last_request_number)
            .await
        {
            Ok(true) => (settled, false),
            _ => (r, true),
        }
    }

    /// The client's session of `r` brought to what the store says (a reservation opened or
    /// stepped by another instance, or restored after a restart).
    fn ensure_session(&self, r: &ReservationRow) {
        let current = self.client.reservation(&r.session_id);
        if current
            .as_ref()
            .is_some_and(|c| c.last_request_number == r.last_request_number)
        {
            return;
        }
        if let Some(rec) = record_of(r, current.and_then(|c| c.style))
            && let Err(e) = self.client.restore(rec)
        {
            warn!(reservation = %r.id, error = %e, "reservation session not restored");
        }
    }

    /// The slot's row read again from the store (another instance stepped it).
    async fn refresh(&self, st: &mut SlotState) {
        if let Ok(Some(fresh)) = self.store.reservation(&st.row.id).await {
            let (fresh, unresolved) = self.settle_pending(fresh).await;
            st.unresolved = unresolved;
            self.ensure_session(&fresh);
            st.row = fresh;
        }
    }

    /// Reserves `amount` more on a reservation (CCR UPDATE: RSU = reserved + amount).
    pub async fn reserve_additional(
        &self,
        key: &Key,
        reservation_id: &str,
        amount: Money,
        info: &ChargeInfo,
    ) -> OpResult {
        self.reservation_step(key, "reserve-additional", reservation_id, amount, info)
            .await
    }

    /// Charges `amount` against a reservation (CCR UPDATE: USU = amount, RSU = what is left).
    pub async fn charge_reservation(
        &self,
        key: &Key,
        reservation_id: &str,
        amount: Money,
        info: &ChargeInfo,
    ) -> OpResult {
        self.reservation_step(key, "charge-reservation", reservation_id, amount, info)
            .await
    }

    /// Releases what is left of a reservation (CCR TERMINATION, USU 0). Releasing a released
    /// reservation succeeds again; one the OCS already forgot (5002) counts as released.
    pub async fn release(&self, key: &Key, reservation_id: &str) -> OpResult {
        let slot = match self.slot(&key.app, reservation_id).await {
            Ok(s) => s,
            Err(Failure::ReservationClosed { id, state }) if state == "released" => {
                return Ok(Done {
                    operation_id: String::new(),
                    session_id: String::new(),
                    result_code: 2001,
                    reservation_id: Some(id),
                    replayed: true,
                });
            }
            Err(e) => return Err(e),
        };
        let zero = Money::zero(
            self.slot_currency(&slot)
                .await
                .unwrap_or(self.client.config().default_currency),
        );
        self.reservation_step(
            key,
            "release",
            reservation_id,
            zero,
            &ChargeInfo {
                description: None,
                code: None,
                reference_code: None,
                merchant: None,
            },
        )
        .await
    }

    /// Charges `amount` against a reservation and releases the rest in one CCR TERMINATION
    /// (USU = amount): a two-step payment's confirmation.
    pub async fn settle(
        &self,
        key: &Key,
        reservation_id: &str,
        amount: Money,
        info: &ChargeInfo,
    ) -> OpResult {
        self.reservation_step(key, "settle", reservation_id, amount, info)
            .await
    }

    async fn slot_currency(&self, slot: &Slot) -> Option<iso_currency::Currency> {
        iso_currency::Currency::from_code(&slot.row.lock().await.row.currency)
    }

    async fn reservation_step(
        &self,
        key: &Key,
        kind: &str,
        reservation_id: &str,
        amount: Money,
        info: &ChargeInfo,
    ) -> OpResult {
        let hash = hash_of(
            kind,
            &(reservation_id, amount.amount, amount.currency.code(), info),
        );
        // A retry is answered as the first request was, before the reservation's state (which
        // that request changed: less left, or closed) is looked at.
        if let Some(earlier) = self.earlier(key, &hash).await {
            return earlier;
        }
        let slot = self.slot(&key.app, reservation_id).await?;
        let Ok(mut state) = slot.row.try_lock() else {
            return Err(Failure::ReservationBusy {
                id: reservation_id.to_string(),
            });
        };
        if state.unresolved || state.row.pending.is_some() {
            // A step still unresolved (here before a restart, or by another instance): it
            // may have been resolved since.
            self.refresh(&mut state).await;
            if state.unresolved {
                return Err(Failure::ReservationBusy {
                    id: reservation_id.to_string(),
                });
            }
        }
        let r = state.row.clone();
        self.ensure_session(&r);
        if r.state != ReservationState::Open {
            return Err(Failure::ReservationClosed {
                id: r.id.clone(),
                state: r.state.name().into(),
            });
        }
        if amount.currency.code() != r.currency {
            return Err(Failure::CurrencyMismatch {
                given: amount.currency.code().into(),
                expected: r.currency.clone(),
            });
        }
        let (request_type, used, requested) = match kind {
            "reserve-additional" => (
                RequestType::Update,
                Decimal::ZERO,
                Some(r.reserved + amount.amount),
            ),
            "charge-reservation" => {
                if amount.amount > r.reserved {
                    return Err(Failure::ExceedsReservation {
                        requested: amount.to_string(),
                        remaining: Money::new(r.reserved, amount.currency).to_string(),
                    });
                }
                let left = r.reserved - amount.amount;
                (
                    RequestType::Update,
                    amount.amount,
                    (!left.is_zero()).then_some(left),
                )
            }
            "settle" => {
                if amount.amount > r.reserved {
                    return Err(Failure::ExceedsReservation {
                        requested: amount.to_string(),
                        remaining: Money::new(r.reserved, amount.currency).to_string(),
                    });
                }
                (RequestType::Termination, amount.amount, None)
            }
            // release, expire
            _ => (RequestType::Termination, Decimal::ZERO, None),
        };
        let number = r.last_request_number + 1;
        let params = info.parameters(&key.app, kind);
        let mut recorded = Recorded {
            request_type,
            number,
            subscriber: r.subscriber.clone(),
            action: None,
            requested,
            used: Some(used),
            currency: r.currency.clone(),
            parameters: Recorded::params(&params),
            // UPDATE and TERMINATION go in the style of their session's INITIAL.
            style: self
                .client
                .reservation(&r.session_id)
                .and_then(|rec| rec.style),
        };
        let id = self.ids.next("op");
        let mut row = self.new_row(id, key, kind, hash, r.session_id.clone(), &mut recorded);
        row.reservation_id = Some(r.id.clone());
        row.amount = Some(amount.amount);
        row.reference_code = info.reference_code.clone();
        let span = info_span!("reservation", kind, op = %row.id, session_id = %r.session_id);
        let currency = amount.currency;
        let op_id = row.id.clone();
        let stale = std::sync::atomic::AtomicBool::new(false);
        let stale = &stale;
        let result = self
            .once(key, row, |row| async move {
                let result = async {
                    // The request number is durable before the request goes out, decided in
                    // the store: of two instances stepping it at once, one wins; the step in
                    // flight is recorded so that none takes another until it resolves.
                    let mut next = r.clone();
                    next.last_request_number = number;
                    next.pending = Some(row.id.clone());
                    next.updated_ms = now_ms();
                    match self
                        .store
                        .step_reservation(next, r.last_request_number)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            stale.store(true, std::sync::atomic::Ordering::Relaxed);
                            return Err(Failure::ReservationBusy { id: r.id.clone() });
                        }
                        Err(e) => return Err(store_failure(e)),
                    }
                    let money = |a: Decimal| Money::new(a, currency);
                    let outcome = match request_type {
                        RequestType::Termination => {
                            self.client
                                .terminate(&r.session_id, Some(money(used)), params)
                                .await
                        }
                        _ => {
                            self.client
                                .update(
                                    &r.session_id,
                                    Some(money(used)),
                                    requested.map(money),
                                    params,
                                )
                                .await
                        }
                    };
                    let outcome = match outcome {
                        Ok(o) => o,
                        Err(SessionError::Busy) => {
                            return Err(Failure::ReservationBusy { id: r.id.clone() });
                        }
                        Err(e) => {
                            return Err(Failure::ReservationClosed {
                                id: r.id.clone(),
                                state: e.to_string(),
                            });
                        }
                    };
                    if let Outcome::Unknown { kept: true, .. } = &outcome {
                        self.awaiting
                            .insert((r.session_id.clone(), number), row.id.clone());
                    }
                    outcome::from_outcome(
                        outcome,
                        &row.id,
                        &row.session_id,
                        Some(&r.id),
                        requested.map(|a| money(a).to_string()),
                    )
                }
                .await;
                (result, row)
            })
            .instrument(span)
            .await;
        // Bring the slot and its row up to date with what the client now holds (or, when
        // another instance had stepped it, with the store).
        let replayed = matches!(&result, Ok(d) if d.replayed);
        if stale.load(std::sync::atomic::Ordering::Relaxed) {
            self.refresh(&mut state).await;
        } else if !replayed {
            let mut updated = self.sync_row(&state.row, kind, used, &result);
            if matches!(&result, Err(f) if f.is_unknown()) {
                // Still in flight: no step until it resolves.
                updated.pending = Some(op_id);
            }
            // Conditional on the number this step wrote: an instance that took it over
            // meanwhile (this one's lease ran out) keeps what it decided.
            match self.store.step_reservation(updated.clone(), number).await {
                Ok(true) => state.row = updated,
                Ok(false) => self.refresh(&mut state).await,
                Err(e) => {
                    warn!(error = %e, "reservation state not recorded");
                    state.row = updated;
                }
            }
        }
        let closed = state.row.state != ReservationState::Open;
        drop(state);
        if closed {
            self.reservations.remove(reservation_id);
        }
        result
    }

    /// The reservation row after an operation, from the client's session map.
    fn sync_row(
        &self,
        before: &ReservationRow,
        kind: &str,
        used: Decimal,
        result: &OpResult,
    ) -> ReservationRow {
        let mut r = before.clone();
        r.updated_ms = now_ms();
        r.pending = None;
        match self.client.reservation(&before.session_id) {
            Some(rec) => {
                r.reserved = rec.granted.amount;
                r.last_request_number = rec.last_request_number.max(r.last_request_number);
                r.expires_ms = r.updated_ms.saturating_add(millis(rec.expires_in));
                if result.is_ok() && matches!(kind, "charge-reservation" | "settle") {
                    r.charged += used;
                }
            }
            None => {
                // The session ended: released, or gone after a refusal.
                r.reserved = Decimal::ZERO;
                r.state = match result {
                    Ok(_) | Err(Failure::ReservationGone { .. }) if kind == "expire" => {
                        ReservationState::Expired
                    }
                    Ok(_) if kind == "release" => ReservationState::Released,
                    Ok(_) => ReservationState::Released,
                    Err(Failure::ReservationGone { .. }) if kind == "release" => {
                        ReservationState::Released
                    }
                    Err(f) if f.is_unknown() => r.state,
                    Err(_) => ReservationState::Gone,
                };
                if result.is_ok() && matches!(kind, "charge-reservation" | "settle") {
                    r.charged += used;
                }
            }
        }
        r
    }

    /// A reservation the caller owns.
    pub async fn reservation(&self, app: &str, id: &str) -> Option<ReservationView> {
        // The store's row: another instance may have stepped it since this one did.
        let row = match self.store.reservation(id).await {
            Ok(Some(r)) if r.app == app => r,
            Ok(_) => return None,
            Err(_) => match self.reservations.get(id).map(|s| Arc::clone(&s)) {
                Some(s) if s.app == app => s.row.lock().await.row.clone(),
                _ => return None,
            },
        };
        Some(ReservationView {
            id: row.id,
            session_id: row.session_id,
            subscriber: row.subscriber,
            currency: row.currency,
            reserved: row.reserved,
            charged: row.charged,
            state: row.state.name(),
            expires_ms: row.expires_ms,
        })
    }

    // ---- restart, resolution, expiry --------------------------------------------------------

    async fn restore(&self) -> Result<(), Failure> {
        let rows = self
            .store
            .open_reservations()
            .await
            .map_err(store_failure)?;
        let unresolved = self.store.unresolved().await.map_err(store_failure)?;
        let mut restored = 0usize;
        for r in rows {
            let Some(rec) = record_of(&r, None) else {
                warn!(reservation = %r.id, "unreadable reservation row left as it is");
                continue;
            };
            if let Err(e) = self.client.restore(rec) {
                warn!(reservation = %r.id, error = %e, "reservation not restored");
                continue;
            }
            let pending = unresolved
                .iter()
                .any(|o| o.reservation_id.as_deref() == Some(r.id.as_str()));
            self.reservations.insert(
                r.id.clone(),
                Arc::new(Slot {
                    app: r.app.clone(),
                    row: Mutex::new(SlotState {
                        row: r,
                        unresolved: pending,
                    }),
                }),
            );
            restored += 1;
        }
        if restored > 0 || !unresolved.is_empty() {
            info!(
                reservations = restored,
                unresolved = unresolved.len(),
                "restored from the store"
            );
        }
        Ok(())
    }

    /// Re-sends every recorded request whose outcome is not known and that nothing in this
    /// process is working on.
    pub async fn resolve_unresolved(&self) {
        let rows = match self.store.unresolved().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "cannot read unresolved operations");
                return;
            }
        };
        for row in rows {
            if self.active.contains_key(&row.id)
                || self
                    .awaiting
                    .contains_key(&(row.session_id.clone(), row.request_number))
                || row.kind == "split"
                || self.leased_elsewhere(&row)
            {
                continue;
            }
            let _ = self.resolve_row(row).await;
        }
    }

    /// Learns the outcome of a recorded operation by sending its request again with the T
    /// flag (the OCS answers a duplicate with its first answer), and records it.
    async fn resolve_row(&self, mut row: OperationRow) -> OpResult {
        if row.kind == "split" {
            return Err(Failure::OutcomeUnknown {
                operation_id: row.id.clone(),
                reason: "a leg of this split is not resolved yet".into(),
            });
        }
        let being_resolved = || Failure::OutcomeUnknown {
            operation_id: row.id.clone(),
            reason: "being resolved".into(),
        };
        if self
            .awaiting
            .contains_key(&(row.session_id.clone(), row.request_number))
        {
            return Err(being_resolved());
        }
        // Held until the outcome is recorded (or this future is dropped).
        let Some(_claim) = self.claim(&row.id) else {
            return Err(being_resolved());
        };
        // The list `row` came from may be older than its outcome.
        if let Ok(Some(fresh)) = self.store.operation(&row.id).await {
            if fresh.state.is_final()
                && let Some(r) = replay(&fresh)
            {
                return r;
            }
            row.lease = fresh.lease;
        }
        // Across instances: only the holder of its lease re-sends it.
        let now = now_ms();
        let lease = self.lease_from(now);
        match self.store.claim(&row.id, lease.clone(), now).await {
            Ok(true) => row.lease = Some(lease),
            Ok(false) => {
                return Err(Failure::InProgress {
                    operation_id: row.id.clone(),
                });
            }
            Err(e) => return Err(store_failure(e)),
        }
        let Some(recorded) = Recorded::from_json(&row.request) else {
            return Err(Failure::OutcomeUnknown {
                operation_id: row.id.clone(),
                reason: "the recorded request is unreadable".into(),
            });
        };
        let Some(req) = recorded.to_request(&self.client, &row.session_id) else {
            return Err(Failure::OutcomeUnknown {
                operation_id: row.id.clone(),
                reason: "the recorded request cannot be rebuilt".into(),
            });
        };
        let slot = match &row.reservation_id {
            Some(id) if row.kind != "reserve" => self.reservations.get(id).map(|s| Arc::clone(&s)),
            _ => None,
        };
        let mut answered_by = None;
        let result = if row.kind == "reserve" {
            // Nobody holds this reservation's id: release whatever the OCS may hold.
            let mut t = self
                .client
                .base_request(&row.session_id, RequestType::Termination, 1);
            t.style = req.style;
            t.subscription = req.subscription.clone();
            t.used = req.used.clone().or_else(|| {
                iso_currency::Currency::from_code(&recorded.currency)
                    .map(|c| crate::credit_control::Units::money(Money::zero(c)))
            });
            let o = self.client.send_once(&t, false).await;
            match o {
                Outcome::Unknown { reason, .. } | Outcome::Unavailable(reason) => {
                    Err(Failure::OutcomeUnknown {
                        operation_id: row.id.clone(),
                        reason,
                    })
                }
                _ => Err(Failure::NotReserved {
                    reason: "the request was interrupted; any reservation was released".into(),
                }),
            }
        } else {
            debug!(op = %row.id, session_id = %row.session_id, "re-sending with the T flag");
            let resent = self.client.resend(&req).await;
            answered_by = resent.answered_by;
            outcome::from_outcome(
                resent.outcome,
                &row.id,
                &row.session_id,
                row.reservation_id.as_deref(),
                None,
            )
        };
        let new_state = match &result {
            // A failure to reach the OCS leaves it unresolved (never retryable: it may
            // have been applied before).
            Err(Failure::Unavailable { .. } | Failure::ProtocolError { .. }) => {
                return Err(Failure::OutcomeUnknown {
                    operation_id: row.id.clone(),
                    reason: "the OCS cannot be reached to resolve it".into(),
                });
            }
            Err(Failure::NotReserved { .. }) => OpState::Refused,
            r => state_of(r),
        };
        if new_state == OpState::Unknown {
            return result;
        }
        row.state = new_state;
        row.result_code = match &result {
            Ok(d) => Some(d.result_code),
            Err(f) => f.result_code(),
        };
        row.outcome = Some(outcome_json(&result));
        row.updated_ms = now_ms();
        if let Err(e) = self.store.update(row.clone()).await {
            return Err(store_failure(e));
        }
        info!(op = %row.id, state = row.state.name(), "resolved");
        self.note_restart(&row, answered_by.as_deref()).await;
        if let Some(slot) = slot {
            self.apply_resolved(&slot, &row, &recorded, &result).await;
        }
        result
    }

    /// An operation just resolved by a re-sent request that `answered_by` answered: when that
    /// OCS restarted (its Origin-State-Id changed) after the operation was first sent, its
    /// duplicate detection may have been lost and the re-sent request applied again. Counted
    /// (`gateway_resolved_across_ocs_restart_total`), logged and recorded for the operator
    /// (`GET /admin/ocs`); nothing else changes.
    async fn note_restart(&self, row: &OperationRow, answered_by: Option<&str>) {
        let Some(ocs) = answered_by else { return };
        let Some((before, after)) = self.client.restart_since(ocs, row.created_ms) else {
            return;
        };
        metrics::counter!("gateway_resolved_across_ocs_restart_total").increment(1);
        warn!(
            op = %row.id,
            session_id = %row.session_id,
            ocs,
            origin_state_id_before = ?before,
            origin_state_id_after = after,
            state = row.state.name(),
            "resolved across an OCS restart: the OCS may have applied the re-sent request a \
             second time; reconcile it (GET /admin/ocs)"
        );
        let r = learnt::AcrossRestart {
            operation_id: row.id.clone(),
            app: row.app.clone(),
            kind: row.kind.clone(),
            session_id: row.session_id.clone(),
            request_number: row.request_number,
            ocs: ocs.to_ascii_lowercase(),
            origin_state_id_before: before,
            origin_state_id_after: after,
            sent_ms: row.created_ms,
            resolved_ms: now_ms(),
            state: row.state.name().into(),
            result_code: row.result_code,
        };
        if let Err(e) = learnt::record_restart(&self.store, &r).await {
            warn!(op = %row.id, error = %e, "resolution across an OCS restart not recorded");
        }
    }

    /// A reservation operation resolved after a restart: the slot follows.
    async fn apply_resolved(
        &self,
        slot: &Slot,
        row: &OperationRow,
        recorded: &Recorded,
        result: &OpResult,
    ) {
        let mut st = slot.row.lock().await;
        let r = effect_of(&st.row, row, recorded, result);
        if r.state == ReservationState::Open {
            // Bring the client's session to the same numbers and amounts.
            if let Some(rec) = record_of(&r, None) {
                let _ = self.client.restore(rec);
            }
        }
        st.unresolved = false;
        match self
            .store
            .step_reservation(r.clone(), row.request_number)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Another instance settled it meanwhile: the store has it.
                self.refresh(&mut st).await;
                return;
            }
            Err(e) => warn!(error = %e, "reservation state not recorded"),
        }
        let closed = r.state != ReservationState::Open;
        st.row = r;
        drop(st);
        if closed {
            self.reservations
                .remove(&row.reservation_id.clone().unwrap_or_default());
        }
    }

    /// A late outcome from the client's resolver.
    async fn on_resolution(&self, res: Resolution) {
        let Some((_, op_id)) = self
            .awaiting
            .remove(&(res.session_id.clone(), res.request_number))
        else {
            return;
        };
        let Ok(Some(mut row)) = self.store.operation(&op_id).await else {
            return;
        };
        if row.state.is_final() {
            return;
        }
        let result = outcome::from_outcome(
            res.outcome,
            &row.id,
            &row.session_id,
            row.reservation_id.as_deref(),
            None,
        );
        let state = state_of(&result);
        if state == OpState::Unknown {
            return;
        }
        row.state = state;
        row.result_code = match &result {
            Ok(d) => Some(d.result_code),
            Err(f) => f.result_code(),
        };
        row.outcome = Some(outcome_json(&result));
        row.updated_ms = now_ms();
        info!(op = %row.id, state = row.state.name(), "late outcome recorded");
        let _ = self.store.update(row.clone()).await;
        self.note_restart(&row, res.answered_by.as_deref()).await;
        if let Some(id) = &row.reservation_id
            && let Some(slot) = self.reservations.get(id).map(|s| Arc::clone(&s))
        {
            let mut st = slot.row.lock().await;
            let used = Recorded::from_json(&row.request)
                .and_then(|r| r.used)
                .unwrap_or_default();
            let updated = self.sync_row(&st.row, &row.kind, used, &result);
            let _ = self.store.put_reservation(updated.clone()).await;
            let closed = updated.state != ReservationState::Open;
            st.row = updated;
            drop(st);
            if closed {
                self.reservations.remove(id);
            }
        }
    }

    /// Releases reservations past their expiry: a recorded `expire` operation (CCR-T with
    /// nothing used) through the same step as a release, so that one instance, whichever,
    /// does it once. Every `cluster.lease` the store is also read for expired reservations
    /// opened through another instance (one that died does not reap its own).
    pub async fn reap(&self) -> usize {
        let now = now_ms();
        let scan = {
            let mut last = self.last_scan.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.elapsed() >= self.settings.lease;
            if due {
                *last = std::time::Instant::now();
            }
            due
        };
        if scan && let Ok(rows) = self.store.open_reservations().await {
            for r in rows {
                if r.expires_ms <= now && !self.reservations.contains_key(&r.id) {
                    self.adopt(r).await;
                }
            }
        }
        let due: Vec<(String, String, String)> = self
            .reservations
            .iter()
            .filter_map(|e| {
                let st = e.value().row.try_lock().ok()?;
                (st.row.state == ReservationState::Open && st.row.expires_ms <= now).then(|| {
                    (
                        e.key().clone(),
                        e.value().app.clone(),
                        st.row.currency.clone(),
                    )
                })
            })
            .collect();
        let mut n = 0;
        for (id, app, currency) in due {
            let Some(cur) = iso_currency::Currency::from_code(&currency) else {
                continue;
            };
            info!(reservation = %id, "reservation expired: releasing");
            let r = self
                .reservation_step(
                    &Key::new(&app, None),
                    "expire",
                    &id,
                    Money::zero(cur),
                    &ChargeInfo {
                        description: None,
                        code: None,
                        reference_code: None,
                        merchant: None,
                    },
                )
                .await;
            match r {
                Ok(_) => n += 1,
                Err(e) => debug!(reservation = %id, error = %e, "expiry not done yet"),
            }
        }
        n
    }
}

/// A reservation after the operation `op` on it resolved as `result` (`recorded`: its
/// request), its in-flight mark cleared.
fn effect_of(
    before: &ReservationRow,
    op: &OperationRow,
    recorded: &Recorded,
    result: &OpResult,
) -> ReservationRow {
    let mut r = before.clone();
    r.updated_ms = now_ms();
    r.pending = None;
    match (op.kind.as_str(), result) {
        ("release", Ok(_) | Err(Failure::ReservationGone { .. })) => {
            r.state = ReservationState::Released;
            r.reserved = Decimal::ZERO;
        }
        ("expire", Ok(_) | Err(Failure::ReservationGone { .. })) => {
            r.state = ReservationState::Expired;
            r.reserved = Decimal::ZERO;
        }
        ("settle", Ok(_)) => {
            r.state = ReservationState::Released;
            r.reserved = Decimal::ZERO;
            r.charged += recorded.used.unwrap_or_default();
        }
        (_, Ok(_)) => {
            r.reserved = recorded.requested.unwrap_or_default();
            r.charged += recorded.used.unwrap_or_default();
        }
        // Nothing reached the OCS: the reservation is as it was before the step.
        (_, Err(f)) if f.is_retryable() => {
            r.last_request_number = r
                .last_request_number
                .min(op.request_number.saturating_sub(1));
            return r;
        }
        (_, Err(_)) => {
            r.state = ReservationState::Gone;
            r.reserved = Decimal::ZERO;
        }
    }
    r.last_request_number = r.last_request_number.max(op.request_number);
    r
}

/// The client's record of a reservation as the store holds it (`None` when the row does not
/// read: subscriber or currency).
fn record_of(
    r: &ReservationRow,
    style: Option<crate::credit_control::UnitsStyle>,
) -> Option<crate::credit_control::ReservationRecord> {
    let sub = SubscriptionId::parse(&r.subscriber).ok()?;
    let cur = iso_currency::Currency::from_code(&r.currency)?;
    Some(crate::credit_control::ReservationRecord {
        session_id: r.session_id.clone(),
        subscription: sub,
        granted: Money::new(r.reserved, cur),
        used: Money::new(r.charged, cur),
        last_request_number: r.last_request_number,
        expires_in: Duration::from_millis(u64::try_from(r.expires_ms - now_ms()).unwrap_or(0)),
        style,
    })
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
