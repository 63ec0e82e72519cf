//! The order pipeline: a product order's steps are data on the order, run one at a time,
//! each recorded in the store before and after it runs, so that any instance can take an
//! order up where a stopped one left it.
//!
//! ```text
//! validate --> reserveResources --> authorizePayment --> <tasks...> --> assignResources
//!   --> capturePayment --> notify --> completed
//!
//! a step:   pending --(recorded running, attempts+1)--> run --> done (result recorded)
//!                                                          +--> retry later (a passing failure:
//!                                                          |    no OCS, 5xx, timeout), up to
//!                                                          |    [orders] step_attempts
//!                                                          +--> failed: compensate
//! compensate: the done steps, last first: reserveResources -> release the numbers,
//!             authorizePayment -> cancel the reservation (CCR-T with nothing used) or void,
//!             a task -> {"action": "cancel"} posted, assignResources -> numbers taken back;
//!             then the order is `failed` (`rejected` when validation refused it) and says why,
//!             and its cart is active again.
//! ```
//!
//! Nothing is paid twice: the carrier-billing payment is the CAMARA checkout purchase
//! `<order>-pay` (one payment per purchase, its charging key derived from it), so a step run
//! again after a restart learns the first run's outcome instead of charging again; an
//! external service gets the same `Idempotency-Key` on every try. An order is run under the
//! lock `tmf622.order:<id>` ([`crate::charging::locks`], a lease in the store when it is
//! shared): one instance at a time. The money is captured after the numbers are assigned, so
//! that what can still fail after the capture is only the notification (an outbox write).

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::ApiState;
use crate::api::camara::checkout::{self, PurchaseStatus};
use crate::api::camara::error::CamaraError;
use crate::api::tmf663::model::{self as cart, CartDoc, CartItem, Chosen, Contact, Total};
use crate::config::orders::OrdersConfig;
use crate::store::{ResourceFilter, ResourceRow, StoreError, Write, now_ms};

/// Store kind of an order row.
pub const KIND_ORDER: &str = "tmf622.order";

/// Most bytes of an external service's answer recorded on the order.
const MAX_ANSWER: usize = 16 * 1024;

// ---- the order as stored -----------------------------------------------------------------------

/// TMF622 `state` of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OrderState {
    Acknowledged,
    InProgress,
    Completed,
    /// Validation refused it: nothing was held or paid.
    Rejected,
    /// A later step failed; what the earlier ones did was undone.
    Failed,
}

impl OrderState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Acknowledged => "acknowledged",
            Self::InProgress => "inProgress",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "acknowledged" => Self::Acknowledged,
            "inProgress" => Self::InProgress,
            "completed" => Self::Completed,
            "rejected" => Self::Rejected,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Rejected | Self::Failed)
    }
}

/// How the customer pays (the order's `paymentMethod`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "@type", rename_all = "camelCase")]
pub enum PaymentMethod {
    /// Charged to the phone bill / prepaid balance of `phoneNumber` through the OCS.
    #[serde(rename_all = "camelCase")]
    CarrierBilling { phone_number: String },
    /// Authorised, captured or voided by `[orders.external_payment]`; `token` is the
    /// customer's payment token at that service, passed through.
    #[serde(rename_all = "camelCase")]
    ExternalPayment {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum StepKind {
    Validate,
    ReserveResources,
    AuthorizePayment,
    /// `[[orders.tasks]]` of this name.
    Task,
    AssignResources,
    CapturePayment,
    Notify,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StepState {
    Pending,
    /// Recorded before it runs: found so after a restart, it is run again (each step is
    /// safe to run twice).
    Running,
    Done,
    Failed,
    /// Done, then undone by its compensation.
    Compensated,
    /// Its compensation could not be made (recorded for an operator).
    CompensationFailed,
}

/// One step of an order's pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    pub state: StepState,
    pub attempts: u32,
    /// What it got (a payment's status, a service's answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tries of its compensation.
    #[serde(default)]
    pub undo_attempts: u32,
    pub updated_ms: i64,
}

impl Step {
    fn new(name: &str, kind: StepKind, now: i64) -> Self {
        Self {
            name: name.into(),
            kind,
            state: StepState::Pending,
            attempts: 0,
            result: None,
            error: None,
            undo_attempts: 0,
            updated_ms: now,
        }
    }
}

/// The amount checkout charges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub amount: Decimal,
    pub currency: String,
}

/// A product order, as stored (`ResourceRow::body`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderDoc {
    pub id: String,
    /// The cart it was made of.
    pub cart: String,
    /// The cart's items that count, as they were at checkout.
    pub items: Vec<CartItem>,
    pub total: Vec<Total>,
    /// The one-time total, charged by the payment steps (none: nothing to charge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge: Option<Charge>,
    pub payment: PaymentMethod,
    #[serde(default)]
    pub contact: Vec<Contact>,
    #[serde(default)]
    pub related_party: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The customer (TMF629 id) whose cart it was made of: that customer's token sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    pub state: OrderState,
    pub steps: Vec<Step>,
    /// A step failed: the done steps are being undone.
    #[serde(default)]
    pub compensating: bool,
    /// Why the order was rejected or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_ms: Option<i64>,
}

impl OrderDoc {
    /// The carrier-billing purchase that pays it.
    pub fn purchase_id(&self) -> String {
        format!("{}-pay", self.id)
    }

    /// Every resource chosen in its items.
    pub fn resources(&self) -> impl Iterator<Item = &Chosen> {
        self.items.iter().flat_map(|i| &i.resources)
    }
}

/// The steps of a new order: the fixed ones, with `[[orders.tasks]]` after the payment's
/// authorisation.
pub fn plan(cfg: &OrdersConfig, now: i64) -> Vec<Step> {
    let mut steps = vec![
        Step::new("validate", StepKind::Validate, now),
        Step::new("reserveResources", StepKind::ReserveResources, now),
        Step::new("authorizePayment", StepKind::AuthorizePayment, now),
    ];
    steps.extend(
        cfg.tasks
            .iter()
            .map(|t| Step::new(&t.name, StepKind::Task, now)),
    );
    steps.extend([
        Step::new("assignResources", StepKind::AssignResources, now),
        Step::new("capturePayment", StepKind::CapturePayment, now),
        Step::new("notify", StepKind::Notify, now),
    ]);
    steps
}

/// The lock an order is run and changed under.
pub fn lock_name(id: &str) -> String {
    format!("tmf622.order:{id}")
}

/// The row that stores `doc` (due now while it is not final: a pass picks it up).
pub fn row(app: &str, doc: &OrderDoc, due_ms: Option<i64>) -> ResourceRow {
    ResourceRow {
        id: doc.id.clone(),
        app: app.into(),
        kind: KIND_ORDER.into(),
        state: doc.state.name().into(),
        parent: doc.customer.clone(),
        due_ms: if doc.state.is_final() { None } else { due_ms },
        body: serde_json::to_string(doc).unwrap_or_default(),
        created_ms: doc.created_ms,
        updated_ms: doc.updated_ms,
    }
}

/// An order of `app`, if it exists.
pub async fn load(
    st: &ApiState,
    app: &str,
    id: &str,
) -> Result<Option<(ResourceRow, OrderDoc)>, StoreError> {
    load_for(st, app, None, id).await
}

/// An order of `app` (and of `customer`, when a customer's token asks), if it exists.
pub async fn load_for(
    st: &ApiState,
    app: &str,
    customer: Option<&str>,
    id: &str,
) -> Result<Option<(ResourceRow, OrderDoc)>, StoreError> {
    match st.charging.store().resource(id).await? {
        Some(r) if r.kind == KIND_ORDER && r.app == app => {
            let doc: OrderDoc = serde_json::from_str(&r.body)
                .map_err(|e| StoreError(format!("order {id} unreadable: {e}")))?;
            if customer.is_some_and(|c| doc.customer.as_deref() != Some(c)) {
                return Ok(None);
            }
            Ok(Some((r, doc)))
        }
        _ => Ok(None),
    }
}

// ---- running ------------------------------------------------------------------------------------

/// What one run of a step came to.
enum Outcome {
    Done(Value),
    /// A passing failure: try again later.
    Retry(String),
    Failed(String),
}

/// The pipeline runner (cheap to clone): `gateway serve` starts its passes and hands it to
/// the order handlers, which start a new order's run at once.
#[derive(Clone)]
pub struct Pipeline {
    st: ApiState,
    cfg: Arc<OrdersConfig>,
    http: reqwest::Client,
    hold: Duration,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("cfg", &self.cfg).finish()
    }
}

impl Pipeline {
    /// `hold`: how long the numbers are held for the order while it runs (`[inventory] hold`).
    pub fn new(st: ApiState, cfg: OrdersConfig, hold: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            st,
            cfg: Arc::new(cfg),
            http,
            hold,
        }
    }

    pub fn config(&self) -> &OrdersConfig {
        &self.cfg
    }

    /// Runs order `id` in the background now (a new order).
    pub fn kick(&self, id: &str) {
        let me = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = me.run(&id).await {
                tracing::warn!(order = %id, error = %e, "order not run; the next pass retries");
            }
        });
    }

    /// The passes over due orders, every `[orders] interval`, until aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.cfg.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let n = self.pass().await;
                if n > 0 {
                    tracing::debug!(orders = n, "order pass");
                }
            }
        })
    }

    /// One pass: the orders due now, each run as far as it goes. Returns how many were run.
    pub async fn pass(&self) -> usize {
        let due = self
            .st
            .charging
            .store()
            .resources(ResourceFilter {
                kind: Some(KIND_ORDER.into()),
                due_before_ms: Some(now_ms()),
                ascending: true,
                limit: self.cfg.batch,
                ..ResourceFilter::default()
            })
            .await;
        let rows = match due {
            Ok((rows, _)) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "order pass: due orders not read");
                return 0;
            }
        };
        let mut n = 0;
        for r in rows {
            match self.run(&r.id).await {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(order = %r.id, error = %e, "order not run"),
            }
        }
        n
    }

    /// Runs order `id` as far as it goes now (to its end, or to a step that waits). False
    /// when another run holds it, or it is not due.
    pub async fn run(&self, id: &str) -> Result<bool, StoreError> {
        let Some(_held) = self.st.charging.locks().try_hold(&lock_name(id)).await? else {
            return Ok(false);
        };
        let Some(row) = self.st.charging.store().resource(id).await? else {
            return Ok(false);
        };
        if row.kind != KIND_ORDER || row.due_ms.is_none_or(|d| d > now_ms()) {
            return Ok(false);
        }
        let app = row.app.clone();
        let mut doc: OrderDoc = serde_json::from_str(&row.body)
            .map_err(|e| StoreError(format!("order {id} unreadable: {e}")))?;
        loop {
            if doc.state.is_final() {
                return Ok(true);
            }
            let next = if doc.compensating {
                self.undo_next(&app, &mut doc).await?
            } else {
                self.do_next(&app, &mut doc).await?
            };
            if let Some(wait) = next {
                self.save(&app, &doc, Some(now_ms().saturating_add(ms(wait))))
                    .await?;
                return Ok(true);
            }
        }
    }

    async fn save(&self, app: &str, doc: &OrderDoc, due_ms: Option<i64>) -> Result<(), StoreError> {
        self.st
            .charging
            .store()
            .put_resource(row(app, doc, due_ms))
            .await
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(16);
        self.cfg
            .retry_min
            .saturating_mul(1u32 << shift)
            .min(self.cfg.retry_max)
    }

    /// Runs the first step not done. `Some(wait)`: stop, and come back after `wait`.
    async fn do_next(&self, app: &str, doc: &mut OrderDoc) -> Result<Option<Duration>, StoreError> {
        let Some(i) = doc.steps.iter().position(|s| s.state != StepState::Done) else {
            self.finish(app, doc, OrderState::Completed, None).await?;
            return Ok(None);
        };
        let now = now_ms();
        doc.state = OrderState::InProgress;
        doc.updated_ms = now;
        let step = step_mut(doc, i)?;
        step.state = StepState::Running;
        step.attempts = step.attempts.saturating_add(1);
        step.updated_ms = now;
        let (attempts, kind, name) = (step.attempts, step.kind.clone(), step.name.clone());
        // Durable before it acts: found `running` after a restart, it is run again.
        self.save(app, doc, Some(now)).await?;
        let outcome = match kind {
            StepKind::Notify => return self.notify(app, doc, i).await.map(|()| None),
            k => self.execute(app, doc, &k, &name).await,
        };
        let now = now_ms();
        let oid = doc.id.clone();
        let step = step_mut(doc, i)?;
        step.updated_ms = now;
        match outcome {
            Outcome::Done(result) => {
                step.state = StepState::Done;
                step.result = Some(result);
                step.error = None;
                self.save(app, doc, Some(now)).await?;
                Ok(None)
            }
            Outcome::Retry(why) if attempts < self.cfg.step_attempts => {
                tracing::info!(order = %oid, step = %name, attempts, "{why}; tried again later");
                step.state = StepState::Pending;
                step.error = Some(why);
                Ok(Some(self.backoff(attempts)))
            }
            Outcome::Retry(why) | Outcome::Failed(why) => {
                tracing::info!(order = %oid, step = %name, "order step failed: {why}");
                step.state = StepState::Failed;
                step.error = Some(why.clone());
                doc.compensating = true;
                doc.failure = Some(format!("{name}: {why}"));
                doc.updated_ms = now;
                self.save(app, doc, Some(now)).await?;
                Ok(None)
            }
        }
    }

    /// Undoes the last done step that has something to undo; none left: the order ends.
    async fn undo_next(
        &self,
        app: &str,
        doc: &mut OrderDoc,
    ) -> Result<Option<Duration>, StoreError> {
        let undoable = |s: &Step| {
            s.state == StepState::Done
                && matches!(
                    s.kind,
                    StepKind::ReserveResources
                        | StepKind::AuthorizePayment
                        | StepKind::Task
                        | StepKind::AssignResources
                )
        };
        let Some(i) = doc.steps.iter().rposition(undoable) else {
            let rejected = doc
                .steps
                .first()
                .is_some_and(|s| s.kind == StepKind::Validate && s.state == StepState::Failed);
            let end = if rejected {
                OrderState::Rejected
            } else {
                OrderState::Failed
            };
            let why = doc.failure.clone();
            self.finish(app, doc, end, why).await?;
            return Ok(None);
        };
        let step = step_mut(doc, i)?;
        step.undo_attempts = step.undo_attempts.saturating_add(1);
        let (attempts, kind, name) = (step.undo_attempts, step.kind.clone(), step.name.clone());
        self.save(app, doc, Some(now_ms())).await?;
        let outcome = self.compensate(app, doc, &kind, &name).await;
        let oid = doc.id.clone();
        let step = step_mut(doc, i)?;
        step.updated_ms = now_ms();
        match outcome {
            Outcome::Done(v) => {
                step.state = StepState::Compensated;
                step.result = Some(json!({"done": step.result.take(), "undone": v}));
            }
            Outcome::Retry(why) if attempts < self.cfg.step_attempts => {
                step.error = Some(format!("compensation: {why}"));
                return Ok(Some(self.backoff(attempts)));
            }
            Outcome::Retry(why) | Outcome::Failed(why) => {
                tracing::warn!(order = %oid, step = %name, "compensation failed: {why}");
                step.state = StepState::CompensationFailed;
                step.error = Some(format!("compensation: {why}"));
            }
        }
        self.save(app, doc, Some(now_ms())).await?;
        Ok(None)
    }

    /// The order's last write: its final state, and its cart in the same commit (a cart
    /// whose order did not complete is active again, to be changed and checked out anew).
    async fn finish(
        &self,
        app: &str,
        doc: &mut OrderDoc,
        end: OrderState,
        why: Option<String>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        doc.state = end;
        doc.compensating = false;
        doc.failure = why;
        doc.updated_ms = now;
        doc.completed_ms = Some(now);
        let mut writes = vec![Write::Resource(row(app, doc, None))];
        if end != OrderState::Completed {
            let store = self.st.charging.store();
            let Some(_cart_lock) = self
                .st
                .charging
                .locks()
                .hold(&cart::lock_name(&doc.cart), Duration::from_secs(30))
                .await?
            else {
                return Err(StoreError(format!(
                    "cart {} is busy; the order ends at the next pass",
                    doc.cart
                )));
            };
            if let Some((r, mut c)) = cart::load(store, app, &doc.cart).await?
                && r.state == cart::state::CHECKED_OUT
                && c.order.as_deref() == Some(doc.id.as_str())
            {
                c.order = None;
                c.updated_ms = now;
                let due = cart::follow_up_due(&c, cart::state::ACTIVE);
                writes.push(Write::Resource(cart::row(
                    app,
                    &c,
                    cart::state::ACTIVE,
                    due,
                    now,
                )));
            }
            store.write_all(writes).await?;
        } else {
            self.st.charging.store().write_all(writes).await?;
        }
        metrics::counter!("gateway_orders_total", "state" => end.name()).increment(1);
        tracing::info!(order = %doc.id, state = end.name(), failure = doc.failure.as_deref().unwrap_or(""), "order ended");
        Ok(())
    }

    async fn execute(&self, app: &str, doc: &OrderDoc, kind: &StepKind, name: &str) -> Outcome {
        match kind {
            StepKind::Validate => self.validate(app, doc).await,
            StepKind::ReserveResources => self.reserve(app, doc).await,
            StepKind::AuthorizePayment => self.authorize(app, doc).await,
            StepKind::Task => self.task(doc, name, false).await,
            StepKind::AssignResources => self.assign(app, doc).await,
            StepKind::CapturePayment => self.capture(app, doc).await,
            StepKind::Notify => Outcome::Done(Value::Null),
        }
    }

    async fn compensate(&self, app: &str, doc: &OrderDoc, kind: &StepKind, name: &str) -> Outcome {
        let store = self.st.charging.store();
        let holder = cart::holder(app, &doc.cart);
        let now = now_ms();
        match kind {
            StepKind::ReserveResources => {
                let mut released = Vec::new();
                for r in doc.resources() {
                    match store.release_inventory(&r.id, &holder, now).await {
                        Ok(true) => released.push(r.id.clone()),
                        Ok(false) => {}
                        Err(e) => return Outcome::Retry(format!("store: {e}")),
                    }
                }
                Outcome::Done(json!({"released": released}))
            }
            StepKind::AssignResources => {
                // Assigned to the order (an order of an earlier release: to its cart).
                let owner = crate::api::tmf639::holder_key(app, &doc.id);
                let mut back = Vec::new();
                for r in doc.resources() {
                    let mut won = store.unassign_inventory(&r.id, &owner, now).await;
                    if matches!(won, Ok(false)) {
                        won = store.unassign_inventory(&r.id, &holder, now).await;
                    }
                    match won {
                        Ok(true) => back.push(r.id.clone()),
                        Ok(false) => {}
                        Err(e) => return Outcome::Retry(format!("store: {e}")),
                    }
                }
                Outcome::Done(json!({"unassigned": back}))
            }
            StepKind::AuthorizePayment => match (&doc.payment, &doc.charge) {
                (_, None) => Outcome::Done(json!({"nothing": "to cancel"})),
                (PaymentMethod::CarrierBilling { .. }, Some(_)) => {
                    let pid = doc.purchase_id();
                    match checkout::settle_for_order(&self.st, app, &pid, false).await {
                        Ok(PurchaseStatus::Processing) => {
                            Outcome::Retry("the cancellation's outcome is not known yet".into())
                        }
                        // Never undone silently: recorded for an operator to refund.
                        Ok(PurchaseStatus::Succeeded) => {
                            Outcome::Failed(format!("purchase {pid} was charged; refund it"))
                        }
                        Ok(s) => Outcome::Done(json!({"purchase": pid, "status": s.name()})),
                        Err(e) => camara_outcome(&e),
                    }
                }
                (PaymentMethod::ExternalPayment { token }, Some(c)) => {
                    self.external_payment(doc, "void", token.as_deref(), c)
                        .await
                }
            },
            StepKind::Task => self.task(doc, name, true).await,
            _ => Outcome::Done(Value::Null),
        }
    }

    async fn validate(&self, app: &str, doc: &OrderDoc) -> Outcome {
        let store = self.st.charging.store();
        if doc.items.is_empty() {
            return Outcome::Failed("the cart has no active item".into());
        }
        let now = now_ms();
        for item in &doc.items {
            let priced = match cart::price_item(store, &item.offering_id, item.quantity, now).await
            {
                Ok((_, p)) => p,
                Err(cart::PriceError::Store(e)) => return Outcome::Retry(e),
                Err(e) => return Outcome::Failed(format!("cartItem {}: {e}", item.id)),
            };
            if priced != item.prices {
                return Outcome::Failed(format!(
                    "cartItem {}: the catalog's price of {} changed since it was put in the \
                     cart; read the cart again",
                    item.id, item.offering_id
                ));
            }
            let needed = match cart::required_resources(store, &item.offering_id).await {
                Ok(n) => n,
                Err(cart::PriceError::Store(e)) => return Outcome::Retry(e),
                Err(e) => return Outcome::Failed(format!("cartItem {}: {e}", item.id)),
            };
            for category in needed {
                let have = item
                    .resources
                    .iter()
                    .filter(|r| r.category == category)
                    .count();
                if u32::try_from(have).unwrap_or(u32::MAX) < item.quantity {
                    return Outcome::Failed(format!(
                        "cartItem {}: {} needs a chosen {category} for each of its {} unit(s) \
                         (TMF639 resource in product.realizingResource)",
                        item.id, item.offering_id, item.quantity
                    ));
                }
            }
        }
        let one_time = cart::one_time(&doc.total);
        if one_time.len() > 1 {
            return Outcome::Failed(
                "the cart's one-time prices are in more than one currency".into(),
            );
        }
        match &doc.payment {
            PaymentMethod::CarrierBilling { phone_number } => {
                if !crate::api::camara::model::valid_phone(phone_number) {
                    return Outcome::Failed(
                        "paymentMethod.phoneNumber: not an E.164 number".into(),
                    );
                }
            }
            PaymentMethod::ExternalPayment { .. } => {
                if self.cfg.external_payment.url.is_empty() {
                    return Outcome::Failed(
                        "paymentMethod externalPayment: no [orders.external_payment] url is \
                         configured"
                            .into(),
                    );
                }
            }
        }
        if self.st.apps.by_id(app).is_none() {
            return Outcome::Failed(format!("application {app} is no longer configured"));
        }
        Outcome::Done(json!({"items": doc.items.len(), "charge": doc.charge}))
    }

    async fn reserve(&self, app: &str, doc: &OrderDoc) -> Outcome {
        let store = self.st.charging.store();
        let holder = cart::holder(app, &doc.cart);
        let now = now_ms();
        let until = now.saturating_add(ms(self.hold));
        let mut held = Vec::new();
        for r in doc.resources() {
            match store.reserve_inventory(&r.id, &holder, until, now).await {
                Ok(true) => held.push(r.id.clone()),
                Ok(false) => {
                    return Outcome::Failed(format!(
                        "{} ({} {}) is no longer held for the cart: another customer has it, or \
                         it is not available",
                        r.id, r.category, r.value
                    ));
                }
                Err(e) => return Outcome::Retry(format!("store: {e}")),
            }
        }
        Outcome::Done(json!({"held": held, "until": crate::api::datetime::format_ms(until)}))
    }

    async fn authorize(&self, app: &str, doc: &OrderDoc) -> Outcome {
        let Some(charge) = &doc.charge else {
            return Outcome::Done(json!({"nothing": "to charge"}));
        };
        match &doc.payment {
            PaymentMethod::CarrierBilling { phone_number } => {
                let Some(caller) = self.st.apps.by_id(app) else {
                    return Outcome::Failed(format!("application {app} is no longer configured"));
                };
                let pid = doc.purchase_id();
                let payable = self.payable(doc, charge);
                if let Err(e) = checkout::open_for_order(&self.st, &caller, &pid, payable).await {
                    return camara_outcome(&e);
                }
                match checkout::authorize_for_order(&self.st, app, &pid, phone_number).await {
                    // Captured already: this step is run again after the capture (a stop
                    // before the order's last write).
                    Ok(s @ (PurchaseStatus::ReadyToConfirm | PurchaseStatus::Succeeded)) => {
                        Outcome::Done(json!({"purchase": pid, "status": s.name()}))
                    }
                    Ok(PurchaseStatus::Processing | PurchaseStatus::Initialising) => {
                        Outcome::Retry("the payment's outcome is not known yet".into())
                    }
                    Ok(s) => Outcome::Failed(format!("the payment is {}", s.name())),
                    Err(e) => camara_outcome(&e),
                }
            }
            PaymentMethod::ExternalPayment { token } => {
                self.external_payment(doc, "authorize", token.as_deref(), charge)
                    .await
            }
        }
    }

    async fn capture(&self, app: &str, doc: &OrderDoc) -> Outcome {
        let Some(charge) = &doc.charge else {
            return Outcome::Done(json!({"nothing": "to charge"}));
        };
        match &doc.payment {
            PaymentMethod::CarrierBilling { .. } => {
                let pid = doc.purchase_id();
                match checkout::settle_for_order(&self.st, app, &pid, true).await {
                    Ok(PurchaseStatus::Succeeded) => {
                        Outcome::Done(json!({"purchase": pid, "status": "succeeded"}))
                    }
                    Ok(PurchaseStatus::Processing) => {
                        Outcome::Retry("the capture's outcome is not known yet".into())
                    }
                    Ok(s) => Outcome::Failed(format!("the payment is {}", s.name())),
                    Err(e) => camara_outcome(&e),
                }
            }
            PaymentMethod::ExternalPayment { token } => {
                self.external_payment(doc, "capture", token.as_deref(), charge)
                    .await
            }
        }
    }

    async fn assign(&self, app: &str, doc: &OrderDoc) -> Outcome {
        let store = self.st.charging.store();
        let mut assigned = Vec::new();
        for r in doc.resources() {
            match crate::api::tmf639::assign(store, app, &doc.cart, &doc.id, &r.id).await {
                Ok(true) => assigned.push(r.id.clone()),
                Ok(false) => {
                    return Outcome::Failed(format!(
                        "{} could not be assigned: its hold for the cart ran out and another \
                         customer has it",
                        r.id
                    ));
                }
                Err(e) => return Outcome::Retry(format!("store: {e}")),
            }
        }
        Outcome::Done(json!({"assigned": assigned}))
    }

    /// The notification step: the customer's contact told, through the outbox, written
    /// with the step's end in one commit (never twice). No contact: nothing to send.
    async fn notify(&self, app: &str, doc: &mut OrderDoc, i: usize) -> Result<(), StoreError> {
        let now = now_ms();
        let events = super::notify::order_events(&self.st, app, doc, now);
        let sent: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        let step = step_mut(doc, i)?;
        step.state = StepState::Done;
        step.result = Some(json!({"events": sent}));
        step.updated_ms = now;
        doc.updated_ms = now;
        self.st
            .charging
            .store()
            .put_resource_with_events(row(app, doc, Some(now)), events)
            .await
    }

    /// The purchase that pays `doc` (a CAMARA `payable`).
    fn payable(&self, doc: &OrderDoc, charge: &Charge) -> Value {
        let items: Vec<Value> = doc
            .items
            .iter()
            .filter_map(|i| {
                let amount: Decimal = i
                    .prices
                    .iter()
                    .filter(|p| p.price_type == cart::ONE_TIME && p.currency == charge.currency)
                    .map(|p| p.total)
                    .sum();
                (!amount.is_zero()).then(|| {
                    json!({
                        "name": i.offering_name.clone().unwrap_or_else(|| i.offering_id.clone()),
                        "amount": {"value": crate::api::tmf630::number_of(amount),
                                   "currency": charge.currency, "taxIncluded": true},
                    })
                })
            })
            .collect();
        json!({
            "type": "digital_good",
            "merchant": {"id": self.cfg.merchant},
            "order": {
                "id": doc.id,
                "items": items,
                "totalAmount": {"value": crate::api::tmf630::number_of(charge.amount),
                                "currency": charge.currency, "taxIncluded": true},
            },
        })
    }

    /// `[orders.external_payment]`: `action` (authorize, capture, void) of the charge.
    async fn external_payment(
        &self,
        doc: &OrderDoc,
        action: &str,
        token: Option<&str>,
        charge: &Charge,
    ) -> Outcome {
        let c = &self.cfg.external_payment;
        if c.url.is_empty() {
            return Outcome::Failed("no [orders.external_payment] url is configured".into());
        }
        let body = json!({
            "orderId": doc.id,
            "action": action,
            "amount": {"value": crate::api::tmf630::number_of(charge.amount), "unit": charge.currency},
            "paymentToken": token,
        });
        let key = format!("{}-{action}", doc.id);
        match self.post(&c.url, &c.token, &key, &body).await {
            Err(o) => o,
            Ok((status, answer)) if status.is_success() => {
                let said = answer.get("status").and_then(Value::as_str).unwrap_or("");
                if matches!(said, "declined" | "refused" | "failed") {
                    Outcome::Failed(format!("the payment service answered {action}: {said}"))
                } else {
                    Outcome::Done(
                        json!({"action": action, "status": status.as_u16(), "answer": answer}),
                    )
                }
            }
            Ok((status, answer)) => Outcome::Failed(format!(
                "the payment service answered {action} with {status}: {}",
                crate::api::error::clip(&answer.to_string())
            )),
        }
    }

    /// `[[orders.tasks]]` `name`: the order posted (or, `undo`, its cancellation).
    async fn task(&self, doc: &OrderDoc, name: &str, undo: bool) -> Outcome {
        let Some(t) = self.cfg.tasks.iter().find(|t| t.name == name) else {
            return Outcome::Failed(format!("task {name} is no longer in [[orders.tasks]]"));
        };
        let action = if undo { "cancel" } else { "perform" };
        let body = json!({
            "action": action,
            "task": name,
            "order": super::render(doc),
        });
        let key = format!("{}-{name}-{action}", doc.id);
        match self.post(&t.url, &t.token, &key, &body).await {
            Err(o) => o,
            Ok((status, answer)) if status.is_success() => {
                Outcome::Done(json!({"status": status.as_u16(), "answer": answer}))
            }
            // Nothing to cancel at the service is as good as cancelled.
            Ok((status, answer)) if undo => {
                Outcome::Done(json!({"status": status.as_u16(), "answer": answer}))
            }
            Ok((status, answer)) => Outcome::Failed(format!(
                "{} answered {status}: {}",
                t.name,
                crate::api::error::clip(&answer.to_string())
            )),
        }
    }

    /// POSTs `body`; a transport failure, timeout, 5xx or 429 is a retry (`Err`); any other
    /// answer is returned with its body (JSON, or the text as a string, bounded).
    async fn post(
        &self,
        url: &str,
        token: &str,
        key: &str,
        body: &Value,
    ) -> Result<(reqwest::StatusCode, Value), Outcome> {
        let mut req = self
            .http
            .post(url)
            .header("Idempotency-Key", key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body).unwrap_or_default());
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        let res = req
            .send()
            .await
            .map_err(|e| Outcome::Retry(format!("{}: {e}", crate::notify::redact_url(url))))?;
        let status = res.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Outcome::Retry(format!(
                "{} answered {status}",
                crate::notify::redact_url(url)
            )));
        }
        let mut bytes = Vec::new();
        let mut res = res;
        while let Ok(Some(chunk)) = res.chunk().await {
            let room = MAX_ANSWER.saturating_sub(bytes.len());
            bytes.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
            if bytes.len() >= MAX_ANSWER {
                break;
            }
        }
        let answer = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, answer))
    }
}

fn step_mut(doc: &mut OrderDoc, i: usize) -> Result<&mut Step, StoreError> {
    let id = doc.id.clone();
    doc.steps
        .get_mut(i)
        .ok_or_else(|| StoreError(format!("order {id}: step {i} is gone")))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A CAMARA answer as a step outcome: a refusal (4xx but a busy lock) fails the step; no
/// OCS, an unknown outcome or a busy lock is tried again.
fn camara_outcome(e: &CamaraError) -> Outcome {
    let s = e.status.as_u16();
    if s >= 500 || s == 409 && e.code == "ABORTED" || s == 429 {
        Outcome::Retry(format!("{} {}: {}", s, e.code, e.message))
    } else {
        Outcome::Failed(format!("{} {}: {}", s, e.code, e.message))
    }
}

/// The order that checks out `c` (its counted items and totals), with the steps of `plan`.
pub fn from_cart(
    id: String,
    c: &CartDoc,
    payment: PaymentMethod,
    steps: Vec<Step>,
    now: i64,
) -> OrderDoc {
    let charge = cart::one_time(&c.total)
        .first()
        .map(|(amount, currency)| Charge {
            amount: *amount,
            currency: (*currency).to_string(),
        });
    OrderDoc {
        id,
        cart: c.id.clone(),
        items: c.items.iter().filter(|i| i.counts()).cloned().collect(),
        total: c.total.clone(),
        charge,
        payment,
        contact: c.contact.clone(),
        related_party: c.related_party.clone(),
        external_id: None,
        description: None,
        customer: c.customer.clone(),
        state: OrderState::Acknowledged,
        steps,
        compensating: false,
        failure: None,
        created_ms: now,
        updated_ms: now,
        completed_ms: None,
    }
}
