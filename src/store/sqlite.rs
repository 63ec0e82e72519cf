//! The embedded SQLite [`Backend`]: one file, `gateway.sqlite3`, in the configured data
//! directory. Same semantics as [`MemoryBackend`](super::MemoryBackend), made durable.
//!
//! ```text
//! data_dir/
//!   gateway.sqlite3        the database (PRAGMA user_version = schema version)
//!   gateway.sqlite3-wal    write-ahead log: every committed batch is here, fsynced, before
//!                          `apply` returns; folded into the database by checkpoints, and
//!                          emptied and removed when the store is closed (a clean stop)
//! ```
//!
//! One batch of writes is one `BEGIN IMMEDIATE ... COMMIT` transaction, so one fsync of the
//! WAL however many writes the batch holds (group commit). Money is kept as decimal TEXT
//! (`12345.6789`, `0.10`: value and scale as written), states by their names. Nothing read back
//! from the file is trusted: a row that does not decode is an error naming the row.
//!
//! One difference from the memory backend, on writes the charging layer never makes: an
//! `Update` that moves a row onto another row's `(app, key)` breaks the unique index and fails
//! its batch, where the memory backend would accept it.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rusqlite::types::FromSql;
use rusqlite::{Connection, Row, TransactionBehavior, params};
use rust_decimal::Decimal;

use super::sql::{
    ACTIVATE_INVENTORY, ASSIGN_INVENTORY, DROP_LEASE, DUE_EVENTS, EVENT_BY_ID, EVENT_COLUMNS,
    IMPORT_INVENTORY, INSERT_OP, INSERT_RESOURCE, INVENTORY_BY_ID, INVENTORY_COLUMNS, OP_BY_ID,
    OP_BY_KEY, OPS_UNRESOLVED, RELEASE_INVENTORY, RES_BY_ID, RES_OPEN, RESERVE_INVENTORY,
    RESOURCE_BY_ID, RESOURCE_COLUMNS, SWAP_RESOURCE, TAKE_LEASE, UNASSIGN_INVENTORY, UPSERT_EVENT,
    UPSERT_RES, UPSERT_RESOURCE, headers_from_json, headers_json, inventory_where, op_columns,
    where_clause,
};
use super::{
    Backend, Begun, EventFilter, EventRow, EventState, InventoryFilter, InventoryRow,
    InventoryStatus, Lease, OpState, OperationFilter, OperationRow, ReservationRow,
    ReservationState, ResourceFilter, ResourceRow, StoreError, Write, Written,
};

/// The file inside the data directory.
pub const FILE_NAME: &str = "gateway.sqlite3";

/// The schema version this code writes (`PRAGMA user_version`). A file with a higher one was
/// written by a newer gateway and is refused.
pub const SCHEMA_VERSION: i64 = 5;

/// Marks the file as a gateway store (`PRAGMA application_id`): "CGW1".
const APPLICATION_ID: i64 = 0x4347_5731;

/// How long a statement waits for a lock held by another connection (a backup, an operator's
/// `sqlite3` shell) before the batch fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations: entry `n` takes a file from version `n` to `n + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // Version 1.
    r#"
    CREATE TABLE operations (
        seq            INTEGER PRIMARY KEY,   -- insertion order: listings, unresolved
        id             TEXT NOT NULL UNIQUE,
        app            TEXT NOT NULL,
        "key"          TEXT,                  -- idempotency key within the app
        kind           TEXT NOT NULL,
        request_hash   TEXT NOT NULL,
        parent         TEXT,
        reservation_id TEXT,
        session_id     TEXT NOT NULL,
        request_number INTEGER NOT NULL,
        subscriber     TEXT,
        amount         TEXT,                  -- decimal, exact
        currency       TEXT,
        reference_code TEXT,
        state          TEXT NOT NULL,         -- OpState::name
        result_code    INTEGER,
        request        TEXT NOT NULL,
        outcome        TEXT,
        created_ms     INTEGER NOT NULL,
        updated_ms     INTEGER NOT NULL
    ) STRICT;
    -- Key first: the idempotency check (app and key) and a dispute's look-up by reference
    -- (the key of the operation it names) both use it. Idempotency keys arrive in random
    -- order, so every insert dirties a random leaf page of this index: it is the one index
    -- on a random column (reference codes are looked up through it rather than through an
    -- index of their own, which would double that cost on every charge).
    CREATE UNIQUE INDEX operations_key_app ON operations ("key", app) WHERE "key" IS NOT NULL;
    CREATE INDEX operations_parent ON operations (parent) WHERE parent IS NOT NULL;
    CREATE INDEX operations_reservation_id ON operations (reservation_id)
        WHERE reservation_id IS NOT NULL;
    CREATE INDEX operations_session_id ON operations (session_id);
    CREATE INDEX operations_unresolved ON operations (seq)
        WHERE state IN ('pending', 'unknown');

    CREATE TABLE reservations (
        id                  TEXT PRIMARY KEY,
        app                 TEXT NOT NULL,
        session_id          TEXT NOT NULL,
        subscriber          TEXT NOT NULL,
        currency            TEXT NOT NULL,
        reserved            TEXT NOT NULL,    -- decimal, exact
        charged             TEXT NOT NULL,    -- decimal, exact
        last_request_number INTEGER NOT NULL,
        state               TEXT NOT NULL,    -- ReservationState::name
        expires_ms          INTEGER NOT NULL,
        created_ms          INTEGER NOT NULL,
        updated_ms          INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX reservations_open ON reservations (created_ms, id) WHERE state = 'open';
    "#,
    // Version 2: the REST resources the families keep (payments, refunds, top-ups).
    r#"
    CREATE TABLE resources (
        id          TEXT PRIMARY KEY,
        app         TEXT NOT NULL,
        kind        TEXT NOT NULL,
        state       TEXT NOT NULL,
        parent      TEXT,
        due_ms      INTEGER,
        body        TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX resources_app_kind ON resources (app, kind, created_ms);
    CREATE INDEX resources_parent ON resources (parent) WHERE parent IS NOT NULL;
    CREATE INDEX resources_due ON resources (due_ms) WHERE due_ms IS NOT NULL;
    "#,
    // Version 3: leases, so that gateway instances sharing a store leave each other's work
    // alone (an unresolved operation's, and named ones).
    r#"
    ALTER TABLE operations ADD COLUMN owner TEXT;
    ALTER TABLE operations ADD COLUMN lease_until_ms INTEGER;
    ALTER TABLE reservations ADD COLUMN pending TEXT;
    CREATE TABLE leases (
        name      TEXT PRIMARY KEY,
        owner     TEXT NOT NULL,
        until_ms  INTEGER NOT NULL
    ) STRICT;
    "#,
    // Version 4: the outbox, notifications written in the same transaction as the state
    // change they tell of, until they are delivered or given up.
    r#"
    CREATE TABLE events (
        seq            INTEGER PRIMARY KEY,   -- order first written: delivery order
        id             TEXT NOT NULL UNIQUE,
        app            TEXT NOT NULL,
        kind           TEXT NOT NULL,
        resource       TEXT,
        url            TEXT NOT NULL,
        headers        TEXT NOT NULL,         -- JSON: [[name, value], ...]
        content_type   TEXT NOT NULL,
        body           TEXT NOT NULL,
        state          TEXT NOT NULL,         -- EventState::name
        attempts       INTEGER NOT NULL,
        next_ms        INTEGER NOT NULL,
        last_error     TEXT,
        owner          TEXT,                  -- the delivery lease
        lease_until_ms INTEGER,
        created_ms     INTEGER NOT NULL,
        updated_ms     INTEGER NOT NULL,
        delivered_ms   INTEGER
    ) STRICT;
    -- Due events: the pending ones by time.
    CREATE INDEX events_due ON events (state, next_ms);
    -- An older pending event of the same resource and URL (the order of delivery), and the
    -- listing of a resource's events.
    CREATE INDEX events_resource ON events (resource, url, state, seq);
    CREATE INDEX events_app ON events (app, seq);
    "#,
    // Version 5: the resource inventory (TMF639: MSISDNs and ICCIDs), held and assigned by
    // conditional UPDATEs.
    r#"
    CREATE TABLE inventory (
        id             TEXT PRIMARY KEY,      -- msisdn-<digits>, iccid-<digits>
        category       TEXT NOT NULL,         -- MSISDN | ICCID
        value          TEXT NOT NULL,
        status         TEXT NOT NULL,         -- InventoryStatus::name
        holder         TEXT,                  -- the cart or order
        hold_until_ms  INTEGER,
        ported_in      INTEGER NOT NULL,      -- 0 | 1
        body           TEXT NOT NULL,         -- JSON: the imported characteristics
        created_ms     INTEGER NOT NULL,
        updated_ms     INTEGER NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX inventory_value ON inventory (category, value);
    CREATE INDEX inventory_status ON inventory (status, category, value);
    "#,
];

/// Takes an unresolved operation's lease (`?4`: now).
const CLAIM_OP: &str = "UPDATE operations SET owner = ?2, lease_until_ms = ?3 WHERE id = ?1 \
    AND state IN ('pending', 'unknown') \
    AND (owner IS NULL OR owner = ?2 OR lease_until_ms IS NULL OR lease_until_ms <= ?4)";

/// Takes a pending event's delivery lease (`?4`: now).
const CLAIM_EVENT: &str = "UPDATE events SET owner = ?2, lease_until_ms = ?3 WHERE id = ?1 \
    AND state = 'pending' \
    AND (owner IS NULL OR owner = ?2 OR lease_until_ms IS NULL OR lease_until_ms <= ?4)";

const RENEW_OPS: &str = "UPDATE operations SET lease_until_ms = ?2 \
    WHERE owner = ?1 AND state IN ('pending', 'unknown')";

/// A reservation replaced only if its last request number is still `?14`.
const STEP_RES: &str = "UPDATE reservations SET app = ?2, session_id = ?3, subscriber = ?4, \
    currency = ?5, reserved = ?6, charged = ?7, last_request_number = ?8, state = ?9, \
    expires_ms = ?10, created_ms = ?11, updated_ms = ?12, pending = ?13 \
    WHERE id = ?1 AND last_request_number = ?14";

// An update is two statements so that the common one (a new state, result, outcome) leaves
// the B-trees of the indexed columns alone: SQLite rewrites an index entry for every index
// whose columns appear in the SET list, whatever their values. The second statement moves the
// indexed columns only when one of them differs, and matches no row otherwise.
const UPDATE_OP: &str = "UPDATE operations SET kind = ?4, request_hash = ?5, parent = ?6, \
    request_number = ?9, subscriber = ?10, amount = ?11, currency = ?12, state = ?14, \
    result_code = ?15, request = ?16, outcome = ?17, created_ms = ?18, updated_ms = ?19, \
    owner = ?20, lease_until_ms = ?21 WHERE id = ?1";

/// Binds the first 13 of the 19 values.
const UPDATE_OP_INDEXED: &str = r#"UPDATE operations SET app = ?2, "key" = ?3,
    reservation_id = ?7, session_id = ?8, reference_code = ?13
    WHERE id = ?1 AND (app IS NOT ?2 OR "key" IS NOT ?3 OR reservation_id IS NOT ?7
        OR session_id IS NOT ?8 OR reference_code IS NOT ?13)"#;

/// The SQLite backend: one connection, owned by the store's writer thread.
#[derive(Debug)]
pub struct SqliteBackend {
    conn: Connection,
    path: PathBuf,
}

impl SqliteBackend {
    /// Opens (creating if needed) `dir/gateway.sqlite3`, creating `dir` too; creates or
    /// migrates the schema. Refuses a file whose schema is newer than this code, or that is
    /// not a gateway store. Blocking: call it at start-up, not on an async worker under load.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError(format!(
                "cannot create the data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(FILE_NAME);
        let existed = path.exists();
        let conn = Connection::open(&path)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        let mut me = Self { conn, path };
        me.configure()?;
        me.migrate()?;
        if !existed {
            // The new file's directory entry must survive a power cut as well as its content
            // (SQLite syncs the directory for the WAL it creates, not for the database).
            sync_dir(dir)?;
        }
        Ok(me)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        let what = what.to_string();
        move |e| StoreError(format!("{}: {what}: {e}", self.path.display()))
    }

    fn configure(&mut self) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(self.err("busy_timeout"))?;
        // WAL: a commit appends to one file (no rollback journal written and deleted per
        // transaction), readers never block the writer.
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(self.err("journal_mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError(format!(
                "{}: journal_mode WAL refused (got {mode}): the file system may not support it",
                self.path.display()
            )));
        }
        // FULL, not NORMAL: under WAL, NORMAL syncs the log only at checkpoints, so a batch
        // whose COMMIT has returned survives a crash of the process but can be lost in a power
        // cut or a kernel crash. FULL fsyncs the WAL at every commit: once `apply` returns the
        // batch is on the disk, which is what a 2xx promises. Group commit pays that one fsync
        // per batch, not per write.
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(self.err("synchronous"))?;
        // Cache pages of the hot B-trees (the indexes of recent rows): 16 MiB.
        self.conn
            .pragma_update(None, "cache_size", -16_384)
            .map_err(self.err("cache_size"))?;
        self.conn
            .pragma_update(None, "foreign_keys", false)
            .map_err(self.err("foreign_keys"))?;
        // One statement text per listing filter combination (16) plus the fixed ones.
        self.conn.set_prepared_statement_cache_capacity(64);
        Ok(())
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let app_id: i64 = self
            .conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(self.err("application_id"))?;
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.err("user_version"))?;
        if app_id != 0 && app_id != APPLICATION_ID {
            return Err(StoreError(format!(
                "{}: not a gateway store (application_id {app_id:#x})",
                self.path.display()
            )));
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError(format!(
                "{}: schema version {version} is newer than this gateway's ({SCHEMA_VERSION}): \
                 it was written by a newer release; run that release, or point store.data_dir \
                 elsewhere",
                self.path.display()
            )));
        }
        if version < 0 {
            return Err(StoreError(format!(
                "{}: invalid schema version {version}",
                self.path.display()
            )));
        }
        if version == 0 {
            let objects: i64 = self
                .conn
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                .map_err(self.err("schema"))?;
            if objects > 0 {
                return Err(StoreError(format!(
                    "{}: not a gateway store (it holds {objects} schema objects but no schema \
                     version)",
                    self.path.display()
                )));
            }
        }
        let mut v = version;
        while v < SCHEMA_VERSION {
            let step = usize::try_from(v)
                .ok()
                .and_then(|i| MIGRATIONS.get(i))
                .ok_or_else(|| StoreError(format!("no migration from schema version {v}")))?;
            let next = v + 1;
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Exclusive)
                .map_err(|e| StoreError(format!("schema migration to {next}: {e}")))?;
            // Another process may have migrated the file between the read above and this
            // transaction: then leave it alone.
            let current: i64 = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(|e| StoreError(format!("schema migration to {next}: {e}")))?;
            if current != v {
                return Err(StoreError(format!(
                    "{}: the schema version changed from {v} to {current} while opening",
                    self.path.display()
                )));
            }
            tx.execute_batch(step)
                .and_then(|()| tx.pragma_update(None, "application_id", APPLICATION_ID))
                .and_then(|()| tx.pragma_update(None, "user_version", next))
                .and_then(|()| tx.commit())
                .map_err(|e| {
                    StoreError(format!(
                        "{}: schema migration to {next}: {e}",
                        self.path.display()
                    ))
                })?;
            v = next;
        }
        Ok(())
    }

    fn apply_batch(&mut self, batch: &[Write]) -> Result<Vec<Written>, StoreError> {
        let path = &self.path;
        let sql = |what: &'static str| {
            move |e: rusqlite::Error| StoreError(format!("{}: {what}: {e}", path.display()))
        };
        // The conditional writes of the inventory: Won when the UPDATE matched its row.
        let conditional = |tx: &rusqlite::Transaction<'_>,
                           stmt: &str,
                           what: &'static str,
                           values: &[&dyn rusqlite::ToSql]| {
            tx.prepare_cached(stmt)
                .and_then(|mut s| s.execute(values))
                .map(|n| Written::Won(n > 0))
                .map_err(sql(what))
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("begin"))?;
        let mut out = Vec::with_capacity(batch.len());
        for w in batch {
            out.push(match w {
                Write::Begin(op) => Written::Begun(begin(&tx, op, path)?),
                Write::Update(op) => {
                    let bound = op_params(op);
                    let values = bound.as_slice();
                    let n = tx
                        .prepare_cached(UPDATE_OP)
                        .and_then(|mut s| s.execute(values.as_slice()))
                        .map_err(sql("update operation"))?;
                    if n == 0 {
                        return Err(StoreError(format!("no operation {}", op.id)));
                    }
                    tx.prepare_cached(UPDATE_OP_INDEXED)
                        .and_then(|mut s| s.execute(values.get(..13).unwrap_or_default()))
                        .map_err(sql("update operation"))?;
                    Written::Done
                }
                Write::Reservation(r) => {
                    let amounts = (r.reserved.to_string(), r.charged.to_string());
                    tx.prepare_cached(UPSERT_RES)
                        .and_then(|mut s| {
                            s.execute(params![
                                r.id,
                                r.app,
                                r.session_id,
                                r.subscriber,
                                r.currency,
                                amounts.0,
                                amounts.1,
                                r.last_request_number,
                                r.state.name(),
                                r.expires_ms,
                                r.created_ms,
                                r.updated_ms,
                                r.pending,
                            ])
                        })
                        .map_err(sql("put reservation"))?;
                    Written::Done
                }
                Write::Resource(r) => {
                    tx.prepare_cached(UPSERT_RESOURCE)
                        .and_then(|mut s| {
                            s.execute(params![
                                r.id,
                                r.app,
                                r.kind,
                                r.state,
                                r.parent,
                                r.due_ms,
                                r.body,
                                r.created_ms,
                                r.updated_ms,
                            ])
                        })
                        .map_err(sql("put resource"))?;
                    Written::Done
                }
                Write::PutResourceIf {
                    row: r,
                    expected_updated_ms,
                } => {
                    let columns = params![
                        r.id,
                        r.app,
                        r.kind,
                        r.state,
                        r.parent,
                        r.due_ms,
                        r.body,
                        r.created_ms,
                        r.updated_ms,
                    ];
                    match expected_updated_ms {
                        None => conditional(&tx, INSERT_RESOURCE, "insert resource", columns)?,
                        Some(t) => {
                            let mut values = columns.to_vec();
                            values.push(t);
                            conditional(&tx, SWAP_RESOURCE, "swap resource", &values)?
                        }
                    }
                }
                Write::Claim { id, lease, now_ms } => {
                    let n = tx
                        .prepare_cached(CLAIM_OP)
                        .and_then(|mut s| {
                            s.execute(params![id, lease.owner, lease.until_ms, now_ms])
                        })
                        .map_err(sql("claim operation"))?;
                    Written::Won(n > 0)
                }
                Write::Renew { owner, until_ms } => {
                    tx.prepare_cached(RENEW_OPS)
                        .and_then(|mut s| s.execute(params![owner, until_ms]))
                        .map_err(sql("renew leases"))?;
                    Written::Done
                }
                Write::Step { row: r, expected } => {
                    let amounts = (r.reserved.to_string(), r.charged.to_string());
                    let n = tx
                        .prepare_cached(STEP_RES)
                        .and_then(|mut s| {
                            s.execute(params![
                                r.id,
                                r.app,
                                r.session_id,
                                r.subscriber,
                                r.currency,
                                amounts.0,
                                amounts.1,
                                r.last_request_number,
                                r.state.name(),
                                r.expires_ms,
                                r.created_ms,
                                r.updated_ms,
                                r.pending,
                                expected,
                            ])
                        })
                        .map_err(sql("step reservation"))?;
                    Written::Won(n > 0)
                }
                Write::TakeLease {
                    name,
                    lease,
                    now_ms,
                } => {
                    let n = tx
                        .prepare_cached(TAKE_LEASE)
                        .and_then(|mut s| {
                            s.execute(params![name, lease.owner, lease.until_ms, now_ms])
                        })
                        .map_err(sql("take lease"))?;
                    Written::Won(n > 0)
                }
                Write::DropLease { name, owner } => {
                    tx.prepare_cached(DROP_LEASE)
                        .and_then(|mut s| s.execute(params![name, owner]))
                        .map_err(sql("drop lease"))?;
                    Written::Done
                }
                Write::Event(e) => {
                    let headers = headers_json(&e.headers);
                    tx.prepare_cached(UPSERT_EVENT)
                        .and_then(|mut s| {
                            s.execute(params![
                                e.id,
                                e.app,
                                e.kind,
                                e.resource,
                                e.url,
                                headers,
                                e.content_type,
                                e.body,
                                e.state.name(),
                                e.attempts,
                                e.next_ms,
                                e.last_error,
                                e.lease.as_ref().map(|l| l.owner.as_str()),
                                e.lease.as_ref().map(|l| l.until_ms),
                                e.created_ms,
                                e.updated_ms,
                                e.delivered_ms,
                            ])
                        })
                        .map_err(sql("put event"))?;
                    Written::Done
                }
                Write::ClaimEvent { id, lease, now_ms } => {
                    let n = tx
                        .prepare_cached(CLAIM_EVENT)
                        .and_then(|mut s| {
                            s.execute(params![id, lease.owner, lease.until_ms, now_ms])
                        })
                        .map_err(sql("claim event"))?;
                    Written::Won(n > 0)
                }
                Write::ImportInventory(r) => {
                    tx.prepare_cached(IMPORT_INVENTORY)
                        .and_then(|mut s| {
                            s.execute(params![
                                r.id,
                                r.category,
                                r.value,
                                r.status.name(),
                                r.ported_in,
                                r.body,
                                r.created_ms,
                                r.updated_ms,
                            ])
                        })
                        .map_err(sql("import inventory"))?;
                    Written::Done
                }
                Write::Reserve {
                    id,
                    holder,
                    until_ms,
                    now_ms,
                } => {
                    let values = params![holder, until_ms, now_ms, id];
                    conditional(&tx, RESERVE_INVENTORY, "reserve inventory", values)?
                }
                Write::Assign {
                    id,
                    holder,
                    owner,
                    now_ms,
                } => conditional(
                    &tx,
                    ASSIGN_INVENTORY,
                    "assign inventory",
                    params![now_ms, owner, id, holder],
                )?,
                Write::Release { id, holder, now_ms } => conditional(
                    &tx,
                    RELEASE_INVENTORY,
                    "release inventory",
                    params![now_ms, id, holder],
                )?,
                Write::Unassign { id, holder, now_ms } => {
                    let values = params![now_ms, id, holder];
                    conditional(&tx, UNASSIGN_INVENTORY, "unassign inventory", values)?
                }
                Write::Activate { id, holder, now_ms } => conditional(
                    &tx,
                    ACTIVATE_INVENTORY,
                    "activate inventory",
                    params![now_ms, holder, id],
                )?,
            });
        }
        tx.commit().map_err(sql("commit"))?;
        Ok(out)
    }

    fn query_ops(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<OperationRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.err("prepare"))?;
        let mut rows = stmt.query(params).map_err(self.err("query operations"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.err("read operations"))? {
            out.push(read_op(row, &self.path)?);
        }
        Ok(out)
    }

    fn query_reservations(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ReservationRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.err("prepare"))?;
        let mut rows = stmt.query(params).map_err(self.err("query reservations"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.err("read reservations"))? {
            out.push(read_reservation(row, &self.path)?);
        }
        Ok(out)
    }
}

impl Backend for SqliteBackend {
    fn apply(&mut self, batch: &[Write]) -> Result<Vec<Written>, StoreError> {
        let result = self.apply_batch(batch);
        if result.is_err() && !self.conn.is_autocommit() {
            // The transaction's drop rolls back, ignoring a failure; make sure the connection
            // is out of it, or every later batch would fail to begin.
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "store rollback failed");
            }
        }
        result
    }

    /// A clean stop: `PRAGMA wal_checkpoint(TRUNCATE)` copies every page of the write-ahead
    /// log into the database file and truncates the log, so that `gateway.sqlite3` alone holds
    /// every record (a copy of it is a complete backup); SQLite removes the empty `-wal` and
    /// the `-shm` files when this, the last connection, closes right after. Another
    /// connection reading the file (an operator's `sqlite3`) can keep the checkpoint from
    /// finishing within the busy timeout: that is an error, and the log stays (nothing is lost:
    /// the next open reads it).
    fn close(&mut self) -> Result<(), StoreError> {
        let (busy, log, moved): (i64, i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(self.err("wal_checkpoint"))?;
        if busy != 0 {
            return Err(StoreError(format!(
                "{}: checkpoint incomplete ({moved} of {log} log frames copied): another \
                 connection holds the database; the write-ahead log is kept",
                self.path.display()
            )));
        }
        Ok(())
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
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(5);
        let state = f.state.map(OpState::name);
        // An operation recorded under a reference code is keyed by it, or is a leg (or a
        // compensation) of one that is: found through the key and the parent indexes.
        if let Some(r) = &f.reference_code {
            params.push(r);
            let n = params.len();
            sql.push_str(&format!(
                " WHERE reference_code = ?{n} AND (\"key\" = ?{n} OR parent IN \
                 (SELECT id FROM operations WHERE \"key\" = ?{n}))"
            ));
        }
        let filters: [(&str, Option<&dyn rusqlite::ToSql>); 3] = [
            ("app", f.app.as_ref().map(|v| v as &dyn rusqlite::ToSql)),
            (
                "reservation_id",
                f.reservation_id.as_ref().map(|v| v as &dyn rusqlite::ToSql),
            ),
            ("state", state.as_ref().map(|v| v as &dyn rusqlite::ToSql)),
        ];
        for (column, value) in filters {
            if let Some(v) = value {
                sql.push_str(if params.is_empty() {
                    " WHERE "
                } else {
                    " AND "
                });
                params.push(v);
                sql.push_str(&format!("{column} = ?{}", params.len()));
            }
        }
        // A negative LIMIT is no limit.
        let limit = match f.limit {
            0 => -1,
            n => i64::try_from(n).unwrap_or(-1),
        };
        params.push(&limit);
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ?{}", params.len()));
        self.query_ops(&sql, &params)
    }

    fn event(&mut self, id: &str) -> Result<Option<EventRow>, StoreError> {
        Ok(self.query_events(EVENT_BY_ID, &[&id])?.pop())
    }

    fn events(&mut self, f: &EventFilter) -> Result<(Vec<EventRow>, usize), StoreError> {
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(4);
        let state = f.state.map(EventState::name);
        let clause = where_clause(
            [
                ("app = ?", f.app.as_ref().map(|v| v as &dyn rusqlite::ToSql)),
                (
                    "state = ?",
                    state.as_ref().map(|v| v as &dyn rusqlite::ToSql),
                ),
                (
                    "resource = ?",
                    f.resource.as_ref().map(|v| v as &dyn rusqlite::ToSql),
                ),
            ],
            &mut params,
        );
        let total: i64 = self
            .conn
            .prepare_cached(&format!("SELECT count(*) FROM events{clause}"))
            .and_then(|mut s| s.query_row(params.as_slice(), |r| r.get(0)))
            .map_err(self.err("count events"))?;
        // A negative LIMIT is no limit.
        let limit = match f.limit {
            0 => -1,
            n => i64::try_from(n).unwrap_or(-1),
        };
        params.push(&limit);
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events{clause} ORDER BY seq DESC LIMIT ?{}",
            params.len()
        );
        let rows = self.query_events(&sql, &params)?;
        Ok((rows, usize::try_from(total).unwrap_or(0)))
    }

    fn due_events(&mut self, now_ms: i64, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_events(DUE_EVENTS, &[&now_ms, &limit])
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
        Ok(self.query_resources(RESOURCE_BY_ID, &[&id])?.pop())
    }

    fn inventory(&mut self, id: &str) -> Result<Option<InventoryRow>, StoreError> {
        Ok(self.query_inventory(INVENTORY_BY_ID, &[&id])?.pop())
    }

    fn inventory_list(
        &mut self,
        f: &InventoryFilter,
    ) -> Result<(Vec<InventoryRow>, usize), StoreError> {
        let (clause, texts, now) = inventory_where(f, '?');
        let mut params: Vec<&dyn rusqlite::ToSql> =
            texts.iter().map(|t| t as &dyn rusqlite::ToSql).collect();
        if let Some(now) = &now {
            params.push(now);
        }
        let total: i64 = self
            .conn
            .prepare_cached(&format!("SELECT count(*) FROM inventory{clause}"))
            .and_then(|mut s| s.query_row(params.as_slice(), |r| r.get(0)))
            .map_err(self.err("count inventory"))?;
        let limit = match f.limit {
            0 => -1,
            n => i64::try_from(n).unwrap_or(-1),
        };
        let offset = i64::try_from(f.offset).unwrap_or(i64::MAX);
        params.push(&limit);
        let l = params.len();
        params.push(&offset);
        let sql = format!(
            "SELECT {INVENTORY_COLUMNS} FROM inventory{clause} \
             ORDER BY category, value LIMIT ?{l} OFFSET ?{}",
            l + 1
        );
        let rows = self.query_inventory(&sql, &params)?;
        Ok((rows, usize::try_from(total).unwrap_or(0)))
    }

    fn resources(&mut self, f: &ResourceFilter) -> Result<(Vec<ResourceRow>, usize), StoreError> {
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(9);
        let filters: [(&str, Option<&dyn rusqlite::ToSql>); 7] = [
            ("app = ?", f.app.as_ref().map(|v| v as &dyn rusqlite::ToSql)),
            (
                "kind = ?",
                f.kind.as_ref().map(|v| v as &dyn rusqlite::ToSql),
            ),
            (
                "state = ?",
                f.state.as_ref().map(|v| v as &dyn rusqlite::ToSql),
            ),
            (
                "parent = ?",
                f.parent.as_ref().map(|v| v as &dyn rusqlite::ToSql),
            ),
            (
                "due_ms <= ?",
                f.due_before_ms.as_ref().map(|v| v as &dyn rusqlite::ToSql),
            ),
            (
                "created_ms >= ?",
                f.created_from_ms
                    .as_ref()
                    .map(|v| v as &dyn rusqlite::ToSql),
            ),
            (
                "created_ms <= ?",
                f.created_to_ms.as_ref().map(|v| v as &dyn rusqlite::ToSql),
            ),
        ];
        let clause = where_clause(filters, &mut params);
        let total: i64 = self
            .conn
            .prepare_cached(&format!("SELECT count(*) FROM resources{clause}"))
            .and_then(|mut s| s.query_row(params.as_slice(), |r| r.get(0)))
            .map_err(self.err("count resources"))?;
        let limit = match f.limit {
            0 => -1,
            n => i64::try_from(n).unwrap_or(-1),
        };
        let offset = i64::try_from(f.offset).unwrap_or(i64::MAX);
        params.push(&limit);
        let l = params.len();
        params.push(&offset);
        let order = if f.ascending { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources{clause} \
             ORDER BY created_ms {order}, id {order} LIMIT ?{l} OFFSET ?{}",
            l + 1
        );
        let rows = self.query_resources(&sql, &params)?;
        Ok((rows, usize::try_from(total).unwrap_or(0)))
    }
}

impl SqliteBackend {
    /// The rows `sql` gives, each read by `read` (which names the row that does not decode).
    fn query_rows<T>(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
        table: &str,
        read: fn(&Row<'_>, &Path) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.err("prepare"))?;
        let mut rows = stmt
            .query(params)
            .map_err(self.err(&format!("query {table}")))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.err(&format!("read {table}")))? {
            out.push(read(row, &self.path)?);
        }
        Ok(out)
    }

    fn query_inventory(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<InventoryRow>, StoreError> {
        self.query_rows(sql, params, "inventory", read_inventory)
    }

    fn query_events(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<EventRow>, StoreError> {
        self.query_rows(sql, params, "events", read_event)
    }

    fn query_resources(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ResourceRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.err("prepare"))?;
        let mut rows = stmt.query(params).map_err(self.err("query resources"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.err("read resources"))? {
            let id: Option<String> = row.get(0).ok();
            let which = || match &id {
                Some(id) => format!("{}: resource {id:?}", self.path.display()),
                None => format!("{}: a resource row", self.path.display()),
            };
            out.push(ResourceRow {
                id: column(row, 0, "id", &which)?,
                app: column(row, 1, "app", &which)?,
                kind: column(row, 2, "kind", &which)?,
                state: column(row, 3, "state", &which)?,
                parent: column(row, 4, "parent", &which)?,
                due_ms: column(row, 5, "due_ms", &which)?,
                body: column(row, 6, "body", &which)?,
                created_ms: column(row, 7, "created_ms", &which)?,
                updated_ms: column(row, 8, "updated_ms", &which)?,
            });
        }
        Ok(out)
    }
}

/// Begin: insert; on an `(app, key)` conflict keep the existing row unless it is retryable,
/// in which case it gives way.
fn begin(
    tx: &rusqlite::Transaction<'_>,
    op: &OperationRow,
    path: &Path,
) -> Result<Begun, StoreError> {
    let sql = |what: &'static str| {
        move |e: rusqlite::Error| StoreError(format!("{}: {what}: {e}", path.display()))
    };
    if let Some(key) = &op.key {
        let mut stmt = tx.prepare_cached(OP_BY_KEY).map_err(sql("prepare"))?;
        let mut rows = stmt.query(params![op.app, key]).map_err(sql("begin"))?;
        let existing = match rows.next().map_err(sql("begin"))? {
            Some(row) => Some(read_op(row, path)?),
            None => None,
        };
        drop(rows);
        if let Some(existing) = existing {
            if existing.state != OpState::Retryable {
                return Ok(Begun::Existing(Box::new(existing)));
            }
            tx.prepare_cached("DELETE FROM operations WHERE id = ?1")
                .and_then(|mut s| s.execute([&existing.id]))
                .map_err(sql("replace retryable operation"))?;
        }
    }
    tx.prepare_cached(INSERT_OP)
        .and_then(|mut s| s.execute(op_params(op).as_slice()))
        .map_err(sql("insert operation"))?;
    Ok(Begun::Inserted)
}

/// The 21 bound values of [`INSERT_OP`] and [`UPDATE_OP`] (the first 13 of them for
/// [`UPDATE_OP_INDEXED`]), in their order.
fn op_params(op: &OperationRow) -> OpParams<'_> {
    OpParams {
        op,
        amount: op.amount.map(|a| a.to_string()),
        state: op.state.name(),
        owner: op.lease.as_ref().map(|l| l.owner.as_str()),
        lease_until_ms: op.lease.as_ref().map(|l| l.until_ms),
    }
}

struct OpParams<'a> {
    op: &'a OperationRow,
    amount: Option<String>,
    state: &'static str,
    owner: Option<&'a str>,
    lease_until_ms: Option<i64>,
}

impl OpParams<'_> {
    fn as_slice(&self) -> [&dyn rusqlite::ToSql; 21] {
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
            &op.request_number,
            &op.subscriber,
            &self.amount,
            &op.currency,
            &op.reference_code,
            &self.state,
            &op.result_code,
            &op.request,
            &op.outcome,
            &op.created_ms,
            &op.updated_ms,
            &self.owner,
            &self.lease_until_ms,
        ]
    }
}

/// Reads one column, naming the row and the column when it does not decode.
fn column<T: FromSql>(
    row: &Row<'_>,
    i: usize,
    name: &str,
    which: &dyn Fn() -> String,
) -> Result<T, StoreError> {
    row.get(i)
        .map_err(|e| StoreError(format!("{}: column {name}: {e}", which())))
}

fn decimal(s: &str, name: &str, which: &dyn Fn() -> String) -> Result<Decimal, StoreError> {
    Decimal::from_str(s).map_err(|e| {
        StoreError(format!(
            "{}: column {name}: {s:?} is not a decimal: {e}",
            which()
        ))
    })
}

fn read_op(row: &Row<'_>, path: &Path) -> Result<OperationRow, StoreError> {
    let seq: Option<i64> = row.get(0).ok();
    let id: Option<String> = row.get(1).ok();
    let which = || match (&seq, &id) {
        (_, Some(id)) => format!("{}: operation {id:?}", path.display()),
        (Some(seq), None) => format!("{}: operation at seq {seq}", path.display()),
        (None, None) => format!("{}: an operation row", path.display()),
    };
    let id = id
        .clone()
        .ok_or_else(|| StoreError(format!("{}: column id is not text", which())))?;
    let amount: Option<String> = column(row, 11, "amount", &which)?;
    let state: String = column(row, 14, "state", &which)?;
    Ok(OperationRow {
        id,
        app: column(row, 2, "app", &which)?,
        key: column(row, 3, "key", &which)?,
        kind: column(row, 4, "kind", &which)?,
        request_hash: column(row, 5, "request_hash", &which)?,
        parent: column(row, 6, "parent", &which)?,
        reservation_id: column(row, 7, "reservation_id", &which)?,
        session_id: column(row, 8, "session_id", &which)?,
        request_number: column(row, 9, "request_number", &which)?,
        subscriber: column(row, 10, "subscriber", &which)?,
        amount: amount.map(|a| decimal(&a, "amount", &which)).transpose()?,
        currency: column(row, 12, "currency", &which)?,
        reference_code: column(row, 13, "reference_code", &which)?,
        state: OpState::from_name(&state).ok_or_else(|| {
            StoreError(format!(
                "{}: column state: unknown state {state:?}",
                which()
            ))
        })?,
        result_code: column(row, 15, "result_code", &which)?,
        request: column(row, 16, "request", &which)?,
        outcome: column(row, 17, "outcome", &which)?,
        created_ms: column(row, 18, "created_ms", &which)?,
        updated_ms: column(row, 19, "updated_ms", &which)?,
        lease: lease(
            column(row, 20, "owner", &which)?,
            column(row, 21, "lease_until_ms", &which)?,
        ),
    })
}

/// The lease of an operation or event row, from its two columns.
fn lease(owner: Option<String>, until_ms: Option<i64>) -> Option<Lease> {
    Some(Lease {
        owner: owner?,
        until_ms: until_ms.unwrap_or(0),
    })
}

fn read_reservation(row: &Row<'_>, path: &Path) -> Result<ReservationRow, StoreError> {
    let id: Option<String> = row.get(0).ok();
    let which = || match &id {
        Some(id) => format!("{}: reservation {id:?}", path.display()),
        None => format!("{}: a reservation row", path.display()),
    };
    let id = id
        .clone()
        .ok_or_else(|| StoreError(format!("{}: column id is not text", which())))?;
    let reserved: String = column(row, 5, "reserved", &which)?;
    let charged: String = column(row, 6, "charged", &which)?;
    let state: String = column(row, 8, "state", &which)?;
    Ok(ReservationRow {
        id,
        app: column(row, 1, "app", &which)?,
        session_id: column(row, 2, "session_id", &which)?,
        subscriber: column(row, 3, "subscriber", &which)?,
        currency: column(row, 4, "currency", &which)?,
        reserved: decimal(&reserved, "reserved", &which)?,
        charged: decimal(&charged, "charged", &which)?,
        last_request_number: column(row, 7, "last_request_number", &which)?,
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

fn read_event(row: &Row<'_>, path: &Path) -> Result<EventRow, StoreError> {
    let id: Option<String> = row.get(0).ok();
    let which = || match &id {
        Some(id) => format!("{}: event {id:?}", path.display()),
        None => format!("{}: an event row", path.display()),
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
        attempts: column(row, 9, "attempts", &which)?,
        next_ms: column(row, 10, "next_ms", &which)?,
        last_error: column(row, 11, "last_error", &which)?,
        lease: lease(
            column(row, 12, "owner", &which)?,
            column(row, 13, "lease_until_ms", &which)?,
        ),
        created_ms: column(row, 14, "created_ms", &which)?,
        updated_ms: column(row, 15, "updated_ms", &which)?,
        delivered_ms: column(row, 16, "delivered_ms", &which)?,
    })
}

fn read_inventory(row: &Row<'_>, path: &Path) -> Result<InventoryRow, StoreError> {
    let id: Option<String> = row.get(0).ok();
    let which = || match &id {
        Some(id) => format!("{}: inventory resource {id:?}", path.display()),
        None => format!("{}: an inventory row", path.display()),
    };
    let status: String = column(row, 3, "status", &which)?;
    let ported_in: i64 = column(row, 6, "ported_in", &which)?;
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
        ported_in: match ported_in {
            0 => false,
            1 => true,
            n => {
                return Err(StoreError(format!(
                    "{}: column ported_in: {n} is not 0 or 1",
                    which()
                )));
            }
        },
        body: column(row, 7, "body", &which)?,
        created_ms: column(row, 8, "created_ms", &which)?,
        updated_ms: column(row, 9, "updated_ms", &which)?,
    })
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError(format!("cannot sync {}: {e}", dir.display())))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::conformance;
    use crate::store::{Store, StoreSettings};

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "cgw-store-{tag}-{}-{n}-{}",
                std::process::id(),
                super::super::now_ms()
            ));
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn conformance() {
        let dir = TempDir::new("conformance");
        let mut b = SqliteBackend::open(&dir.0).unwrap();
        assert_eq!(b.path(), dir.0.join(FILE_NAME));
        conformance::run(&mut b);
        conformance::leases(&mut b);
        conformance::events(&mut b);
    }

    #[test]
    fn inventory_conformance() {
        let dir = TempDir::new("inventory");
        conformance::inventory(&mut SqliteBackend::open(&dir.0).unwrap());
    }

    #[test]
    fn conditional_resources_conformance() {
        let dir = TempDir::new("conditional");
        conformance::conditional_resources(&mut SqliteBackend::open(&dir.0).unwrap());
    }

    /// 100 writers through two stores on one file: one claim, no increment lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conditional_race_between_two_connections() {
        let dir = TempDir::new("conditional-race");
        let settings = || StoreSettings {
            max_batch: 64,
            ..StoreSettings::default()
        };
        let a = Store::start(SqliteBackend::open(&dir.0).unwrap(), "sqlite", settings()).unwrap();
        let b = Store::start(SqliteBackend::open(&dir.0).unwrap(), "sqlite", settings()).unwrap();
        conformance::conditional_race(vec![a, b], 100).await;
    }

    /// 300 holders racing for ten numbers through two stores (two connections, as two
    /// gateway processes would have) on one file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inventory_race_between_two_connections() {
        let dir = TempDir::new("inventory-race");
        let settings = || StoreSettings {
            max_batch: 64,
            ..StoreSettings::default()
        };
        let a = Store::start(SqliteBackend::open(&dir.0).unwrap(), "sqlite", settings()).unwrap();
        let b = Store::start(SqliteBackend::open(&dir.0).unwrap(), "sqlite", settings()).unwrap();
        conformance::inventory_race(vec![a, b], 300).await;
    }

    #[test]
    fn a_corrupt_inventory_row_is_an_error_naming_it() {
        let dir = TempDir::new("corrupt-inventory");
        let mut b = SqliteBackend::open(&dir.0).unwrap();
        b.apply(&[
            Write::ImportInventory(conformance::number("MSISDN", "34600000001", false)),
            Write::ImportInventory(conformance::number("MSISDN", "34600000002", false)),
        ])
        .unwrap();
        b.conn
            .execute_batch(
                "UPDATE inventory SET status = 'lost?' WHERE id = 'msisdn-34600000001';
                 UPDATE inventory SET ported_in = 7 WHERE id = 'msisdn-34600000002';",
            )
            .unwrap();
        let err = b.inventory("msisdn-34600000001").unwrap_err();
        assert!(
            err.0.contains("\"msisdn-34600000001\"") && err.0.contains("lost?"),
            "{err}"
        );
        let err = b.inventory("msisdn-34600000002").unwrap_err();
        assert!(
            err.0.contains("\"msisdn-34600000002\"") && err.0.contains("ported_in"),
            "{err}"
        );
        assert!(b.inventory_list(&InventoryFilter::default()).is_err());
    }

    #[test]
    fn pragmas_and_schema_version() {
        let dir = TempDir::new("pragmas");
        let b = SqliteBackend::open(&dir.0).unwrap();
        let q = |name: &str| -> String {
            b.conn
                .pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| format!("{v:?}"))
                .unwrap()
        };
        assert_eq!(q("journal_mode"), "Text(\"wal\")");
        // 2 = FULL.
        assert_eq!(q("synchronous"), "Integer(2)");
        assert_eq!(q("user_version"), format!("Integer({SCHEMA_VERSION})"));
        assert_eq!(q("application_id"), format!("Integer({APPLICATION_ID})"));
        assert_eq!(q("busy_timeout"), "Integer(5000)");
        // Amounts are TEXT columns (STRICT tables): never REAL.
        let kinds: Vec<(String, String)> = b
            .conn
            .prepare(
                "SELECT name, type FROM pragma_table_info('operations') WHERE name = 'amount' \
                 UNION ALL SELECT name, type FROM pragma_table_info('reservations') \
                 WHERE name IN ('reserved', 'charged')",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kinds.len(), 3);
        assert!(kinds.iter().all(|(_, t)| t == "TEXT"), "{kinds:?}");
        // The unresolved query is served by its partial index.
        let plan: Vec<String> = b
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {OPS_UNRESOLVED}"))
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("operations_unresolved")),
            "{plan:?}"
        );
    }

    #[test]
    fn survives_reopen_exactly() {
        let dir = TempDir::new("reopen");
        let b = conformance::survives_reopen(|| SqliteBackend::open(&dir.0).unwrap());
        // Decimals are stored as their text, scale included.
        let stored: String = b
            .conn
            .query_row("SELECT amount FROM operations WHERE id = 'op-c'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, "0.10");
    }

    #[test]
    fn events_survive_reopen() {
        let dir = TempDir::new("reopen-events");
        let b = conformance::events_survive_reopen(|| SqliteBackend::open(&dir.0).unwrap());
        // Headers are JSON text, a list of [name, value] pairs.
        let stored: String = b
            .conn
            .query_row("SELECT headers FROM events WHERE id = 'ev-a'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            stored,
            r#"[["Authorization","Bearer t0kén \" ' ;"],["X-Trace","[1, 2]"]]"#
        );
    }

    #[test]
    fn due_events_use_their_indexes() {
        let dir = TempDir::new("due-plan");
        let b = SqliteBackend::open(&dir.0).unwrap();
        let plan: Vec<String> = b
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {DUE_EVENTS}"))
            .unwrap()
            .query_map([0i64, 10i64], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|p| p.contains("events_due")), "{plan:?}");
        assert!(
            plan.iter().any(|p| p.contains("events_resource")),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn survives_reopen_through_the_store() {
        let dir = TempDir::new("reopen-store");
        let cfg = crate::config::StoreConfig {
            backend: "sqlite".into(),
            data_dir: dir.0.join("nested").join("data"),
            url: String::new(),
            max_batch: 8,
        };
        let written = {
            let store = Store::open(&cfg).unwrap();
            assert_eq!(store.backend_name(), "sqlite");
            conformance::write_through_store(&store).await
        };
        // Every write above was acknowledged, so it is in the file whatever the old writer
        // thread is doing now.
        let mut b = SqliteBackend::open(&cfg.data_dir).unwrap();
        conformance::check_written(&mut b, &written);
    }

    #[tokio::test]
    async fn a_clean_close_leaves_no_write_ahead_log_and_keeps_every_record() {
        let dir = TempDir::new("close");
        let cfg = crate::config::StoreConfig {
            backend: "sqlite".into(),
            data_dir: dir.0.clone(),
            url: String::new(),
            max_batch: 8,
        };
        let wal = dir.0.join(format!("{FILE_NAME}-wal"));
        let wal_bytes = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let store = Store::open(&cfg).unwrap();
        let written = conformance::write_through_store(&store).await;
        // The committed batches are in the log, not yet in the database file.
        assert!(wal_bytes() > 0, "nothing in {}", wal.display());
        store.close().await.unwrap();
        assert_eq!(wal_bytes(), 0, "{} left with content", wal.display());
        // The store is stopped: every handle is refused from now on.
        let after = store.clone().operation("op-1").await.unwrap_err();
        assert!(after.0.contains("stopped"), "{after}");
        // The database file alone holds everything.
        let mut b = SqliteBackend::open(&dir.0).unwrap();
        conformance::check_written(&mut b, &written);
        assert_eq!(b.reservation("res-1").unwrap().unwrap().id, "res-1");
    }

    #[test]
    fn a_failing_batch_leaves_nothing() {
        let dir = TempDir::new("rollback");
        conformance::failing_batch_leaves_nothing(
            SqliteBackend::open(&dir.0).unwrap(),
            |b| assert!(b.conn.is_autocommit(), "no transaction left open"),
            |b| {
                drop(b);
                SqliteBackend::open(&dir.0).unwrap()
            },
        );
    }

    #[test]
    fn an_update_moves_the_indexed_columns() {
        let dir = TempDir::new("update-indexed");
        conformance::update_moves_indexed_columns(&mut SqliteBackend::open(&dir.0).unwrap());
    }

    #[test]
    fn same_key_twice_in_one_batch() {
        let dir = TempDir::new("same-batch");
        conformance::same_key_twice_in_one_batch(&mut SqliteBackend::open(&dir.0).unwrap());
    }

    #[test]
    fn order_within_a_batch() {
        let dir = TempDir::new("batch-order");
        conformance::order_within_a_batch(&mut SqliteBackend::open(&dir.0).unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_all_answered_one_row_per_key() {
        let dir = TempDir::new("concurrent");
        let backend = SqliteBackend::open(&dir.0).unwrap();
        let settings = StoreSettings {
            max_batch: 64,
            ..StoreSettings::default()
        };
        conformance::concurrent_callers(Store::start(backend, "sqlite", settings).unwrap()).await;
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = TempDir::new("newer");
        drop(SqliteBackend::open(&dir.0).unwrap());
        let conn = Connection::open(dir.0.join(FILE_NAME)).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = SqliteBackend::open(&dir.0).unwrap_err();
        assert!(err.0.contains("newer"), "{err}");
        assert!(
            err.0
                .contains(&format!("schema version {}", SCHEMA_VERSION + 1))
        );
    }

    #[test]
    fn a_version_1_file_is_migrated_and_keeps_its_rows() {
        let dir = TempDir::new("v1");
        std::fs::create_dir_all(&dir.0).unwrap();
        {
            // A file as version 1 wrote it, with one operation in it.
            let conn = Connection::open(dir.0.join(FILE_NAME)).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO operations (id, app, kind, request_hash, session_id, \
                 request_number, state, request, created_ms, updated_ms) \
                 VALUES ('op-old', 'app', 'charge', 'h', 's', 0, 'succeeded', '{}', 1, 1)",
                [],
            )
            .unwrap();
        }
        let mut b = SqliteBackend::open(&dir.0).unwrap();
        assert_eq!(b.operation("op-old").unwrap().unwrap().kind, "charge");
        let r = conformance::resource("pay-1", "camara.payment", "succeeded", 1);
        b.apply(&[Write::Resource(r.clone())]).unwrap();
        assert_eq!(b.resource("pay-1").unwrap(), Some(r));
        let version: i64 = b
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// A file as version 3 (before the outbox) wrote it is migrated: it keeps its rows and
    /// takes events.
    #[test]
    fn a_version_3_file_is_migrated_and_takes_events() {
        let dir = TempDir::new("v3");
        std::fs::create_dir_all(&dir.0).unwrap();
        {
            let conn = Connection::open(dir.0.join(FILE_NAME)).unwrap();
            for step in &MIGRATIONS[..3] {
                conn.execute_batch(step).unwrap();
            }
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 3).unwrap();
            conn.execute(
                "INSERT INTO operations (id, app, kind, request_hash, session_id, \
                 request_number, state, request, created_ms, updated_ms, owner, lease_until_ms) \
                 VALUES ('op-old', 'app', 'charge', 'h', 's', 0, 'unknown', '{}', 1, 1, 'gw1', 9)",
                [],
            )
            .unwrap();
        }
        let mut b = SqliteBackend::open(&dir.0).unwrap();
        let old = b.operation("op-old").unwrap().unwrap();
        assert_eq!(old.lease.map(|l| l.owner), Some("gw1".to_string()));
        let e = conformance::event("ev-1", Some("pay-1"), "https://a.example/hook", 1);
        b.apply(&[Write::Event(e.clone())]).unwrap();
        assert_eq!(b.event("ev-1").unwrap(), Some(e.clone()));
        assert_eq!(b.due_events(1, 10).unwrap(), vec![e]);
        let version: i64 = b
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// A file as version 4 (before the inventory) wrote it is migrated: it keeps its events
    /// and takes inventory rows.
    #[test]
    fn a_version_4_file_is_migrated_and_takes_inventory() {
        let dir = TempDir::new("v4");
        std::fs::create_dir_all(&dir.0).unwrap();
        let e = conformance::event("ev-1", Some("pay-1"), "https://a.example/hook", 1);
        {
            let mut b = SqliteBackend::open(&dir.0).unwrap();
            b.apply(&[Write::Event(e.clone())]).unwrap();
            b.conn
                .execute_batch("DROP TABLE inventory; PRAGMA user_version = 4;")
                .unwrap();
        }
        let mut b = SqliteBackend::open(&dir.0).unwrap();
        assert_eq!(b.event("ev-1").unwrap(), Some(e));
        let n = conformance::number("MSISDN", "34600000001", false);
        b.apply(&[Write::ImportInventory(n.clone())]).unwrap();
        assert_eq!(b.inventory(&n.id).unwrap(), Some(n));
        let version: i64 = b
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_corrupt_event_is_an_error_naming_it() {
        let dir = TempDir::new("corrupt-event");
        let mut b = SqliteBackend::open(&dir.0).unwrap();
        let url = "https://a.example/hook";
        b.apply(&[
            Write::Event(conformance::event("bad-headers", None, url, 1)),
            Write::Event(conformance::event("bad-state", None, url, 2)),
            Write::Event(conformance::event("bad-attempts", None, url, 3)),
        ])
        .unwrap();
        b.conn
            .execute_batch(
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

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = TempDir::new("foreign");
        std::fs::create_dir_all(&dir.0).unwrap();
        let conn = Connection::open(dir.0.join(FILE_NAME)).unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        drop(conn);
        let err = SqliteBackend::open(&dir.0).unwrap_err();
        assert!(err.0.contains("not a gateway store"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = TempDir::new("garbage");
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(dir.0.join(FILE_NAME), vec![0x5a_u8; 8192]).unwrap();
        let err = SqliteBackend::open(&dir.0).unwrap_err();
        assert!(err.0.contains(FILE_NAME), "{err}");
    }

    #[test]
    fn a_corrupt_row_is_an_error_naming_it() {
        let dir = TempDir::new("corrupt");
        conformance::corrupt_rows(&mut SqliteBackend::open(&dir.0).unwrap(), |b| {
            b.conn
                .execute_batch(
                    "UPDATE operations SET amount = '4,99' WHERE id = 'bad-amount';
                     UPDATE operations SET state = 'charged?' WHERE id = 'bad-state';
                     UPDATE operations SET request_number = -1 WHERE id = 'good';
                     UPDATE reservations SET charged = 'NaN' WHERE id = 'r1';",
                )
                .unwrap()
        });
    }

    #[test]
    fn open_picks_the_configured_backend() {
        let cfg = crate::config::StoreConfig {
            backend: "memory".into(),
            data_dir: PathBuf::from("/nonexistent/never-created"),
            url: String::new(),
            max_batch: 1,
        };
        let store = Store::open(&cfg).unwrap();
        assert_eq!(store.backend_name(), "memory");
        let cfg = crate::config::StoreConfig {
            backend: "postgres".into(),
            ..cfg
        };
        let err = Store::open(&cfg).unwrap_err();
        assert!(err.0.contains("postgres"), "{err}");
    }
}
