//! `[catalog] upstream`: the catalog mirrored from another TMF620 server. Each sync reads the
//! four listings (`category`, `productSpecification`, `productOfferingPrice`,
//! `productOffering`) page by page (`offset`/`limit`, TMF630), puts the entries together as
//! the one JSON array a dump file would be (sorted, so the same catalog always hashes the
//! same), and hands it to the file import: validated whole, written in one transaction,
//! skipped when its hash is the one recorded. The served catalog is always the store's, so
//! an unreachable upstream leaves the last synced catalog in service.
//!
//! Bounded: pages of [`PAGE`] entries, at most [`MAX_PAGES`] per listing, every answer read
//! up to what is left of [`MAX_FILE_BYTES`] (the same ceiling as a file), no redirects.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde_json::Value;

use super::catalog::{ImportError, Kind, MAX_FILE_BYTES};

/// Entries asked per page.
pub const PAGE: usize = 100;
/// Most pages read of one listing.
pub const MAX_PAGES: usize = 1000;

/// Where the catalog comes from.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The TMF620 base, e.g. `https://catalog.example/tmf-api/productCatalogManagement/v4`.
    pub base: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    pub timeout: Duration,
}

fn failed(why: impl std::fmt::Display) -> ImportError {
    ImportError::File(format!("upstream: {why}"))
}

impl Upstream {
    /// The whole catalog, as one JSON array (the bytes a dump file of it would hold).
    pub async fn fetch(&self) -> Result<Vec<u8>, ImportError> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(failed)?;
        let mut budget = usize::try_from(MAX_FILE_BYTES).unwrap_or(usize::MAX);
        let mut entries: Vec<(Kind, String, Value)> = Vec::new();
        for kind in [
            Kind::Category,
            Kind::ProductSpecification,
            Kind::ProductOfferingPrice,
            Kind::ProductOffering,
        ] {
            self.listing(&client, kind, &mut budget, &mut entries)
                .await?;
        }
        entries.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let array: Vec<Value> = entries.into_iter().map(|(_, _, v)| v).collect();
        serde_json::to_vec(&array).map_err(failed)
    }

    async fn listing(
        &self,
        client: &reqwest::Client,
        kind: Kind,
        budget: &mut usize,
        out: &mut Vec<(Kind, String, Value)>,
    ) -> Result<(), ImportError> {
        let url = format!("{}/{}", self.base.trim_end_matches('/'), kind.segment());
        let mut offset = 0usize;
        for _ in 0..MAX_PAGES {
            let mut req = client
                .get(&url)
                .query(&[("offset", offset), ("limit", PAGE)])
                .header(ACCEPT, "application/json");
            if let Some(t) = &self.token {
                req = req.header(AUTHORIZATION, format!("Bearer {t}"));
            }
            let mut res = req
                .send()
                .await
                .map_err(|e| failed(format!("GET {url}: {e}")))?;
            let status = res.status();
            let total = res
                .headers()
                .get("x-total-count")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            let mut body = Vec::new();
            while let Some(chunk) = res
                .chunk()
                .await
                .map_err(|e| failed(format!("GET {url}: {e}")))?
            {
                if chunk.len() > *budget {
                    return Err(failed(format!(
                        "the catalog is larger than {MAX_FILE_BYTES} bytes"
                    )));
                }
                *budget -= chunk.len();
                body.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                return Err(failed(format!(
                    "GET {url}?offset={offset}: {status}: {}",
                    crate::api::error::clip(&text)
                )));
            }
            let page = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(a)) => a,
                Ok(_) => {
                    return Err(failed(format!(
                        "GET {url}?offset={offset}: not a JSON array"
                    )));
                }
                Err(e) => {
                    return Err(failed(format!("GET {url}?offset={offset}: not JSON: {e}")));
                }
            };
            let n = page.len();
            for mut v in page {
                // The listing says what it holds; an entry may leave `@type` out.
                if let Value::Object(m) = &mut v {
                    m.entry("@type")
                        .or_insert_with(|| Value::String(kind.type_name().into()));
                }
                let id = v
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                out.push((kind, id, v));
            }
            offset += n;
            // The end: an empty page, or the total reached; without `X-Total-Count`, a short
            // page, or one longer than asked (a server that ignores `limit` sent everything).
            // A server that pages by less than asked must send the total (TMF630 does).
            let last = match total {
                _ if n == 0 => true,
                Some(t) => offset >= t,
                None => n != PAGE,
            };
            if last {
                return Ok(());
            }
        }
        Err(failed(format!(
            "GET {url}: more than {MAX_PAGES} pages of {PAGE}"
        )))
    }
}
