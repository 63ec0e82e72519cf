//! Durable records: every money-moving operation (charge, refund, split leg, reservation step)
//! and every reservation, for disputes, idempotent replays and restarts.
//!
//! ```text
//! charging --begin/finish/reservation--> Store (handle, Clone) --mpsc--> writer thread
//!                                                                         | drains the queue:
//!                                                                         | one transaction per batch,
//!                                                                         | one commit (fsync) per batch
//!   <------------------- oneshot per call, after the commit -------------+  (group commit)
//! ```
//!
//! A call that writes returns only once its batch is committed: a 2xx built on it is durable.
//! Reads go through the same thread, so they see every write acknowledged before them.
//! Backends implement [`Backend`] (synchronous, owned by the writer thread):
//! [`SqliteBackend`] (module [`sqlite`]) is the embedded default, one file under
//! `store.data_dir`; [`PostgresBackend`] (module [`postgres`]) keeps the same tables in a
//! PostgreSQL database at `store.url`; [`MemoryBackend`] serves tests and measures the write
//! path without a disk. [`Store::open`] picks one from the `[store]` configuration.

pub mod memory;
mod pg_tls;
pub mod postgres;
mod sql;
pub mod sqlite;

use std::sync::Arc;
use std::thread;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

pub use memory::MemoryBackend;
pub use postgres::PostgresBackend;
pub use sqlite::SqliteBackend;

/// What happened to an operation, as far as the gateway knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OpState {
    /// Recorded before the request goes to the OCS; not answered yet.
    Pending,
    /// The OCS agreed (charged, refunded, reserved, released).
    Succeeded,
    /// Definitively refused (by the OCS or by the gateway); nothing charged.
    Refused,
    /// Sent, not answered: the OCS may or may not have applied it. Never reported as success;
    /// resolved by re-sending with the T flag.
    Unknown,
    /// Nothing reached a credit-control server (no peer, protocol error): a retry with the
    /// same key performs the operation anew.
    Retryable,
}

impl OpState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Refused => "refused",
            Self::Unknown => "unknown",
            Self::Retryable => "retryable",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "refused" => Self::Refused,
            "unknown" => Self::Unknown,
            "retryable" => Self::Retryable,
            _ => return None,
        })
    }

    /// Whether the outcome is final (replayed as is to a retry).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Refused)
    }
}

/// One operation: what was asked, of whom, and what came of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRow {
    /// Gateway operation id (unique).
    pub id: String,
    /// The application (API client) that asked.
    pub app: String,
    /// Idempotency key within the application (`referenceCode`, `clientCorrelator`,
    /// `Idempotency-Key`); at most one row per `(app, key)`.
    pub key: Option<String>,
    /// `charge`, `refund`, `split`, `split-leg`, `reserve`, `reserve-additional`,
    /// `charge-reservation`, `release`, ...
    pub kind: String,
    /// Hash of the canonical request: the same key with another hash is refused.
    pub request_hash: String,
    /// The split a leg belongs to, or the operation a compensation undoes.
    pub parent: Option<String>,
    pub reservation_id: Option<String>,
    /// Diameter Session-Id of the CCR (empty for operations that send none).
    pub session_id: String,
    /// CC-Request-Number of the CCR.
    pub request_number: u32,
    pub subscriber: Option<String>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub reference_code: Option<String>,
    pub state: OpState,
    /// The (effective) Result-Code of the answer, when one came.
    pub result_code: Option<u32>,
    /// The request as the charging layer needs it to re-send (JSON).
    pub request: String,
    /// The outcome as the charging layer reports it (JSON), once known.
    pub outcome: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Who works on it while it is unresolved (pending or unknown), and until when: another
    /// gateway instance on the same database leaves it alone until the lease runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// A claim on a piece of work by one gateway instance until `until_ms` (ms since the epoch),
/// renewed while it works on it. An instance that dies stops renewing: after `until_ms`
/// another may take the work over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The instance (its `cluster.instance_id`).
    pub owner: String,
    pub until_ms: i64,
}

impl Lease {
    /// Whether someone other than `me` holds it at `now_ms`.
    pub fn held_by_other(&self, me: &str, now_ms: i64) -> bool {
        self.owner != me && self.until_ms > now_ms
    }
}

/// Where a reservation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReservationState {
    Open,
    Released,
    Expired,
    /// The OCS no longer knows it (5002) or it was lost.
    Gone,
}

impl ReservationState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Gone => "gone",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "released" => Self::Released,
            "expired" => Self::Expired,
            "gone" => Self::Gone,
            _ => return None,
        })
    }
}

/// One reservation (a credit-control session).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRow {
    /// The identifier given to the API client.
    pub id: String,
    pub app: String,
    pub session_id: String,
    pub subscriber: String,
    pub currency: String,
    /// Money reserved at the OCS now.
    pub reserved: Decimal,
    /// Money charged against it so far.
    pub charged: Decimal,
    /// CC-Request-Number of the last request sent in the session.
    pub last_request_number: u32,
    pub state: ReservationState,
    /// When the gateway releases it if nothing else happens (ms since the epoch).
    pub expires_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The operation whose request is in flight on it (recorded with the request number,
    /// cleared with its outcome): while it is unresolved, no instance takes another step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}

/// A REST resource a family keeps (a CAMARA payment or refund, a TMF654 top-up): its own
/// JSON document, with the columns it is found by. The money-moving operations behind it are
/// [`OperationRow`]s; this is what the API shows for the resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRow {
    /// The resource id (unique across kinds).
    pub id: String,
    /// The application that owns it.
    pub app: String,
    /// `camara.payment`, `camara.refund`, `tmf654.topup`, ...
    pub kind: String,
    /// The family's own status (`processing`, `succeeded`, `completed`, ...).
    pub state: String,
    /// The resource it belongs to (a refund's payment), if any.
    pub parent: Option<String>,
    /// When a scheduled resource is next due (ms since the epoch), if it is.
    pub due_ms: Option<i64>,
    /// The family's JSON document.
    pub body: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Which resources to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceFilter {
    pub app: Option<String>,
    pub kind: Option<String>,
    pub state: Option<String>,
    pub parent: Option<String>,
    /// Only those due at or before this time.
    pub due_before_ms: Option<i64>,
    /// Only those created at or after this time (ms since the epoch).
    pub created_from_ms: Option<i64>,
    /// Only those created at or before this time (ms since the epoch).
    pub created_to_ms: Option<i64>,
    /// Oldest first instead of newest first (by creation, then id).
    pub ascending: bool,
    /// Skip this many (in the order asked), then return at most `limit` (0: no limit).
    pub offset: usize,
    pub limit: usize,
}

/// Where an event of the outbox stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventState {
    /// To be delivered (again) at `next_ms`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up (attempts used up, or the receiver said 410 Gone): kept for an operator, who
    /// may send it again (`POST /admin/events/{id}/retry`).
    Dead,
}

impl EventState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "dead" => Self::Dead,
            _ => return None,
        })
    }
}

/// One notification in the durable outbox: written in the same transaction as the state
/// change it tells of, then posted by a delivery worker (at least once) until the receiver
/// takes it or the attempts run out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    /// Stable id (the CloudEvent `id`, the TMF `eventId`): the same on every attempt, so a
    /// receiver can drop duplicates.
    pub id: String,
    /// The application whose resource it is about.
    pub app: String,
    /// What it tells (`org.camaraproject.carrier-billing.v0.payment-completed`,
    /// `TopupBalanceStateChangeEvent`, `checkout.confirm_payment`, ...).
    pub kind: String,
    /// The resource it is about. Events of one resource to one URL are delivered in the
    /// order they were written: a later one waits while an earlier one is pending.
    pub resource: Option<String>,
    /// Where it is posted (checked against `[notifications]` when registered and again when
    /// connecting).
    pub url: String,
    /// Extra request headers (`Authorization` with the consumer's token, ...).
    pub headers: Vec<(String, String)>,
    /// `Content-Type` of the body (`application/cloudevents+json`, `application/json`).
    pub content_type: String,
    /// The request body, as posted.
    pub body: String,
    pub state: EventState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is next due (ms since the epoch), while pending.
    pub next_ms: i64,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// The instance delivering it, until when: one instance at a time posts an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// When the receiver took it.
    pub delivered_ms: Option<i64>,
}

/// Which events to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub app: Option<String>,
    pub state: Option<EventState>,
    pub resource: Option<String>,
    /// At most this many, newest first (0: no limit).
    pub limit: usize,
}

/// Where a number (MSISDN) or SIM (ICCID) of the resource inventory stands. TMF639 has no
/// "assigned" status: the REST family renders these as `resourceStatus`, `usageState` and
/// `administrativeState` (see `api::tmf639`).
///
/// ```text
/// import --> available --Reserve(holder, until)--> reserved --Assign(holder)--> assigned
///               ^  ^                                 |  |
///               |  +------- Release(holder) ---------+  |   (a hold that ran out counts as
///               +------ hold ran out (lazily) ----------+    available to everyone)
///               +------------- Unassign(holder) -------------------------+ (from assigned)
/// import (ported in) --> portingIn --Activate(holder)--> active
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum InventoryStatus {
    /// Free to be offered and held.
    Available,
    /// Held for a cart (`holder`) until `hold_until_ms`; after that anyone may take it.
    Reserved,
    /// Given to an order (`holder`) for good.
    Assigned,
    /// A number being ported in from another operator (tagged at import): never offered.
    PortingIn,
    /// A ported-in number whose port completed, in use by `holder`.
    Active,
}

impl InventoryStatus {
    pub const ALL: [Self; 5] = [
        Self::Available,
        Self::Reserved,
        Self::Assigned,
        Self::PortingIn,
        Self::Active,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Reserved => "reserved",
            Self::Assigned => "assigned",
            Self::PortingIn => "portingIn",
            Self::Active => "active",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }
}

/// One resource of the inventory: an MSISDN or an ICCID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRow {
    /// `msisdn-<digits>`, `iccid-<digits>`: derived from the category and value.
    pub id: String,
    /// `MSISDN` or `ICCID`.
    pub category: String,
    /// The number or ICCID (digits); unique within the category.
    pub value: String,
    pub status: InventoryStatus,
    /// The cart or order that holds it (reserved, assigned, active).
    pub holder: Option<String>,
    /// Until when a reservation holds (ms since the epoch).
    pub hold_until_ms: Option<i64>,
    /// Tagged at import as a number ported in from another operator.
    pub ported_in: bool,
    /// JSON object of the imported characteristics (`{"tier": "gold"}`).
    pub body: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl InventoryRow {
    /// The status as anyone sees it at `now_ms`: a reservation that ran out is available.
    pub fn status_at(&self, now_ms: i64) -> InventoryStatus {
        match self.status {
            InventoryStatus::Reserved if self.hold_until_ms.is_none_or(|t| t <= now_ms) => {
                InventoryStatus::Available
            }
            s => s,
        }
    }
}

/// Which inventory resources to list (by category, then value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InventoryFilter {
    pub category: Option<String>,
    /// As seen at `now_ms` ([`InventoryRow::status_at`]): `Available` includes reservations
    /// that ran out, `Reserved` excludes them.
    pub status: Option<InventoryStatus>,
    /// A SQL LIKE pattern on the value (`%` any run, `_` one character; no escape: callers
    /// pass digits and those two only).
    pub pattern: Option<String>,
    pub now_ms: i64,
    /// Skip this many, then return at most `limit` (0: no limit).
    pub offset: usize,
    pub limit: usize,
}

/// What [`Store::begin`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begun {
    /// The row was written (or replaced a [`OpState::Retryable`] row with the same key).
    Inserted,
    /// A row with the same `(app, key)` exists and was kept.
    Existing(Box<OperationRow>),
}

/// A write, as the writer thread applies it.
#[derive(Clone, Debug)]
pub enum Write {
    /// Insert; on a `(app, key)` conflict keep the existing row, unless it is retryable.
    Begin(OperationRow),
    /// Replace the row with the same id.
    Update(OperationRow),
    /// Insert or replace by id.
    Reservation(ReservationRow),
    /// Insert or replace by id.
    Resource(ResourceRow),
    /// Insert or replace by id, on a condition decided by the database: with
    /// `expected_updated_ms` `None`, only when no row has that id (a uniqueness claim: of two
    /// instances writing it at once, one wins); with `Some(t)`, only when the row is there
    /// and its `updated_ms` is still `t` (compare-and-set: a writer must make `updated_ms`
    /// move on). Answered [`Written::Won`].
    PutResourceIf {
        row: ResourceRow,
        expected_updated_ms: Option<i64>,
    },
    /// Takes the lease of an unresolved operation: when it has none, it is `lease.owner`'s
    /// already, or its lease ran out before `now_ms`. Answered [`Written::Won`].
    Claim {
        id: String,
        lease: Lease,
        now_ms: i64,
    },
    /// Renews every lease `owner` holds on unresolved operations until `until_ms`.
    Renew { owner: String, until_ms: i64 },
    /// Replaces a reservation only if its `last_request_number` is still `expected` (the next
    /// step of a reservation is decided in the database: of two instances stepping it at once,
    /// one wins). Answered [`Written::Won`].
    Step { row: ReservationRow, expected: u32 },
    /// Takes the named lease (a lock between gateway instances: a resource, a scheduled job)
    /// when it is free, `lease.owner`'s already, or ran out before `now_ms`. Answered
    /// [`Written::Won`].
    TakeLease {
        name: String,
        lease: Lease,
        now_ms: i64,
    },
    /// Gives the named lease back, if `owner` holds it.
    DropLease { name: String, owner: String },
    /// Insert or replace an outbox event by id.
    Event(EventRow),
    /// Takes the delivery lease of event `id`: when it is pending, and its lease is free,
    /// `lease.owner`'s already, or ran out before `now_ms`. Answered [`Written::Won`].
    ClaimEvent {
        id: String,
        lease: Lease,
        now_ms: i64,
    },
    /// Inserts an inventory resource (import); one that exists keeps its status, holder and
    /// hold (a re-import changes only its characteristics, `body`, and `updated_ms`).
    ImportInventory(InventoryRow),
    /// Holds inventory resource `id` for `holder` until `until_ms`: when it is available, its
    /// reservation ran out before `now_ms`, or `holder` holds it already (the hold is
    /// renewed). Decided by the database. Answered [`Written::Won`].
    Reserve {
        id: String,
        holder: String,
        until_ms: i64,
        now_ms: i64,
    },
    /// Assigns inventory resource `id` for good to `owner` (the order), which becomes its
    /// holder: when `holder` (the cart) reserved it and the hold has not run out at `now_ms`, or
    /// it is assigned to `owner` already. Answered [`Written::Won`].
    Assign {
        id: String,
        holder: String,
        owner: String,
        now_ms: i64,
    },
    /// Makes inventory resource `id` available again, if `holder` holds a reservation of it.
    /// Answered [`Written::Won`].
    Release {
        id: String,
        holder: String,
        now_ms: i64,
    },
    /// Takes back an assignment: inventory resource `id`, assigned to `holder`, is available
    /// again (an order that failed after its numbers were assigned). Answered
    /// [`Written::Won`].
    Unassign {
        id: String,
        holder: String,
        now_ms: i64,
    },
    /// A ported-in number's port completed: `portingIn` -> `active`, in use by `holder` (or
    /// already `holder`'s). Answered [`Written::Won`].
    Activate {
        id: String,
        holder: String,
        now_ms: i64,
    },
}

/// The answer to one [`Write`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    Begun(Begun),
    Done,
    /// A conditional write happened (true), or its condition did not hold (false).
    Won(bool),
}

/// Which operations to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperationFilter {
    pub app: Option<String>,
    pub reference_code: Option<String>,
    pub reservation_id: Option<String>,
    pub state: Option<OpState>,
    pub limit: usize,
}

/// A storage failure. The gateway answers 500 and reports nothing as durable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// A storage engine, driven by the writer thread (synchronous: it owns its connection).
pub trait Backend: Send + 'static {
    /// Applies every write in one transaction and commits it durably; the answers are in
    /// order. An error fails the whole batch (nothing of it is durable).
    fn apply(&mut self, batch: &[Write]) -> Result<Vec<Written>, StoreError>;
    fn operation(&mut self, id: &str) -> Result<Option<OperationRow>, StoreError>;
    fn operation_by_key(
        &mut self,
        app: &str,
        key: &str,
    ) -> Result<Option<OperationRow>, StoreError>;
    fn operations(&mut self, filter: &OperationFilter) -> Result<Vec<OperationRow>, StoreError>;
    /// Operations not yet resolved (pending or unknown), oldest first.
    fn unresolved(&mut self) -> Result<Vec<OperationRow>, StoreError>;
    fn reservation(&mut self, id: &str) -> Result<Option<ReservationRow>, StoreError>;
    fn open_reservations(&mut self) -> Result<Vec<ReservationRow>, StoreError>;
    fn resource(&mut self, id: &str) -> Result<Option<ResourceRow>, StoreError>;
    /// Resources matching `filter`, newest first (by creation; oldest first when
    /// `filter.ascending`), and how many match in all.
    fn resources(
        &mut self,
        filter: &ResourceFilter,
    ) -> Result<(Vec<ResourceRow>, usize), StoreError>;
    fn event(&mut self, id: &str) -> Result<Option<EventRow>, StoreError>;
    /// Events matching `filter`, newest first, and how many match in all.
    fn events(&mut self, filter: &EventFilter) -> Result<(Vec<EventRow>, usize), StoreError>;
    /// At most `limit` pending events due at `now_ms` (`next_ms <= now_ms`) whose lease is
    /// free or ran out, and that no older pending event of the same resource and URL
    /// precedes; oldest first.
    fn due_events(&mut self, now_ms: i64, limit: usize) -> Result<Vec<EventRow>, StoreError>;
    /// The inventory resource `id`.
    fn inventory(&mut self, id: &str) -> Result<Option<InventoryRow>, StoreError>;
    /// Inventory resources matching `filter`, by category then value, and how many match.
    fn inventory_list(
        &mut self,
        filter: &InventoryFilter,
    ) -> Result<(Vec<InventoryRow>, usize), StoreError>;
    /// Called once when the store stops, after its last batch: leaves the storage tidy
    /// (SQLite folds its write-ahead log into the database file). The backend is dropped
    /// right after. An error is reported to whoever stopped the store; nothing is lost by it.
    fn close(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Store settings.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// Most writes committed together.
    pub max_batch: usize,
    /// Queued calls before callers wait (back-pressure).
    pub queue: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            queue: 65_536,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

// Writes are the common command and are moved into the batch as they are: boxing them would
// cost an allocation per write on the hot path.
#[allow(clippy::large_enum_variant)]
enum Command {
    Write(Write, Reply<Written>),
    /// Writes committed in one transaction (never split over two batches).
    WriteAll(Vec<Write>, Reply<Vec<Written>>),
    Event(String, Reply<Option<EventRow>>),
    Events(EventFilter, Reply<(Vec<EventRow>, usize)>),
    DueEvents(i64, usize, Reply<Vec<EventRow>>),
    Operation(String, Reply<Option<OperationRow>>),
    OperationByKey(String, String, Reply<Option<OperationRow>>),
    Operations(OperationFilter, Reply<Vec<OperationRow>>),
    Unresolved(Reply<Vec<OperationRow>>),
    Reservation(String, Reply<Option<ReservationRow>>),
    OpenReservations(Reply<Vec<ReservationRow>>),
    Resource(String, Reply<Option<ResourceRow>>),
    Resources(ResourceFilter, Reply<(Vec<ResourceRow>, usize)>),
    Inventory(String, Reply<Option<InventoryRow>>),
    InventoryList(InventoryFilter, Reply<(Vec<InventoryRow>, usize)>),
    /// Answered once every write queued before it is committed.
    Flush(Reply<()>),
    /// As `Flush`, then the backend is closed and the writer thread ends.
    Close(Reply<()>),
}

/// Handle to the store (cheap to clone). [`Store::close`], or dropping every handle, stops the
/// writer thread after it has committed what was queued and closed the backend.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
    backend: Arc<str>,
    metrics: Arc<StoreMetrics>,
    /// Woken after a commit that wrote a pending event (the delivery worker waits on it).
    events: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// Counters of the write path (for `/metrics`).
#[derive(Debug, Default)]
pub struct StoreMetrics {
    pub batches: std::sync::atomic::AtomicU64,
    pub writes: std::sync::atomic::AtomicU64,
    pub failures: std::sync::atomic::AtomicU64,
    /// Sum of commit times, microseconds.
    pub commit_micros: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Starts the writer thread over `backend`.
    pub fn start<B: Backend>(
        backend: B,
        name: &str,
        settings: StoreSettings,
    ) -> Result<Self, StoreError> {
        Self::start_opening(move || Ok(backend), name, settings)
    }

    /// Starts the writer thread, which opens its backend with `open` and serves it; returns
    /// once it is open (or with the error that `open` returned). For backends whose handle
    /// must be made on the thread that uses it (the PostgreSQL client runs a runtime of its
    /// own, which cannot be entered from an async worker). Blocking until `open` returns.
    pub fn start_opening<B: Backend>(
        open: impl FnOnce() -> Result<B, StoreError> + Send + 'static,
        name: &str,
        settings: StoreSettings,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let metrics = Arc::new(StoreMetrics::default());
        let m = Arc::clone(&metrics);
        let events = Arc::new(tokio::sync::Notify::new());
        let ev = Arc::clone(&events);
        let max_batch = settings.max_batch.max(1);
        let (opened_tx, opened) = std::sync::mpsc::sync_channel(1);
        thread::Builder::new()
            .name(format!("store-{name}"))
            .spawn(move || match open() {
                Ok(backend) => {
                    let _ = opened_tx.send(Ok(()));
                    writer(backend, rx, max_batch, &m, &ev);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .map_err(|e| StoreError(format!("cannot start the writer thread: {e}")))?;
        opened.recv().map_err(|_| {
            StoreError("the writer thread stopped while opening the store".into())
        })??;
        Ok(Self {
            tx,
            backend: Arc::from(name),
            metrics,
            events,
        })
    }

    /// Opens the store the `[store]` section names: `sqlite` (the file `gateway.sqlite3` in
    /// `data_dir`, created if absent), `postgres` (the database at `url`, its tables created
    /// if absent) or `memory` (nothing survives the process), with `max_batch` writes at most
    /// per commit. Blocking (it opens and may create the file or the tables): call it at
    /// start-up.
    pub fn open(cfg: &crate::config::StoreConfig) -> Result<Self, StoreError> {
        let settings = StoreSettings {
            max_batch: cfg.max_batch,
            ..StoreSettings::default()
        };
        match cfg.backend.as_str() {
            "sqlite" => Self::start(SqliteBackend::open(&cfg.data_dir)?, "sqlite", settings),
            "postgres" => {
                let pg = cfg.postgres().map_err(|e| StoreError(e.to_string()))?;
                Self::start_opening(move || PostgresBackend::open(&pg), "postgres", settings)
            }
            "memory" => Self::start(MemoryBackend::default(), "memory", settings),
            other => Err(StoreError(format!(
                "store.backend \"{other}\": one of {}",
                crate::config::STORE_BACKENDS.join(", ")
            ))),
        }
    }

    /// An in-memory store (tests, benchmarks).
    pub fn memory() -> Self {
        // The writer thread is the only failure point, and spawning it only fails when the
        // process is out of threads, which no caller here can handle better than by stopping.
        #[allow(clippy::expect_used)]
        Self::start(MemoryBackend::default(), "memory", StoreSettings::default())
            .expect("the in-memory store starts")
    }

    pub fn backend_name(&self) -> &str {
        &self.backend
    }

    /// Whether several gateway instances may use this store at once (PostgreSQL): what an
    /// instance locks is then leased in the store, not only in its process.
    pub fn shared(&self) -> bool {
        &*self.backend == "postgres"
    }

    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// Notified after each commit that wrote a pending event (by this process).
    pub fn events_written(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.events)
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| StoreError("the store is stopped".into()))?;
        rx.await
            .map_err(|_| StoreError("the store stopped before answering".into()))?
    }

    async fn write(&self, w: Write) -> Result<Written, StoreError> {
        self.call(|r| Command::Write(w, r)).await
    }

    /// Applies `writes` in one transaction (durable on return), answers in order.
    pub async fn write_all(&self, writes: Vec<Write>) -> Result<Vec<Written>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|r| Command::WriteAll(writes, r)).await
    }

    /// Records a resource's new state and the events it causes, in one transaction: both are
    /// durable on return, or neither is.
    pub async fn put_resource_with_events(
        &self,
        row: ResourceRow,
        events: Vec<EventRow>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return self.put_resource(row).await;
        }
        let mut writes = Vec::with_capacity(events.len() + 1);
        writes.push(Write::Resource(row));
        writes.extend(events.into_iter().map(Write::Event));
        self.write_all(writes).await.map(|_| ())
    }

    /// Records an outbox event (durable on return).
    pub async fn put_event(&self, e: EventRow) -> Result<(), StoreError> {
        self.write(Write::Event(e)).await.map(|_| ())
    }

    /// Takes the delivery lease of event `id` (see [`Write::ClaimEvent`]).
    pub async fn claim_event(
        &self,
        id: &str,
        lease: Lease,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.won(Write::ClaimEvent {
            id: id.to_string(),
            lease,
            now_ms,
        })
        .await
    }

    pub async fn event(&self, id: &str) -> Result<Option<EventRow>, StoreError> {
        let id = id.to_string();
        self.call(|r| Command::Event(id, r)).await
    }

    /// Events matching `filter`, newest first, and the total that match.
    pub async fn events(&self, filter: EventFilter) -> Result<(Vec<EventRow>, usize), StoreError> {
        self.call(|r| Command::Events(filter, r)).await
    }

    /// Pending events due at `now_ms` (see [`Backend::due_events`]).
    pub async fn due_events(&self, now_ms: i64, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        self.call(|r| Command::DueEvents(now_ms, limit, r)).await
    }

    /// Records an operation before its request is sent (durable on return).
    pub async fn begin(&self, op: OperationRow) -> Result<Begun, StoreError> {
        match self.write(Write::Begin(op)).await? {
            Written::Begun(b) => Ok(b),
            _ => Err(StoreError("unexpected answer to begin".into())),
        }
    }

    /// Records an operation's new state (durable on return).
    pub async fn update(&self, op: OperationRow) -> Result<(), StoreError> {
        self.write(Write::Update(op)).await.map(|_| ())
    }

    /// Records a reservation's new state (durable on return).
    pub async fn put_reservation(&self, r: ReservationRow) -> Result<(), StoreError> {
        self.write(Write::Reservation(r)).await.map(|_| ())
    }

    pub async fn operation(&self, id: &str) -> Result<Option<OperationRow>, StoreError> {
        let id = id.to_string();
        self.call(|r| Command::Operation(id, r)).await
    }

    pub async fn operation_by_key(
        &self,
        app: &str,
        key: &str,
    ) -> Result<Option<OperationRow>, StoreError> {
        let (app, key) = (app.to_string(), key.to_string());
        self.call(|r| Command::OperationByKey(app, key, r)).await
    }

    pub async fn operations(
        &self,
        filter: OperationFilter,
    ) -> Result<Vec<OperationRow>, StoreError> {
        self.call(|r| Command::Operations(filter, r)).await
    }

    pub async fn unresolved(&self) -> Result<Vec<OperationRow>, StoreError> {
        self.call(Command::Unresolved).await
    }

    pub async fn reservation(&self, id: &str) -> Result<Option<ReservationRow>, StoreError> {
        let id = id.to_string();
        self.call(|r| Command::Reservation(id, r)).await
    }

    pub async fn open_reservations(&self) -> Result<Vec<ReservationRow>, StoreError> {
        self.call(Command::OpenReservations).await
    }

    /// Records a resource's new state (durable on return).
    /// Writes `row` only if no resource has its id (`expected_updated_ms` `None`) or only if
    /// the stored one was last updated at `expected_updated_ms` (see [`Write::PutResourceIf`]);
    /// whether it was written.
    pub async fn put_resource_if(
        &self,
        row: ResourceRow,
        expected_updated_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.won(Write::PutResourceIf {
            row,
            expected_updated_ms,
        })
        .await
    }

    pub async fn put_resource(&self, r: ResourceRow) -> Result<(), StoreError> {
        self.write(Write::Resource(r)).await.map(|_| ())
    }

    async fn won(&self, w: Write) -> Result<bool, StoreError> {
        match self.write(w).await? {
            Written::Won(won) => Ok(won),
            other => Err(StoreError(format!("unexpected answer {other:?}"))),
        }
    }

    /// Takes the lease of the unresolved operation `id` for `lease.owner` (see
    /// [`Write::Claim`]); false when another instance holds it, or it is resolved.
    pub async fn claim(&self, id: &str, lease: Lease, now_ms: i64) -> Result<bool, StoreError> {
        self.won(Write::Claim {
            id: id.to_string(),
            lease,
            now_ms,
        })
        .await
    }

    /// Renews the leases `owner` holds on unresolved operations until `until_ms`.
    pub async fn renew(&self, owner: &str, until_ms: i64) -> Result<(), StoreError> {
        self.write(Write::Renew {
            owner: owner.to_string(),
            until_ms,
        })
        .await
        .map(|_| ())
    }

    /// Records a reservation's next step if nobody stepped it since it read
    /// `last_request_number == expected` (durable on return); false otherwise.
    pub async fn step_reservation(
        &self,
        row: ReservationRow,
        expected: u32,
    ) -> Result<bool, StoreError> {
        self.won(Write::Step { row, expected }).await
    }

    /// Takes the named lease (see [`Write::TakeLease`]); false when another instance holds it.
    pub async fn take_lease(
        &self,
        name: &str,
        lease: Lease,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.won(Write::TakeLease {
            name: name.to_string(),
            lease,
            now_ms,
        })
        .await
    }

    /// Gives the named lease back (if `owner` holds it).
    pub async fn drop_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.write(Write::DropLease {
            name: name.to_string(),
            owner: owner.to_string(),
        })
        .await
        .map(|_| ())
    }

    pub async fn resource(&self, id: &str) -> Result<Option<ResourceRow>, StoreError> {
        let id = id.to_string();
        self.call(|r| Command::Resource(id, r)).await
    }

    /// Resources matching `filter`, newest first (or oldest first), and the total that match.
    pub async fn resources(
        &self,
        filter: ResourceFilter,
    ) -> Result<(Vec<ResourceRow>, usize), StoreError> {
        self.call(|r| Command::Resources(filter, r)).await
    }

    /// Imports inventory resources in one transaction (see [`Write::ImportInventory`]).
    pub async fn import_inventory(&self, rows: Vec<InventoryRow>) -> Result<(), StoreError> {
        self.write_all(rows.into_iter().map(Write::ImportInventory).collect())
            .await
            .map(|_| ())
    }

    /// Holds inventory resource `id` for `holder` (see [`Write::Reserve`]); false when
    /// someone else holds it, or it is not to be had.
    pub async fn reserve_inventory(
        &self,
        id: &str,
        holder: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.won(Write::Reserve {
            id: id.to_string(),
            holder: holder.to_string(),
            until_ms,
            now_ms,
        })
        .await
    }

    /// Assigns inventory resource `id`, held by `holder`, to `owner` (see [`Write::Assign`]).
    pub async fn assign_inventory(
        &self,
        id: &str,
        holder: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.won(Write::Assign {
            id: id.to_string(),
            holder: holder.to_string(),
            owner: owner.to_string(),
            now_ms,
        })
        .await
    }

    /// Releases `holder`'s reservation of inventory resource `id` (see [`Write::Release`]).
    pub async fn release_inventory(
        &self,
        id: &str,
        holder: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.won(Write::Release {
            id: id.to_string(),
            holder: holder.to_string(),
            now_ms,
        })
        .await
    }

    /// Takes back `holder`'s assignment of inventory resource `id` (see [`Write::Unassign`]).
    pub async fn unassign_inventory(
        &self,
        id: &str,
        holder: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.won(Write::Unassign {
            id: id.to_string(),
            holder: holder.to_string(),
            now_ms,
        })
        .await
    }

    /// A ported-in number's port completed (see [`Write::Activate`]).
    pub async fn activate_inventory(
        &self,
        id: &str,
        holder: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.won(Write::Activate {
            id: id.to_string(),
            holder: holder.to_string(),
            now_ms,
        })
        .await
    }

    pub async fn inventory(&self, id: &str) -> Result<Option<InventoryRow>, StoreError> {
        let id = id.to_string();
        self.call(|r| Command::Inventory(id, r)).await
    }

    /// Inventory resources matching `filter` (by category, then value) and the total.
    pub async fn inventory_list(
        &self,
        filter: InventoryFilter,
    ) -> Result<(Vec<InventoryRow>, usize), StoreError> {
        self.call(|r| Command::InventoryList(filter, r)).await
    }

    /// Waits until everything written before is committed (shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.call(Command::Flush).await
    }

    /// The clean stop: everything queued before is committed, then the backend is closed
    /// (SQLite: the write-ahead log checkpointed into the database, and removed) and the
    /// writer thread ends. Every later call, through any handle, fails ("the store is
    /// stopped"). Returns once the backend is closed, with its error if closing failed.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.call(Command::Close).await
    }
}

/// Who waits for the answers of a batch's writes: one caller per write, or one per group of
/// writes that went in together ([`Store::write_all`]).
enum Waiter {
    One(Reply<Written>),
    All(usize, Reply<Vec<Written>>),
}

fn writer(
    mut backend: impl Backend,
    mut rx: mpsc::Receiver<Command>,
    max_batch: usize,
    metrics: &StoreMetrics,
    events: &tokio::sync::Notify,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut writes: Vec<Write> = Vec::with_capacity(max_batch);
    let mut replies: Vec<Waiter> = Vec::with_capacity(max_batch);
    let mut after: Vec<Command> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        // Gather what is queued now: writes into one batch; reads and flushes wait for the
        // batch so that they see it.
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Write(w, reply) => {
                    writes.push(w);
                    replies.push(Waiter::One(reply));
                }
                // Kept whole in this batch, even past `max_batch`: one transaction.
                Command::WriteAll(ws, reply) => {
                    replies.push(Waiter::All(ws.len(), reply));
                    writes.extend(ws);
                }
                other => after.push(other),
            }
            if writes.len() >= max_batch {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !writes.is_empty() {
            let started = std::time::Instant::now();
            let result = backend.apply(&writes);
            metrics.batches.fetch_add(1, Relaxed);
            metrics.writes.fetch_add(writes.len() as u64, Relaxed);
            metrics
                .commit_micros
                .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
            match result {
                Ok(answers) if answers.len() == writes.len() => {
                    if writes
                        .iter()
                        .any(|w| matches!(w, Write::Event(e) if e.state == EventState::Pending))
                    {
                        events.notify_one();
                    }
                    let mut answers = answers.into_iter();
                    for waiter in replies.drain(..) {
                        match waiter {
                            Waiter::One(reply) => {
                                let answer = answers
                                    .next()
                                    .ok_or_else(|| StoreError("incomplete batch answer".into()));
                                let _ = reply.send(answer);
                            }
                            Waiter::All(n, reply) => {
                                let _ = reply.send(Ok(answers.by_ref().take(n).collect()));
                            }
                        }
                    }
                }
                Ok(answers) => {
                    metrics.failures.fetch_add(1, Relaxed);
                    error!(
                        expected = writes.len(),
                        got = answers.len(),
                        "store backend answered a batch partly"
                    );
                    let e = StoreError("incomplete batch answer".into());
                    for waiter in replies.drain(..) {
                        waiter.fail(&e);
                    }
                }
                Err(e) => {
                    metrics.failures.fetch_add(1, Relaxed);
                    warn!(error = %e, writes = writes.len(), "store batch failed");
                    for waiter in replies.drain(..) {
                        waiter.fail(&e);
                    }
                }
            }
            writes.clear();
        }
        let mut closing = Vec::new();
        for cmd in after.drain(..) {
            match cmd {
                Command::Close(reply) => closing.push(reply),
                other => serve_read(&mut backend, other),
            }
        }
        if !closing.is_empty() {
            let result = backend.close();
            if let Err(e) = &result {
                warn!(error = %e, "store close failed");
            }
            for reply in closing {
                let _ = reply.send(result.clone());
            }
            // Dropping `rx` refuses every call still queued or made later.
            return;
        }
    }
    // Every handle is gone: close too.
    if let Err(e) = backend.close() {
        warn!(error = %e, "store close failed");
    }
}

impl Waiter {
    fn fail(self, e: &StoreError) {
        match self {
            Self::One(reply) => {
                let _ = reply.send(Err(e.clone()));
            }
            Self::All(_, reply) => {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

fn serve_read(backend: &mut impl Backend, cmd: Command) {
    match cmd {
        Command::Write(_, reply) => {
            let _ = reply.send(Err(StoreError("write routed as a read".into())));
        }
        Command::WriteAll(_, reply) => {
            let _ = reply.send(Err(StoreError("write routed as a read".into())));
        }
        Command::Event(id, reply) => {
            let _ = reply.send(backend.event(&id));
        }
        Command::Events(filter, reply) => {
            let _ = reply.send(backend.events(&filter));
        }
        Command::DueEvents(now, limit, reply) => {
            let _ = reply.send(backend.due_events(now, limit));
        }
        Command::Operation(id, reply) => {
            let _ = reply.send(backend.operation(&id));
        }
        Command::OperationByKey(app, key, reply) => {
            let _ = reply.send(backend.operation_by_key(&app, &key));
        }
        Command::Operations(filter, reply) => {
            let _ = reply.send(backend.operations(&filter));
        }
        Command::Unresolved(reply) => {
            let _ = reply.send(backend.unresolved());
        }
        Command::Reservation(id, reply) => {
            let _ = reply.send(backend.reservation(&id));
        }
        Command::OpenReservations(reply) => {
            let _ = reply.send(backend.open_reservations());
        }
        Command::Resource(id, reply) => {
            let _ = reply.send(backend.resource(&id));
        }
        Command::Resources(filter, reply) => {
            let _ = reply.send(backend.resources(&filter));
        }
        Command::Inventory(id, reply) => {
            let _ = reply.send(backend.inventory(&id));
        }
        Command::InventoryList(filter, reply) => {
            let _ = reply.send(backend.inventory_list(&filter));
        }
        Command::Flush(reply) => {
            let _ = reply.send(Ok(()));
        }
        Command::Close(reply) => {
            let _ = reply.send(Err(StoreError("close routed as a read".into())));
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
