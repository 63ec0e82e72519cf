//! Abuse limits decided in the store (every instance counts in the same rows): fixed-window
//! counters and the lockout after failed sign-ins.
//!
//! ```text
//! identity.limit:<scope>:<key>:<window start ms>   {"count": n}   compare-and-set +1
//!   count == limit -> refused until the window ends (429, Retry-After: its seconds)
//! identity.lockout:<address row id>                {"failures": n, "lockedUntilMs": t}
//!   max_failed_signins failures in a row -> locked for `lockout`; a success starts again
//! ```
//!
//! A lost compare-and-set (another instance counted at the same time) is read again and
//! retried, at most [`CAS_TRIES`] times; then the request is refused as over the limit rather
//! than let through uncounted.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{ResourceRow, Store, StoreError};

/// Rounds of read and compare-and-set before giving up.
pub const CAS_TRIES: usize = 16;
pub const LIMIT_KIND: &str = "identity.limit";
pub const LOCKOUT_KIND: &str = "identity.lockout";

/// Over a limit: retry after this many seconds (at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_s: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("too many requests, retry after {0} s")]
    Limited(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Limited> for LimitError {
    fn from(l: Limited) -> Self {
        Self::Limited(l.retry_after_s)
    }
}

fn secs_until(now_ms: i64, until_ms: i64) -> u64 {
    let ms = until_ms.saturating_sub(now_ms).max(1);
    u64::try_from(ms).unwrap_or(u64::MAX).div_ceil(1000).max(1)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// The next `updated_ms` of a row written by compare-and-set.
pub fn next_updated(now_ms: i64, old: i64) -> i64 {
    now_ms.max(old.saturating_add(1))
}

#[derive(Serialize, Deserialize, Default)]
struct Counter {
    count: u32,
}

/// Counts one request against `limit` per `window` for `scope`/`key`: `Err(LimitError::Limited)`
/// when the window's count is reached already (the request is not counted then).
pub async fn hit(
    store: &Store,
    scope: &str,
    key: &str,
    limit: u32,
    window: Duration,
    now_ms: i64,
) -> Result<(), LimitError> {
    let w = ms(window);
    let start = now_ms - now_ms.rem_euclid(w);
    let end = start.saturating_add(w);
    let id = format!("{LIMIT_KIND}:{scope}:{key}:{start}");
    for _ in 0..CAS_TRIES {
        let current = store.resource(&id).await?;
        let (count, expected, updated) = match &current {
            None => (0, None, now_ms),
            Some(r) => {
                let c: Counter = serde_json::from_str(&r.body).unwrap_or_default();
                (
                    c.count,
                    Some(r.updated_ms),
                    next_updated(now_ms, r.updated_ms),
                )
            }
        };
        if count >= limit {
            return Err(Limited {
                retry_after_s: secs_until(now_ms, end),
            }
            .into());
        }
        let row = ResourceRow {
            id: id.clone(),
            app: String::new(),
            kind: LIMIT_KIND.into(),
            state: "counting".into(),
            parent: None,
            due_ms: Some(end),
            body: serde_json::json!({"count": count + 1}).to_string(),
            created_ms: current.as_ref().map_or(now_ms, |r| r.created_ms),
            updated_ms: updated,
        };
        if store.put_resource_if(row, expected).await? {
            return Ok(());
        }
    }
    Err(Limited {
        retry_after_s: secs_until(now_ms, end),
    }
    .into())
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Lockout {
    failures: u32,
    locked_until_ms: i64,
}

fn lockout_id(address: &str) -> String {
    format!("{LOCKOUT_KIND}:{address}")
}

/// `Err(Limited)` while `address` is locked.
pub async fn check_lockout(store: &Store, address: &str, now_ms: i64) -> Result<(), LimitError> {
    if let Some(r) = store.resource(&lockout_id(address)).await? {
        let l: Lockout = serde_json::from_str(&r.body).unwrap_or_default();
        if l.locked_until_ms > now_ms {
            return Err(Limited {
                retry_after_s: secs_until(now_ms, l.locked_until_ms),
            }
            .into());
        }
    }
    Ok(())
}

/// Records a failed sign-in; the failure that reaches `max` locks the address for `lockout`.
pub async fn fail(
    store: &Store,
    address: &str,
    max: u32,
    lockout: Duration,
    now_ms: i64,
) -> Result<(), StoreError> {
    let id = lockout_id(address);
    for _ in 0..CAS_TRIES {
        let current = store.resource(&id).await?;
        let mut l: Lockout = current
            .as_ref()
            .and_then(|r| serde_json::from_str(&r.body).ok())
            .unwrap_or_default();
        if l.locked_until_ms > now_ms {
            return Ok(());
        }
        l.failures = l.failures.saturating_add(1);
        if l.failures >= max {
            l.failures = 0;
            l.locked_until_ms = now_ms.saturating_add(ms(lockout));
        }
        let row = lockout_row(&id, &l, current.as_ref(), now_ms);
        if store
            .put_resource_if(row, current.as_ref().map(|r| r.updated_ms))
            .await?
        {
            return Ok(());
        }
    }
    Ok(())
}

/// A successful sign-in: the failures counted so far are forgotten.
pub async fn succeed(store: &Store, address: &str, now_ms: i64) -> Result<(), StoreError> {
    let id = lockout_id(address);
    for _ in 0..CAS_TRIES {
        let Some(current) = store.resource(&id).await? else {
            return Ok(());
        };
        let l: Lockout = serde_json::from_str(&current.body).unwrap_or_default();
        if l.failures == 0 {
            return Ok(());
        }
        let row = lockout_row(&id, &Lockout::default(), Some(&current), now_ms);
        if store.put_resource_if(row, Some(current.updated_ms)).await? {
            return Ok(());
        }
    }
    Ok(())
}

fn lockout_row(id: &str, l: &Lockout, current: Option<&ResourceRow>, now_ms: i64) -> ResourceRow {
    ResourceRow {
        id: id.to_string(),
        app: String::new(),
        kind: LOCKOUT_KIND.into(),
        state: if l.locked_until_ms > now_ms {
            "locked".into()
        } else {
            "open".into()
        },
        parent: None,
        due_ms: (l.locked_until_ms > now_ms).then_some(l.locked_until_ms),
        body: serde_json::to_string(l).unwrap_or_default(),
        created_ms: current.map_or(now_ms, |r| r.created_ms),
        updated_ms: current.map_or(now_ms, |r| next_updated(now_ms, r.updated_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    #[tokio::test]
    async fn a_window_counts_to_its_limit_then_refuses_until_it_ends() {
        let store = Store::memory();
        let w = Duration::from_secs(60);
        let start = NOW - NOW.rem_euclid(60_000);
        for _ in 0..3 {
            hit(&store, "signup", "a@example.com", 3, w, NOW)
                .await
                .unwrap();
        }
        match hit(&store, "signup", "a@example.com", 3, w, NOW).await {
            Err(LimitError::Limited(s)) => {
                assert_eq!(
                    s,
                    u64::try_from(start + 60_000 - NOW).unwrap().div_ceil(1000)
                )
            }
            other => panic!("{other:?}"),
        }
        // Another key, another scope: their own counts.
        hit(&store, "signup", "b@example.com", 3, w, NOW)
            .await
            .unwrap();
        hit(&store, "signin", "a@example.com", 3, w, NOW)
            .await
            .unwrap();
        // The next window starts again.
        hit(&store, "signup", "a@example.com", 3, w, start + 60_000)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn concurrent_hits_count_each_once() {
        let store = Store::memory();
        let w = Duration::from_secs(3600);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let s = store.clone();
                tokio::spawn(async move { hit(&s, "x", "k", 10, w, NOW).await.is_ok() })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        assert_eq!(ok, 10);
    }

    #[tokio::test]
    async fn failures_lock_then_the_lock_ends() {
        let store = Store::memory();
        let lock = Duration::from_secs(900);
        for _ in 0..2 {
            fail(&store, "a", 3, lock, NOW).await.unwrap();
        }
        check_lockout(&store, "a", NOW).await.unwrap();
        // A success forgets the two failures.
        succeed(&store, "a", NOW).await.unwrap();
        for _ in 0..2 {
            fail(&store, "a", 3, lock, NOW).await.unwrap();
        }
        check_lockout(&store, "a", NOW).await.unwrap();
        fail(&store, "a", 3, lock, NOW).await.unwrap();
        assert!(matches!(
            check_lockout(&store, "a", NOW + 1000).await,
            Err(LimitError::Limited(899))
        ));
        check_lockout(&store, "a", NOW + 900_000).await.unwrap();
    }
}
