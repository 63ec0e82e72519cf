//! The PostgreSQL [`Backend`]: the store's tables in a PostgreSQL database (`store.url`), for
//! operators who keep records in a database server they already back up and replicate. Same
//! semantics as [`MemoryBackend`](super::MemoryBackend) and the SQLite backend.
//!
//! ```text
//! writer thread ==== one connection (TCP, TLS or not, or a Unix socket) ====> PostgreSQL
//!   apply(batch):  BEGIN, the batch's statements        sent together (pipelined), then
//!                  COMMIT                               one WAL flush per batch
//!
//! the connection's current schema (search_path: `public` unless the URL sets it)
//!   gateway_schema     one row: application 'charging-gateway', schema version
//!   operations         seq (identity: insertion order), id, app, "key", ..., amount NUMERIC
//!   reservations       id, ..., reserved NUMERIC, charged NUMERIC, state, ...
//!   resources          id, app, kind, state, parent, due_ms, body, ...
//!   leases             name, owner, until_ms
//!   events             seq (identity: order first written), id, app, resource, url,
//!                      headers (JSON text), body, state, next_ms, owner, lease_until_ms, ...
//!   inventory          id, category, value (unique per category), status, holder,
//!                      hold_until_ms, ported_in, body (JSON text), ...
//! ```
//!
//! Two round trips per batch, whatever its size. The batch is cut into groups of writes whose
//! order inside the group does not matter (no two begins of one key or one id, no begin of
//! a key or id an earlier update of the group moved, no two updates of one id; reservations,
//! resources and events of one id: the last one, an event keeping its first place), and each
//! group is a few multi-row statements over arrays (`unnest`): the begins' retryable rows
//! given way (DELETE), their inserts (one statement: new rows, `ON CONFLICT DO NOTHING`, and
//! rows replaced by id), the rows their keys meet (SELECT ... FOR UPDATE: the `Existing`
//! answers), the updates (one UPDATE ... FROM, RETURNING the ids found, so that a missing one
//! fails the batch), the reservations, resources and outbox events (one upsert each). A
//! claim, renewal, reservation step, named lease, event claim, or inventory write (import,
//! reserve, assign, release, activate) is a group of its own (one statement, answered by the
//! rows it wrote). BEGIN and every group's statements are sent
//! before the first answer is read (tokio-postgres pipelines requests in the order they are
//! first polled); the server runs them in that order. COMMIT is sent once every answer is in
//! and checked: a 2xx is only ever built on a COMMIT that returned. One case the grouping
//! cannot see is caught in the answers: a begin whose key is held by a row an earlier update
//! of the same group changed (the row met, or given way, is one of those updates'); then the
//! transaction is rolled back and the batch sent again with one write per group, which is
//! the order as given.
//!
//! Durable: COMMIT returns once the server has flushed the batch to its WAL
//! (`synchronous_commit`, `on` by default; a session that finds it `off` sets it back to `on`),
//! so a batch is on the server's disk when `apply` returns, one flush for the whole batch
//! (group commit). Money is NUMERIC, exact, with its scale as written (`0.10` stays `0.10`);
//! states are kept by their names, `u32`s as BIGINT. Nothing read back is trusted: a row that
//! does not decode is an error naming the row and the column.
//!
//! TLS (rustls, [`super::pg_tls`]) as `store.url`'s `sslmode` and `sslrootcert` say
//! ([`crate::config::postgres`]).
//!
//! Connection loss: the batch in flight fails with a [`StoreError`] and nothing of it is kept
//! (a COMMIT whose answer is lost is the one exception the server cannot rule out: the error
//! says its outcome is unknown). The next call opens a new connection; a batch whose `BEGIN`
//! meets a connection that died while idle is sent again on a fresh one (nothing of it was
//! executed), and so is a read.
//!
//! Differences from the memory backend, on writes the charging layer never makes: as with
//! SQLite, an `Update` that moves a row onto another row's `(app, key)` fails its batch; TEXT
//! cannot hold a NUL character, so a write with one fails its batch (the REST families refuse
//! control characters before anything is stored). Two sessions beginning the same key at the
//! same moment: the second waits for the first's commit and meets its row (no batch fails).
//! Two sessions beginning the same keys in opposite orders wait on each other; the server
//! breaks the deadlock by rolling one back (40P01), and that batch is sent again (up to
//! five times), so no request fails for it.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures::future::{MaybeDone, maybe_done, poll_fn};
use rust_decimal::Decimal;
use tokio_postgres::config::Host;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Client, Config, NoTls, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{debug, info, warn};

use super::sql::{
    ACTIVATE_INVENTORY, ASSIGN_INVENTORY, DROP_LEASE, DUE_EVENTS, EVENT_BY_ID, EVENT_COLUMNS,
    IMPORT_INVENTORY, INSERT_RESOURCE, INVENTORY_BY_ID, INVENTORY_COLUMNS, OP_BY_ID, OP_BY_KEY,
    OPS_UNRESOLVED, RELEASE_INVENTORY, RES_BY_ID, RES_OPEN, RESERVE_INVENTORY, RESOURCE_BY_ID,
    RESOURCE_COLUMNS, SWAP_RESOURCE, TAKE_LEASE, UNASSIGN_INVENTORY, event_columns,
    event_set_excluded, headers_from_json, headers_json, inventory_where, op_columns, where_clause,
};
use super::{
    Backend, Begun, EventFilter, EventRow, EventState, InventoryFilter, InventoryRow,
    InventoryStatus, Lease, OpState, OperationFilter, OperationRow, ReservationRow,
    ReservationState, ResourceFilter, ResourceRow, StoreError, Write, Written,
};
use crate::config::postgres::PostgresTarget;

/// The schema version this code writes (`gateway_schema.version`). A database with a higher
/// one was written by a newer gateway and is refused.
pub const SCHEMA_VERSION: i32 = 4;

/// `gateway_schema.application`: marks the schema as a gateway store.
pub const APPLICATION: &str = "charging-gateway";

/// The advisory lock held while the schema is checked and migrated, so that gateways starting
/// together migrate it once: "CGW1".
const MIGRATION_LOCK: i64 = 0x4347_5731;

/// How long opening a connection may take, unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long sent data may stay unacknowledged before the connection is given up, unless the
/// URL says (`tcp_user_timeout`): a server that vanished fails the batch instead of hanging
/// the writer thread.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a statement waits for a lock held by another session (an operator's, another
/// gateway's) before its batch fails; as the SQLite backend's busy timeout.
const LOCK_TIMEOUT: &str = "5s";

/// The batch's statements join arrays to `operations`. A generic plan (PostgreSQL's choice
/// after five executions) is made once, with the table's size of that moment, and kept until
/// the statistics change: made while the table is empty or small, it scans the table (a hash
/// join) and keeps scanning it as it grows (for a minute or more, until autovacuum's next
/// ANALYZE). So the session plans each execution while `operations` takes fewer pages than
/// this (2 MiB), where a scan could look cheaper than the index probes, and leaves the choice
/// to PostgreSQL from then on (checked every [`PLAN_CHECK_EVERY`] batches). The planner reads
/// the table's size on disk when it plans, so a generic plan made past this probes the
/// indexes, statistics or not.
const GENERIC_PLANS_FROM_PAGES: f64 = 256.0;

const PLAN_CHECK_EVERY: u64 = 256;

/// Prepared statements kept per connection (the fixed ones plus one per listing filter
/// combination); past this the cache starts again.
const STATEMENT_CACHE: usize = 512;

/// Schema migrations: entry `n` takes a database from version `n` to `n + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // Version 1: the tables of the SQLite file's version 2.
    r#"
    CREATE TABLE gateway_schema (
        application TEXT NOT NULL,
        version     INTEGER NOT NULL
    );

    CREATE TABLE operations (
        seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- insertion order
        id             TEXT NOT NULL UNIQUE,
        app            TEXT NOT NULL,
        "key"          TEXT,                  -- idempotency key within the app
        kind           TEXT NOT NULL,
        request_hash   TEXT NOT NULL,
        parent         TEXT,
        reservation_id TEXT,
        session_id     TEXT NOT NULL,
        request_number BIGINT NOT NULL,       -- u32
        subscriber     TEXT,
        amount         NUMERIC,               -- exact, scale as written
        currency       TEXT,
        reference_code TEXT,
        state          TEXT NOT NULL,         -- OpState::name
        result_code    BIGINT,                -- u32
        request        TEXT NOT NULL,
        outcome        TEXT,
        created_ms     BIGINT NOT NULL,
        updated_ms     BIGINT NOT NULL
    );
    -- Key first, as in the SQLite file: the idempotency check (app and key) and a dispute's
    -- look-up by reference (the key of the operation it names) both use it, and it is the one
    -- index on a random column.
    CREATE UNIQUE INDEX operations_key_app ON operations ("key", app) WHERE "key" IS NOT NULL;
    CREATE INDEX operations_parent ON operations (parent) WHERE parent IS NOT NULL;
    CREATE INDEX operations_reservation_id ON operations (reservation_id)
        WHERE reservation_id IS NOT NULL;
    CREATE INDEX operations_session_id ON operations (session_id);
    CREATE INDEX operations_unresolved ON operations (seq)
        WHERE state IN ('pending', 'unknown');

    -- Ids are ordered byte by byte ("C"), as SQLite and the memory backend order them,
    -- whatever the database's default collation.
    CREATE TABLE reservations (
        id                  TEXT COLLATE "C" PRIMARY KEY,
        app                 TEXT NOT NULL,
        session_id          TEXT NOT NULL,
        subscriber          TEXT NOT NULL,
        currency            TEXT NOT NULL,
        reserved            NUMERIC NOT NULL,
        charged             NUMERIC NOT NULL,
        last_request_number BIGINT NOT NULL,  -- u32
        state               TEXT NOT NULL,    -- ReservationState::name
        expires_ms          BIGINT NOT NULL,
        created_ms          BIGINT NOT NULL,
        updated_ms          BIGINT NOT NULL
    );
    CREATE INDEX reservations_open ON reservations (created_ms, id) WHERE state = 'open';

    CREATE TABLE resources (
        id          TEXT COLLATE "C" PRIMARY KEY,
        app         TEXT NOT NULL,
        kind        TEXT NOT NULL,
        state       TEXT NOT NULL,
        parent      TEXT,
        due_ms      BIGINT,
        body        TEXT NOT NULL,
        created_ms  BIGINT NOT NULL,
        updated_ms  BIGINT NOT NULL
    );
    CREATE INDEX resources_app_kind ON resources (app, kind, created_ms);
    CREATE INDEX resources_parent ON resources (parent) WHERE parent IS NOT NULL;
    CREATE INDEX resources_due ON resources (due_ms) WHERE due_ms IS NOT NULL;
    "#,
    // Version 2 (the SQLite file's 3): leases, so that gateway instances sharing the database
    // leave each other's work alone (an unresolved operation's, and named ones).
    r#"
    ALTER TABLE operations ADD COLUMN owner TEXT, ADD COLUMN lease_until_ms BIGINT;
    ALTER TABLE reservations ADD COLUMN pending TEXT;
    CREATE TABLE leases (
        name      TEXT COLLATE "C" PRIMARY KEY,
        owner     TEXT NOT NULL,
        until_ms  BIGINT NOT NULL
    );
    "#,
    // Version 3 (the SQLite file's 4): the outbox, notifications written in the same
    // transaction as the state change they tell of, until delivered or given up.
    r#"
    CREATE TABLE events (
        seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- delivery order
        id             TEXT NOT NULL UNIQUE,
        app            TEXT NOT NULL,
        kind           TEXT NOT NULL,
        resource       TEXT,
        url            TEXT NOT NULL,
        headers        TEXT NOT NULL,         -- JSON: [[name, value], ...]
        content_type   TEXT NOT NULL,
        body           TEXT NOT NULL,
        state          TEXT NOT NULL,         -- EventState::name
        attempts       BIGINT NOT NULL,       -- u32
        next_ms        BIGINT NOT NULL,
        last_error     TEXT,
        owner          TEXT,                  -- the delivery lease
        lease_until_ms BIGINT,
        created_ms     BIGINT NOT NULL,
        updated_ms     BIGINT NOT NULL,
        delivered_ms   BIGINT
    );
    -- Due events: the pending ones by time.
    CREATE INDEX events_due ON events (state, next_ms);
    -- An older pending event of the same resource and URL (the order of delivery), and the
    -- listing of a resource's events.
    CREATE INDEX events_resource ON events (resource, url, state, seq);
    CREATE INDEX events_app ON events (app, seq);
    "#,
    // Version 4 (the SQLite file's 5): the resource inventory (TMF639: MSISDNs and ICCIDs),
    // held and assigned by conditional UPDATEs.
    r#"
    CREATE TABLE inventory (
        id             TEXT COLLATE "C" PRIMARY KEY,  -- msisdn-<digits>, iccid-<digits>
        category       TEXT COLLATE "C" NOT NULL,     -- MSISDN | ICCID
        value          TEXT COLLATE "C" NOT NULL,
        status         TEXT NOT NULL,                 -- InventoryStatus::name
        holder         TEXT,                          -- the cart or order
        hold_until_ms  BIGINT,
        ported_in      BOOLEAN NOT NULL,
        body           TEXT NOT NULL,                 -- JSON: the imported characteristics
        created_ms     BIGINT NOT NULL,
        updated_ms     BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX inventory_value ON inventory (category, value);
    CREATE INDEX inventory_status ON inventory (status, category, value);
    "#,
];

/// Takes an unresolved operation's lease (`$4`: now).
const CLAIM_OP: &str = "UPDATE operations SET owner = $2, lease_until_ms = $3 WHERE id = $1 \
    AND state IN ('pending', 'unknown') \
    AND (owner IS NULL OR owner = $2 OR lease_until_ms IS NULL OR lease_until_ms <= $4)";

/// Takes a pending event's delivery lease (`$4`: now).
const CLAIM_EVENT: &str = "UPDATE events SET owner = $2, lease_until_ms = $3 WHERE id = $1 \
    AND state = 'pending' \
    AND (owner IS NULL OR owner = $2 OR lease_until_ms IS NULL OR lease_until_ms <= $4)";

const RENEW_OPS: &str = "UPDATE operations SET lease_until_ms = $2 \
    WHERE owner = $1 AND state IN ('pending', 'unknown')";

/// A reservation replaced only if its last request number is still `$14`.
const STEP_RES: &str = "UPDATE reservations SET app = $2, session_id = $3, subscriber = $4, \
    currency = $5, reserved = $6, charged = $7, last_request_number = $8, state = $9, \
    expires_ms = $10, created_ms = $11, updated_ms = $12, pending = $13 \
    WHERE id = $1 AND last_request_number = $14";

// The multi-row statements of a batch: one row per array element (`unnest`), arrays in the
// column order of `OpColumns`, `ReservationColumns`, `ResourceColumns`.

macro_rules! op_arrays {
    () => {
        "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::bigint[], $10::text[], $11::numeric[], $12::text[], $13::text[], \
         $14::text[], $15::bigint[], $16::text[], $17::text[], $18::bigint[], $19::bigint[], \
         $20::text[], $21::bigint[]"
    };
}

macro_rules! op_names {
    () => {
        r#"id, app, "key", kind, request_hash, parent, reservation_id, session_id, request_number,
        subscriber, amount, currency, reference_code, state, result_code, request, outcome,
        created_ms, updated_ms, owner, lease_until_ms"#
    };
}

macro_rules! op_set_excluded {
    () => {
        r#"app = excluded.app, "key" = excluded."key",
        kind = excluded.kind, request_hash = excluded.request_hash, parent = excluded.parent,
        reservation_id = excluded.reservation_id, session_id = excluded.session_id,
        request_number = excluded.request_number, subscriber = excluded.subscriber,
        amount = excluded.amount, currency = excluded.currency,
        reference_code = excluded.reference_code, state = excluded.state,
        result_code = excluded.result_code, request = excluded.request, outcome = excluded.outcome,
        created_ms = excluded.created_ms, updated_ms = excluded.updated_ms, owner = excluded.owner,
        lease_until_ms = excluded.lease_until_ms"#
    };
}

/// The begins' keys held by retryable rows: those rows give way.
const GIVE_WAY: &str = r#"DELETE FROM operations o
    USING unnest($1::text[], $2::text[]) AS k(k_app, k_key)
    WHERE o.app = k.k_app AND o."key" = k.k_key AND o.state = 'retryable'
    RETURNING o.id, o.app, o."key""#;

/// The begins' inserts, in the batch's order (their `seq`); RETURNING the ids written.
/// `fresh`: inserted where no row has the id or the key; of two sessions inserting one key at
/// once, the second waits for the first's commit and then inserts nothing (no batch fails: it
/// meets the first's row). `replaced`: a begin whose id exists (the one conflict `fresh` gave
/// way to that is not a key's) and whose key no row holds replaces the row of its id, as a
/// single begin does.
const INSERT_BEGUN: &str = concat!(
    "WITH v AS (SELECT * FROM unnest(",
    op_arrays!(),
    ") WITH ORDINALITY AS v(",
    op_names!(),
    ", ord)), fresh AS (INSERT INTO operations (",
    op_names!(),
    ") SELECT ",
    op_names!(),
    " FROM v ORDER BY ord ON CONFLICT DO NOTHING RETURNING id), replaced AS (
    INSERT INTO operations (",
    op_names!(),
    ") SELECT ",
    op_names!(),
    r#" FROM v WHERE v.id NOT IN (SELECT id FROM fresh)
      AND EXISTS (SELECT 1 FROM operations o WHERE o.id = v.id)
      AND (v."key" IS NULL
           OR NOT EXISTS (SELECT 1 FROM operations o WHERE o.app = v.app AND o."key" = v."key"))
    ORDER BY ord
    ON CONFLICT (id) DO UPDATE SET "#,
    op_set_excluded!(),
    " RETURNING id) SELECT id FROM fresh UNION ALL SELECT id FROM replaced"
);

/// The rows the begins' keys meet (after GIVE_WAY and INSERT_BEGUN: the ones kept, or the
/// begins' own), locked until the batch commits.
const MET: &str = concat!(
    "SELECT ",
    op_columns!(),
    r#" FROM operations JOIN unnest($1::text[], $2::text[]) AS k(k_app, k_key)
    ON app = k_app AND "key" = k_key FOR UPDATE OF operations"#
);

// One statement: PostgreSQL compares the indexed columns' values itself (an update that leaves
// them equal is a heap-only update, no index touched).
const UPDATE_OPS: &str = concat!(
    r#"UPDATE operations o SET app = v.app, "key" = v."key", kind = v.kind,
    request_hash = v.request_hash, parent = v.parent, reservation_id = v.reservation_id,
    session_id = v.session_id, request_number = v.request_number, subscriber = v.subscriber,
    amount = v.amount, currency = v.currency, reference_code = v.reference_code,
    state = v.state, result_code = v.result_code, request = v.request, outcome = v.outcome,
    created_ms = v.created_ms, updated_ms = v.updated_ms, owner = v.owner,
    lease_until_ms = v.lease_until_ms
    FROM unnest("#,
    op_arrays!(),
    ") AS v(",
    op_names!(),
    ") WHERE o.id = v.id RETURNING o.id"
);

const PUT_RESERVATIONS: &str = "INSERT INTO reservations (id, app, session_id, subscriber, \
    currency, reserved, charged, last_request_number, state, expires_ms, created_ms, updated_ms, \
    pending) \
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
    $6::numeric[], $7::numeric[], $8::bigint[], $9::text[], $10::bigint[], $11::bigint[], \
    $12::bigint[], $13::text[]) \
    ON CONFLICT (id) DO UPDATE SET app = excluded.app, session_id = excluded.session_id, \
    subscriber = excluded.subscriber, currency = excluded.currency, \
    reserved = excluded.reserved, charged = excluded.charged, \
    last_request_number = excluded.last_request_number, state = excluded.state, \
    expires_ms = excluded.expires_ms, created_ms = excluded.created_ms, \
    updated_ms = excluded.updated_ms, pending = excluded.pending";

const PUT_RESOURCES: &str = "INSERT INTO resources (id, app, kind, state, parent, due_ms, \
    body, created_ms, updated_ms) \
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
    $6::bigint[], $7::text[], $8::bigint[], $9::bigint[]) \
    ON CONFLICT (id) DO UPDATE SET app = excluded.app, kind = excluded.kind, \
    state = excluded.state, parent = excluded.parent, due_ms = excluded.due_ms, \
    body = excluded.body, created_ms = excluded.created_ms, updated_ms = excluded.updated_ms";

/// The group's events in the order first met (their `seq`); an id met again keeps its first
/// place and takes its last row.
const PUT_EVENTS: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ") SELECT ",
    event_columns!(),
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
    $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::text[], $13::text[], \
    $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[]) WITH ORDINALITY AS v(",
    event_columns!(),
    ", ord) ORDER BY ord ON CONFLICT (id) DO UPDATE SET ",
    event_set_excluded!()
);

/// The statements every batch may use, prepared when a connection opens.
const BATCH_STATEMENTS: [&str; 24] = [
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    GIVE_WAY,
    MET,
    INSERT_BEGUN,
    UPDATE_OPS,
    PUT_RESERVATIONS,
    PUT_RESOURCES,
    PUT_EVENTS,
    CLAIM_OP,
    RENEW_OPS,
    STEP_RES,
    TAKE_LEASE,
    DROP_LEASE,
    CLAIM_EVENT,
    IMPORT_INVENTORY,
    RESERVE_INVENTORY,
    ASSIGN_INVENTORY,
    RELEASE_INVENTORY,
    UNASSIGN_INVENTORY,
    INSERT_RESOURCE,
    SWAP_RESOURCE,
    ACTIVATE_INVENTORY,
];

type Param<'a> = &'a (dyn ToSql + Sync);

/// The PostgreSQL backend: one connection, owned by the store's writer thread, opened again
/// after it is lost, driven on a current-thread runtime of its own.
pub struct PostgresBackend {
    config: Config,
    /// `None`: plain connections (`sslmode=disable`).
    tls: Option<MakeRustlsConnect>,
    /// `postgres user@host:port/dbname`: names the database in errors and logs (no password).
    label: String,
    rt: tokio::runtime::Runtime,
    /// `None` after a connection was lost, until the next call opens one.
    conn: Option<Conn>,
    /// Batches sent again one write per group (a begin met a row its group's update changed).
    regrouped: u64,
    /// Batches sent again after the server broke a deadlock (see [`Failed::Contended`]).
    contended: u64,
}

/// An open connection and its prepared statements.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
    /// `plan_cache_mode = force_custom_plan` for now (see [`GENERIC_PLANS_FROM_PAGES`]).
    custom_plans: bool,
    /// Batches committed on this connection.
    batches: u64,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("database", &self.label)
            .field("tls", &self.tls.is_some())
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl PostgresBackend {
    /// Connects to the database `target` names; creates or migrates the schema. Refuses a
    /// schema that is newer than this code, or that is not a gateway store, and a database
    /// whose encoding is not UTF8.
    ///
    /// Blocking, and it must not run on an async runtime's thread (the backend drives its
    /// own): [`Store::open`](super::Store::open) calls it on the writer thread.
    pub fn open(target: &PostgresTarget) -> Result<Self, StoreError> {
        let mut config = target.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION);
        }
        let label = label(&config);
        on_own_thread(&label)?;
        let tls = super::pg_tls::connector(target)
            .map_err(|e| StoreError(format!("{label}: {}", e.0)))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError(format!("{label}: cannot start the client's runtime: {e}")))?;
        let mut me = Self {
            config,
            tls,
            label,
            rt,
            conn: None,
            regrouped: 0,
            contended: 0,
        };
        me.connection()?;
        Ok(me)
    }

    /// `postgres user@host:port/dbname`, as errors name the database.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The open connection, opening one (and checking the schema) when there is none.
    fn connection(&mut self) -> Result<&mut Conn, StoreError> {
        on_own_thread(&self.label)?;
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.lost();
        }
        let Self {
            config,
            tls,
            label,
            rt,
            conn,
            ..
        } = self;
        match conn {
            Some(c) => Ok(c),
            empty => {
                let c = rt.block_on(async {
                    let mut client = connect(config, tls.as_ref(), label).await?;
                    migrate(&mut client, label).await?;
                    let mut c = Conn {
                        client,
                        statements: HashMap::new(),
                        custom_plans: false,
                        batches: 0,
                    };
                    c.choose_plans()
                        .await
                        .map_err(|e| StoreError(format!("{label}: session: {}", pg_error(&e))))?;
                    c.prepare(&BATCH_STATEMENTS)
                        .await
                        .map_err(|e| StoreError(format!("{label}: prepare: {}", pg_error(&e))))?;
                    Ok::<_, StoreError>(c)
                })?;
                Ok(empty.insert(c))
            }
        }
    }

    /// Forgets the connection (and its prepared statements): the next call opens a new one.
    fn lost(&mut self) {
        if self.conn.take().is_some() {
            warn!(database = %self.label, "store connection lost: reconnecting on the next call");
        }
    }

    /// After a failed call: forgets the connection if it is closed.
    fn after_error(&mut self) {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.lost();
        }
    }

    /// Runs a read, once more on a new connection if the first found it dead.
    fn read<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        what: &str,
        decode: impl Fn(&Row, &str) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut retried = false;
        loop {
            self.connection()?;
            let (rt, conn) = (&self.rt, &mut self.conn);
            let Some(conn) = conn.as_mut() else {
                return Err(StoreError(format!("{}: not connected", self.label)));
            };
            let rows = rt.block_on(async {
                conn.prepare(&[sql]).await?;
                match conn.statements.get(sql) {
                    Some(s) => conn.client.query(s, params).await,
                    None => Ok(Vec::new()),
                }
            });
            let closed = conn.client.is_closed();
            match rows {
                Ok(rows) => {
                    return rows.iter().map(|r| decode(r, &self.label)).collect();
                }
                Err(e) if !retried && (is_dead(&e) || closed) => {
                    retried = true;
                    self.lost();
                }
                Err(e) => {
                    if is_dead(&e) {
                        self.lost();
                    } else {
                        self.after_error();
                    }
                    return Err(StoreError(format!(
                        "{}: {what}: {}",
                        self.label,
                        pg_error(&e)
                    )));
                }
            }
        }
    }

    fn query_ops(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<OperationRow>, StoreError> {
        self.read(sql, params, "query operations", read_op)
    }

    fn query_reservations(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<ReservationRow>, StoreError> {
        self.read(sql, params, "query reservations", read_reservation)
    }

    /// One batch on the open connection: grouped, or (`grouped` false) one write per group.
    fn try_batch(&mut self, batch: &[Write], grouped: bool) -> Result<Vec<Written>, Failed> {
        self.connection()
            .map_err(|error| Failed::Unsent { dead: false, error })?;
        let Self {
            rt, conn, label, ..
        } = self;
        let Some(conn) = conn.as_mut() else {
            return Err(Failed::Unsent {
                dead: false,
                error: StoreError(format!("{label}: not connected")),
            });
        };
        let out = rt.block_on(write_batch(conn, &plan(batch, grouped), batch.len(), label))?;
        conn.batches += 1;
        if conn.custom_plans && conn.batches % PLAN_CHECK_EVERY == 0 {
            // Nothing depends on it but speed: a failure is for the connection's next call.
            if let Err(e) = rt.block_on(conn.choose_plans()) {
                debug!(database = %label, error = %pg_error(&e), "plan mode not checked");
            }
        }
        Ok(out)
    }

    /// After a failed batch: the session out of its transaction (a ROLLBACK outside one only
    /// warns), or the connection forgotten when that fails or it is gone.
    fn rollback(&mut self) {
        let Self {
            rt, conn, label, ..
        } = self;
        let rolled_back = conn
            .as_ref()
            .filter(|c| !c.client.is_closed())
            .map(|c| rt.block_on(c.client.batch_execute("ROLLBACK")));
        match rolled_back {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                warn!(database = %label, error = %pg_error(&e), "store rollback failed");
                self.lost();
            }
            None => self.lost(),
        }
    }
}

impl Conn {
    /// Custom plans while `operations` is small, else PostgreSQL's own choice (generic plans
    /// once they cost no more). See [`GENERIC_PLANS_FROM_PAGES`].
    async fn choose_plans(&mut self) -> Result<(), tokio_postgres::Error> {
        let pages: f64 = self
            .client
            .query_one(
                "SELECT coalesce(pg_relation_size(to_regclass('operations')), 0)::float8 \
                 / current_setting('block_size')::float8",
                &[],
            )
            .await?
            .try_get(0)?;
        let custom = pages < GENERIC_PLANS_FROM_PAGES;
        if custom != self.custom_plans || self.batches == 0 {
            let mode = if custom { "force_custom_plan" } else { "auto" };
            self.client
                .batch_execute(&format!("SET plan_cache_mode = {mode}"))
                .await?;
            if !custom {
                debug!(pages, "store statements: generic plans allowed");
            }
        }
        self.custom_plans = custom;
        Ok(())
    }

    /// Prepares those of `sqls` not prepared yet on this connection (all sent at once).
    async fn prepare(&mut self, sqls: &[&str]) -> Result<(), tokio_postgres::Error> {
        let missing: Vec<&str> = sqls
            .iter()
            .copied()
            .filter(|s| !self.statements.contains_key(*s))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if self.statements.len() + missing.len() > STATEMENT_CACHE {
            // Past the cache's size it starts again, keeping the batch's own statements.
            self.statements
                .retain(|sql, _| BATCH_STATEMENTS.contains(&sql.as_str()));
        }
        let client = &self.client;
        let prepared = in_order(missing.iter().map(|s| client.prepare(s)).collect()).await;
        for (sql, statement) in missing.into_iter().zip(prepared) {
            self.statements.insert(sql.to_string(), statement?);
        }
        Ok(())
    }

    fn statement(&self, sql: &str) -> Result<&Statement, StoreError> {
        self.statements
            .get(sql)
            .ok_or_else(|| StoreError(format!("statement not prepared: {sql}")))
    }
}

impl Backend for PostgresBackend {
    fn apply(&mut self, batch: &[Write]) -> Result<Vec<Written>, StoreError> {
        let mut retried = false;
        let mut grouped = true;
        let mut contended = 0;
        loop {
            match self.try_batch(batch, grouped) {
                Ok(out) => return Ok(out),
                // Two instances inserting the same keys in opposite orders (a client retrying
                // on another instance at once): the server broke the deadlock by rolling this
                // batch back. Nothing of it is committed; sent again, it meets the other's rows.
                Err(Failed::Contended(error)) if contended < CONTENDED_RETRIES => {
                    self.rollback();
                    contended += 1;
                    self.contended += 1;
                    debug!(database = %self.label, writes = batch.len(), %error, "store batch sent again after a deadlock");
                }
                // Nothing of the batch was executed: send it again on a new connection.
                Err(Failed::Unsent { dead: true, .. }) if !retried => {
                    retried = true;
                    self.lost();
                }
                // Once more in the batch's own order.
                Err(Failed::Reorder) if grouped => {
                    self.rollback();
                    self.regrouped += 1;
                    debug!(database = %self.label, writes = batch.len(), "store batch sent again one write per group");
                    grouped = false;
                }
                Err(Failed::Reorder) => {
                    self.rollback();
                    return Err(StoreError(format!(
                        "{}: a batch of one write per group met an update of its own group",
                        self.label
                    )));
                }
                Err(
                    Failed::Unsent { error, .. } | Failed::Sent(error) | Failed::Contended(error),
                ) => {
                    self.rollback();
                    return Err(error);
                }
            }
        }
    }

    fn operation(&mut self, id: &str) -> Result<Option<OperationRow>, StoreError> {
        Ok(self.query_ops(OP_BY_ID, &[&id])?.pop())
    }

    fn operation_by_key(
        &mut self,
        app: &str,
        key: &str,
    ) -> Result<Option<OperationRow>, StoreError> {
        Ok(self.query_ops(OP_BY_KEY, &[&app, &key])?.pop())
    }

    fn operations(&mut self, f: &OperationFilter) -> Result<Vec<OperationRow>, StoreError> {
        let mut sql = String::from(concat!("SELECT ", op_columns!(), " FROM operations"));
        let mut params: Vec<Param<'_>> = Vec::with_capacity(5);
        let state = f.state.map(OpState::name);
        // An operation recorded under a reference code is keyed by it, or is a leg (or a
        // compensation) of one that is: found through the key and the parent indexes.
        if let Some(r) = &f.reference_code {
            params.push(r);
            let n = params.len();
            let _ = write!(
                sql,
                " WHERE reference_code = ${n} AND (\"key\" = ${n} OR parent IN \
                 (SELECT id FROM operations WHERE \"key\" = ${n}))"
            );
        }
        let filters: [(&str, Option<Param<'_>>); 3] = [
            ("app", f.app.as_ref().map(|v| v as Param<'_>)),
            (
                "reservation_id",
                f.reservation_id.as_ref().map(|v| v as Param<'_>),
            ),
            ("state", state.as_ref().map(|v| v as Param<'_>)),
        ];
        for (column, value) in filters {
            if let Some(v) = value {
                sql.push_str(if params.is_empty() {
                    " WHERE "
                } else {
                    " AND "
                });
                params.push(v);
                let _ = write!(sql, "{column} = ${}", params.len());
            }
        }
        // LIMIT NULL is no limit.
        let limit = limit(f.limit);
        params.push(&limit);
        let _ = write!(sql, " ORDER BY seq DESC LIMIT ${}", params.len());
        self.query_ops(&sql, &params)
    }

    fn unresolved(&mut self) -> Result<Vec<OperationRow>, StoreError> {
        self.query_ops(OPS_UNRESOLVED, &[])
    }

    fn event(&mut self, id: &str) -> Result<Option<EventRow>, StoreError> {
        Ok(self
            .read(EVENT_BY_ID, &[&id], "query events", read_event)?
            .pop())
    }

    fn events(&mut self, f: &EventFilter) -> Result<(Vec<EventRow>, usize), StoreError> {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(4);
        let state = f.state.map(EventState::name);
        let clause = where_clause(
            [
                ("app = $", f.app.as_ref().map(|v| v as Param<'_>)),
                ("state = $", state.as_ref().map(|v| v as Param<'_>)),
                ("resource = $", f.resource.as_ref().map(|v| v as Param<'_>)),
            ],
            &mut params,
        );
        let count = format!("SELECT count(*) FROM events{clause}");
        let total = self
            .read(&count, &params, "count events", |row, label| {
                row.try_get::<_, i64>(0)
                    .map_err(|e| StoreError(format!("{label}: count events: {e}")))
            })?
            .pop()
            .unwrap_or(0);
        // LIMIT NULL is no limit.
        let limit = limit(f.limit);
        params.push(&limit);
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events{clause} ORDER BY seq DESC LIMIT ${}",
            params.len()
        );
        let rows = self.read(&sql, &params, "query events", read_event)?;
        Ok((rows, usize::try_from(total).unwrap_or(0)))
    }

    fn due_events(&mut self, now_ms: i64, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(DUE_EVENTS, &[&now_ms, &limit], "due events", read_event)
    }

    fn reservation(&mut self, id: &str) -> Result<Option<ReservationRow>, StoreError> {
        Ok(self.query_reservations(RES_BY_ID, &[&id])?.pop())
    }

    fn open_reservations(&mut self) -> Result<Vec<ReservationRow>, StoreError> {
        self.query_reservations(RES_OPEN, &[])
    }

    fn resource(&mut self, id: &str) -> Result<Option<ResourceRow>, StoreError> {
        Ok(self
            .read(RESOURCE_BY_ID, &[&id], "query resources", read_resource)?
            .pop())
    }

    fn inventory(&mut self, id: &str) -> Result<Option<InventoryRow>, StoreError> {
        Ok(self
            .read(INVENTORY_BY_ID, &[&id], "query inventory", read_inventory)?
            .pop())
    }

    fn inventory_list(
        &mut self,
        f: &InventoryFilter,
    ) -> Result<(Vec<InventoryRow>, usize), StoreError> {
        let (clause, texts, now) = inventory_where(f, '$');
        let mut params: Vec<Param<'_>> = texts.iter().map(|t| t as Param<'_>).collect();
        if let Some(now) = &now {
            params.push(now);
        }
        let count = format!("SELECT count(*) FROM inventory{clause}");
        let total = self
            .read(&count, &params, "count inventory", |row, label| {
                row.try_get::<_, i64>(0)
                    .map_err(|e| StoreError(format!("{label}: count inventory: {e}")))
            })?
            .pop()
            .unwrap_or(0);
        let limit = limit(f.limit);
        let offset = i64::try_from(f.offset).unwrap_or(i64::MAX);
        params.push(&limit);
        let l = params.len();
        params.push(&offset);
        let sql = format!(
            "SELECT {INVENTORY_COLUMNS} FROM inventory{clause} \
             ORDER BY category, value LIMIT ${l} OFFSET ${}",
            l + 1
        );
        let rows = self.read(&sql, &params, "query inventory", read_inventory)?;
        Ok((rows, usize::try_from(total).unwrap_or(0)))
    }

    fn resources(&mut self, f: &ResourceFilter) -> Result<(Vec<ResourceRow>, usize), StoreError> {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(9);
        let filters: [(&str, Option<Param<'_>>); 7] = [
            ("app = $", f.app.as_ref().map(|v| v as Param<'_>)),
            ("kind = $", f.kind.as_ref().map(|v| v as Param<'_>)),
            ("state = $", f.state.as_ref().map(|v| v as Param<'_>)),
            ("parent = $", f.parent.as_ref().map(|v| v as Param<'_>)),
            (
                "due_ms <= $",
                f.due_before_ms.as_ref().map(|v| v as Param<'_>),
            ),
            (
                "created_ms >= $",
                f.created_from_ms.as_ref().map(|v| v as Param<'_>),
            ),
            (
                "created_ms <= $",
                f.created_to_ms.as_ref().map(|v| v as Param<'_>),
            ),
        ];
        let clause = where_clause(filters, &mut params);
        let count = format!("SELECT count(*) FROM resources{clause}");
        let total = self
            .read(&count, &params, "count resources", |row, label| {
                row.try_get::<_, i64>(0)
                    .map_err(|e| StoreError(format!("{label}: count resources: {e}")))
            })?
            .pop()
            .unwrap_or(0);
        let limit = limit(f.limit);
        let offset = i64::try_from(f.offset).unwrap_or(i64::MAX);
        params.push(&limit);
        let l = params.len();
        params.push(&offset);
        let order = if f.ascending { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources{clause} \
             ORDER BY created_ms {order}, id {order} LIMIT ${l} OFFSET ${}",
            l + 1
        );
        let rows = self.read(&sql, &params, "query resources", read_resource)?;
        Ok((rows, usize::try_from(total).unwrap_or(0)))
    }
}

/// A listing's LIMIT: `None` (LIMIT NULL, no limit) for 0.
fn limit(n: usize) -> Option<i64> {
    match n {
        0 => None,
        n => i64::try_from(n).ok(),
    }
}

/// The client blocks on a runtime of its own, which tokio refuses (with a panic) on a thread
/// that already drives one.
fn on_own_thread(label: &str) -> Result<(), StoreError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(StoreError(format!(
            "{label}: cannot connect from an async runtime's thread: open the store with \
             Store::open, which connects on its writer thread"
        )));
    }
    Ok(())
}

/// Runs `futures` to the end, polling them in order. tokio-postgres sends a request when
/// its future is first polled, so the server receives, and runs, them in this order, all
/// before the first answer is awaited (a pipeline).
async fn in_order<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<MaybeDone<F>>>> = futures
        .into_iter()
        .map(|f| Box::pin(maybe_done(f)))
        .collect();
    poll_fn(|cx| {
        let mut pending = false;
        for f in &mut futures {
            pending |= f.as_mut().poll(cx).is_pending();
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    futures
        .iter_mut()
        .filter_map(|f| f.as_mut().take_output())
        .collect()
}

/// Opens a connection and sets up its session: UTF8 checked, commits durable, lock waits
/// bounded.
async fn connect(
    config: &Config,
    tls: Option<&MakeRustlsConnect>,
    label: &str,
) -> Result<Client, StoreError> {
    let cannot =
        |e: tokio_postgres::Error| StoreError(format!("{label}: cannot connect: {}", pg_error(&e)));
    let client = match tls {
        None => {
            let (client, connection) = config.connect(NoTls).await.map_err(cannot)?;
            tokio::spawn(drive(connection, label.to_string()));
            client
        }
        Some(tls) => {
            let (client, connection) = config.connect(tls.clone()).await.map_err(cannot)?;
            tokio::spawn(drive(connection, label.to_string()));
            client
        }
    };
    let session =
        |e: tokio_postgres::Error| StoreError(format!("{label}: session: {}", pg_error(&e)));
    let row = client
        .query_one(
            "SELECT current_setting('server_encoding'), current_setting('synchronous_commit'), \
             current_setting('fsync')",
            &[],
        )
        .await
        .map_err(session)?;
    let text = |i: usize| row.try_get::<_, String>(i).unwrap_or_default();
    let (encoding, synchronous_commit, fsync) = (text(0), text(1), text(2));
    if encoding != "UTF8" {
        return Err(StoreError(format!(
            "{label}: the database's encoding is {encoding}, not UTF8: create it with \
             ENCODING 'UTF8'"
        )));
    }
    if synchronous_commit == "off" {
        // Every other value (local, remote_write, on, remote_apply) flushes the WAL locally
        // before COMMIT returns; `off` does not, and a 2xx promises a durable record.
        info!(database = %label, "synchronous_commit is off for this role or database: set to on for the store's session");
        client
            .batch_execute("SET synchronous_commit = on")
            .await
            .map_err(session)?;
    }
    if fsync == "off" {
        warn!(database = %label, "the server runs with fsync = off: a committed batch can be lost if its machine crashes");
    }
    client
        .batch_execute(&format!("SET lock_timeout = '{LOCK_TIMEOUT}'"))
        .await
        .map_err(session)?;
    Ok(client)
}

/// The connection's own task: reads and writes the socket while the writer thread's runtime
/// runs (during each call). Its end is seen by the client (`is_closed`, errors).
async fn drive<F>(connection: F, label: String)
where
    F: Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = connection.await {
        debug!(database = %label, error = %pg_error(&e), "store connection ended");
    }
}

/// Why a batch failed.
enum Failed {
    /// At BEGIN: nothing of the batch was executed; `dead`: nor will anything on this
    /// connection.
    Unsent {
        dead: bool,
        error: StoreError,
    },
    Sent(StoreError),
    /// The server rolled the transaction back to break a deadlock with another session (or a
    /// serialization failure): nothing of it is committed, and the same batch sent again
    /// normally goes through (the other session has committed meanwhile).
    Contended(StoreError),
    /// A begin met a row an earlier update of its group changed: the group's order was not
    /// the batch's. Nothing is committed; the batch is to be sent again ungrouped.
    Reorder,
}

/// Writes whose order does not matter, as multi-row statements. See the module's
/// documentation for what may share a group. A conditional or set-wide write (claim, renew,
/// step, named leases) is a group of its own: one statement.
#[derive(Default)]
struct Group<'a> {
    /// (index in the batch, operation).
    begins: Vec<(usize, &'a OperationRow)>,
    updates: Vec<(usize, &'a OperationRow)>,
    /// The last write of each id.
    reservations: Vec<&'a ReservationRow>,
    resources: Vec<&'a ResourceRow>,
    events: Vec<&'a EventRow>,
    /// A write that is a group of its own.
    solo: Option<(usize, &'a Write)>,
    /// Indexes answered `Done` when the group goes through.
    done: Vec<usize>,
    begin_keys: HashMap<(&'a str, &'a str), usize>,
    begin_ids: HashSet<&'a str>,
    update_ids: HashSet<&'a str>,
    update_keys: HashSet<(&'a str, &'a str)>,
    reservation_at: HashMap<&'a str, usize>,
    resource_at: HashMap<&'a str, usize>,
    event_at: HashMap<&'a str, usize>,
}

impl<'a> Group<'a> {
    fn is_empty(&self) -> bool {
        self.begins.is_empty() && self.done.is_empty() && self.solo.is_none()
    }

    /// Whether `w` may join without its place in the group's order mattering.
    fn admits(&self, w: &Write) -> bool {
        if self.solo.is_some() {
            return false;
        }
        match w {
            Write::Begin(op) => {
                let key_free = op.key.as_deref().is_none_or(|k| {
                    let k = (op.app.as_str(), k);
                    !self.begin_keys.contains_key(&k) && !self.update_keys.contains(&k)
                });
                key_free
                    && !self.begin_ids.contains(op.id.as_str())
                    && !self.update_ids.contains(op.id.as_str())
            }
            Write::Update(op) => !self.update_ids.contains(op.id.as_str()),
            Write::Reservation(_) | Write::Resource(_) | Write::Event(_) => true,
            Write::Claim { .. }
            | Write::Renew { .. }
            | Write::Step { .. }
            | Write::TakeLease { .. }
            | Write::DropLease { .. }
            | Write::ClaimEvent { .. }
            | Write::ImportInventory(_)
            | Write::Reserve { .. }
            | Write::Assign { .. }
            | Write::Release { .. }
            | Write::Unassign { .. }
            | Write::Activate { .. }
            | Write::PutResourceIf { .. } => false,
        }
    }

    fn push(&mut self, i: usize, w: &'a Write) {
        match w {
            Write::Begin(op) => {
                if let Some(k) = &op.key {
                    self.begin_keys.insert((op.app.as_str(), k.as_str()), i);
                }
                self.begin_ids.insert(op.id.as_str());
                self.begins.push((i, op));
            }
            Write::Update(op) => {
                if let Some(k) = &op.key {
                    self.update_keys.insert((op.app.as_str(), k.as_str()));
                }
                self.update_ids.insert(op.id.as_str());
                self.updates.push((i, op));
                self.done.push(i);
            }
            Write::Reservation(r) => {
                match self.reservation_at.get(r.id.as_str()) {
                    Some(&at) => {
                        if let Some(slot) = self.reservations.get_mut(at) {
                            *slot = r;
                        }
                    }
                    None => {
                        self.reservation_at
                            .insert(r.id.as_str(), self.reservations.len());
                        self.reservations.push(r);
                    }
                }
                self.done.push(i);
            }
            Write::Resource(r) => {
                match self.resource_at.get(r.id.as_str()) {
                    Some(&at) => {
                        if let Some(slot) = self.resources.get_mut(at) {
                            *slot = r;
                        }
                    }
                    None => {
                        self.resource_at.insert(r.id.as_str(), self.resources.len());
                        self.resources.push(r);
                    }
                }
                self.done.push(i);
            }
            Write::Event(e) => {
                match self.event_at.get(e.id.as_str()) {
                    Some(&at) => {
                        if let Some(slot) = self.events.get_mut(at) {
                            *slot = e;
                        }
                    }
                    None => {
                        self.event_at.insert(e.id.as_str(), self.events.len());
                        self.events.push(e);
                    }
                }
                self.done.push(i);
            }
            Write::Claim { .. }
            | Write::Renew { .. }
            | Write::Step { .. }
            | Write::TakeLease { .. }
            | Write::DropLease { .. }
            | Write::ClaimEvent { .. }
            | Write::ImportInventory(_)
            | Write::Reserve { .. }
            | Write::Assign { .. }
            | Write::Release { .. }
            | Write::Unassign { .. }
            | Write::Activate { .. }
            | Write::PutResourceIf { .. } => self.solo = Some((i, w)),
        }
    }

    /// Whether the row `id`, met by the begin at batch index `begin`, is one an update of
    /// this group that comes before that begin changes.
    fn updated_before(&self, id: &str, begin: usize) -> bool {
        self.updates.iter().any(|(i, u)| *i < begin && u.id == id)
    }
}

/// The batch cut into groups (`grouped`), or one write per group.
fn plan(batch: &[Write], grouped: bool) -> Vec<Group<'_>> {
    let mut groups = Vec::new();
    let mut current = Group::default();
    for (i, w) in batch.iter().enumerate() {
        let joins = current.is_empty() || (grouped && current.admits(w));
        if !joins {
            groups.push(std::mem::take(&mut current));
        }
        current.push(i, w);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// What each statement of the pipeline is, to read its answer.
#[derive(Clone, Copy)]
enum Step {
    Begin,
    GiveWay(usize),
    Insert,
    Met(usize),
    Update(usize),
    Put,
    /// A group of one write (its batch index), answered `Won` (rows returned) or `Done`.
    Solo(usize, bool),
}

/// The arrays and values of a group's statements (they live until the pipeline's answers
/// are in).
struct GroupArrays<'a> {
    keys: (Vec<&'a str>, Vec<&'a str>),
    begins: OpColumns<'a>,
    updates: OpColumns<'a>,
    reservations: ReservationColumns<'a>,
    resources: ResourceColumns<'a>,
    events: EventColumns<'a>,
    solo: Option<SoloValues<'a>>,
}

/// The parameters of a group-of-one write, and whether it is answered `Won`.
struct SoloValues<'a> {
    index: usize,
    sql: &'static str,
    won: bool,
    texts: Vec<&'a str>,
    numbers: Vec<i64>,
    decimals: Vec<Decimal>,
    pending: Option<&'a str>,
    /// An imported resource's `ported_in`.
    flag: bool,
    /// A resource's `parent` and `due_ms` (conditional puts).
    parent: Option<&'a str>,
    due_ms: Option<i64>,
}

impl<'a> SoloValues<'a> {
    fn of(index: usize, w: &'a Write) -> Option<Self> {
        let solo = |sql, won, texts: Vec<&'a str>, numbers: Vec<i64>| Self {
            index,
            sql,
            won,
            texts,
            numbers,
            decimals: Vec::new(),
            pending: None,
            flag: false,
            parent: None,
            due_ms: None,
        };
        Some(match w {
            Write::Claim { id, lease, now_ms } => solo(
                CLAIM_OP,
                true,
                vec![id, &lease.owner],
                vec![lease.until_ms, *now_ms],
            ),
            Write::Renew { owner, until_ms } => {
                solo(RENEW_OPS, false, vec![owner], vec![*until_ms])
            }
            Write::TakeLease {
                name,
                lease,
                now_ms,
            } => solo(
                TAKE_LEASE,
                true,
                vec![name, &lease.owner],
                vec![lease.until_ms, *now_ms],
            ),
            Write::DropLease { name, owner } => solo(DROP_LEASE, false, vec![name, owner], vec![]),
            Write::ClaimEvent { id, lease, now_ms } => solo(
                CLAIM_EVENT,
                true,
                vec![id, &lease.owner],
                vec![lease.until_ms, *now_ms],
            ),
            Write::Step { row: r, expected } => Self {
                index,
                sql: STEP_RES,
                won: true,
                texts: vec![
                    &r.id,
                    &r.app,
                    &r.session_id,
                    &r.subscriber,
                    &r.currency,
                    r.state.name(),
                ],
                numbers: vec![
                    i64::from(r.last_request_number),
                    r.expires_ms,
                    r.created_ms,
                    r.updated_ms,
                    i64::from(*expected),
                ],
                decimals: vec![r.reserved, r.charged],
                pending: r.pending.as_deref(),
                flag: false,
                parent: None,
                due_ms: None,
            },
            Write::ImportInventory(r) => Self {
                flag: r.ported_in,
                ..solo(
                    IMPORT_INVENTORY,
                    false,
                    vec![&r.id, &r.category, &r.value, r.status.name(), &r.body],
                    vec![r.created_ms, r.updated_ms],
                )
            },
            Write::Reserve {
                id,
                holder,
                until_ms,
                now_ms,
            } => solo(
                RESERVE_INVENTORY,
                true,
                vec![holder, id],
                vec![*until_ms, *now_ms],
            ),
            Write::Assign {
                id,
                holder,
                owner,
                now_ms,
            } => solo(
                ASSIGN_INVENTORY,
                true,
                vec![id, holder, owner],
                vec![*now_ms],
            ),
            Write::Release { id, holder, now_ms } => {
                solo(RELEASE_INVENTORY, true, vec![id, holder], vec![*now_ms])
            }
            Write::Unassign { id, holder, now_ms } => {
                solo(UNASSIGN_INVENTORY, true, vec![id, holder], vec![*now_ms])
            }
            Write::Activate { id, holder, now_ms } => {
                solo(ACTIVATE_INVENTORY, true, vec![holder, id], vec![*now_ms])
            }
            Write::PutResourceIf {
                row: r,
                expected_updated_ms,
            } => {
                let texts = vec![
                    r.id.as_str(),
                    r.app.as_str(),
                    r.kind.as_str(),
                    r.state.as_str(),
                    r.body.as_str(),
                ];
                let mut numbers = vec![r.created_ms, r.updated_ms];
                let sql = match expected_updated_ms {
                    None => INSERT_RESOURCE,
                    Some(t) => {
                        numbers.push(*t);
                        SWAP_RESOURCE
                    }
                };
                Self {
                    parent: r.parent.as_deref(),
                    due_ms: r.due_ms,
                    ..solo(sql, true, texts, numbers)
                }
            }
            Write::Begin(_)
            | Write::Update(_)
            | Write::Reservation(_)
            | Write::Resource(_)
            | Write::Event(_) => {
                return None;
            }
        })
    }

    /// In the order of the statement's `$n`.
    fn params(&self) -> Vec<Param<'_>> {
        let t = |i: usize| {
            self.texts
                .get(i)
                .map_or(&"" as Param<'_>, |v| v as Param<'_>)
        };
        let n = |i: usize| {
            self.numbers
                .get(i)
                .map_or(&0i64 as Param<'_>, |v| v as Param<'_>)
        };
        let d = |i: usize| {
            self.decimals
                .get(i)
                .map_or(&Decimal::ZERO as Param<'_>, |v| v as Param<'_>)
        };
        match self.sql {
            // id, owner, until, now / name, owner, until, now
            CLAIM_OP | TAKE_LEASE | CLAIM_EVENT => vec![t(0), t(1), n(0), n(1)],
            RENEW_OPS => vec![t(0), n(0)],
            DROP_LEASE => vec![t(0), t(1)],
            // id, category, value, status, ported_in, body, created, updated
            IMPORT_INVENTORY => vec![t(0), t(1), t(2), t(3), &self.flag, t(4), n(0), n(1)],
            // holder, until, now, id
            RESERVE_INVENTORY => vec![t(0), n(0), n(1), t(1)],
            // now, owner, id, holder
            ASSIGN_INVENTORY => vec![n(0), t(2), t(0), t(1)],
            // now, id, holder
            RELEASE_INVENTORY | UNASSIGN_INVENTORY => vec![n(0), t(0), t(1)],
            // now, holder, id
            ACTIVATE_INVENTORY => vec![n(0), t(0), t(1)],
            // id, app, kind, state, parent, due, body, created, updated (, expected)
            INSERT_RESOURCE | SWAP_RESOURCE => {
                let mut v = vec![
                    t(0),
                    t(1),
                    t(2),
                    t(3),
                    &self.parent as Param<'_>,
                    &self.due_ms as Param<'_>,
                    t(4),
                    n(0),
                    n(1),
                ];
                if self.sql == SWAP_RESOURCE {
                    v.push(n(2));
                }
                v
            }
            // id, app, session_id, subscriber, currency, reserved, charged, last, state,
            // expires, created, updated, pending, expected
            _ => vec![
                t(0),
                t(1),
                t(2),
                t(3),
                t(4),
                d(0),
                d(1),
                n(0),
                t(5),
                n(1),
                n(2),
                n(3),
                &self.pending,
                n(4),
            ],
        }
    }
}

impl<'a> GroupArrays<'a> {
    fn of(g: &Group<'a>) -> Self {
        let mut keys = (Vec::new(), Vec::new());
        for (_, op) in &g.begins {
            if let Some(k) = &op.key {
                keys.0.push(op.app.as_str());
                keys.1.push(k.as_str());
            }
        }
        Self {
            keys,
            begins: OpColumns::of(g.begins.iter().map(|(_, op)| *op)),
            updates: OpColumns::of(g.updates.iter().map(|(_, op)| *op)),
            reservations: ReservationColumns::of(&g.reservations),
            resources: ResourceColumns::of(&g.resources),
            events: EventColumns::of(&g.events),
            solo: g.solo.and_then(|(i, w)| SoloValues::of(i, w)),
        }
    }
}

/// A statement's answer: its rows, or (for one whose rows are not read) how many it wrote.
enum Reply {
    Rows(Vec<Row>),
    Count(u64),
}

type Answer<'a> = Pin<Box<dyn Future<Output = Result<Reply, tokio_postgres::Error>> + 'a>>;

/// BEGIN and every group's statements in one pipeline; the answers read and checked; then
/// COMMIT.
async fn write_batch(
    conn: &Conn,
    groups: &[Group<'_>],
    writes: usize,
    label: &str,
) -> Result<Vec<Written>, Failed> {
    let sent = |e: StoreError| Failed::Sent(e);
    let arrays: Vec<GroupArrays<'_>> = groups.iter().map(GroupArrays::of).collect();
    let mut params: Vec<(Step, &Statement, Vec<Param<'_>>)> = Vec::new();
    params.push((
        Step::Begin,
        conn.statement("BEGIN").map_err(sent)?,
        Vec::new(),
    ));
    for (g, a) in arrays.iter().enumerate() {
        let keys: Vec<Param<'_>> = vec![&a.keys.0, &a.keys.1];
        if !a.keys.0.is_empty() {
            params.push((
                Step::GiveWay(g),
                conn.statement(GIVE_WAY).map_err(sent)?,
                keys.clone(),
            ));
        }
        if !a.begins.id.is_empty() {
            params.push((
                Step::Insert,
                conn.statement(INSERT_BEGUN).map_err(sent)?,
                a.begins.params(),
            ));
        }
        if !a.keys.0.is_empty() {
            params.push((Step::Met(g), conn.statement(MET).map_err(sent)?, keys));
        }
        if !a.updates.id.is_empty() {
            params.push((
                Step::Update(g),
                conn.statement(UPDATE_OPS).map_err(sent)?,
                a.updates.params(),
            ));
        }
        if !a.reservations.id.is_empty() {
            params.push((
                Step::Put,
                conn.statement(PUT_RESERVATIONS).map_err(sent)?,
                a.reservations.params(),
            ));
        }
        if !a.resources.id.is_empty() {
            params.push((
                Step::Put,
                conn.statement(PUT_RESOURCES).map_err(sent)?,
                a.resources.params(),
            ));
        }
        if !a.events.id.is_empty() {
            params.push((
                Step::Put,
                conn.statement(PUT_EVENTS).map_err(sent)?,
                a.events.params(),
            ));
        }
        if let Some(solo) = &a.solo {
            params.push((
                Step::Solo(solo.index, solo.won),
                conn.statement(solo.sql).map_err(sent)?,
                solo.params(),
            ));
        }
    }
    let client = &conn.client;
    let answers =
        in_order(
            params
                .iter()
                .map(|(step, statement, p)| -> Answer<'_> {
                    match step {
                        // Answered by the number of rows it wrote: nothing to read back.
                        Step::Solo(..) | Step::Put => Box::pin(async move {
                            client.execute(*statement, p).await.map(Reply::Count)
                        }),
                        _ => Box::pin(
                            async move { client.query(*statement, p).await.map(Reply::Rows) },
                        ),
                    }
                })
                .collect(),
        )
        .await;
    let mut out: Vec<Option<Written>> = vec![None; writes];
    let mut inserted: HashSet<String> = HashSet::new();
    let mut reorder = false;
    for ((step, _, _), answer) in params.iter().zip(answers) {
        let (rows, count) = match (step, answer) {
            (_, Ok(Reply::Rows(rows))) => (rows, 0),
            (_, Ok(Reply::Count(n))) => (Vec::new(), n),
            (Step::Begin, Err(e)) => {
                return Err(Failed::Unsent {
                    dead: is_dead(&e),
                    error: StoreError(format!("{label}: begin: {}", pg_error(&e))),
                });
            }
            (step, Err(e)) => {
                let what = match step {
                    Step::GiveWay(_) => "replace retryable operations",
                    Step::Insert => "insert operations",
                    Step::Met(_) => "begin",
                    Step::Update(_) => "update operations",
                    Step::Solo(..) => "conditional write",
                    Step::Begin | Step::Put => "put reservations, resources or events",
                };
                let error = StoreError(format!("{label}: {what}: {}", pg_error(&e)));
                return Err(if is_contention(&e) {
                    Failed::Contended(error)
                } else {
                    Failed::Sent(error)
                });
            }
        };
        match *step {
            Step::GiveWay(g) => {
                let Some(group) = groups.get(g) else { continue };
                for row in &rows {
                    let id: String =
                        column(row, 0, "id", &|| format!("{label}: an operation")).map_err(sent)?;
                    let app: String =
                        column(row, 1, "app", &|| format!("{label}: operation {id:?}"))
                            .map_err(sent)?;
                    let key: String =
                        column(row, 2, "key", &|| format!("{label}: operation {id:?}"))
                            .map_err(sent)?;
                    let at = group.begin_keys.get(&(app.as_str(), key.as_str()));
                    if at.is_some_and(|&b| group.updated_before(&id, b)) {
                        reorder = true;
                    }
                }
            }
            Step::Insert => {
                for row in &rows {
                    let id: String =
                        column(row, 0, "id", &|| format!("{label}: an operation")).map_err(sent)?;
                    inserted.insert(id);
                }
            }
            Step::Met(g) => {
                let Some(group) = groups.get(g) else { continue };
                for row in &rows {
                    let existing = read_op(row, label).map_err(sent)?;
                    let at = existing
                        .key
                        .as_deref()
                        .and_then(|k| group.begin_keys.get(&(existing.app.as_str(), k)))
                        .copied();
                    let Some(at) = at else { continue };
                    let own = group
                        .begins
                        .iter()
                        .any(|(i, op)| *i == at && inserted.contains(&op.id));
                    if own {
                        continue;
                    }
                    if group.updated_before(&existing.id, at) {
                        reorder = true;
                    }
                    if let Some(slot) = out.get_mut(at) {
                        *slot = Some(Written::Begun(Begun::Existing(Box::new(existing))));
                    }
                }
            }
            Step::Update(g) => {
                let Some(group) = groups.get(g) else { continue };
                let found: HashSet<String> = rows
                    .iter()
                    .filter_map(|r| r.try_get::<_, String>(0).ok())
                    .collect();
                if let Some((_, missing)) =
                    group.updates.iter().find(|(_, op)| !found.contains(&op.id))
                {
                    return Err(Failed::Sent(StoreError(format!(
                        "{label}: no operation {}",
                        missing.id
                    ))));
                }
            }
            Step::Solo(i, won) => {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(if won {
                        Written::Won(count > 0)
                    } else {
                        Written::Done
                    });
                }
            }
            Step::Begin | Step::Put => {}
        }
    }
    if reorder {
        return Err(Failed::Reorder);
    }
    for g in groups {
        for (i, op) in &g.begins {
            if let Some(slot @ None) = out.get_mut(*i)
                && inserted.contains(&op.id)
            {
                *slot = Some(Written::Begun(Begun::Inserted));
            }
        }
        for i in &g.done {
            if let Some(slot) = out.get_mut(*i) {
                *slot = Some(Written::Done);
            }
        }
    }
    if let Some(i) = out.iter().position(Option::is_none) {
        return Err(Failed::Sent(StoreError(format!(
            "{label}: write {i} of the batch has no answer (a begin that neither inserted nor \
             met a row)"
        ))));
    }
    let out: Vec<Written> = out.into_iter().flatten().collect();
    let commit = conn.statement("COMMIT").map_err(sent)?;
    conn.client.query(commit, &[]).await.map_err(|e| {
        let unknown = if is_dead(&e) {
            " (the connection was lost: the batch may or may not be committed)"
        } else {
            ""
        };
        let error = StoreError(format!("{label}: commit: {}{unknown}", pg_error(&e)));
        if is_contention(&e) {
            Failed::Contended(error)
        } else {
            Failed::Sent(error)
        }
    })?;
    Ok(out)
}

/// Operations as column arrays, in the order of [`op_names`].
#[derive(Default)]
struct OpColumns<'a> {
    id: Vec<&'a str>,
    app: Vec<&'a str>,
    key: Vec<Option<&'a str>>,
    kind: Vec<&'a str>,
    request_hash: Vec<&'a str>,
    parent: Vec<Option<&'a str>>,
    reservation_id: Vec<Option<&'a str>>,
    session_id: Vec<&'a str>,
    request_number: Vec<i64>,
    subscriber: Vec<Option<&'a str>>,
    amount: Vec<Option<Decimal>>,
    currency: Vec<Option<&'a str>>,
    reference_code: Vec<Option<&'a str>>,
    state: Vec<&'static str>,
    result_code: Vec<Option<i64>>,
    request: Vec<&'a str>,
    outcome: Vec<Option<&'a str>>,
    created_ms: Vec<i64>,
    updated_ms: Vec<i64>,
    owner: Vec<Option<&'a str>>,
    lease_until_ms: Vec<Option<i64>>,
}

impl<'a> OpColumns<'a> {
    fn of(ops: impl Iterator<Item = &'a OperationRow>) -> Self {
        let mut c = Self::default();
        for op in ops {
            c.id.push(&op.id);
            c.app.push(&op.app);
            c.key.push(op.key.as_deref());
            c.kind.push(&op.kind);
            c.request_hash.push(&op.request_hash);
            c.parent.push(op.parent.as_deref());
            c.reservation_id.push(op.reservation_id.as_deref());
            c.session_id.push(&op.session_id);
            c.request_number.push(i64::from(op.request_number));
            c.subscriber.push(op.subscriber.as_deref());
            c.amount.push(op.amount);
            c.currency.push(op.currency.as_deref());
            c.reference_code.push(op.reference_code.as_deref());
            c.state.push(op.state.name());
            c.result_code.push(op.result_code.map(i64::from));
            c.request.push(&op.request);
            c.outcome.push(op.outcome.as_deref());
            c.created_ms.push(op.created_ms);
            c.updated_ms.push(op.updated_ms);
            c.owner.push(op.lease.as_ref().map(|l| l.owner.as_str()));
            c.lease_until_ms.push(op.lease.as_ref().map(|l| l.until_ms));
        }
        c
    }

    fn params(&self) -> Vec<Param<'_>> {
        vec![
            &self.id,
            &self.app,
            &self.key,
            &self.kind,
            &self.request_hash,
            &self.parent,
            &self.reservation_id,
            &self.session_id,
            &self.request_number,
            &self.subscriber,
            &self.amount,
            &self.currency,
            &self.reference_code,
            &self.state,
            &self.result_code,
            &self.request,
            &self.outcome,
            &self.created_ms,
            &self.updated_ms,
            &self.owner,
            &self.lease_until_ms,
        ]
    }
}

/// Reservations as column arrays, in the order of [`PUT_RESERVATIONS`].
#[derive(Default)]
struct ReservationColumns<'a> {
    id: Vec<&'a str>,
    app: Vec<&'a str>,
    session_id: Vec<&'a str>,
    subscriber: Vec<&'a str>,
    currency: Vec<&'a str>,
    reserved: Vec<Decimal>,
    charged: Vec<Decimal>,
    last_request_number: Vec<i64>,
    state: Vec<&'static str>,
    expires_ms: Vec<i64>,
    created_ms: Vec<i64>,
    updated_ms: Vec<i64>,
    pending: Vec<Option<&'a str>>,
}

impl<'a> ReservationColumns<'a> {
    fn of(rows: &[&'a ReservationRow]) -> Self {
        let mut c = Self::default();
        for r in rows {
            c.id.push(&r.id);
            c.app.push(&r.app);
            c.session_id.push(&r.session_id);
            c.subscriber.push(&r.subscriber);
            c.currency.push(&r.currency);
            c.reserved.push(r.reserved);
            c.charged.push(r.charged);
            c.last_request_number.push(i64::from(r.last_request_number));
            c.state.push(r.state.name());
            c.expires_ms.push(r.expires_ms);
            c.created_ms.push(r.created_ms);
            c.updated_ms.push(r.updated_ms);
            c.pending.push(r.pending.as_deref());
        }
        c
    }

    fn params(&self) -> Vec<Param<'_>> {
        vec![
            &self.id,
            &self.app,
            &self.session_id,
            &self.subscriber,
            &self.currency,
            &self.reserved,
            &self.charged,
            &self.last_request_number,
            &self.state,
            &self.expires_ms,
            &self.created_ms,
            &self.updated_ms,
            &self.pending,
        ]
    }
}

/// Resources as column arrays, in the order of [`PUT_RESOURCES`].
#[derive(Default)]
struct ResourceColumns<'a> {
    id: Vec<&'a str>,
    app: Vec<&'a str>,
    kind: Vec<&'a str>,
    state: Vec<&'a str>,
    parent: Vec<Option<&'a str>>,
    due_ms: Vec<Option<i64>>,
    body: Vec<&'a str>,
    created_ms: Vec<i64>,
    updated_ms: Vec<i64>,
}

impl<'a> ResourceColumns<'a> {
    fn of(rows: &[&'a ResourceRow]) -> Self {
        let mut c = Self::default();
        for r in rows {
            c.id.push(&r.id);
            c.app.push(&r.app);
            c.kind.push(&r.kind);
            c.state.push(&r.state);
            c.parent.push(r.parent.as_deref());
            c.due_ms.push(r.due_ms);
            c.body.push(&r.body);
            c.created_ms.push(r.created_ms);
            c.updated_ms.push(r.updated_ms);
        }
        c
    }

    fn params(&self) -> Vec<Param<'_>> {
        vec![
            &self.id,
            &self.app,
            &self.kind,
            &self.state,
            &self.parent,
            &self.due_ms,
            &self.body,
            &self.created_ms,
            &self.updated_ms,
        ]
    }
}

/// Outbox events as column arrays, in the order of [`event_columns`].
#[derive(Default)]
struct EventColumns<'a> {
    id: Vec<&'a str>,
    app: Vec<&'a str>,
    kind: Vec<&'a str>,
    resource: Vec<Option<&'a str>>,
    url: Vec<&'a str>,
    headers: Vec<String>,
    content_type: Vec<&'a str>,
    body: Vec<&'a str>,
    state: Vec<&'static str>,
    attempts: Vec<i64>,
    next_ms: Vec<i64>,
    last_error: Vec<Option<&'a str>>,
    owner: Vec<Option<&'a str>>,
    lease_until_ms: Vec<Option<i64>>,
    created_ms: Vec<i64>,
    updated_ms: Vec<i64>,
    delivered_ms: Vec<Option<i64>>,
}

impl<'a> EventColumns<'a> {
    fn of(rows: &[&'a EventRow]) -> Self {
        let mut c = Self::default();
        for e in rows {
            c.id.push(&e.id);
            c.app.push(&e.app);
            c.kind.push(&e.kind);
            c.resource.push(e.resource.as_deref());
            c.url.push(&e.url);
            c.headers.push(headers_json(&e.headers));
            c.content_type.push(&e.content_type);
            c.body.push(&e.body);
            c.state.push(e.state.name());
            c.attempts.push(i64::from(e.attempts));
            c.next_ms.push(e.next_ms);
            c.last_error.push(e.last_error.as_deref());
            c.owner.push(e.lease.as_ref().map(|l| l.owner.as_str()));
            c.lease_until_ms.push(e.lease.as_ref().map(|l| l.until_ms));
            c.created_ms.push(e.created_ms);
            c.updated_ms.push(e.updated_ms);
            c.delivered_ms.push(e.delivered_ms);
        }
        c
    }

    fn params(&self) -> Vec<Param<'_>> {
        vec![
            &self.id,
            &self.app,
            &self.kind,
            &self.resource,
            &self.url,
            &self.headers,
            &self.content_type,
            &self.body,
            &self.state,
            &self.attempts,
            &self.next_ms,
            &self.last_error,
            &self.owner,
            &self.lease_until_ms,
            &self.created_ms,
            &self.updated_ms,
            &self.delivered_ms,
        ]
    }
}

/// Checks the schema and creates or migrates it, under an advisory lock.
async fn migrate(client: &mut Client, label: &str) -> Result<(), StoreError> {
    let sql = |what: &'static str| {
        move |e: tokio_postgres::Error| StoreError(format!("{label}: {what}: {}", pg_error(&e)))
    };
    let tx = client.transaction().await.map_err(sql("schema check"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(sql("schema lock"))?;
    let row = tx
        .query_one(
            "SELECT current_schema(), \
             (SELECT count(*) FROM pg_catalog.pg_class c \
              JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f')), \
             to_regclass(quote_ident(current_schema()) || '.gateway_schema') IS NOT NULL",
            &[],
        )
        .await
        .map_err(sql("schema check"))?;
    let schema: Option<String> = row.try_get(0).map_err(sql("schema check"))?;
    let tables: i64 = row.try_get(1).map_err(sql("schema check"))?;
    let marked: bool = row.try_get(2).map_err(sql("schema check"))?;
    let Some(schema) = schema else {
        return Err(StoreError(format!(
            "{label}: no schema to keep the tables in: the search_path names none that exists"
        )));
    };
    let version = if marked {
        let rows = tx
            .query("SELECT application, version FROM gateway_schema", &[])
            .await
            .map_err(sql("schema version"))?;
        let [row] = rows.as_slice() else {
            return Err(StoreError(format!(
                "{label}: schema {schema:?} is not a gateway store (gateway_schema holds {} \
                 rows, not one)",
                rows.len()
            )));
        };
        let application: Option<String> = row.try_get(0).map_err(sql("schema version"))?;
        let version: Option<i32> = row.try_get(1).map_err(sql("schema version"))?;
        if application.as_deref() != Some(APPLICATION) {
            return Err(StoreError(format!(
                "{label}: schema {schema:?} is not a gateway store (gateway_schema says \
                 {application:?})"
            )));
        }
        version.unwrap_or(-1)
    } else if tables > 0 {
        return Err(StoreError(format!(
            "{label}: schema {schema:?} is not a gateway store (it holds {tables} tables but \
             no gateway_schema): point store.url at an empty database or schema"
        )));
    } else {
        0
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError(format!(
            "{label}: schema version {version} is newer than this gateway's ({SCHEMA_VERSION}): \
             it was written by a newer release; run that release, or point store.url elsewhere"
        )));
    }
    if version < 0 || (marked && version == 0) {
        return Err(StoreError(format!(
            "{label}: invalid schema version {version}"
        )));
    }
    let mut v = version;
    while v < SCHEMA_VERSION {
        let next = v + 1;
        let step = usize::try_from(v)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
            .ok_or_else(|| StoreError(format!("no migration from schema version {v}")))?;
        let migration = |e: tokio_postgres::Error| {
            StoreError(format!(
                "{label}: schema migration to {next}: {}",
                pg_error(&e)
            ))
        };
        tx.batch_execute(step).await.map_err(migration)?;
        if v == 0 {
            tx.execute(
                "INSERT INTO gateway_schema (application, version) VALUES ($1, $2)",
                &[&APPLICATION, &next],
            )
            .await
        } else {
            tx.execute("UPDATE gateway_schema SET version = $1", &[&next])
                .await
        }
        .map_err(migration)?;
        v = next;
    }
    tx.commit().await.map_err(sql("schema commit"))?;
    if version < SCHEMA_VERSION {
        info!(database = %label, schema = %schema, from = version, to = SCHEMA_VERSION, "store schema created or migrated");
    }
    Ok(())
}

/// `postgres user@host:port/dbname` (the first host; no password).
fn label(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => config
            .get_hostaddrs()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    let more = if config.get_hosts().len() > 1 {
        ",..."
    } else {
        ""
    };
    format!("postgres {user}@{host}:{port}{more}/{db}")
}

/// How many times a batch the server rolled back to break a deadlock is sent again.
const CONTENDED_RETRIES: u32 = 5;

/// Whether the server rolled the transaction back because of another session: a deadlock
/// (40P01) or a serialization failure (40001). Sending it again is the documented remedy.
fn is_contention(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Whether `e` ends the session: the connection closed, or the server's FATAL error (it was
/// terminated, shut down) or a connection exception (class 08).
fn is_dead(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error().is_some_and(|db| {
            matches!(db.severity(), "FATAL" | "PANIC") || db.code().code().starts_with("08")
        })
}

/// The server's message (and detail) for a database error, else the client's with its
/// causes (a TLS refusal says why: "invalid peer certificate: UnknownIssuer").
fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                let _ = write!(s, ": {d}");
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                let _ = write!(s, ": {c}");
                cause = c.source();
            }
            s
        }
    }
}

/// Reads one column, naming the row and the column when it does not decode.
fn column<'a, T: FromSql<'a>>(
    row: &'a Row,
    i: usize,
    name: &str,
    which: &dyn Fn() -> String,
) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| StoreError(format!("{}: column {name}: {e}", which())))
}

/// A BIGINT column that holds a `u32`.
fn unsigned(value: i64, name: &str, which: &dyn Fn() -> String) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| {
        StoreError(format!(
            "{}: column {name}: {value} is not an unsigned 32-bit number",
            which()
        ))
    })
}

fn read_op(row: &Row, label: &str) -> Result<OperationRow, StoreError> {
    let seq: Option<i64> = row.try_get(0).ok();
    let id: Option<String> = row.try_get::<_, Option<String>>(1).ok().flatten();
    let which = || match (&seq, &id) {
        (_, Some(id)) => format!("{label}: operation {id:?}"),
        (Some(seq), None) => format!("{label}: operation at seq {seq}"),
        (None, None) => format!("{label}: an operation row"),
    };
    let id = id
        .clone()
        .ok_or_else(|| StoreError(format!("{}: column id is not text", which())))?;
    let state: String = column(row, 14, "state", &which)?;
    let result_code: Option<i64> = column(row, 15, "result_code", &which)?;
    Ok(OperationRow {
        id,
        app: column(row, 2, "app", &which)?,
        key: column(row, 3, "key", &which)?,
        kind: column(row, 4, "kind", &which)?,
        request_hash: column(row, 5, "request_hash", &which)?,
        parent: column(row, 6, "parent", &which)?,
        reservation_id: column(row, 7, "reservation_id", &which)?,
        session_id: column(row, 8, "session_id", &which)?,
        request_number: unsigned(
            column(row, 9, "request_number", &which)?,
            "request_number",
            &which,
        )?,
        subscriber: column(row, 10, "subscriber", &which)?,
        amount: column(row, 11, "amount", &which)?,
        currency: column(row, 12, "currency", &which)?,
        reference_code: column(row, 13, "reference_code", &which)?,
        state: OpState::from_name(&state).ok_or_else(|| {
            StoreError(format!(
                "{}: column state: unknown state {state:?}",
                which()
            ))
        })?,
        result_code: result_code
            .map(|c| unsigned(c, "result_code", &which))
            .transpose()?,
        request: column(row, 16, "request", &which)?,
        outcome: column(row, 17, "outcome", &which)?,
        created_ms: column(row, 18, "created_ms", &which)?,
        updated_ms: column(row, 19, "updated_ms", &which)?,
        lease: {
            let owner: Option<String> = column(row, 20, "owner", &which)?;
            let until: Option<i64> = column(row, 21, "lease_until_ms", &which)?;
            owner.map(|owner| Lease {
                owner,
                until_ms: until.unwrap_or(0),
            })
        },
    })
}

fn read_reservation(row: &Row, label: &str) -> Result<ReservationRow, StoreError> {
    let id: Option<String> = row.try_get::<_, Option<String>>(0).ok().flatten();
    let which = || match &id {
        Some(id) => format!("{label}: reservation {id:?}"),
        None => format!("{label}: a reservation row"),
    };
    let id = id
        .clone()
        .ok_or_else(|| StoreError(format!("{}: column id is not text", which())))?;
    let reserved: Decimal = column(row, 5, "reserved", &which)?;
    let charged: Decimal = column(row, 6, "charged", &which)?;
    let state: String = column(row, 8, "state", &which)?;
    Ok(ReservationRow {
        id,
        app: column(row, 1, "app", &which)?,
        session_id: column(row, 2, "session_id", &which)?,
        subscriber: column(row, 3, "subscriber", &which)?,
        currency: column(row, 4, "currency", &which)?,
        reserved,
        charged,
        last_request_number: unsigned(
            column(row, 7, "last_request_number", &which)?,
            "last_request_number",
            &which,
        )?,
        state: ReservationState::from_name(&state).ok_or_else(|| {
            StoreError(format!(
                "{}: column state: unknown state {state:?}",
                which()
            ))
        })?,
        expires_ms: column(row, 9, "expires_ms", &which)?,
        created_ms: column(row, 10, "created_ms", &which)?,
        updated_ms: column(row, 11, "updated_ms", &which)?,
        pending: column(row, 12, "pending", &which)?,
    })
}

fn read_resource(row: &Row, label: &str) -> Result<ResourceRow, StoreError> {
    let id: Option<String> = row.try_get::<_, Option<String>>(0).ok().flatten();
    let which = || match &id {
        Some(id) => format!("{label}: resource {id:?}"),
        None => format!("{label}: a resource row"),
    };
    Ok(ResourceRow {
        id: column(row, 0, "id", &which)?,
        app: column(row, 1, "app", &which)?,
        kind: column(row, 2, "kind", &which)?,
        state: column(row, 3, "state", &which)?,
        parent: column(row, 4, "parent", &which)?,
        due_ms: column(row, 5, "due_ms", &which)?,
        body: column(row, 6, "body", &which)?,
        created_ms: column(row, 7, "created_ms", &which)?,
        updated_ms: column(row, 8, "updated_ms", &which)?,
    })
}

fn read_inventory(row: &Row, label: &str) -> Result<InventoryRow, StoreError> {
    let id: Option<String> = row.try_get(0).ok();
    let which = || match &id {
        Some(id) => format!("{label}: inventory resource {id:?}"),
        None => format!("{label}: an inventory row"),
    };
    let status: String = column(row, 3, "status", &which)?;
    Ok(InventoryRow {
        id: column(row, 0, "id", &which)?,
        category: column(row, 1, "category", &which)?,
        value: column(row, 2, "value", &which)?,
        status: InventoryStatus::from_name(&status).ok_or_else(|| {
            StoreError(format!(
                "{}: column status: unknown status {status:?}",
                which()
            ))
        })?,
        holder: column(row, 4, "holder", &which)?,
        hold_until_ms: column(row, 5, "hold_until_ms", &which)?,
        ported_in: column(row, 6, "ported_in", &which)?,
        body: column(row, 7, "body", &which)?,
        created_ms: column(row, 8, "created_ms", &which)?,
        updated_ms: column(row, 9, "updated_ms", &which)?,
    })
}

fn read_event(row: &Row, label: &str) -> Result<EventRow, StoreError> {
    let id: Option<String> = row.try_get::<_, Option<String>>(0).ok().flatten();
    let which = || match &id {
        Some(id) => format!("{label}: event {id:?}"),
        None => format!("{label}: an event row"),
    };
    let headers: String = column(row, 5, "headers", &which)?;
    let state: String = column(row, 8, "state", &which)?;
    Ok(EventRow {
        id: column(row, 0, "id", &which)?,
        app: column(row, 1, "app", &which)?,
        kind: column(row, 2, "kind", &which)?,
        resource: column(row, 3, "resource", &which)?,
        url: column(row, 4, "url", &which)?,
        headers: headers_from_json(&headers)
            .map_err(|e| StoreError(format!("{}: column headers: {e}", which())))?,
        content_type: column(row, 6, "content_type", &which)?,
        body: column(row, 7, "body", &which)?,
        state: EventState::from_name(&state).ok_or_else(|| {
            StoreError(format!(
                "{}: column state: unknown state {state:?}",
                which()
            ))
        })?,
        attempts: unsigned(column(row, 9, "attempts", &which)?, "attempts", &which)?,
        next_ms: column(row, 10, "next_ms", &which)?,
        last_error: column(row, 11, "last_error", &which)?,
        lease: {
            let owner: Option<String> = column(row, 12, "owner", &which)?;
            let until: Option<i64> = column(row, 13, "lease_until_ms", &which)?;
            owner.map(|owner| Lease {
                owner,
                until_ms: until.unwrap_or(0),
            })
        },
        created_ms: column(row, 14, "created_ms", &which)?,
        updated_ms: column(row, 15, "updated_ms", &which)?,
        delivered_ms: column(row, 16, "delivered_ms", &which)?,
    })
}

/// The test server (shared with the integration tests, which start the gateway on it).
#[cfg(test)]
#[path = "../../tests/support/postgres.rs"]
#[allow(dead_code)]
pub(crate) mod test_server;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::test_server::Server;
    use super::*;
    use crate::config::postgres::target;
    use crate::store::memory::conformance;
    use crate::store::{Store, StoreSettings};

    /// A fresh database on the shared server: the server (hold it for the test), the
    /// connection parameters and the URL. `None`: PostgreSQL is not installed (skipped).
    fn database(test: &str) -> Option<(Arc<Server>, PostgresTarget, String)> {
        let server = Server::shared_or_skip(&format!("store::postgres::{test}"))?;
        let url = server.database(test);
        let config = target(&url).unwrap();
        Some((server, config, url))
    }

    /// A second session on the same database, for what the tests do behind the backend.
    fn admin(config: &PostgresTarget) -> ::postgres::Client {
        ::postgres::Config::from(config.config.clone())
            .connect(::postgres::NoTls)
            .unwrap()
    }

    impl PostgresBackend {
        /// The first column of each row `sql` gives on the backend's own session (simple
        /// protocol: one statement, a transaction of its own unless one is open).
        fn session(&mut self, sql: &str) -> Vec<String> {
            self.connection().unwrap();
            let (rt, conn) = (&self.rt, self.conn.as_ref().unwrap());
            rt.block_on(conn.client.simple_query(sql))
                .unwrap()
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .collect()
        }
    }

    fn store_config(url: &str) -> crate::config::StoreConfig {
        crate::config::StoreConfig {
            backend: "postgres".into(),
            url: url.into(),
            max_batch: 8,
            ..crate::config::StoreConfig::default()
        }
    }

    #[test]
    fn conformance() {
        let Some((_server, config, _)) = database("conformance") else {
            return;
        };
        let mut b = PostgresBackend::open(&config).unwrap();
        assert!(
            b.label().starts_with("postgres gateway@127.0.0.1:"),
            "{b:?}"
        );
        conformance::run(&mut b);
        conformance::leases(&mut b);
        conformance::events(&mut b);
    }

    #[test]
    fn schema_types_and_session() {
        let Some((_server, config, _)) = database("schema") else {
            return;
        };
        // A role or database that turns durable commits off does not for the store.
        let mut admin = admin(&config);
        let db: String = admin
            .query_one("SELECT current_database()", &[])
            .unwrap()
            .get(0);
        admin
            .batch_execute(&format!("ALTER DATABASE {db} SET synchronous_commit = off"))
            .unwrap();
        let mut b = PostgresBackend::open(&config).unwrap();
        let mut show = |what: &str| b.session(&format!("SHOW {what}")).remove(0);
        assert_eq!(show("synchronous_commit"), "on");
        assert_eq!(show("lock_timeout"), "5s");
        assert_eq!(show("application_name"), APPLICATION);
        // A new, empty table: every execution planned (a generic plan would scan it).
        assert_eq!(show("plan_cache_mode"), "force_custom_plan");
        let row = admin
            .query_one("SELECT application, version FROM gateway_schema", &[])
            .unwrap();
        assert_eq!(row.get::<_, String>(0), APPLICATION);
        assert_eq!(row.get::<_, i32>(1), SCHEMA_VERSION);
        // Amounts are NUMERIC: exact, never floating point.
        let types: Vec<(String, String)> = admin
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE (table_name = 'operations' AND column_name = 'amount') \
                 OR (table_name = 'reservations' AND column_name IN ('reserved', 'charged'))",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(types.len(), 3);
        assert!(types.iter().all(|(_, t)| t == "numeric"), "{types:?}");
        // Opening again finds the schema as it is.
        drop(b);
        PostgresBackend::open(&config).unwrap();
    }

    #[test]
    fn survives_reopen_exactly() {
        let Some((_server, config, _)) = database("reopen") else {
            return;
        };
        conformance::survives_reopen(|| PostgresBackend::open(&config).unwrap());
        // The scale is the server's too, not only the client's reading of it.
        let stored: String = admin(&config)
            .query_one("SELECT amount::text FROM operations WHERE id = 'op-c'", &[])
            .unwrap()
            .get(0);
        assert_eq!(stored, "0.10");
    }

    #[test]
    fn events_survive_reopen() {
        let Some((_server, config, _)) = database("reopen_events") else {
            return;
        };
        conformance::events_survive_reopen(|| PostgresBackend::open(&config).unwrap());
        let stored: String = admin(&config)
            .query_one("SELECT headers FROM events WHERE id = 'ev-a'", &[])
            .unwrap()
            .get(0);
        assert_eq!(
            stored,
            r#"[["Authorization","Bearer t0kén \" ' ;"],["X-Trace","[1, 2]"]]"#
        );
    }

    /// Events in a group: an id written twice keeps its first place and its last row; a
    /// claim between writes sees the one before it; a NUL fails the batch, resource and all.
    #[test]
    fn events_in_one_batch() {
        let Some((_server, config, _)) = database("events_batch") else {
            return;
        };
        let mut b = PostgresBackend::open(&config).unwrap();
        let url = "https://a.example/hook";
        let e1 = conformance::event("e1", Some("pay1"), url, 1);
        let e2 = conformance::event("e2", Some("pay1"), url, 2);
        let mut e1_again = e1.clone();
        e1_again.attempts = 3;
        e1_again.last_error = Some("timeout".into());
        let claim = |id: &str, owner: &str| Write::ClaimEvent {
            id: id.into(),
            lease: Lease {
                owner: owner.into(),
                until_ms: 100,
            },
            now_ms: 10,
        };
        let out = b
            .apply(&[
                Write::Event(e1.clone()),
                Write::Event(e2.clone()),
                Write::Event(e1_again.clone()),
                claim("e2", "gw1"),
                claim("e2", "gw2"),
                claim("nope", "gw1"),
            ])
            .unwrap();
        assert_eq!(
            out,
            vec![
                Written::Done,
                Written::Done,
                Written::Done,
                Written::Won(true),
                Written::Won(false),
                Written::Won(false),
            ]
        );
        assert_eq!(b.event("e1").unwrap(), Some(e1_again.clone()));
        let ids: Vec<_> = b
            .due_events(10, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["e1"]);
        let mut bad = conformance::event("e3", Some("pay2"), url, 3);
        bad.body = "nul \u{0} here".into();
        let err = b
            .apply(&[
                Write::Resource(conformance::resource(
                    "pay2",
                    "camara.payment",
                    "succeeded",
                    1,
                )),
                Write::Event(bad),
            ])
            .unwrap_err();
        assert!(
            err.0.contains("put reservations, resources or events"),
            "{err}"
        );
        assert_eq!(b.resource("pay2").unwrap(), None);
        assert_eq!(b.event("e3").unwrap(), None);
        assert_eq!(b.events(&EventFilter::default()).unwrap().1, 2);
    }

    #[test]
    fn survives_reopen_through_the_store() {
        let Some((_server, config, url)) = database("reopen_store") else {
            return;
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let written = rt.block_on(async {
            // Opened from an async task, as the gateway does: the connection is made on the
            // writer thread.
            let store = Store::open(&store_config(&url)).unwrap();
            assert_eq!(store.backend_name(), "postgres");
            conformance::write_through_store(&store).await
        });
        // Every write above was acknowledged, so it is committed whatever the old writer
        // thread is doing now.
        let mut b = PostgresBackend::open(&config).unwrap();
        conformance::check_written(&mut b, &written);
    }

    #[test]
    fn a_failing_batch_leaves_nothing() {
        let Some((_server, config, _)) = database("rollback") else {
            return;
        };
        conformance::failing_batch_leaves_nothing(
            PostgresBackend::open(&config).unwrap(),
            |b| {
                // The session is out of the failed transaction: a statement of its own (one
                // message, simple protocol) starts a transaction of its own.
                let fresh = b.session("SELECT now() = statement_timestamp()");
                assert_eq!(fresh, ["t"], "no transaction left open");
            },
            |b| {
                drop(b);
                PostgresBackend::open(&config).unwrap()
            },
        );
    }

    #[test]
    fn an_update_moves_the_indexed_columns() {
        let Some((_server, config, _)) = database("update_indexed") else {
            return;
        };
        conformance::update_moves_indexed_columns(&mut PostgresBackend::open(&config).unwrap());
    }

    #[test]
    fn same_key_twice_in_one_batch() {
        let Some((_server, config, _)) = database("same_batch") else {
            return;
        };
        conformance::same_key_twice_in_one_batch(&mut PostgresBackend::open(&config).unwrap());
    }

    #[test]
    fn two_sessions_beginning_the_same_keys_in_opposite_orders_both_commit() {
        // Two instances whose batches begin the same keys in opposite orders (a client
        // retrying on another instance while the first is still writing) wait on each other;
        // the server breaks the deadlock by rolling one back, which is sent again.
        let Some((_server, config, _)) = database("deadlock") else {
            return;
        };
        let (rounds, size) = (8, 400);
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let run = |reverse: bool, config: PostgresTarget| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut b = PostgresBackend::open(&config).unwrap();
                for r in 0..rounds {
                    let mut batch: Vec<Write> = (0..size)
                        .map(|i| {
                            let key = format!("r{r}-k{i}");
                            let id = format!("{key}-{}", if reverse { "b" } else { "a" });
                            Write::Begin(conformance::op(&id, "app", Some(&key), OpState::Pending))
                        })
                        .collect();
                    if reverse {
                        batch.reverse();
                    }
                    barrier.wait();
                    let answers = b.apply(&batch).unwrap_or_else(|e| panic!("round {r}: {e}"));
                    assert_eq!(answers.len(), size);
                }
                b.contended
            })
        };
        let a = run(false, config.clone());
        let b = run(true, config.clone());
        let contended = a.join().unwrap() + b.join().unwrap();
        // Every key kept exactly one row, whichever session came first.
        let mut admin = admin(&config);
        let rows: i64 = admin
            .query_one("SELECT count(*) FROM operations", &[])
            .unwrap()
            .get(0);
        assert_eq!(rows, i64::from(rounds) * size as i64);
        // The rounds start together, so the server met deadlocks (each costs its
        // `deadlock_timeout`, 1 s) and the batches it rolled back went through when sent again.
        assert!(
            contended > 0,
            "no deadlock in {rounds} rounds: the test shows nothing"
        );
    }

    #[test]
    fn order_within_a_batch() {
        let Some((_server, config, _)) = database("batch_order") else {
            return;
        };
        let mut b = PostgresBackend::open(&config).unwrap();
        conformance::order_within_a_batch(&mut b);
        // Its begin of a key an earlier update moved away was caught in the answers, and the
        // batch sent again in its own order.
        assert_eq!(b.regrouped, 1);
        // A batch as the charging layer makes them (begins of new keys and updates of other
        // operations, interleaved): one pass, every answer as one by one.
        let pending: Vec<OperationRow> = (0..20)
            .map(|i| {
                conformance::op(
                    &format!("m{i}"),
                    "app",
                    Some(&format!("m{i}")),
                    OpState::Pending,
                )
            })
            .collect();
        let begins: Vec<Write> = pending.iter().cloned().map(Write::Begin).collect();
        b.apply(&begins).unwrap();
        let mut batch = Vec::new();
        for (i, op) in pending.iter().enumerate() {
            let key = format!("n{i}");
            batch.push(Write::Begin(conformance::op(
                &key,
                "app",
                Some(&key),
                OpState::Pending,
            )));
            let mut done = op.clone();
            done.state = OpState::Succeeded;
            batch.push(Write::Update(done));
        }
        let out = b.apply(&batch).unwrap();
        assert_eq!(out.len(), 40);
        for (i, answer) in out.iter().enumerate() {
            let want = if i % 2 == 0 {
                Written::Begun(Begun::Inserted)
            } else {
                Written::Done
            };
            assert_eq!(*answer, want, "write {i}");
        }
        assert!(pending.iter().all(|op| {
            b.operation(&op.id).unwrap().map(|o| o.state) == Some(OpState::Succeeded)
        }));
        assert_eq!(b.regrouped, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_all_answered_one_row_per_key() {
        let Some((_server, config, _)) = database("concurrent") else {
            return;
        };
        let settings = StoreSettings {
            max_batch: 64,
            ..StoreSettings::default()
        };
        let store =
            Store::start_opening(move || PostgresBackend::open(&config), "postgres", settings)
                .unwrap();
        conformance::concurrent_callers(store).await;
    }

    #[test]
    fn inventory_conformance() {
        let Some((_server, config, _)) = database("inventory") else {
            return;
        };
        conformance::inventory(&mut PostgresBackend::open(&config).unwrap());
    }

    #[test]
    fn conditional_resources_conformance() {
        let Some((_server, config, _)) = database("conditional") else {
            return;
        };
        conformance::conditional_resources(&mut PostgresBackend::open(&config).unwrap());
    }

    /// 100 writers through two stores (two instances) on one database: one claim wins, no
    /// compare-and-set increment is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conditional_race_between_two_instances() {
        let Some((_server, config, _)) = database("conditional_race") else {
            return;
        };
        let settings = || StoreSettings {
            max_batch: 64,
            ..StoreSettings::default()
        };
        let c2 = config.clone();
        let a = Store::start_opening(
            move || PostgresBackend::open(&config),
            "postgres",
            settings(),
        )
        .unwrap();
        let b = Store::start_opening(move || PostgresBackend::open(&c2), "postgres", settings())
            .unwrap();
        conformance::conditional_race(vec![a, b], 100).await;
    }

    /// 300 holders racing for ten numbers through two stores, each its own writer thread
    /// and connection (two gateway instances) on one database: the database decides.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inventory_race_between_two_instances() {
        let Some((_server, config, _)) = database("inventory_race") else {
            return;
        };
        let settings = || StoreSettings {
            max_batch: 64,
            ..StoreSettings::default()
        };
        let c2 = config.clone();
        let a = Store::start_opening(
            move || PostgresBackend::open(&config),
            "postgres",
            settings(),
        )
        .unwrap();
        let b = Store::start_opening(move || PostgresBackend::open(&c2), "postgres", settings())
            .unwrap();
        conformance::inventory_race(vec![a, b], 300).await;
    }

    /// A database as version 3 (before the inventory) is migrated and takes inventory rows.
    #[test]
    fn a_version_3_database_is_migrated_and_takes_inventory() {
        let Some((_server, config, _)) = database("v3") else {
            return;
        };
        let mut c = admin(&config);
        for step in &MIGRATIONS[..3] {
            c.batch_execute(step).unwrap();
        }
        c.execute(
            "INSERT INTO gateway_schema (application, version) VALUES ($1, 3)",
            &[&APPLICATION],
        )
        .unwrap();
        drop(c);
        let mut b = PostgresBackend::open(&config).unwrap();
        let n = conformance::number("ICCID", "8934071234567890123", false);
        b.apply(&[Write::ImportInventory(n.clone())]).unwrap();
        assert_eq!(b.inventory(&n.id).unwrap(), Some(n));
        let v: i32 = admin(&config)
            .query_one("SELECT version FROM gateway_schema", &[])
            .unwrap()
            .get(0);
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn a_corrupt_inventory_row_is_an_error_naming_it() {
        let Some((_server, config, _)) = database("corrupt_inventory") else {
            return;
        };
        let mut b = PostgresBackend::open(&config).unwrap();
        b.apply(&[Write::ImportInventory(conformance::number(
            "MSISDN",
            "34600000001",
            false,
        ))])
        .unwrap();
        admin(&config)
            .batch_execute("UPDATE inventory SET status = 'lost?'")
            .unwrap();
        let err = b.inventory("msisdn-34600000001").unwrap_err();
        assert!(
            err.0.contains("\"msisdn-34600000001\"") && err.0.contains("lost?"),
            "{err}"
        );
        assert!(b.inventory_list(&InventoryFilter::default()).is_err());
    }

    /// A database as version 1 (before leases) wrote it is migrated and keeps its rows; the
    /// migrated operations have no lease.
    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_rows() {
        let Some((_server, config, _)) = database("v1") else {
            return;
        };
        let mut c = admin(&config);
        c.batch_execute(MIGRATIONS[0]).unwrap();
        c.execute(
            "INSERT INTO gateway_schema (application, version) VALUES ($1, 1)",
            &[&APPLICATION],
        )
        .unwrap();
        c.batch_execute(
            "INSERT INTO operations (id, app, kind, request_hash, session_id, request_number, \
             state, request, created_ms, updated_ms) \
             VALUES ('op-old', 'app', 'charge', 'h', 's', 0, 'unknown', '{}', 1, 1)",
        )
        .unwrap();
        drop(c);
        let mut b = PostgresBackend::open(&config).unwrap();
        let old = b.operation("op-old").unwrap().unwrap();
        assert_eq!((old.kind.as_str(), old.lease), ("charge", None));
        let claimed = b
            .apply(&[Write::Claim {
                id: "op-old".into(),
                lease: Lease {
                    owner: "gw1".into(),
                    until_ms: 10,
                },
                now_ms: 5,
            }])
            .unwrap();
        assert_eq!(claimed, vec![Written::Won(true)]);
        let v: i32 = admin(&config)
            .query_one("SELECT version FROM gateway_schema", &[])
            .unwrap()
            .get(0);
        assert_eq!(v, SCHEMA_VERSION);
    }

    /// A database as version 2 (before the outbox) wrote it is migrated: it keeps its rows
    /// and takes events.
    #[test]
    fn a_version_2_database_is_migrated_and_takes_events() {
        let Some((_server, config, _)) = database("v2") else {
            return;
        };
        let mut c = admin(&config);
        for step in &MIGRATIONS[..2] {
            c.batch_execute(step).unwrap();
        }
        c.execute(
            "INSERT INTO gateway_schema (application, version) VALUES ($1, 2)",
            &[&APPLICATION],
        )
        .unwrap();
        c.batch_execute(
            "INSERT INTO operations (id, app, kind, request_hash, session_id, request_number, \
             state, request, created_ms, updated_ms, owner, lease_until_ms) \
             VALUES ('op-old', 'app', 'charge', 'h', 's', 0, 'unknown', '{}', 1, 1, 'gw1', 9)",
        )
        .unwrap();
        drop(c);
        let mut b = PostgresBackend::open(&config).unwrap();
        let old = b.operation("op-old").unwrap().unwrap();
        assert_eq!(old.lease.map(|l| l.owner), Some("gw1".to_string()));
        let e = conformance::event("ev-1", Some("pay-1"), "https://a.example/hook", 1);
        b.apply(&[Write::Event(e.clone())]).unwrap();
        assert_eq!(b.event("ev-1").unwrap(), Some(e.clone()));
        assert_eq!(b.due_events(1, 10).unwrap(), vec![e]);
        let v: i32 = admin(&config)
            .query_one("SELECT version FROM gateway_schema", &[])
            .unwrap()
            .get(0);
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn a_corrupt_event_is_an_error_naming_it() {
        let Some((_server, config, _)) = database("corrupt_event") else {
            return;
        };
        let mut b = PostgresBackend::open(&config).unwrap();
        let url = "https://a.example/hook";
        b.apply(&[
            Write::Event(conformance::event("bad-headers", None, url, 1)),
            Write::Event(conformance::event("bad-state", None, url, 2)),
            Write::Event(conformance::event("bad-attempts", None, url, 3)),
        ])
        .unwrap();
        admin(&config)
            .batch_execute(
                "UPDATE events SET headers = '{\"Authorization\": 1}' WHERE id = 'bad-headers';
                 UPDATE events SET state = 'sent?' WHERE id = 'bad-state';
                 UPDATE events SET attempts = -1 WHERE id = 'bad-attempts';",
            )
            .unwrap();
        for (id, column) in [
            ("bad-headers", "headers"),
            ("bad-state", "sent?"),
            ("bad-attempts", "attempts"),
        ] {
            let err = b.event(id).unwrap_err();
            assert!(
                err.0.contains(&format!("{id:?}")) && err.0.contains(column),
                "{err}"
            );
        }
        assert!(b.events(&EventFilter::default()).is_err());
        assert!(b.due_events(10, 10).is_err());
    }

    /// Another session inserting the same key, not committed yet when a batch begins it: the
    /// batch waits, then meets that row (no batch fails), and the rest of the batch is kept.
    #[test]
    fn a_key_begun_by_another_session_at_the_same_moment_is_met() {
        let Some((_server, config, _)) = database("race") else {
            return;
        };
        let mut b = PostgresBackend::open(&config).unwrap();
        let mut other = admin(&config);
        let mut tx = other.transaction().unwrap();
        tx.batch_execute(
            "INSERT INTO operations (id, app, \"key\", kind, request_hash, session_id, \
             request_number, state, request, created_ms, updated_ms) \
             VALUES ('theirs', 'app', 'k', 'charge', 'h', 's', 0, 'pending', '{}', 1, 1)",
        )
        .unwrap();
        let batch = std::thread::spawn(move || {
            let out = b.apply(&[
                Write::Begin(conformance::op("mine", "app", Some("k"), OpState::Pending)),
                Write::Begin(conformance::op("next", "app", Some("k2"), OpState::Pending)),
            ]);
            (b, out)
        });
        // The batch is waiting on the other session's row.
        let waiting = || {
            admin(&config)
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock'",
                    &[],
                )
                .unwrap()
                .get::<_, i64>(0)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while waiting() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the batch never waited"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        tx.commit().unwrap();
        let (mut b, out) = batch.join().unwrap();
        let out = out.unwrap();
        match &out[..] {
            [
                Written::Begun(Begun::Existing(theirs)),
                Written::Begun(Begun::Inserted),
            ] => {
                assert_eq!(theirs.id, "theirs");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.operation("mine").unwrap(), None);
        assert!(b.operation("next").unwrap().is_some());
    }

    /// Once `operations` is large enough, the choice of plans is left to PostgreSQL (on a new
    /// connection, and on one that was planning each execution), and whatever it takes probes
    /// the indexes: the batch's statements scan no table.
    #[test]
    fn generic_plans_once_the_table_is_large() {
        let Some((_server, config, _)) = database("plans") else {
            return;
        };
        let mut b = PostgresBackend::open(&config).unwrap();
        assert_eq!(b.session("SHOW plan_cache_mode"), ["force_custom_plan"]);
        let mut admin = admin(&config);
        admin
            .batch_execute(
                "INSERT INTO operations (id, app, \"key\", kind, request_hash, session_id, \
                 request_number, state, request, created_ms, updated_ms) \
                 SELECT 'old-' || g, 'app', 'old-' || g, 'charge', 'h', 's', 0, 'succeeded', \
                 repeat('x', 300), 1, 1 FROM generate_series(1, 12000) g",
            )
            .unwrap();
        let batch = |n: usize| -> Vec<Write> {
            (0..4)
                .flat_map(|i| {
                    let id = format!("p{n}-{i}");
                    let mut done = conformance::op(
                        &format!("old-{}", n * 4 + i + 1),
                        "app",
                        None,
                        OpState::Succeeded,
                    );
                    done.key = Some(done.id.clone());
                    [
                        Write::Begin(conformance::op(&id, "app", Some(&id), OpState::Pending)),
                        Write::Update(done),
                    ]
                })
                .collect()
        };
        // The connection that was planning each execution turns to generic plans.
        for n in 0..PLAN_CHECK_EVERY as usize {
            b.apply(&batch(n)).unwrap();
        }
        assert_eq!(b.session("SHOW plan_cache_mode"), ["auto"]);
        assert!(!b.conn.as_ref().unwrap().custom_plans);
        let scans = |admin: &mut ::postgres::Client| -> i64 {
            admin
                .query_one(
                    "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'operations'",
                    &[],
                )
                .unwrap()
                .get(0)
        };
        // Past the five custom plans: generic ones, and no scan of the table.
        drop(b);
        let mut b = PostgresBackend::open(&config).unwrap();
        assert_eq!(
            b.session("SELECT current_setting('plan_cache_mode')"),
            ["auto"]
        );
        for n in 0..8 {
            b.apply(&batch(1000 + n)).unwrap();
        }
        // The session's counts are flushed for the next read (PostgreSQL 15).
        let flush = |b: &mut PostgresBackend| b.session("SELECT pg_stat_force_next_flush()");
        flush(&mut b);
        let before = scans(&mut admin);
        for n in 0..20 {
            b.apply(&batch(2000 + n)).unwrap();
        }
        flush(&mut b);
        assert_eq!(scans(&mut admin), before, "a batch scanned operations");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let Some((_server, config, _)) = database("newer") else {
            return;
        };
        drop(PostgresBackend::open(&config).unwrap());
        admin(&config)
            .execute(
                "UPDATE gateway_schema SET version = $1",
                &[&(SCHEMA_VERSION + 1)],
            )
            .unwrap();
        let err = PostgresBackend::open(&config).unwrap_err();
        assert!(err.0.contains("newer"), "{err}");
        assert!(
            err.0
                .contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
            "{err}"
        );
    }

    #[test]
    fn a_foreign_database_is_refused() {
        let Some((server, config, _)) = database("foreign") else {
            return;
        };
        admin(&config)
            .batch_execute("CREATE TABLE invoices (id int)")
            .unwrap();
        let err = PostgresBackend::open(&config).unwrap_err();
        assert!(err.0.contains("not a gateway store"), "{err}");
        assert!(err.0.contains("1 tables"), "{err}");
        // Nothing was created in it.
        let tables: i64 = admin(&config)
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(tables, 1);
        // A gateway_schema of another application is not ours either.
        let url = server.database("foreign_marked");
        let config = target(&url).unwrap();
        admin(&config)
            .batch_execute(
                "CREATE TABLE gateway_schema (application TEXT, version INTEGER);
                 INSERT INTO gateway_schema VALUES ('billing-gateway', 1);",
            )
            .unwrap();
        let err = PostgresBackend::open(&config).unwrap_err();
        assert!(
            err.0.contains("not a gateway store") && err.0.contains("billing-gateway"),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_row_is_an_error_naming_it() {
        let Some((_server, config, _)) = database("corrupt") else {
            return;
        };
        let mut admin = admin(&config);
        conformance::corrupt_rows(&mut PostgresBackend::open(&config).unwrap(), |_| {
            // NUMERIC holds what rust_decimal cannot (NaN, 40 digits).
            admin
                .batch_execute(
                    "UPDATE operations SET amount = 'NaN' WHERE id = 'bad-amount';
                     UPDATE operations SET state = 'charged?' WHERE id = 'bad-state';
                     UPDATE operations SET request_number = -1 WHERE id = 'good';
                     UPDATE reservations SET charged = 1e40 WHERE id = 'r1';",
                )
                .unwrap()
        });
    }

    #[test]
    fn a_lost_connection_fails_its_batch_and_is_reopened() {
        let Some((_server, config, _)) = database("lost") else {
            return;
        };
        let mut b = PostgresBackend::open(&config).unwrap();
        let mut admin = admin(&config);
        let first = conformance::op("first", "app", Some("k1"), OpState::Pending);
        b.apply(&[Write::Begin(first.clone())]).unwrap();
        // Killed while idle (a server restart, a proxy's idle timeout): the next batch and
        // read go through on a new connection, nothing lost.
        let kill_others = "SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 10000) \
            FROM pg_stat_activity WHERE datname = current_database() \
            AND pid <> pg_backend_pid()) AS t";
        let killed: i64 = admin.query_one(kill_others, &[]).unwrap().get(0);
        assert_eq!(killed, 1);
        let second = conformance::op("second", "app", Some("k2"), OpState::Pending);
        assert_eq!(
            b.apply(&[Write::Begin(second.clone())]).unwrap(),
            vec![Written::Begun(Begun::Inserted)]
        );
        admin.query_one(kill_others, &[]).unwrap();
        assert_eq!(b.operation("first").unwrap(), Some(first));
        // Killed in the middle of a batch: the batch fails, none of it is kept, and the next
        // batch gets a new connection.
        admin
            .batch_execute(
                "CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                   IF NEW.id = 'die' THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
                   RETURN NEW;
                 END $$;
                 CREATE TRIGGER die BEFORE INSERT ON reservations
                   FOR EACH ROW EXECUTE FUNCTION die();",
            )
            .unwrap();
        let err = b
            .apply(&[
                Write::Begin(conformance::op(
                    "third",
                    "app",
                    Some("k3"),
                    OpState::Pending,
                )),
                Write::Reservation(conformance::reservation("die", ReservationState::Open, 1)),
            ])
            .unwrap_err();
        assert!(err.0.contains("postgres gateway@127.0.0.1"), "{err}");
        assert_eq!(b.operation("third").unwrap(), None);
        assert_eq!(b.operation_by_key("app", "k3").unwrap(), None);
        let fourth = conformance::op("fourth", "app", Some("k4"), OpState::Pending);
        assert_eq!(
            b.apply(&[Write::Begin(fourth.clone())]).unwrap(),
            vec![Written::Begun(Begun::Inserted)]
        );
        let ids: Vec<_> = b
            .operations(&OperationFilter::default())
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(ids, vec!["fourth", "second", "first"]);
    }

    /// A CA (its certificate in PEM, and what signs with it).
    fn ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), rcgen::Issuer::new(params, key))
    }

    /// A server certificate for `names` (DNS names or IP addresses) issued by `ca`.
    fn server_cert(
        ca: &rcgen::Issuer<'static, rcgen::KeyPair>,
        names: &[&str],
    ) -> test_server::TlsFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gateway test server");
        let cert = params.signed_by(&key, ca).unwrap();
        test_server::TlsFiles {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// `sslmode` and `sslrootcert` against a server with TLS on and a certificate for
    /// 127.0.0.1 and localhost: verify-full with its CA connects (over TLS, as the server
    /// says) and the store works; another CA, or another name, is refused, saying why;
    /// verify-ca takes another name; require and prefer encrypt whatever the certificate.
    #[test]
    fn tls_as_sslmode_says() {
        let Some(install) = test_server::Install::find_or_skip("store::postgres::tls") else {
            return;
        };
        let (ca_pem, issuer) = ca("gateway test CA");
        let (other_pem, _) = ca("some other CA");
        let server = Server::start_tls(install, &server_cert(&issuer, &["localhost", "127.0.0.1"]))
            .unwrap_or_else(|e| panic!("PostgreSQL with TLS: {e}"));
        let dir = std::env::temp_dir().join(format!("cgw-pg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let right = dir.join("ca.pem");
        let wrong = dir.join("other.pem");
        std::fs::write(&right, &ca_pem).unwrap();
        std::fs::write(&wrong, &other_pem).unwrap();
        let plain = server.database("tls");
        let db = plain
            .rsplit('/')
            .next()
            .and_then(|t| t.split('?').next())
            .unwrap()
            .to_string();
        let port = server.port();
        let url = |host: &str, query: &str| {
            let pw = test_server::PASSWORD;
            format!("postgresql://gateway:{pw}@{host}:{port}/{db}?{query}")
        };
        let rootcert = |p: &std::path::Path| format!("sslrootcert={}", p.display());
        let open = |u: &str| PostgresBackend::open(&target(u).unwrap());
        let encrypted = |b: &mut PostgresBackend| {
            b.session("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        };

        // verify-full with the server's CA: TLS, and the store works over it.
        let mut b = open(&url(
            "127.0.0.1",
            &format!("sslmode=verify-full&{}", rootcert(&right)),
        ))
        .unwrap();
        assert_eq!(encrypted(&mut b), ["true"]);
        conformance::run(&mut b);
        drop(b);
        let mut b = open(&url(
            "localhost",
            &format!("sslmode=verify-full&{}", rootcert(&right)),
        ))
        .unwrap();
        assert_eq!(encrypted(&mut b), ["true"]);
        drop(b);

        // Another CA: refused, under verify-full, verify-ca, and require with a root given.
        for mode in ["verify-full", "verify-ca", "require", "prefer"] {
            let err = open(&url(
                "127.0.0.1",
                &format!("sslmode={mode}&{}", rootcert(&wrong)),
            ))
            .unwrap_err();
            assert!(
                err.0.contains("cannot connect")
                    && err.0.contains("invalid peer certificate")
                    && err.0.contains("UnknownIssuer"),
                "{mode}: {err}"
            );
        }

        // The certificate names 127.0.0.1 and localhost; connecting to it as db.example
        // (its address given apart) is a name mismatch: refused under verify-full, taken
        // under verify-ca.
        let other_name = |mode: &str| {
            url(
                "db.example",
                &format!("hostaddr=127.0.0.1&sslmode={mode}&{}", rootcert(&right)),
            )
        };
        let err = open(&other_name("verify-full")).unwrap_err();
        assert!(
            err.0.contains("invalid peer certificate") && err.0.contains("db.example"),
            "{err}"
        );
        let mut b = open(&other_name("verify-ca")).unwrap();
        assert_eq!(encrypted(&mut b), ["true"]);
        drop(b);

        // require and prefer without a root: encrypted whatever the certificate; disable:
        // plain.
        for (query, want) in [
            ("sslmode=require", "true"),
            ("sslmode=prefer", "true"),
            ("sslmode=disable", "false"),
        ] {
            let mut b = open(&url("127.0.0.1", query)).unwrap();
            assert_eq!(encrypted(&mut b), [want], "{query}");
        }
        // A server without TLS: prefer goes plain, require is refused.
        let Some((_shared, _, no_tls)) = database("no_tls") else {
            return;
        };
        let no_tls = no_tls.replace("sslmode=disable", "");
        let mut b = open(&format!("{no_tls}sslmode=prefer")).unwrap();
        assert_eq!(encrypted(&mut b), ["false"]);
        let err = open(&format!("{no_tls}sslmode=require")).unwrap_err();
        assert!(err.0.contains("server does not support TLS"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn open_picks_the_configured_backend() {
        let Some((server, _, url)) = database("open") else {
            return;
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = Store::open(&store_config(&url)).unwrap();
            assert_eq!(store.backend_name(), "postgres");
            let op = conformance::op("op-1", "app", Some("k"), OpState::Pending);
            assert_eq!(store.begin(op.clone()).await.unwrap(), Begun::Inserted);
            assert_eq!(store.operation("op-1").await.unwrap(), Some(op));
            // On an async runtime's thread the backend refuses to connect (the client would
            // panic there) and says how to open it.
            let config = target(&url).unwrap();
            let err = PostgresBackend::open(&config).unwrap_err();
            assert!(err.0.contains("Store::open"), "{err}");
        });
        // A server that is not there: the error names it, not its password.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let nowhere = url.replace(&server.port().to_string(), &closed.to_string());
        let err = Store::open(&store_config(&nowhere)).unwrap_err();
        assert!(
            err.0.contains(&format!("127.0.0.1:{closed}")) && err.0.contains("cannot connect"),
            "{err}"
        );
        assert!(!err.0.contains(test_server::PASSWORD), "{err}");
        // No URL: refused naming the key.
        let err = Store::open(&store_config("")).unwrap_err();
        assert!(err.0.contains("store.url"), "{err}");
    }
}
