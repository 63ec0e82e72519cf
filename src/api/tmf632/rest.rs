//! What the party and account families (TMF632, TMF629, TMF666) share: the application's
//! scope (its own resources; administrators see all), listings with TMF630 paging and
//! attribute filters, the merge patch (or JSON Patch) applied to the rendered document,
//! compare-and-set replacement of a row, locks on a party across instances, and the 409 of
//! a lost contact claim.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Map, Value};

use crate::api::ApiState;
use crate::api::auth::Caller;
use crate::api::error::clip;
use crate::api::tmf630::{self, fields, json, query, store_error};
use crate::api::tmf654::error::TmfError;
use crate::api::tmf663::PatchBody;
use crate::charging::locks::Held;
use crate::parties::claims::Lost;
use crate::parties::{self, Stored, next_updated, state};
use crate::store::{ResourceFilter, ResourceRow, Store};

/// Most resources one listing returns.
pub const MAX_LIMIT: usize = 100;
pub const DEFAULT_LIMIT: usize = 10;
/// Largest listing offset.
pub const MAX_OFFSET: usize = 100_000;
/// Most rows an attribute filter looks through (the newest).
pub const MAX_SCAN: usize = 10_000;
/// How long a change waits for another change of the same party.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// What a patched document may grow to.
const MAX_DOC_DEPTH: usize = 32;
const MAX_DOC_VALUES: usize = 10_000;

/// `allowed_operations` lets the caller use `op`.
pub fn permit(caller: &Caller, op: &str, what: &str) -> Result<(), TmfError> {
    if caller.may_call(op) {
        Ok(())
    } else {
        Err(TmfError::policy(caller.refusal(op, what)))
    }
}

/// The application whose resources the caller sees: its own; `None` (all) for administrators.
pub fn scope(caller: &Caller) -> Option<String> {
    (!caller.0.is_admin()).then(|| caller.id().to_string())
}

pub fn visible(row: &ResourceRow, caller: &Caller) -> bool {
    caller.0.is_admin() || row.app == caller.id()
}

pub fn path_id(p: Result<Path<String>, PathRejection>, what: &str) -> Result<String, TmfError> {
    let Path(id) = p.map_err(|e| TmfError::invalid("id", e.body_text()))?;
    tmf630::path_id(what, &id)
}

pub fn not_found(what: &str, id: &str) -> TmfError {
    TmfError::not_found(format!("no {what} \"{}\"", clip(id)))
}

/// The live resource `id` of `kind` the caller sees, else 404.
pub async fn load(
    store: &Store,
    caller: &Caller,
    kind: &str,
    id: &str,
    what: &str,
) -> Result<Stored, TmfError> {
    match parties::load(store, kind, id).await.map_err(store_error)? {
        Some(s) if visible(&s.row, caller) => Ok(s),
        _ => Err(not_found(what, id)),
    }
}

/// A referenced resource (`at` names the member): the live one of `kind` the caller sees,
/// else 400 naming the member.
pub async fn referenced(
    store: &Store,
    caller: &Caller,
    kind: &str,
    id: &str,
    what: &str,
    at: &str,
) -> Result<Stored, TmfError> {
    match parties::load(store, kind, id).await.map_err(store_error)? {
        Some(s) if visible(&s.row, caller) => Ok(s),
        _ => Err(TmfError::invalid(
            at,
            format!("no {what} \"{}\" of this application", clip(id)),
        )),
    }
}

/// Runs a change to its end even if the client goes away.
pub async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, TmfError>> + Send + 'static,
) -> Result<T, TmfError> {
    tokio::spawn(work).await.map_err(|e| {
        TmfError::internal(format!(
            "the task failed ({e}); read the resource to learn what was kept"
        ))
    })?
}

/// The locks of parties `ids` (sorted, each once), across instances: the changes that move
/// a customer's contact claims hold the lock of its engaged party.
pub async fn lock_parties(st: &ApiState, ids: &[&str]) -> Result<Vec<Held>, TmfError> {
    let mut ids: Vec<&str> = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut held = Vec::new();
    for id in ids {
        match st
            .charging
            .locks()
            .hold(&format!("party:{id}"), LOCK_WAIT)
            .await
        {
            Ok(Some(h)) => held.push(h),
            Ok(None) => {
                return Err(TmfError::conflict(
                    "IN_PROGRESS",
                    format!("another change of party {id} is in progress; retry"),
                ));
            }
            Err(e) => {
                return Err(TmfError::internal(format!(
                    "the party could not be locked ({e}); nothing was changed"
                )));
            }
        }
    }
    Ok(held)
}

/// `v` with the patch applied (JSON Patch: each operation measured, all or nothing).
pub fn patched(mut v: Value, body: &PatchBody) -> Result<Value, TmfError> {
    match body {
        PatchBody::Merge(p) => json_patch::merge(&mut v, p),
        PatchBody::Json(p) => {
            for (i, op) in p.0.iter().enumerate() {
                json_patch::patch_unsafe(&mut v, std::slice::from_ref(op)).map_err(|e| {
                    TmfError::invalid(
                        &format!("body[{i}]"),
                        format!("the operation failed at \"{}\": {}", e.path, e.kind),
                    )
                })?;
                if !crate::api::tmf663::input::within(&v, MAX_DOC_DEPTH, MAX_DOC_VALUES) {
                    return Err(TmfError::invalid(
                        &format!("body[{i}]"),
                        "the document grows too large (nesting or size)",
                    ));
                }
            }
        }
    }
    if !v.is_object() {
        return Err(TmfError::invalid(
            "body",
            "the patched resource is not a JSON object",
        ));
    }
    Ok(v)
}

/// The row replacing `before` with `doc` (and `parent`), its `updated_ms` moved on.
pub fn replacement(
    before: &ResourceRow,
    doc: &Map<String, Value>,
    parent: Option<&str>,
) -> ResourceRow {
    let now = crate::store::now_ms();
    parties::row(
        &before.app,
        &before.kind,
        &before.id,
        parent,
        doc,
        before.created_ms,
        next_updated(now, before.updated_ms),
    )
}

/// Replaces `before` by `row` if no one changed it meanwhile (the database decides), else 409.
pub async fn replace(
    store: &Store,
    before: &ResourceRow,
    row: ResourceRow,
) -> Result<(), TmfError> {
    if store
        .put_resource_if(row, Some(before.updated_ms))
        .await
        .map_err(store_error)?
    {
        Ok(())
    } else {
        Err(TmfError::conflict(
            "IN_PROGRESS",
            format!(
                "{} was changed by another request meanwhile; nothing of this one was kept: \
                 read it and retry",
                before.id
            ),
        ))
    }
}

/// Marks `before` deleted (compare-and-set).
pub async fn delete(store: &Store, before: &Stored) -> Result<(), TmfError> {
    let mut row = replacement(&before.row, &before.doc, before.row.parent.as_deref());
    row.state = state::DELETED.into();
    replace(store, &before.row, row).await
}

/// The 409 of a contact claimed by another customer.
pub fn conflict(lost: &Lost) -> TmfError {
    TmfError::conflict(
        "CONFLICT",
        format!(
            "{}: {} is the contact of another customer; nothing of this request was kept",
            lost.keyed.field,
            lost.keyed.key.value()
        ),
    )
}

/// 201 with `value` and its `Location`.
pub fn created(value: &Value) -> Response {
    let mut res = json(StatusCode::CREATED, value);
    if let Some(href) = value.get("href").and_then(Value::as_str)
        && let Ok(v) = HeaderValue::from_str(href)
    {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// The document as served: `doc` with `id`, `href` and `@type`.
pub fn render(doc: &Map<String, Value>, id: &str, href: &str, ty: &str) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(id.into()));
    m.insert("href".into(), Value::String(href.into()));
    for (k, v) in doc {
        m.insert(k.clone(), v.clone());
    }
    m.insert("@type".into(), Value::String(ty.into()));
    Value::Object(m)
}

/// An attribute filter of a listing: the query parameter, and the path of members it is
/// compared with (an array on the way: any of its entries); equal ignoring ASCII case.
#[derive(Clone, Copy, Debug)]
pub struct Filter {
    pub name: &'static str,
    pub path: &'static [&'static str],
}

impl Filter {
    fn matches(&self, doc: &Map<String, Value>, want: &str) -> bool {
        fn at(v: &Value, path: &[&str], want: &str) -> bool {
            match (v, path.split_first()) {
                (Value::Array(a), _) => a.iter().any(|x| at(x, path, want)),
                (Value::Object(m), Some((k, rest))) => m.get(*k).is_some_and(|x| at(x, rest, want)),
                (Value::String(s), None) => s.eq_ignore_ascii_case(want),
                (Value::Bool(b), None) => b.to_string() == want,
                _ => false,
            }
        }
        match self.path.split_first() {
            Some((k, rest)) => doc.get(*k).is_some_and(|v| at(v, rest, want)),
            None => false,
        }
    }
}

/// A listing's rows of `kind` the caller sees, newest first: the page asked, the total that
/// match, the `fields` kept. `only`: the one resource a customer's token may see.
pub async fn list(
    store: &Store,
    caller: &Caller,
    kind: &str,
    uri: &Uri,
    filters: &[Filter],
    only: Option<&str>,
) -> Result<(Vec<Stored>, usize, Option<HashSet<String>>), TmfError> {
    let mut known = vec!["fields", "offset", "limit"];
    known.extend(filters.iter().map(|f| f.name));
    let q = query(uri, &known)?;
    let (offset, limit) = tmf630::paging(&q, DEFAULT_LIMIT, MAX_LIMIT)?;
    if offset > MAX_OFFSET {
        return Err(TmfError::invalid("offset", format!("at most {MAX_OFFSET}")));
    }
    let asked: Vec<(Filter, &str)> = filters
        .iter()
        .filter_map(|f| tmf630::param(&q, f.name).map(|v| (*f, v)))
        .collect();
    let filter = |offset, limit| ResourceFilter {
        app: scope(caller),
        kind: Some(kind.to_string()),
        state: Some(state::LIVE.into()),
        offset,
        limit,
        ..ResourceFilter::default()
    };
    let decode = |rows: Vec<ResourceRow>| -> Result<Vec<Stored>, TmfError> {
        rows.into_iter()
            .map(|r| parties::decode(r).map_err(store_error))
            .collect()
    };
    let matching = |all: Vec<Stored>| {
        let all: Vec<Stored> = all
            .into_iter()
            .filter(|s| asked.iter().all(|(f, v)| f.matches(&s.doc, v)))
            .collect();
        let total = all.len();
        (all.into_iter().skip(offset).take(limit).collect(), total)
    };
    if let Some(id) = only {
        let one = match parties::load(store, kind, id).await.map_err(store_error)? {
            Some(s) if visible(&s.row, caller) => vec![s],
            _ => Vec::new(),
        };
        let (page, total) = matching(one);
        return Ok((page, total, fields(&q)));
    }
    if asked.is_empty() {
        let (rows, total) = store
            .resources(filter(offset, limit))
            .await
            .map_err(store_error)?;
        return Ok((decode(rows)?, total, fields(&q)));
    }
    let (rows, _) = store
        .resources(filter(0, MAX_SCAN))
        .await
        .map_err(store_error)?;
    let (page, total) = matching(decode(rows)?);
    Ok((page, total, fields(&q)))
}
