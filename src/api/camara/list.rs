//! Listing (API.md 1.1, 2): `page`, `perPage`, a creation-date range, `order`, statuses and
//! `merchantIdentifier`; answered with `X-Total-Count` (all that match) and `Content-Last-Key`
//! (the position, from 1, of the last item of the page among all that match).
//!
//! The store filters by application, kind, creation range, one status and pages in the order
//! asked; several statuses or a merchant are filtered here over what matches the rest, at
//! most [`MAX_SCAN`] rows (more: `TOO_MANY_MATCHING_RECORDS`, narrow the dates).

use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::error::CamaraError;
use super::{parse_rfc3339, rfc3339};
use crate::store::{ResourceFilter, ResourceRow, Store, now_ms};

/// Largest `perPage`.
pub const MAX_PER_PAGE: usize = 100;
/// Most rows filtered in memory for one listing.
pub const MAX_SCAN: usize = 10_000;

/// What a listing asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub page: usize,
    pub per_page: usize,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub ascending: bool,
    pub statuses: Vec<String>,
    pub merchant: Option<String>,
    /// Skip this many instead of the pages before `page` (the checkout's `seek`: the position
    /// of the last item read).
    pub seek: Option<usize>,
}

/// The names a listing's parameters have in one API.
pub struct Names {
    /// `paymentCreationDate` / `refundCreationDate` (`.gte`, `.lte`).
    pub date: &'static str,
    /// `paymentStatus` / `refundStatus`.
    pub status: &'static str,
    pub statuses: &'static [&'static str],
    pub invalid_date_range: &'static str,
    pub too_many: &'static str,
}

impl ListQuery {
    /// Reads the query string. A status list is the parameter repeated
    /// (`paymentStatus=reserved&paymentStatus=succeeded`, OpenAPI's default) or
    /// comma-separated. Unknown parameters are ignored.
    pub fn parse(uri: &Uri, names: &Names) -> Result<Self, CamaraError> {
        let pairs = query_pairs(uri)?;
        let gte = format!("{}.gte", names.date);
        let lte = format!("{}.lte", names.date);
        let mut q = Self::first_page();
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in &pairs {
            let k = k.as_str();
            if k != names.status {
                if seen.contains(&k) {
                    return Err(CamaraError::invalid(format!("{k}: given more than once")));
                }
                seen.push(k);
            }
            if k == "page" || k == "perPage" {
                q.paging(k, v)?;
            } else if k == gte || k == lte {
                let t = parse_rfc3339(v).ok_or_else(|| {
                    CamaraError::invalid(format!(
                        "{k}: \"{}\" is not an RFC 3339 date-time with a time zone",
                        crate::api::error::clip(v)
                    ))
                })?;
                if k == gte {
                    q.from_ms = Some(t);
                } else {
                    q.to_ms = Some(t);
                }
            } else if k == "order" {
                q.ascending = match v.as_str() {
                    "asc" => true,
                    "desc" => false,
                    _ => {
                        return Err(CamaraError::invalid("order: asc or desc"));
                    }
                };
            } else if k == names.status {
                for s in v.split(',') {
                    if !names.statuses.contains(&s) {
                        return Err(CamaraError::invalid(format!(
                            "{k}: \"{}\" is not one of {}",
                            crate::api::error::clip(s),
                            names.statuses.join(", ")
                        )));
                    }
                    if !q.statuses.iter().any(|x| x == s) {
                        q.statuses.push(s.to_string());
                    }
                }
            } else if k == "merchantIdentifier" {
                q.merchant = Some(v.clone());
            }
        }
        // Only `.gte`: up to now. Only `.lte`: everything until then.
        if q.from_ms.is_some() && q.to_ms.is_none() {
            q.to_ms = Some(now_ms());
        }
        if let (Some(a), Some(b)) = (q.from_ms, q.to_ms)
            && a > b
        {
            return Err(CamaraError::new(
                StatusCode::BAD_REQUEST,
                names.invalid_date_range,
                format!(
                    "Client specified an invalid date range. {gte} ({}) is after {lte} ({}).",
                    rfc3339(a),
                    rfc3339(b)
                ),
            ));
        }
        Ok(q)
    }

    /// The first page of `perPage` (10) items, newest first, over all dates.
    pub fn first_page() -> Self {
        Self {
            page: 1,
            per_page: 10,
            from_ms: None,
            to_ms: None,
            ascending: false,
            statuses: Vec::new(),
            merchant: None,
            seek: None,
        }
    }

    /// Sets `page` or `perPage` from the query parameter `k` = `v` (400 / OUT_OF_RANGE).
    pub fn paging(&mut self, k: &str, v: &str) -> Result<(), CamaraError> {
        let n: usize = v
            .parse()
            .map_err(|_| CamaraError::invalid(format!("{k}: \"{v}\" is not a whole number")))?;
        let max = if k == "page" {
            usize::MAX
        } else {
            MAX_PER_PAGE
        };
        if n == 0 || n > max {
            return Err(CamaraError::out_of_range(if k == "page" {
                "page: from 1".to_string()
            } else {
                format!("perPage: from 1 to {MAX_PER_PAGE}")
            }));
        }
        if k == "page" {
            self.page = n;
        } else {
            self.per_page = n;
        }
        Ok(())
    }

    fn offset(&self) -> Result<usize, CamaraError> {
        if let Some(seek) = self.seek {
            return Ok(seek);
        }
        (self.page - 1)
            .checked_mul(self.per_page)
            .ok_or_else(|| CamaraError::out_of_range("page: too large"))
    }
}

/// The query string's parameters, in order.
pub fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, CamaraError> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| CamaraError::invalid(format!("query: {e}")))
}

/// One page of rows, the total that match, and the offset of the page.
pub struct Page {
    pub rows: Vec<ResourceRow>,
    pub total: usize,
    pub offset: usize,
}

/// The rows of `app` and `kind` (children of `parent` if given) that `q` selects.
/// `merchant_of` reads a row's merchant identifier.
pub async fn list(
    store: &Store,
    app: &str,
    kind: &str,
    parent: Option<&str>,
    q: &ListQuery,
    names: &Names,
    merchant_of: impl Fn(&ResourceRow) -> Option<String>,
) -> Result<Page, CamaraError> {
    list_where(store, app, kind, parent, q, names, merchant_of, None).await
}

/// [`list`] of the rows `keep` keeps only (those of one subscriber, for a three-legged
/// token): filtered as the status and merchant filters are, within [`MAX_SCAN`].
#[allow(clippy::too_many_arguments)]
pub async fn list_where(
    store: &Store,
    app: &str,
    kind: &str,
    parent: Option<&str>,
    q: &ListQuery,
    names: &Names,
    merchant_of: impl Fn(&ResourceRow) -> Option<String>,
    keep: Option<&(dyn Fn(&ResourceRow) -> bool + Send + Sync)>,
) -> Result<Page, CamaraError> {
    let offset = q.offset()?;
    let mut f = ResourceFilter {
        app: Some(app.to_string()),
        kind: Some(kind.to_string()),
        parent: parent.map(str::to_string),
        created_from_ms: q.from_ms,
        created_to_ms: q.to_ms,
        ascending: q.ascending,
        ..ResourceFilter::default()
    };
    let store_err = |e: crate::store::StoreError| CamaraError::internal(e.to_string());
    let (rows, total) = if q.statuses.len() <= 1 && q.merchant.is_none() && keep.is_none() {
        f.state = q.statuses.first().cloned();
        f.offset = offset;
        f.limit = q.per_page;
        store.resources(f).await.map_err(store_err)?
    } else {
        f.limit = MAX_SCAN + 1;
        let (rows, total) = store.resources(f).await.map_err(store_err)?;
        if total > MAX_SCAN {
            return Err(CamaraError::new(
                StatusCode::BAD_REQUEST,
                names.too_many,
                format!(
                    "Too many matching records found. Specify additional/suitable criteria to \
                     limit the number of records. More than {MAX_SCAN} match the dates; narrow \
                     them to filter by status or merchant."
                ),
            ));
        }
        let matching: Vec<ResourceRow> = rows
            .into_iter()
            .filter(|r| q.statuses.is_empty() || q.statuses.contains(&r.state))
            .filter(|r| keep.is_none_or(|k| k(r)))
            .filter(|r| {
                q.merchant
                    .as_ref()
                    .is_none_or(|m| merchant_of(r).as_deref() == Some(m.as_str()))
            })
            .collect();
        let total = matching.len();
        let page = matching.into_iter().skip(offset).take(q.per_page).collect();
        (page, total)
    };
    if offset > 0 && offset >= total {
        return Err(CamaraError::out_of_range(match q.seek {
            Some(seek) => format!("seek: {seek} is past the last item ({total} match)"),
            None => format!(
                "page: {} is past the last page ({total} match, {} per page)",
                q.page, q.per_page
            ),
        }));
    }
    Ok(Page {
        rows,
        total,
        offset,
    })
}

/// 200 with the items, `X-Total-Count` and `Content-Last-Key`.
pub fn answer<T: serde::Serialize>(items: &[T], total: usize, offset: usize) -> Response {
    let mut res = (StatusCode::OK, axum::Json(items)).into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        h.insert("x-total-count", v);
    }
    if let Ok(v) = HeaderValue::from_str(&(offset + items.len()).to_string()) {
        h.insert("content-last-key", v);
    }
    res
}
