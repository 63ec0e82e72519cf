//! The PostgreSQL [`Backend`]: the store's tables in a PostgreSQL database (`store.url`), for
//! operators who keep records in a database server they already back up and replicate. Same
//! semantics as [`MemoryBackend`](super::MemoryBackend) and the SQLite backend.
//!
//! ```text
//! writer thread ==== one connection (TCP or Unix socket, no TLS) ====> PostgreSQL
//!   apply(batch):  BEGIN; the batch's statements; COMMIT     one WAL flush per batch
//!
//! the connection's current schema (search_path: `public` unless the URL sets it)
//!   gateway_schema     one row: application 'charging-gateway', schema version
//!   operations         seq (identity: insertion order), id, app, "key", ..., amount NUMERIC
//!   reservations       id, ..., reserved NUMERIC, charged NUMERIC, state, ...
//!   resources          id, app, kind, state, parent, due_ms, body, ...
//! ```
//!
//! Durable: COMMIT returns once the server has flushed the batch to its WAL
//! (`synchronous_commit`, `on` by default; a session that finds it `off` sets it back to `on`),
//! so a batch is on the server's disk when `apply` returns, one flush for the whole batch
//! (group commit). Money is NUMERIC, exact, with its scale as written (`0.10` stays `0.10`);
//! states are kept by their names, `u32`s as BIGINT. Nothing read back is trusted: a row that
//! does not decode is an error naming the row and the column.
//!
//! Connection loss: the batch in flight fails with a [`StoreError`] and nothing of it is kept
//! (a COMMIT whose answer is lost is the one exception the server cannot rule out: the error
//! says its outcome is unknown). The next call opens a new connection; a batch whose `BEGIN`
//! meets a connection that died while idle is sent again on a fresh one (none of it had been
//! sent), and so is a read.
//!
//! Differences from the memory backend, on writes the charging layer never makes: as with
//! SQLite, an `Update` that moves a row onto another row's `(app, key)` fails its batch; TEXT
//! cannot hold a NUL character, so a write with one fails its batch (the REST families refuse
//! control characters before anything is stored). Two gateways beginning the same key at the
//! same moment: the unique index keeps one row, and the other batch fails.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use ::postgres::config::Host;
use ::postgres::types::{FromSql, ToSql};
use ::postgres::{Client, Config, GenericClient, NoTls, Row, Statement, Transaction};
use rust_decimal::Decimal;
use tracing::{info, warn};

use super::sql::{
    DROP_LEASE, INSERT_OP, OP_BY_ID, OP_BY_KEY, OPS_UNRESOLVED, RES_BY_ID, RES_OPEN,
    RESOURCE_BY_ID, RESOURCE_COLUMNS, TAKE_LEASE, UPSERT_RES, UPSERT_RESOURCE, op_columns,
};
use super::{
    Backend, Begun, Lease, OpState, OperationFilter, OperationRow, ReservationRow,
    ReservationState, ResourceFilter, ResourceRow, StoreError, Write, Written,
};

/// The schema version this code writes (`gateway_schema.version`). A database with a higher
/// one was written by a newer gateway and is refused.
pub const SCHEMA_VERSION: i32 = 2;

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
];

/// Takes an unresolved operation's lease (`$4`: now).
const CLAIM_OP: &str = "UPDATE operations SET owner = $2, lease_until_ms = $3 WHERE id = $1 \
    AND state IN ('pending', 'unknown') \
    AND (owner IS NULL OR owner = $2 OR lease_until_ms IS NULL OR lease_until_ms <= $4)";

const RENEW_OPS: &str = "UPDATE operations SET lease_until_ms = $2 \
    WHERE owner = $1 AND state IN ('pending', 'unknown')";

/// A reservation replaced only if its last request number is still `$14`.
const STEP_RES: &str = "UPDATE reservations SET app = $2, session_id = $3, subscriber = $4, \
    currency = $5, reserved = $6, charged = $7, last_request_number = $8, state = $9, \
    expires_ms = $10, created_ms = $11, updated_ms = $12, pending = $13 \
    WHERE id = $1 AND last_request_number = $14";

/// A begin's insert that gives way to a row already there (by id or by key): two gateways
/// beginning the same key at once do not fail a batch, the second finds the first's row.
const INSERT_OP_NEW: &str = r#"INSERT INTO operations (id, app, "key", kind, request_hash, parent,
    reservation_id, session_id, request_number, subscriber, amount, currency, reference_code,
    state, result_code, request, outcome, created_ms, updated_ms, owner, lease_until_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20, $21)
    ON CONFLICT DO NOTHING"#;

/// The row a begin meets, locked until the batch commits.
const OP_BY_KEY_FOR_UPDATE: &str = concat!(
    "SELECT ",
    op_columns!(),
    r#" FROM operations WHERE app = $1 AND "key" = $2 FOR UPDATE"#
);

// One statement: PostgreSQL compares the indexed columns' values itself (an update that leaves
// them equal is a heap-only update, no index touched).
const UPDATE_OP: &str = r#"UPDATE operations SET app = $2, "key" = $3, kind = $4,
    request_hash = $5, parent = $6, reservation_id = $7, session_id = $8, request_number = $9,
    subscriber = $10, amount = $11, currency = $12, reference_code = $13, state = $14,
    result_code = $15, request = $16, outcome = $17, created_ms = $18, updated_ms = $19,
    owner = $20, lease_until_ms = $21 WHERE id = $1"#;

const DELETE_OP: &str = "DELETE FROM operations WHERE id = $1";

type Param<'a> = &'a (dyn ToSql + Sync);

/// The PostgreSQL backend: one connection, owned by the store's writer thread, opened again
/// after it is lost.
pub struct PostgresBackend {
    config: Config,
    /// `postgres user@host:port/dbname`: names the database in errors and logs (no password).
    label: String,
    /// `None` after a connection was lost, until the next call opens one.
    client: Option<Client>,
    statements: HashMap<String, Statement>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("database", &self.label)
            .field("connected", &self.client.is_some())
            .finish()
    }
}

impl PostgresBackend {
    /// Connects to the database `config` names; creates or migrates the schema. Refuses a
    /// schema that is newer than this code, or that is not a gateway store, and a database
    /// whose encoding is not UTF8.
    ///
    /// Blocking, and it must not run on an async runtime's thread (the client drives its
    /// own): [`Store::open`](super::Store::open) calls it on the writer thread.
    pub fn open(config: &Config) -> Result<Self, StoreError> {
        let mut config = config.clone();
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
        let mut me = Self {
            config,
            label,
            client: None,
            statements: HashMap::new(),
        };
        me.connection()?;
        Ok(me)
    }

    /// `postgres user@host:port/dbname`, as errors name the database.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The open connection, opening one (and checking the schema) when there is none.
    fn connection(&mut self) -> Result<(&mut Client, &mut HashMap<String, Statement>), StoreError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.lost();
        }
        let client = match &mut self.client {
            Some(c) => c,
            empty => {
                let mut c = connect(&self.config, &self.label)?;
                migrate(&mut c, &self.label)?;
                empty.insert(c)
            }
        };
        Ok((client, &mut self.statements))
    }

    /// Forgets the connection (and its prepared statements): the next call opens a new one.
    fn lost(&mut self) {
        if self.client.take().is_some() {
            warn!(database = %self.label, "store connection lost: reconnecting on the next call");
        }
        self.statements.clear();
    }

    /// After a failed call: forgets the connection if it is closed.
    fn after_error(&mut self) {
        if self.client.as_ref().is_some_and(Client::is_closed) {
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
            let label = self.label.clone();
            let (client, statements) = self.connection()?;
            let rows = prepared(client, statements, sql).and_then(|s| client.query(&s, params));
            match rows {
                Ok(rows) => return rows.iter().map(|r| decode(r, &label)).collect(),
                Err(e) if !retried && (is_dead(&e) || client.is_closed()) => {
                    retried = true;
                    self.lost();
                }
                Err(e) => {
                    if is_dead(&e) {
                        self.lost();
                    } else {
                        self.after_error();
                    }
                    return Err(StoreError(format!("{label}: {what}: {}", pg_error(&e))));
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
}

impl Backend for PostgresBackend {
    fn apply(&mut self, batch: &[Write]) -> Result<Vec<Written>, StoreError> {
        let mut retried = false;
        loop {
            let label = self.label.clone();
            let (client, statements) = self.connection()?;
            match write_batch(client, statements, batch, &label) {
                Ok(out) => return Ok(out),
                // Nothing of the batch was sent: send it again on a new connection.
                Err(Failed::Unsent { dead: true, .. }) if !retried => {
                    retried = true;
                    self.lost();
                }
                Err(Failed::Unsent { error, .. } | Failed::Sent(error)) => {
                    // The transaction's drop rolled back; make sure the session is out of it
                    // (a second ROLLBACK only warns), or forget a connection that is gone.
                    let rolled_back = self
                        .client
                        .as_mut()
                        .filter(|c| !c.is_closed())
                        .map(|c| c.batch_execute("ROLLBACK"));
                    match rolled_back {
                        Some(Ok(())) => {}
                        Some(Err(e)) => {
                            warn!(database = %label, error = %pg_error(&e), "store rollback failed");
                            self.lost();
                        }
                        None => self.lost(),
                    }
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

    fn resources(&mut self, f: &ResourceFilter) -> Result<(Vec<ResourceRow>, usize), StoreError> {
        let mut clause = String::new();
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
        for (cond, value) in filters {
            if let Some(v) = value {
                clause.push_str(if params.is_empty() {
                    " WHERE "
                } else {
                    " AND "
                });
                params.push(v);
                let _ = write!(clause, "{cond}{}", params.len());
            }
        }
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

/// Opens a connection and sets up its session: UTF8 checked, commits durable, lock waits
/// bounded.
fn connect(config: &Config, label: &str) -> Result<Client, StoreError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        // The client blocks on a runtime of its own, which tokio refuses (with a panic) on a
        // thread that already drives one.
        return Err(StoreError(format!(
            "{label}: cannot connect from an async runtime's thread: open the store with \
             Store::open, which connects on its writer thread"
        )));
    }
    let mut client = config
        .connect(NoTls)
        .map_err(|e| StoreError(format!("{label}: cannot connect: {}", pg_error(&e))))?;
    let session = |e: ::postgres::Error| StoreError(format!("{label}: session: {}", pg_error(&e)));
    let row = client
        .query_one(
            "SELECT current_setting('server_encoding'), current_setting('synchronous_commit'), \
             current_setting('fsync')",
            &[],
        )
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
            .map_err(session)?;
    }
    if fsync == "off" {
        warn!(database = %label, "the server runs with fsync = off: a committed batch can be lost if its machine crashes");
    }
    client
        .batch_execute(&format!("SET lock_timeout = '{LOCK_TIMEOUT}'"))
        .map_err(session)?;
    Ok(client)
}

/// Checks the schema and creates or migrates it, under an advisory lock.
fn migrate(client: &mut Client, label: &str) -> Result<(), StoreError> {
    let sql = |what: &'static str| {
        move |e: ::postgres::Error| StoreError(format!("{label}: {what}: {}", pg_error(&e)))
    };
    let mut tx = client.transaction().map_err(sql("schema check"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
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
        let migration = |e: ::postgres::Error| {
            StoreError(format!(
                "{label}: schema migration to {next}: {}",
                pg_error(&e)
            ))
        };
        tx.batch_execute(step).map_err(migration)?;
        if v == 0 {
            tx.execute(
                "INSERT INTO gateway_schema (application, version) VALUES ($1, $2)",
                &[&APPLICATION, &next],
            )
        } else {
            tx.execute("UPDATE gateway_schema SET version = $1", &[&next])
        }
        .map_err(migration)?;
        v = next;
    }
    tx.commit().map_err(sql("schema commit"))?;
    if version < SCHEMA_VERSION {
        info!(database = %label, schema = %schema, from = version, to = SCHEMA_VERSION, "store schema created or migrated");
    }
    Ok(())
}

/// Why a batch failed.
enum Failed {
    /// At BEGIN: nothing of the batch reached the server; `dead`: nor will anything on this
    /// connection.
    Unsent {
        dead: bool,
        error: StoreError,
    },
    Sent(StoreError),
}

/// Applies a batch in one transaction and commits it.
fn write_batch(
    client: &mut Client,
    statements: &mut HashMap<String, Statement>,
    batch: &[Write],
    label: &str,
) -> Result<Vec<Written>, Failed> {
    let mut tx = match client.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            return Err(Failed::Unsent {
                dead: is_dead(&e),
                error: StoreError(format!("{label}: begin: {}", pg_error(&e))),
            });
        }
    };
    let out = write_all(&mut tx, statements, batch, label).map_err(Failed::Sent)?;
    commit(tx, label).map_err(Failed::Sent)?;
    Ok(out)
}

fn write_all(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<String, Statement>,
    batch: &[Write],
    label: &str,
) -> Result<Vec<Written>, StoreError> {
    let sql = |what: &'static str| {
        move |e: ::postgres::Error| StoreError(format!("{label}: {what}: {}", pg_error(&e)))
    };
    let mut out = Vec::with_capacity(batch.len());
    for w in batch {
        out.push(match w {
            Write::Begin(op) => Written::Begun(begin(tx, statements, op, label)?),
            Write::Update(op) => {
                let values = OpValues::of(op);
                let n = prepared(tx, statements, UPDATE_OP)
                    .and_then(|s| tx.execute(&s, &values.params()))
                    .map_err(sql("update operation"))?;
                if n == 0 {
                    return Err(StoreError(format!("no operation {}", op.id)));
                }
                Written::Done
            }
            Write::Reservation(r) => {
                let last = i64::from(r.last_request_number);
                let state = r.state.name();
                let params: [Param<'_>; 13] = [
                    &r.id,
                    &r.app,
                    &r.session_id,
                    &r.subscriber,
                    &r.currency,
                    &r.reserved,
                    &r.charged,
                    &last,
                    &state,
                    &r.expires_ms,
                    &r.created_ms,
                    &r.updated_ms,
                    &r.pending,
                ];
                prepared(tx, statements, UPSERT_RES)
                    .and_then(|s| tx.execute(&s, &params))
                    .map_err(sql("put reservation"))?;
                Written::Done
            }
            Write::Resource(r) => {
                let params: [Param<'_>; 9] = [
                    &r.id,
                    &r.app,
                    &r.kind,
                    &r.state,
                    &r.parent,
                    &r.due_ms,
                    &r.body,
                    &r.created_ms,
                    &r.updated_ms,
                ];
                prepared(tx, statements, UPSERT_RESOURCE)
                    .and_then(|s| tx.execute(&s, &params))
                    .map_err(sql("put resource"))?;
                Written::Done
            }
            Write::Claim { id, lease, now_ms } => {
                let params: [Param<'_>; 4] = [id, &lease.owner, &lease.until_ms, now_ms];
                let n = prepared(tx, statements, CLAIM_OP)
                    .and_then(|s| tx.execute(&s, &params))
                    .map_err(sql("claim operation"))?;
                Written::Won(n > 0)
            }
            Write::Renew { owner, until_ms } => {
                let params: [Param<'_>; 2] = [owner, until_ms];
                prepared(tx, statements, RENEW_OPS)
                    .and_then(|s| tx.execute(&s, &params))
                    .map_err(sql("renew leases"))?;
                Written::Done
            }
            Write::Step { row: r, expected } => {
                let last = i64::from(r.last_request_number);
                let expected = i64::from(*expected);
                let state = r.state.name();
                let params: [Param<'_>; 14] = [
                    &r.id,
                    &r.app,
                    &r.session_id,
                    &r.subscriber,
                    &r.currency,
                    &r.reserved,
                    &r.charged,
                    &last,
                    &state,
                    &r.expires_ms,
                    &r.created_ms,
                    &r.updated_ms,
                    &r.pending,
                    &expected,
                ];
                let n = prepared(tx, statements, STEP_RES)
                    .and_then(|s| tx.execute(&s, &params))
                    .map_err(sql("step reservation"))?;
                Written::Won(n > 0)
            }
            Write::TakeLease {
                name,
                lease,
                now_ms,
            } => {
                let params: [Param<'_>; 4] = [name, &lease.owner, &lease.until_ms, now_ms];
                let n = prepared(tx, statements, TAKE_LEASE)
                    .and_then(|s| tx.execute(&s, &params))
                    .map_err(sql("take lease"))?;
                Written::Won(n > 0)
            }
            Write::DropLease { name, owner } => {
                let params: [Param<'_>; 2] = [name, owner];
                prepared(tx, statements, DROP_LEASE)
                    .and_then(|s| tx.execute(&s, &params))
                    .map_err(sql("drop lease"))?;
                Written::Done
            }
        });
    }
    Ok(out)
}

/// Commits, saying when the outcome is unknown.
fn commit(tx: Transaction<'_>, label: &str) -> Result<(), StoreError> {
    tx.commit().map_err(|e| {
        let unknown = if is_dead(&e) {
            " (the connection was lost: the batch may or may not be committed)"
        } else {
            ""
        };
        StoreError(format!("{label}: commit: {}{unknown}", pg_error(&e)))
    })
}

/// Begin: insert; on an `(app, key)` conflict keep the existing row unless it is retryable,
/// in which case it gives way.
fn begin(
    tx: &mut Transaction<'_>,
    statements: &mut HashMap<String, Statement>,
    op: &OperationRow,
    label: &str,
) -> Result<Begun, StoreError> {
    let sql = |what: &'static str| {
        move |e: ::postgres::Error| StoreError(format!("{label}: {what}: {}", pg_error(&e)))
    };
    let values = OpValues::of(op);
    if let Some(key) = &op.key {
        // Insert unless a row is there; of two sessions inserting the same key at once, the
        // second waits for the first's commit and then inserts nothing (no batch fails).
        let n = prepared(tx, statements, INSERT_OP_NEW)
            .and_then(|s| tx.execute(&s, &values.params()))
            .map_err(sql("insert operation"))?;
        if n == 1 {
            return Ok(Begun::Inserted);
        }
        let rows = prepared(tx, statements, OP_BY_KEY_FOR_UPDATE)
            .and_then(|s| tx.query(&s, &[&op.app, key]))
            .map_err(sql("begin"))?;
        if let Some(row) = rows.first() {
            let existing = read_op(row, label)?;
            if existing.state != OpState::Retryable {
                return Ok(Begun::Existing(Box::new(existing)));
            }
            prepared(tx, statements, DELETE_OP)
                .and_then(|s| tx.execute(&s, &[&existing.id]))
                .map_err(sql("replace retryable operation"))?;
        }
    }
    prepared(tx, statements, INSERT_OP)
        .and_then(|s| tx.execute(&s, &values.params()))
        .map_err(sql("insert operation"))?;
    Ok(Begun::Inserted)
}

/// The statement for `sql`, prepared once per connection.
fn prepared(
    client: &mut impl GenericClient,
    statements: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement, ::postgres::Error> {
    if let Some(s) = statements.get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare(sql)?;
    if statements.len() >= STATEMENT_CACHE {
        statements.clear();
    }
    statements.insert(sql.to_string(), s.clone());
    Ok(s)
}

/// The values of an operation as its columns hold them, in the order of [`INSERT_OP`] and
/// [`UPDATE_OP`].
struct OpValues<'a> {
    op: &'a OperationRow,
    request_number: i64,
    result_code: Option<i64>,
    state: &'static str,
    owner: Option<&'a str>,
    lease_until_ms: Option<i64>,
}

impl<'a> OpValues<'a> {
    fn of(op: &'a OperationRow) -> Self {
        Self {
            op,
            request_number: i64::from(op.request_number),
            result_code: op.result_code.map(i64::from),
            state: op.state.name(),
            owner: op.lease.as_ref().map(|l| l.owner.as_str()),
            lease_until_ms: op.lease.as_ref().map(|l| l.until_ms),
        }
    }

    fn params(&self) -> [Param<'_>; 21] {
        let op = self.op;
        [
            &op.id,
            &op.app,
            &op.key,
            &op.kind,
            &op.request_hash,
            &op.parent,
            &op.reservation_id,
            &op.session_id,
            &self.request_number,
            &op.subscriber,
            &op.amount,
            &op.currency,
            &op.reference_code,
            &self.state,
            &self.result_code,
            &op.request,
            &op.outcome,
            &op.created_ms,
            &op.updated_ms,
            &self.owner,
            &self.lease_until_ms,
        ]
    }
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

/// Whether `e` ends the session: the connection closed, or the server's FATAL error (it was
/// terminated, shut down) or a connection exception (class 08).
fn is_dead(e: &::postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error().is_some_and(|db| {
            matches!(db.severity(), "FATAL" | "PANIC") || db.code().code().starts_with("08")
        })
}

/// The server's message (and detail) for a database error, else the client's.
fn pg_error(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                let _ = write!(s, ": {d}");
            }
            s
        }
        None => e.to_string(),
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

/// The test server (shared with the integration tests, which start the gateway on it).
#[cfg(test)]
#[path = "../../tests/support/postgres.rs"]
#[allow(dead_code)]
mod test_server;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::test_server::Server;
    use super::*;
    use crate::store::memory::conformance;
    use crate::store::{Store, StoreSettings};

    /// A fresh database on the shared server: the server (hold it for the test), the
    /// connection parameters and the URL. `None`: PostgreSQL is not installed (skipped).
    fn database(test: &str) -> Option<(Arc<Server>, Config, String)> {
        let server = Server::shared_or_skip(&format!("store::postgres::{test}"))?;
        let url = server.database(test);
        let config = url.parse().unwrap();
        Some((server, config, url))
    }

    /// A second session on the same database, for what the tests do behind the backend.
    fn admin(config: &Config) -> Client {
        config.connect(NoTls).unwrap()
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
        let (client, _) = b.connection().unwrap();
        let show = |c: &mut Client, what: &str| -> String {
            c.query_one(&format!("SHOW {what}"), &[]).unwrap().get(0)
        };
        assert_eq!(show(client, "synchronous_commit"), "on");
        assert_eq!(show(client, "lock_timeout"), "5s");
        assert_eq!(show(client, "application_name"), APPLICATION);
        let row = client
            .query_one("SELECT application, version FROM gateway_schema", &[])
            .unwrap();
        assert_eq!(row.get::<_, String>(0), APPLICATION);
        assert_eq!(row.get::<_, i32>(1), SCHEMA_VERSION);
        // Amounts are NUMERIC: exact, never floating point.
        let types: Vec<(String, String)> = client
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
                let (client, _) = b.connection().unwrap();
                let rows = client
                    .simple_query("SELECT now() = statement_timestamp()")
                    .unwrap();
                let fresh = rows.iter().find_map(|m| match m {
                    ::postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                });
                assert_eq!(fresh.as_deref(), Some("t"), "no transaction left open");
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
        let config: Config = url.parse().unwrap();
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
            let config: Config = url.parse().unwrap();
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
