//! One piece of work at a time per name (a payment, a `referenceCode`, a top-up): the checks
//! of a request and its first durable write are one step. In this process a mutex per name;
//! when the store is shared by several gateway instances (PostgreSQL), also a lease in the store
//! ([`crate::store::Store::take_lease`]), renewed while held, given back when dropped (and
//! left to run out if the instance dies).
//!
//! ```text
//! hold("camara:pay-1") --local mutex--> --take_lease (shared store)--> Held
//!                                        held elsewhere: retry every 20-100 ms up to `wait`
//! drop(Held) --> drop_lease (in the background) --> local mutex released
//! ```

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tracing::warn;

use crate::store::{Lease, Store, StoreError, now_ms};

type LockMap = DashMap<String, Arc<Mutex<()>>>;

fn local() -> &'static LockMap {
    static LOCKS: OnceLock<LockMap> = OnceLock::new();
    LOCKS.get_or_init(DashMap::new)
}

/// Who takes the leases, for how long, in which store (cheap to clone).
#[derive(Clone, Debug)]
pub struct Locks {
    store: Store,
    owner: String,
    ttl: Duration,
    /// Leases in the store too (it is shared by several instances).
    shared: bool,
}

/// A held lock; released on drop.
pub struct Held {
    name: String,
    guard: Option<OwnedMutexGuard<()>>,
    lease: Option<(Locks, tokio::task::JoinHandle<()>)>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("name", &self.name).finish()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((locks, renewal)) = self.lease.take() {
            renewal.abort();
            let name = self.name.clone();
            // Outside a runtime (never, in the gateway) the lease simply runs out.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = locks.store.drop_lease(&name, &locks.owner).await {
                        warn!(lock = %name, error = %e, "lease not given back (it runs out)");
                    }
                });
            }
        }
        self.guard.take();
        // Clones are only made under the shard lock (`entry`), which `remove_if` takes too: a
        // count of one means no holder and no waiter.
        local().remove_if(&self.name, |_, m| Arc::strong_count(m) == 1);
    }
}

impl Locks {
    /// `shared`: whether other instances use `store` (then locks are leases in it too).
    pub fn new(store: Store, owner: String, ttl: Duration, shared: bool) -> Self {
        Self {
            store,
            owner,
            ttl,
            shared,
        }
    }

    fn entry(name: &str) -> Arc<Mutex<()>> {
        Arc::clone(local().entry(name.to_string()).or_default().value())
    }

    async fn take(&self, name: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX));
        self.store
            .take_lease(
                name,
                Lease {
                    owner: self.owner.clone(),
                    until_ms: until,
                },
                now,
            )
            .await
    }

    /// The renewal of a held lease, every third of its length, until aborted.
    fn renew(&self, name: &str) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let every = (me.ttl / 3).max(Duration::from_millis(10));
            loop {
                tokio::time::sleep(every).await;
                if !matches!(me.take(&name).await, Ok(true)) {
                    warn!(lock = %name, "lease lost while held");
                }
            }
        })
    }

    fn held(&self, name: &str, guard: OwnedMutexGuard<()>) -> Held {
        Held {
            name: name.to_string(),
            guard: Some(guard),
            lease: self.shared.then(|| (self.clone(), self.renew(name))),
        }
    }

    /// The lock of `name`, waiting for it at most `wait` (then `None`: busy elsewhere).
    pub async fn hold(&self, name: &str, wait: Duration) -> Result<Option<Held>, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let Ok(guard) = tokio::time::timeout(wait, Self::entry(name).lock_owned()).await else {
            return Ok(None);
        };
        if !self.shared {
            return Ok(Some(self.held(name, guard)));
        }
        let mut pause = Duration::from_millis(20);
        loop {
            if self.take(name).await? {
                return Ok(Some(self.held(name, guard)));
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// The lock of `name` if nobody holds it now.
    pub async fn try_hold(&self, name: &str) -> Result<Option<Held>, StoreError> {
        let Ok(guard) = Self::entry(name).try_lock_owned() else {
            return Ok(None);
        };
        if self.shared && !self.take(name).await? {
            return Ok(None);
        }
        Ok(Some(self.held(name, guard)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lock_is_one_holder_at_a_time_across_instances_sharing_a_store() {
        let store = Store::memory();
        let ttl = Duration::from_secs(30);
        let one = Locks::new(store.clone(), "gw1".into(), ttl, true);
        let two = Locks::new(store.clone(), "gw2".into(), ttl, true);
        let held = one.try_hold("pay-1").await.unwrap().expect("free");
        // In this process the local mutex answers first; the store's lease is what another
        // process meets: take it directly as the other instance would.
        assert!(!two.take("pay-1").await.unwrap(), "leased by gw1");
        assert!(
            two.hold("pay-1", Duration::from_millis(150))
                .await
                .unwrap()
                .is_none()
        );
        drop(held);
        // Given back in the background.
        let mut free = false;
        for _ in 0..50 {
            if two.take("pay-1").await.unwrap() {
                free = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(free, "given back on drop");
    }

    #[tokio::test]
    async fn a_lease_of_an_instance_that_died_runs_out() {
        let store = Store::memory();
        let short = Locks::new(
            store.clone(),
            "gw1".into(),
            Duration::from_millis(200),
            true,
        );
        // Taken and never given back (the instance "dies": no renewal, no drop).
        assert!(short.take("job").await.unwrap());
        let other = Locks::new(store, "gw2".into(), Duration::from_secs(30), true);
        assert!(!other.take("job").await.unwrap());
        let held = other.hold("job", Duration::from_secs(2)).await.unwrap();
        assert!(held.is_some(), "taken once the lease ran out");
    }

    #[tokio::test]
    async fn unshared_locks_are_in_process_only() {
        let locks = Locks::new(
            Store::memory(),
            "gw1".into(),
            Duration::from_secs(30),
            false,
        );
        let held = locks.try_hold("x").await.unwrap().expect("free");
        assert!(locks.try_hold("x").await.unwrap().is_none(), "held here");
        drop(held);
        assert!(locks.try_hold("x").await.unwrap().is_some());
    }
}
