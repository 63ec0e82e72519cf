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

/// A resource inserted only when its id is free (id, app, kind, state, parent, due, body,
/// created, updated).
pub(super) const INSERT_RESOURCE: &str = "INSERT INTO resources (id, app, kind, state, parent, \
    due_ms, body, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
    ON CONFLICT (id) DO NOTHING";

/// A resource replaced only while its `updated_ms` is still `$10` (the columns as above; `id`
/// set to itself so that the placeholders first appear in their order, as SQLite numbers
/// named ones).
pub(super) const SWAP_RESOURCE: &str = "UPDATE resources SET id = $1, app = $2, kind = $3, \
    state = $4, parent = $5, due_ms = $6, body = $7, created_ms = $8, updated_ms = $9 \
    WHERE id = $1 AND updated_ms = $10";

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

macro_rules! event_columns {
    () => {
        "id, app, kind, resource, url, headers, content_type, body, state, attempts, next_ms, \
        last_error, owner, lease_until_ms, created_ms, updated_ms, delivered_ms"
    };
}

macro_rules! event_set_excluded {
    () => {
        "app = excluded.app, kind = excluded.kind, resource = excluded.resource, \
        url = excluded.url, headers = excluded.headers, content_type = excluded.content_type, \
        body = excluded.body, state = excluded.state, attempts = excluded.attempts, \
        next_ms = excluded.next_ms, last_error = excluded.last_error, owner = excluded.owner, \
        lease_until_ms = excluded.lease_until_ms, created_ms = excluded.created_ms, \
        updated_ms = excluded.updated_ms, delivered_ms = excluded.delivered_ms"
    };
}

/// An event inserted, or replacing the row of its id (which keeps its `seq`: its place in
/// the order of delivery is where it was first written).
pub(super) const UPSERT_EVENT: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
    ON CONFLICT (id) DO UPDATE SET ",
    event_set_excluded!()
);

/// The columns an [`EventRow`](super::EventRow) is read from, in its order.
pub(super) const EVENT_COLUMNS: &str = event_columns!();

pub(super) const EVENT_BY_ID: &str =
    concat!("SELECT ", event_columns!(), " FROM events WHERE id = $1");

/// Pending events due at `$1` whose lease is free or ran out, that no older pending event of
/// the same resource and URL precedes (by `seq`, the order first written); oldest first, at
/// most `$2`. An older pending event holds the next back whether or not it is due or leased
/// itself.
pub(super) const DUE_EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events e WHERE e.state = 'pending' AND e.next_ms <= $1 \
    AND (e.owner IS NULL OR e.lease_until_ms IS NULL OR e.lease_until_ms <= $1) \
    AND (e.resource IS NULL OR NOT EXISTS (SELECT 1 FROM events o \
        WHERE o.resource = e.resource AND o.url = e.url AND o.state = 'pending' \
        AND o.seq < e.seq)) \
    ORDER BY e.seq LIMIT $2"
);

/// The columns an [`InventoryRow`](super::InventoryRow) is read from, in its order.
pub(super) const INVENTORY_COLUMNS: &str = "id, category, value, status, holder, \
    hold_until_ms, ported_in, body, created_ms, updated_ms";

pub(super) const INVENTORY_BY_ID: &str = "SELECT id, category, value, status, holder, \
    hold_until_ms, ported_in, body, created_ms, updated_ms FROM inventory WHERE id = $1";

/// An imported resource (id, category, value, status, ported_in, body, created, updated):
/// one that exists keeps its status, holder and hold, and takes the new characteristics.
pub(super) const IMPORT_INVENTORY: &str = "INSERT INTO inventory (id, category, value, status, \
    holder, hold_until_ms, ported_in, body, created_ms, updated_ms) \
    VALUES ($1, $2, $3, $4, NULL, NULL, $5, $6, $7, $8) \
    ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms";

// The conditional writes of the inventory: decided by the row as the database has it when
// the UPDATE runs (the row is locked by the UPDATE: of two sessions, the second re-checks the
// condition on the first's committed row), never by a check made before.

/// Holds a resource (holder, until, now, id) when available, run out, or the holder's.
pub(super) const RESERVE_INVENTORY: &str = "UPDATE inventory SET status = 'reserved', \
    holder = $1, hold_until_ms = $2, updated_ms = $3 WHERE id = $4 \
    AND (status = 'available' OR (status = 'reserved' \
    AND (holder = $1 OR hold_until_ms IS NULL OR hold_until_ms <= $3)))";

/// Assigns a resource (now, owner, id, holder) its holder reserved and whose hold has not run
/// out to its owner (the order); again for the same owner: still won. (The placeholders
/// first appear in their order: SQLite numbers named ones so.)
pub(super) const ASSIGN_INVENTORY: &str = "UPDATE inventory SET updated_ms = $1, \
    holder = $2, status = 'assigned', hold_until_ms = NULL WHERE id = $3 \
    AND ((status = 'reserved' AND holder = $4 AND hold_until_ms > $1) \
    OR (status = 'assigned' AND holder = $2))";

/// Releases the holder's reservation (now, id, holder).
pub(super) const RELEASE_INVENTORY: &str = "UPDATE inventory SET status = 'available', \
    holder = NULL, hold_until_ms = NULL, updated_ms = $1 WHERE id = $2 AND holder = $3 \
    AND status = 'reserved'";

/// Takes back the holder's assignment (now, id, holder).
pub(super) const UNASSIGN_INVENTORY: &str = "UPDATE inventory SET status = 'available', \
    holder = NULL, hold_until_ms = NULL, updated_ms = $1 WHERE id = $2 AND holder = $3 \
    AND status = 'assigned'";

/// A ported-in number's port completed (now, holder, id).
pub(super) const ACTIVATE_INVENTORY: &str = "UPDATE inventory SET status = 'active', \
    updated_ms = $1, holder = $2 WHERE id = $3 \
    AND (status = 'portingIn' OR (status = 'active' AND holder = $2))";

/// The WHERE clause of an inventory listing, its placeholders numbered from 1 (`$` or `?`
/// before each number, as the dialect wants), and the values in their order: `(sql, texts,
/// now)` where `now` is `Some` when the clause compares with it (bound last).
pub(super) fn inventory_where(
    f: &super::InventoryFilter,
    sigil: char,
) -> (String, Vec<String>, Option<i64>) {
    use super::InventoryStatus as S;
    let mut conds: Vec<String> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    if let Some(c) = &f.category {
        texts.push(c.clone());
        conds.push(format!("category = {sigil}{}", texts.len()));
    }
    if let Some(p) = &f.pattern {
        texts.push(p.clone());
        conds.push(format!("value LIKE {sigil}{}", texts.len()));
    }
    let mut now = None;
    let n = texts.len() + 1;
    match f.status {
        None => {}
        Some(S::Available) => {
            now = Some(f.now_ms);
            conds.push(format!(
                "(status = 'available' OR (status = 'reserved' \
                 AND (hold_until_ms IS NULL OR hold_until_ms <= {sigil}{n})))"
            ));
        }
        Some(S::Reserved) => {
            now = Some(f.now_ms);
            conds.push(format!(
                "(status = 'reserved' AND hold_until_ms > {sigil}{n})"
            ));
        }
        Some(s) => conds.push(format!("status = '{}'", s.name())),
    }
    let sql = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    (sql, texts, now)
}

/// An event's extra headers as the JSON text kept in `headers`: `[[name, value], ...]`.
pub(super) fn headers_json(headers: &[(String, String)]) -> String {
    use serde_json::Value;
    Value::Array(
        headers
            .iter()
            .map(|(name, value)| {
                Value::Array(vec![
                    Value::String(name.clone()),
                    Value::String(value.clone()),
                ])
            })
            .collect(),
    )
    .to_string()
}

/// The headers [`headers_json`] wrote; the error says what is wrong with the text.
pub(super) fn headers_from_json(text: &str) -> Result<Vec<(String, String)>, String> {
    serde_json::from_str::<Vec<(String, String)>>(text)
        .map_err(|e| format!("not a JSON list of [name, value] pairs: {e}"))
}

pub(super) use {event_columns, event_set_excluded, op_columns};

/// ` WHERE c1 AND c2 ...` of the filters that are set (`None`: not filtered on), each
/// condition written up to its placeholder's sigil (`app = ?`, `due_ms <= $`) and given the
/// number of its value, which is appended to `params`; empty when none is set.
pub(super) fn where_clause<P>(
    filters: impl IntoIterator<Item = (&'static str, Option<P>)>,
    params: &mut Vec<P>,
) -> String {
    let mut clause = String::new();
    for (cond, value) in filters {
        if let Some(v) = value {
            clause.push_str(if params.is_empty() {
                " WHERE "
            } else {
                " AND "
            });
            params.push(v);
            clause.push_str(cond);
            clause.push_str(&params.len().to_string());
        }
    }
    clause
}
