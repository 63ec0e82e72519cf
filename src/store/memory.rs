//! An in-memory [`Backend`]: the reference semantics of the store, for tests and for
//! measuring the write path without a disk. Nothing survives the process.

use std::collections::HashMap;

use super::{
    Backend, Begun, OpState, OperationFilter, OperationRow, ReservationRow, ReservationState,
    ResourceFilter, ResourceRow, StoreError, Write, Written,
};

#[derive(Debug, Default)]
pub struct MemoryBackend {
    ops: HashMap<String, OperationRow>,
    by_key: HashMap<(String, String), String>,
    /// Insertion order, for listings.
    order: Vec<String>,
    reservations: HashMap<String, ReservationRow>,
    resources: HashMap<String, ResourceRow>,
}

impl MemoryBackend {
    fn begin(&mut self, op: &OperationRow) -> Begun {
        if let Some(key) = &op.key {
            let k = (op.app.clone(), key.clone());
            if let Some(existing) = self.by_key.get(&k).and_then(|id| self.ops.get(id)) {
                if existing.state != OpState::Retryable {
                    return Begun::Existing(Box::new(existing.clone()));
                }
                let old = existing.id.clone();
                self.ops.remove(&old);
                self.order.retain(|id| *id != old);
            }
            self.by_key.insert(k, op.id.clone());
        }
        if self.ops.insert(op.id.clone(), op.clone()).is_none() {
            self.order.push(op.id.clone());
        }
        Begun::Inserted
    }
}

impl Backend for MemoryBackend {
    fn apply(&mut self, batch: &[Write]) -> Result<Vec<Written>, StoreError> {
        let mut out = Vec::with_capacity(batch.len());
        for w in batch {
            out.push(match w {
                Write::Begin(op) => Written::Begun(self.begin(op)),
                Write::Update(op) => {
                    if !self.ops.contains_key(&op.id) {
                        return Err(StoreError(format!("no operation {}", op.id)));
                    }
                    self.ops.insert(op.id.clone(), op.clone());
                    Written::Done
                }
                Write::Reservation(r) => {
                    self.reservations.insert(r.id.clone(), r.clone());
                    Written::Done
                }
                Write::Resource(r) => {
                    self.resources.insert(r.id.clone(), r.clone());
                    Written::Done
                }
            });
        }
        Ok(out)
    }

    fn operation(&mut self, id: &str) -> Result<Option<OperationRow>, StoreError> {
        Ok(self.ops.get(id).cloned())
    }

    fn operation_by_key(
        &mut self,
        app: &str,
        key: &str,
    ) -> Result<Option<OperationRow>, StoreError> {
        Ok(self
            .by_key
            .get(&(app.to_string(), key.to_string()))
            .and_then(|id| self.ops.get(id))
            .cloned())
    }

    fn operations(&mut self, f: &OperationFilter) -> Result<Vec<OperationRow>, StoreError> {
        let limit = if f.limit == 0 { usize::MAX } else { f.limit };
        Ok(self
            .order
            .iter()
            .rev()
            .filter_map(|id| self.ops.get(id))
            .filter(|o| f.app.as_ref().is_none_or(|a| *a == o.app))
            .filter(|o| {
                f.reference_code
                    .as_ref()
                    .is_none_or(|r| o.reference_code.as_ref() == Some(r))
            })
            .filter(|o| {
                f.reservation_id
                    .as_ref()
                    .is_none_or(|r| o.reservation_id.as_ref() == Some(r))
            })
            .filter(|o| f.state.is_none_or(|s| s == o.state))
            .take(limit)
            .cloned()
            .collect())
    }

    fn unresolved(&mut self) -> Result<Vec<OperationRow>, StoreError> {
        Ok(self
            .order
            .iter()
            .filter_map(|id| self.ops.get(id))
            .filter(|o| matches!(o.state, OpState::Pending | OpState::Unknown))
            .cloned()
            .collect())
    }

    fn reservation(&mut self, id: &str) -> Result<Option<ReservationRow>, StoreError> {
        Ok(self.reservations.get(id).cloned())
    }

    fn resource(&mut self, id: &str) -> Result<Option<ResourceRow>, StoreError> {
        Ok(self.resources.get(id).cloned())
    }

    fn resources(&mut self, f: &ResourceFilter) -> Result<(Vec<ResourceRow>, usize), StoreError> {
        let mut v: Vec<&ResourceRow> = self
            .resources
            .values()
            .filter(|r| f.app.as_ref().is_none_or(|a| *a == r.app))
            .filter(|r| f.kind.as_ref().is_none_or(|k| *k == r.kind))
            .filter(|r| f.state.as_ref().is_none_or(|s| *s == r.state))
            .filter(|r| {
                f.parent
                    .as_ref()
                    .is_none_or(|p| r.parent.as_ref() == Some(p))
            })
            .filter(|r| {
                f.due_before_ms
                    .is_none_or(|t| r.due_ms.is_some_and(|d| d <= t))
            })
            .filter(|r| f.created_from_ms.is_none_or(|t| r.created_ms >= t))
            .filter(|r| f.created_to_ms.is_none_or(|t| r.created_ms <= t))
            .collect();
        v.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        if f.ascending {
            v.reverse();
        }
        let total = v.len();
        let limit = if f.limit == 0 { usize::MAX } else { f.limit };
        Ok((
            v.into_iter().skip(f.offset).take(limit).cloned().collect(),
            total,
        ))
    }

    fn open_reservations(&mut self) -> Result<Vec<ReservationRow>, StoreError> {
        let mut v: Vec<_> = self
            .reservations
            .values()
            .filter(|r| r.state == ReservationState::Open)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
        Ok(v)
    }
}

/// Shared tests every backend must pass: call them from each backend's tests.
#[cfg(test)]
pub(crate) mod conformance {
    use super::super::*;
    use rust_decimal::Decimal;

    pub fn op(id: &str, app: &str, key: Option<&str>, state: OpState) -> OperationRow {
        OperationRow {
            id: id.into(),
            app: app.into(),
            key: key.map(Into::into),
            kind: "charge".into(),
            request_hash: "h1".into(),
            parent: None,
            reservation_id: None,
            session_id: format!("gw;1;{id}"),
            request_number: 0,
            subscriber: Some("tel:34600000001".into()),
            amount: Some(Decimal::new(499, 2)),
            currency: Some("EUR".into()),
            reference_code: key.map(Into::into),
            state,
            result_code: None,
            request: "{}".into(),
            outcome: None,
            created_ms: 1,
            updated_ms: 1,
        }
    }

    pub fn reservation(id: &str, state: ReservationState, created: i64) -> ReservationRow {
        ReservationRow {
            id: id.into(),
            app: "app".into(),
            session_id: format!("gw;1;{id}"),
            subscriber: "tel:34600000001".into(),
            currency: "EUR".into(),
            reserved: Decimal::new(1000, 2),
            charged: Decimal::ZERO,
            last_request_number: 0,
            state,
            expires_ms: 10_000,
            created_ms: created,
            updated_ms: created,
        }
    }

    /// Idempotency keys, retryable replacement, updates, reads and listings.
    pub fn run(b: &mut impl Backend) {
        let a = op("op-1", "app", Some("ref-1"), OpState::Pending);
        let out = b.apply(&[Write::Begin(a.clone())]).unwrap();
        assert_eq!(out, vec![Written::Begun(Begun::Inserted)]);
        // The same key again keeps the first row; another app's same key is its own.
        let dup = op("op-2", "app", Some("ref-1"), OpState::Pending);
        let other = op("op-3", "other", Some("ref-1"), OpState::Pending);
        let keyless = op("op-4", "app", None, OpState::Pending);
        let out = b
            .apply(&[
                Write::Begin(dup),
                Write::Begin(other),
                Write::Begin(keyless.clone()),
            ])
            .unwrap();
        assert_eq!(out[0], Written::Begun(Begun::Existing(Box::new(a.clone()))));
        assert_eq!(out[1], Written::Begun(Begun::Inserted));
        assert_eq!(out[2], Written::Begun(Begun::Inserted));
        // Update, then read back by id and by key.
        let mut done = a.clone();
        done.state = OpState::Succeeded;
        done.result_code = Some(2001);
        done.outcome = Some("{\"ok\":true}".into());
        done.amount = Some(Decimal::new(123_456_789, 4));
        done.updated_ms = 2;
        b.apply(&[Write::Update(done.clone())]).unwrap();
        assert_eq!(b.operation("op-1").unwrap(), Some(done.clone()));
        assert_eq!(b.operation_by_key("app", "ref-1").unwrap(), Some(done));
        assert_eq!(b.operation_by_key("app", "nope").unwrap(), None);
        // Updating a row that does not exist fails the batch.
        assert!(
            b.apply(&[Write::Update(op("ghost", "app", None, OpState::Pending))])
                .is_err()
        );
        // A retryable row gives way to a new attempt with the same key.
        let r = op("op-5", "app", Some("ref-5"), OpState::Retryable);
        b.apply(&[Write::Begin(r)]).unwrap();
        let again = op("op-6", "app", Some("ref-5"), OpState::Pending);
        let out = b.apply(&[Write::Begin(again.clone())]).unwrap();
        assert_eq!(out, vec![Written::Begun(Begun::Inserted)]);
        assert_eq!(b.operation_by_key("app", "ref-5").unwrap(), Some(again));
        assert_eq!(b.operation("op-5").unwrap(), None);
        // Unresolved: pending and unknown ones, oldest first.
        let ids: Vec<_> = b.unresolved().unwrap().into_iter().map(|o| o.id).collect();
        assert_eq!(ids, vec!["op-3", "op-4", "op-6"]);
        // Listings filter and limit, newest first.
        let f = OperationFilter {
            app: Some("app".into()),
            limit: 2,
            ..OperationFilter::default()
        };
        let ids: Vec<_> = b
            .operations(&f)
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(ids, vec!["op-6", "op-4"]);
        let f = OperationFilter {
            state: Some(OpState::Succeeded),
            ..OperationFilter::default()
        };
        assert_eq!(b.operations(&f).unwrap().len(), 1);
        // Reservations: insert, replace, open ones in creation order.
        b.apply(&[
            Write::Reservation(reservation("r2", ReservationState::Open, 20)),
            Write::Reservation(reservation("r1", ReservationState::Open, 10)),
            Write::Reservation(reservation("r3", ReservationState::Open, 30)),
        ])
        .unwrap();
        let mut r3 = reservation("r3", ReservationState::Released, 30);
        r3.charged = Decimal::new(250, 2);
        b.apply(&[Write::Reservation(r3.clone())]).unwrap();
        assert_eq!(b.reservation("r3").unwrap(), Some(r3));
        let ids: Vec<_> = b
            .open_reservations()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, vec!["r1", "r2"]);
        resources(b);
    }

    pub fn resource(id: &str, kind: &str, state: &str, created: i64) -> ResourceRow {
        ResourceRow {
            id: id.into(),
            app: "app".into(),
            kind: kind.into(),
            state: state.into(),
            parent: None,
            due_ms: None,
            body: format!("{{\"id\":\"{id}\",\"amount\":\"12345.6789\"}}"),
            created_ms: created,
            updated_ms: created,
        }
    }

    /// Resources: upsert, read back, filters, paging newest first with the total.
    fn resources(b: &mut impl Backend) {
        let mut refund = resource("rf-1", "camara.refund", "succeeded", 30);
        refund.parent = Some("pay-2".into());
        let mut topup = resource("tp-1", "tmf654.topup", "scheduled", 40);
        topup.due_ms = Some(1_000);
        b.apply(&[
            Write::Resource(resource("pay-1", "camara.payment", "succeeded", 10)),
            Write::Resource(resource("pay-2", "camara.payment", "processing", 20)),
            Write::Resource(refund.clone()),
            Write::Resource(topup.clone()),
        ])
        .unwrap();
        let mut pay2 = resource("pay-2", "camara.payment", "succeeded", 20);
        pay2.updated_ms = 25;
        b.apply(&[Write::Resource(pay2.clone())]).unwrap();
        assert_eq!(b.resource("pay-2").unwrap(), Some(pay2));
        assert_eq!(b.resource("nope").unwrap(), None);
        let ids =
            |f: ResourceFilter, b: &mut dyn FnMut(&ResourceFilter) -> (Vec<ResourceRow>, usize)| {
                let (rows, total) = b(&f);
                (rows.into_iter().map(|r| r.id).collect::<Vec<_>>(), total)
            };
        let mut q = |f: &ResourceFilter| b.resources(f).unwrap();
        let kind = |k: &str| ResourceFilter {
            kind: Some(k.into()),
            ..ResourceFilter::default()
        };
        assert_eq!(
            ids(kind("camara.payment"), &mut q),
            (vec!["pay-2".to_string(), "pay-1".to_string()], 2)
        );
        let page = ResourceFilter {
            app: Some("app".into()),
            offset: 1,
            limit: 2,
            ..ResourceFilter::default()
        };
        assert_eq!(
            ids(page, &mut q),
            (vec!["rf-1".to_string(), "pay-2".to_string()], 4)
        );
        let children = ResourceFilter {
            parent: Some("pay-2".into()),
            ..ResourceFilter::default()
        };
        assert_eq!(ids(children, &mut q), (vec!["rf-1".to_string()], 1));
        let due = ResourceFilter {
            due_before_ms: Some(1_000),
            state: Some("scheduled".into()),
            ..ResourceFilter::default()
        };
        assert_eq!(ids(due, &mut q), (vec!["tp-1".to_string()], 1));
        let not_yet = ResourceFilter {
            due_before_ms: Some(999),
            ..ResourceFilter::default()
        };
        assert_eq!(ids(not_yet, &mut q), (vec![], 0));
        // Creation-time range (both ends inclusive), oldest first, paged in that order.
        let range = |from, to, ascending, offset, limit| ResourceFilter {
            app: Some("app".into()),
            created_from_ms: from,
            created_to_ms: to,
            ascending,
            offset,
            limit,
            ..ResourceFilter::default()
        };
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ids(range(Some(20), Some(30), false, 0, 0), &mut q),
            (s(&["rf-1", "pay-2"]), 2)
        );
        assert_eq!(
            ids(range(Some(20), None, true, 0, 0), &mut q),
            (s(&["pay-2", "rf-1", "tp-1"]), 3)
        );
        assert_eq!(
            ids(range(None, Some(20), true, 0, 0), &mut q),
            (s(&["pay-1", "pay-2"]), 2)
        );
        assert_eq!(
            ids(range(None, None, true, 1, 2), &mut q),
            (s(&["pay-2", "rf-1"]), 4)
        );
        assert_eq!(
            ids(range(Some(31), Some(39), false, 0, 0), &mut q),
            (vec![], 0)
        );
        // Same creation time: the id decides, and ascending is the exact reverse.
        b.apply(&[Write::Resource(resource(
            "pay-0",
            "camara.payment",
            "succeeded",
            10,
        ))])
        .unwrap();
        let mut q = |f: &ResourceFilter| b.resources(f).unwrap();
        assert_eq!(
            ids(range(None, Some(10), false, 0, 0), &mut q),
            (s(&["pay-1", "pay-0"]), 2)
        );
        assert_eq!(
            ids(range(None, Some(10), true, 0, 0), &mut q),
            (s(&["pay-0", "pay-1"]), 2)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        conformance::run(&mut MemoryBackend::default());
    }

    #[tokio::test]
    async fn group_commit_handle() {
        let store = crate::store::Store::memory();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("ref-{}", i % 100);
                let op = conformance::op(&format!("op-{i}"), "app", Some(&key), OpState::Pending);
                s.begin(op).await.unwrap()
            }));
        }
        let mut inserted = 0;
        for t in tasks {
            if t.await.unwrap() == Begun::Inserted {
                inserted += 1;
            }
        }
        assert_eq!(inserted, 100, "one row per key");
        store.flush().await.unwrap();
        let m = store.metrics();
        assert_eq!(m.writes.load(std::sync::atomic::Ordering::Relaxed), 200);
        assert!(m.batches.load(std::sync::atomic::Ordering::Relaxed) <= 200);
        assert_eq!(store.unresolved().await.unwrap().len(), 100);
    }
}
