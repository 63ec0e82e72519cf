//! SQL text both database backends share: the column lists and the statements that read
//! the one dialect both speak. Placeholders are `$n`: PostgreSQL's own, and to SQLite a named
//! parameter numbered in order of first appearance, which in each statement here is `n`
//! (so values bind by position in either).

macro_rules! op_columns {
    () => {
        r#"seq, id, app, "key", kind, request_hash, parent, reservation_id, session_id,
        request_number, subscriber, amount, currency, reference_code, state, result_code,
        request, outcome, created_ms, updated_ms, owner, lease_until_ms"#
    };
}

macro_rules! res_columns {
    () => {
        "id, app, session_id, subscriber, currency, reserved, charged, last_request_number, \
        state, expires_ms, created_ms, updated_ms, pending"
    };
}

pub(super) const OP_BY_ID: &str =
    concat!("SELECT ", op_columns!(), " FROM operations WHERE id = $1");

pub(super) const OP_BY_KEY: &str = concat!(
    "SELECT ",
    op_columns!(),
    r#" FROM operations WHERE app = $1 AND "key" = $2"#
);

// The WHERE clause is the partial index's own, so that the index serves the query.
pub(super) const OPS_UNRESOLVED: &str = concat!(
    "SELECT ",
    op_columns!(),
    " FROM operations WHERE state IN ('pending', 'unknown') ORDER BY seq"
);

pub(super) const RES_BY_ID: &str = concat!(
    "SELECT ",
    res_columns!(),
    " FROM reservations WHERE id = $1"
);

pub(super) const RES_OPEN: &str = concat!(
    "SELECT ",
    res_columns!(),
    " FROM reservations WHERE state = 'open' ORDER BY created_ms, id"
);

pub(super) const INSERT_OP: &str = r#"INSERT INTO operations (id, app, "key", kind, request_hash, parent,
    reservation_id, session_id, request_number, subscriber, amount, currency, reference_code,
    state, result_code, request, outcome, created_ms, updated_ms, owner, lease_until_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20, $21)
    ON CONFLICT (id) DO UPDATE SET app = excluded.app, "key" = excluded."key",
    kind = excluded.kind, request_hash = excluded.request_hash, parent = excluded.parent,
    reservation_id = excluded.reservation_id, session_id = excluded.session_id,
    request_number = excluded.request_number, subscriber = excluded.subscriber,
    amount = excluded.amount, currency = excluded.currency,
    reference_code = excluded.reference_code, state = excluded.state,
    result_code = excluded.result_code, request = excluded.request, outcome = excluded.outcome,
    created_ms = excluded.created_ms, updated_ms = excluded.updated_ms, owner = excluded.owner,
    lease_until_ms = excluded.lease_until_ms"#;

/// A named lease taken when free, its holder's already, or run out (`$4`: now).
pub(super) const TAKE_LEASE: &str = "INSERT INTO leases (name, owner, until_ms) VALUES ($1, $2, $3) \
    ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
    WHERE leases.owner = excluded.owner OR leases.until_ms <= $4";

pub(super) const DROP_LEASE: &str = "DELETE FROM leases WHERE name = $1 AND owner = $2";

pub(super) const UPSERT_RES: &str = "INSERT INTO reservations (id, app, session_id, subscriber, currency, \
    reserved, charged, last_request_number, state, expires_ms, created_ms, updated_ms, pending) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
    ON CONFLICT (id) DO UPDATE SET app = excluded.app, session_id = excluded.session_id, \
    subscriber = excluded.subscriber, currency = excluded.currency, \
    reserved = excluded.reserved, charged = excluded.charged, \
    last_request_number = excluded.last_request_number, state = excluded.state, \
    expires_ms = excluded.expires_ms, created_ms = excluded.created_ms, \
    updated_ms = excluded.updated_ms, pending = excluded.pending";

pub(super) const UPSERT_RESOURCE: &str = "INSERT INTO resources (id, app, kind, state, parent, due_ms, \
    body, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
    ON CONFLICT (id) DO UPDATE SET app = excluded.app, kind = excluded.kind, \
    state = excluded.state, parent = excluded.parent, due_ms = excluded.due_ms, \
    body = excluded.body, created_ms = excluded.created_ms, updated_ms = excluded.updated_ms";

macro_rules! resource_columns {
    () => {
        "id, app, kind, state, parent, due_ms, body, created_ms, updated_ms"
    };
}

pub(super) const RESOURCE_COLUMNS: &str = resource_columns!();

pub(super) const RESOURCE_BY_ID: &str = concat!(
    "SELECT ",
    resource_columns!(),
    " FROM resources WHERE id = $1"
);

pub(super) use op_columns;
