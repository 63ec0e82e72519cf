//! TMF630 REST conventions shared by the TMF families (TMF620, TMF622, TMF639, TMF663):
//! answers in `application/json` with the TMF `Error` body, the query parameters a listing
//! knows (anything else is a 400 naming it), `offset`/`limit`, `fields=` selection, and the
//! `X-Total-Count` / `X-Result-Count` headers.

use std::collections::HashSet;

use axum::extract::Query;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use super::tmf654::error::{MEDIA_TYPE, TmfError};
use super::tmf654::model::kind;
use crate::store::StoreError;

/// `body` as JSON with `status`.
pub fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE))],
            bytes,
        )
            .into_response(),
        Err(e) => TmfError::internal(format!("answer not serialisable: {e}")).into_response(),
    }
}

/// A listing's page: the items, and the counts in their headers.
pub fn page(items: &[Value], total: usize) -> Response {
    let mut res = json(StatusCode::OK, &items);
    let h = res.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    h.insert("x-result-count", HeaderValue::from(items.len()));
    res
}

pub fn answer(r: Result<Response, TmfError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// A store failure: 500, and what it means for the request.
pub fn store_error(e: StoreError) -> TmfError {
    TmfError::internal(format!("{e}: nothing was changed, or retry to learn"))
}

fn clip(s: &str) -> String {
    super::error::clip(s)
}

/// The query's pairs, each name known and given once.
pub fn query(uri: &Uri, known: &[&str]) -> Result<Vec<(String, String)>, TmfError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| TmfError::invalid("query", e.body_text()))?;
    for (i, (k, _)) in pairs.iter().enumerate() {
        if !known.contains(&k.as_str()) {
            return Err(TmfError::invalid(
                &clip(k),
                format!(
                    "unsupported query parameter (supported: {})",
                    known.join(", ")
                ),
            ));
        }
        if pairs
            .get(..i)
            .is_some_and(|before| before.iter().any(|(j, _)| j == k))
        {
            return Err(TmfError::invalid(k, "given twice"));
        }
    }
    Ok(pairs)
}

pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub fn number(pairs: &[(String, String)], name: &str) -> Result<Option<usize>, TmfError> {
    match param(pairs, name) {
        None => Ok(None),
        Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
            TmfError::invalid(name, format!("\"{}\" is not a whole number >= 0", clip(v)))
        }),
    }
}

/// `offset` and `limit` (1 to `max`, `default` when absent).
pub fn paging(
    pairs: &[(String, String)],
    default: usize,
    max: usize,
) -> Result<(usize, usize), TmfError> {
    let offset = number(pairs, "offset")?.unwrap_or(0);
    let limit = number(pairs, "limit")?.unwrap_or(default);
    if limit == 0 || limit > max {
        return Err(TmfError::invalid(
            "limit",
            format!("1 to {max} (default {default})"),
        ));
    }
    Ok((offset, limit))
}

/// `fields=a,b`: the members to keep.
pub fn fields(pairs: &[(String, String)]) -> Option<HashSet<String>> {
    param(pairs, "fields").map(|f| {
        f.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// `value` with only the `fields` asked (and `id`, `href`, `@type`, always).
pub fn select(value: Value, fields: Option<&HashSet<String>>) -> Value {
    match (value, fields) {
        (Value::Object(m), Some(keep)) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| keep.contains(k) || matches!(k.as_str(), "id" | "href" | "@type"))
                .collect(),
        ),
        (v, _) => v,
    }
}

/// A path id as the TMF families issue them: 1 to 64 letters, digits and `-`; anything else
/// is not one of ours (404 naming it).
pub fn path_id(what: &str, id: &str) -> Result<String, TmfError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(TmfError::not_found(format!("no {what} \"{}\"", clip(id))));
    }
    Ok(id.to_string())
}

/// An exact JSON number of a decimal (the crate's serde_json keeps numbers as written).
pub fn number_of(d: rust_decimal::Decimal) -> Value {
    serde_json::from_str::<serde_json::Number>(&d.normalize().to_string())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Documents `errors` (status, description) as TMF Error answers of every operation under
/// `base` (an OpenAPI modifier's body).
pub fn document_errors(doc: &mut utoipa::openapi::OpenApi, base: &str, errors: &[(&str, &str)]) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with(base) {
            continue;
        }
        let ops = [
            item.get.as_mut(),
            item.post.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ];
        for op in ops.into_iter().flatten() {
            for (status, description) in errors {
                op.responses.responses.insert(
                    (*status).to_string(),
                    ResponseBuilder::new()
                        .description(*description)
                        .content(
                            MEDIA_TYPE,
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("TmfError")))
                                .build(),
                        )
                        .build()
                        .into(),
                );
            }
        }
    }
}

// ---- body members: typed, bounded, the member named in the 400 ----------------------------------

pub fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, TmfError> {
    v.as_object()
        .ok_or_else(|| TmfError::invalid(at, format!("expected an object, found {}", kind(v))))
}

pub fn array<'a>(v: &'a Value, at: &str, max: usize) -> Result<&'a [Value], TmfError> {
    let a = v
        .as_array()
        .ok_or_else(|| TmfError::invalid(at, format!("expected an array, found {}", kind(v))))?;
    if a.len() > max {
        return Err(TmfError::invalid(at, format!("at most {max} entries")));
    }
    Ok(a)
}

pub fn string<'a>(v: &'a Value, at: &str) -> Result<&'a str, TmfError> {
    v.as_str()
        .ok_or_else(|| TmfError::invalid(at, format!("expected a string, found {}", kind(v))))
}

/// A string that is one of `names`.
pub fn one_of<'a>(v: &'a Value, at: &str, names: &[&str]) -> Result<&'a str, TmfError> {
    let s = string(v, at)?;
    if names.contains(&s) {
        Ok(s)
    } else {
        Err(TmfError::invalid(
            at,
            format!("\"{}\": one of {}", clip(s), names.join(", ")),
        ))
    }
}

/// `validFor` (TMF TimePeriod): `{startDateTime?, endDateTime?}` in RFC 3339, the end after
/// the start; the two members (`@` members passed over).
pub fn valid_for(v: &Value, at: &str) -> Result<Map<String, Value>, TmfError> {
    let m = object(v, at)?;
    let mut at_ns = [None, None];
    let mut out = Map::new();
    for (k, v) in m {
        let field = format!("{at}.{}", clip(k));
        let slot = match k.as_str() {
            "startDateTime" => 0,
            "endDateTime" => 1,
            _ if k.starts_with('@') => continue,
            _ => {
                return Err(TmfError::invalid(
                    &field,
                    "not a member of TimePeriod (startDateTime, endDateTime)",
                ));
            }
        };
        let s = string(v, &field)?;
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                TmfError::invalid(
                    &field,
                    format!("\"{}\" is not an RFC 3339 date-time", clip(s)),
                )
            })?;
        at_ns[slot] = Some(t.unix_timestamp_nanos());
        out.insert(k.clone(), v.clone());
    }
    if let [Some(start), Some(end)] = at_ns
        && end <= start
    {
        return Err(TmfError::invalid(
            &format!("{at}.endDateTime"),
            "must be after startDateTime",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_exact_and_queries_strict() {
        let d: rust_decimal::Decimal = "14.970".parse().unwrap();
        assert_eq!(serde_json::to_string(&number_of(d)).unwrap(), "14.97");
        let uri: Uri = "/x?limit=5&offset=2".parse().unwrap();
        let q = query(&uri, &["limit", "offset"]).unwrap();
        assert_eq!(paging(&q, 10, 100).unwrap(), (2, 5));
        let uri: Uri = "/x?limit=5&limit=6".parse().unwrap();
        assert!(query(&uri, &["limit"]).is_err());
        let uri: Uri = "/x?foo=1".parse().unwrap();
        assert_eq!(query(&uri, &["limit"]).unwrap_err().http_status(), 400);
        assert!(path_id("order", "a/b").is_err());
    }
}
