//! An in-memory [`Backend`]: the reference semantics of the store, for tests and for
//! measuring the write path without a disk. Nothing survives the process.

use std::collections::HashMap;

use super::{
    Backend, Begun, EventFilter, EventRow, EventState, InventoryFilter, InventoryRow,
    InventoryStatus, Lease, OpState, OperationFilter, OperationRow, ReservationRow,
    ReservationState, ResourceFilter, ResourceRow, StoreError, Write, Written,
};

#[derive(Debug, Default)]
pub struct MemoryBackend {
    ops: HashMap<String, OperationRow>,
    by_key: HashMap<(String, String), String>,
    /// Insertion order, for listings.
    order: Vec<String>,
    reservations: HashMap<String, ReservationRow>,
    resources: HashMap<String, ResourceRow>,
    leases: HashMap<String, Lease>,
    events: HashMap<String, EventRow>,
    /// Events in the order first written (for the per-resource order of delivery).
    event_order: Vec<String>,
    inventory: HashMap<String, InventoryRow>,
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
                self.by_key.remove(&k);
                self.order.retain(|id| *id != old);
            }
        }
        if !self.ops.contains_key(&op.id) {
            self.order.push(op.id.clone());
        }
        self.put(op);
        Begun::Inserted
    }

    fn import_inventory(&mut self, row: &InventoryRow) -> Result<(), StoreError> {
        if let Some(other) = self
            .inventory
            .values()
            .find(|r| r.id != row.id && r.category == row.category && r.value == row.value)
        {
            return Err(StoreError(format!(
                "inventory {} {} is resource {:?} already",
                row.category, row.value, other.id
            )));
        }
        match self.inventory.get_mut(&row.id) {
            Some(existing) => {
                existing.body = row.body.clone();
                existing.updated_ms = row.updated_ms;
            }
            None => {
                self.inventory.insert(row.id.clone(), row.clone());
            }
        }
        Ok(())
    }

    /// Writes `op` in place of the row with its id, keeping the key index exact.
    fn put(&mut self, op: &OperationRow) {
        if let Some(old) = self.ops.get(&op.id)
            && let Some(old_key) = &old.key
        {
            let k = (old.app.clone(), old_key.clone());
            if self.by_key.get(&k) == Some(&op.id) {
                self.by_key.remove(&k);
            }
        }
        if let Some(key) = &op.key {
            self.by_key
                .insert((op.app.clone(), key.clone()), op.id.clone());
        }
        self.ops.insert(op.id.clone(), op.clone());
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
                    self.put(op);
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
                Write::PutResourceIf {
                    row,
                    expected_updated_ms,
                } => {
                    let won = match (self.resources.get(&row.id), expected_updated_ms) {
                        (None, None) => true,
                        (Some(r), Some(t)) => r.updated_ms == *t,
                        _ => false,
                    };
                    if won {
                        self.resources.insert(row.id.clone(), row.clone());
                    }
                    Written::Won(won)
                }
                Write::Claim { id, lease, now_ms } => {
                    let won = match self.ops.get_mut(id) {
                        Some(op)
                            if matches!(op.state, OpState::Pending | OpState::Unknown)
                                && op
                                    .lease
                                    .as_ref()
                                    .is_none_or(|l| !l.held_by_other(&lease.owner, *now_ms)) =>
                        {
                            op.lease = Some(lease.clone());
                            true
                        }
                        _ => false,
                    };
                    Written::Won(won)
                }
                Write::Renew { owner, until_ms } => {
                    for op in self.ops.values_mut() {
                        if matches!(op.state, OpState::Pending | OpState::Unknown)
                            && let Some(l) = op.lease.as_mut()
                            && l.owner == *owner
                        {
                            l.until_ms = *until_ms;
                        }
                    }
                    Written::Done
                }
                Write::Step { row, expected } => {
                    let won = self
                        .reservations
                        .get(&row.id)
                        .is_some_and(|r| r.last_request_number == *expected);
                    if won {
                        self.reservations.insert(row.id.clone(), row.clone());
                    }
                    Written::Won(won)
                }
                Write::TakeLease {
                    name,
                    lease,
                    now_ms,
                } => {
                    let won = self
                        .leases
                        .get(name)
                        .is_none_or(|l| !l.held_by_other(&lease.owner, *now_ms));
                    if won {
                        self.leases.insert(name.clone(), lease.clone());
                    }
                    Written::Won(won)
                }
                Write::DropLease { name, owner } => {
                    if self.leases.get(name).is_some_and(|l| l.owner == *owner) {
                        self.leases.remove(name);
                    }
                    Written::Done
                }
                Write::Event(e) => {
                    if self.events.insert(e.id.clone(), e.clone()).is_none() {
                        self.event_order.push(e.id.clone());
                    }
                    Written::Done
                }
                Write::ClaimEvent { id, lease, now_ms } => {
                    let won = match self.events.get_mut(id) {
                        Some(e)
                            if e.state == EventState::Pending
                                && e.lease
                                    .as_ref()
                                    .is_none_or(|l| !l.held_by_other(&lease.owner, *now_ms)) =>
                        {
                            e.lease = Some(lease.clone());
                            true
                        }
                        _ => false,
                    };
                    Written::Won(won)
                }
                Write::ImportInventory(row) => {
                    self.import_inventory(row)?;
                    Written::Done
                }
                Write::Reserve {
                    id,
                    holder,
                    until_ms,
                    now_ms,
                } => {
                    let won = match self.inventory.get_mut(id) {
                        Some(r)
                            if r.status == InventoryStatus::Available
                                || (r.status == InventoryStatus::Reserved
                                    && (r.holder.as_deref() == Some(holder.as_str())
                                        || r.hold_until_ms.is_none_or(|t| t <= *now_ms))) =>
                        {
                            r.status = InventoryStatus::Reserved;
                            r.holder = Some(holder.clone());
                            r.hold_until_ms = Some(*until_ms);
                            r.updated_ms = *now_ms;
                            true
                        }
                        _ => false,
                    };
                    Written::Won(won)
                }
                Write::Assign {
                    id,
                    holder,
                    owner,
                    now_ms,
                } => {
                    let is = |r: &InventoryRow, who: &str| r.holder.as_deref() == Some(who);
                    let won = match self.inventory.get_mut(id) {
                        Some(r)
                            if (r.status == InventoryStatus::Assigned && is(r, owner))
                                || (r.status == InventoryStatus::Reserved
                                    && is(r, holder)
                                    && r.hold_until_ms.is_some_and(|t| t > *now_ms)) =>
                        {
                            r.status = InventoryStatus::Assigned;
                            r.holder = Some(owner.clone());
                            r.hold_until_ms = None;
                            r.updated_ms = *now_ms;
                            true
                        }
                        _ => false,
                    };
                    Written::Won(won)
                }
                Write::Release { id, holder, now_ms } => {
                    let won = match self.inventory.get_mut(id) {
                        Some(r)
                            if r.status == InventoryStatus::Reserved
                                && r.holder.as_deref() == Some(holder.as_str()) =>
                        {
                            r.status = InventoryStatus::Available;
                            r.holder = None;
                            r.hold_until_ms = None;
                            r.updated_ms = *now_ms;
                            true
                        }
                        _ => false,
                    };
                    Written::Won(won)
                }
                Write::Unassign { id, holder, now_ms } => {
                    let won = match self.inventory.get_mut(id) {
                        Some(r)
                            if r.status == InventoryStatus::Assigned
                                && r.holder.as_deref() == Some(holder.as_str()) =>
                        {
                            r.status = InventoryStatus::Available;
                            r.holder = None;
                            r.hold_until_ms = None;
                            r.updated_ms = *now_ms;
                            true
                        }
                        _ => false,
                    };
                    Written::Won(won)
                }
                Write::Activate { id, holder, now_ms } => {
                    let won = match self.inventory.get_mut(id) {
                        Some(r)
                            if r.status == InventoryStatus::PortingIn
                                || (r.status == InventoryStatus::Active
                                    && r.holder.as_deref() == Some(holder.as_str())) =>
                        {
                            r.status = InventoryStatus::Active;
                            r.holder = Some(holder.clone());
                            r.updated_ms = *now_ms;
                            true
                        }
                        _ => false,
                    };
                    Written::Won(won)
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

    fn event(&mut self, id: &str) -> Result<Option<EventRow>, StoreError> {
        Ok(self.events.get(id).cloned())
    }

    fn events(&mut self, f: &EventFilter) -> Result<(Vec<EventRow>, usize), StoreError> {
        let v: Vec<&EventRow> = self
            .event_order
            .iter()
            .rev()
            .filter_map(|id| self.events.get(id))
            .filter(|e| f.app.as_ref().is_none_or(|a| *a == e.app))
            .filter(|e| f.state.is_none_or(|s| s == e.state))
            .filter(|e| {
                f.resource
                    .as_ref()
                    .is_none_or(|r| e.resource.as_ref() == Some(r))
            })
            .collect();
        let total = v.len();
        let limit = if f.limit == 0 { usize::MAX } else { f.limit };
        Ok((v.into_iter().take(limit).cloned().collect(), total))
    }

    fn inventory(&mut self, id: &str) -> Result<Option<InventoryRow>, StoreError> {
        Ok(self.inventory.get(id).cloned())
    }

    fn inventory_list(
        &mut self,
        f: &InventoryFilter,
    ) -> Result<(Vec<InventoryRow>, usize), StoreError> {
        let mut v: Vec<&InventoryRow> = self
            .inventory
            .values()
            .filter(|r| f.category.as_ref().is_none_or(|c| *c == r.category))
            .filter(|r| f.status.is_none_or(|s| s == r.status_at(f.now_ms)))
            .filter(|r| f.pattern.as_ref().is_none_or(|p| like(p, &r.value)))
            .collect();
        v.sort_by(|a, b| a.category.cmp(&b.category).then(a.value.cmp(&b.value)));
        let total = v.len();
        let limit = if f.limit == 0 { usize::MAX } else { f.limit };
        Ok((
            v.into_iter().skip(f.offset).take(limit).cloned().collect(),
            total,
        ))
    }

    fn due_events(&mut self, now_ms: i64, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        let mut out = Vec::new();
        // The (resource, url) pairs that already have an older pending event.
        let mut blocked: std::collections::HashSet<(&str, &str)> = Default::default();
        for e in self.event_order.iter().filter_map(|id| self.events.get(id)) {
            if out.len() >= limit {
                break;
            }
            if e.state != EventState::Pending {
                continue;
            }
            if let Some(r) = &e.resource
                && !blocked.insert((r.as_str(), e.url.as_str()))
            {
                continue;
            }
            let free = e.lease.as_ref().is_none_or(|l| l.until_ms <= now_ms);
            if e.next_ms <= now_ms && free {
                out.push(e.clone());
            }
        }
        Ok(out)
    }
}

/// SQL LIKE without an escape character: `%` any run, `_` one character, the rest literal.
fn like(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('%', rest)) => (0..=v.len()).any(|i| v.get(i..).is_some_and(|t| go(rest, t))),
            Some(('_', rest)) => v.split_first().is_some_and(|(_, t)| go(rest, t)),
            Some((c, rest)) => v.split_first().is_some_and(|(d, t)| c == d && go(rest, t)),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    go(&p, &v)
}

/// Shared tests every backend must pass: call them from each backend's tests.
#[cfg(test)]
pub(crate) mod conformance {
    use std::str::FromStr;

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
            lease: None,
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
            pending: None,
        }
    }

    fn won(b: &mut impl Backend, w: Write) -> bool {
        match b.apply(&[w]).unwrap().pop() {
            Some(Written::Won(won)) => won,
            other => panic!("not a conditional answer: {other:?}"),
        }
    }

    fn lease(owner: &str, until_ms: i64) -> Lease {
        Lease {
            owner: owner.into(),
            until_ms,
        }
    }

    /// Leases between gateway instances: an unresolved operation's (taken at begin, claimed
    /// when free or run out, renewed by its holder), the compare-and-set step of a
    /// reservation, and named leases.
    pub fn event(id: &str, resource: Option<&str>, url: &str, created: i64) -> EventRow {
        EventRow {
            id: id.into(),
            app: "app".into(),
            kind: "org.camaraproject.carrier-billing.v0.payment-completed".into(),
            resource: resource.map(Into::into),
            url: url.into(),
            headers: vec![("Authorization".into(), "Bearer t0k\u{e9}n".into())],
            content_type: "application/cloudevents+json".into(),
            body: r#"{"specversion":"1.0","id":"e1","data":{"amount":"0.10"}}"#.into(),
            state: EventState::Pending,
            attempts: 0,
            next_ms: created,
            last_error: None,
            lease: None,
            created_ms: created,
            updated_ms: created,
            delivered_ms: None,
        }
    }

    /// The outbox: events written with a resource in one batch, read back whole, due by
    /// time, lease and per-(resource, URL) order, claimed by one instance at a time, listed.
    pub fn events(b: &mut impl Backend) {
        let res = ResourceRow {
            id: "pay1".into(),
            app: "app".into(),
            kind: "camara.payment".into(),
            state: "succeeded".into(),
            parent: None,
            due_ms: None,
            body: "{}".into(),
            created_ms: 1,
            updated_ms: 1,
        };
        let e1 = event("e1", Some("pay1"), "https://a.example/hook", 10);
        let e2 = event("e2", Some("pay1"), "https://a.example/hook", 11);
        let e3 = event("e3", Some("pay1"), "https://b.example/hook", 12);
        let mut e4 = event("e4", None, "https://a.example/hook", 13);
        e4.next_ms = 1_000;
        let out = b
            .apply(&[
                Write::Resource(res),
                Write::Event(e1.clone()),
                Write::Event(e2.clone()),
                Write::Event(e3.clone()),
                Write::Event(e4.clone()),
            ])
            .unwrap();
        assert_eq!(out, vec![Written::Done; 5]);
        assert_eq!(b.event("e1").unwrap(), Some(e1.clone()));
        assert_eq!(b.event("nope").unwrap(), None);
        let ids = |v: Vec<EventRow>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
        // e2 waits behind e1 (same resource and URL); e3 goes to another URL; e4 is not due.
        assert_eq!(ids(b.due_events(100, 10).unwrap()), ["e1", "e3"]);
        assert_eq!(ids(b.due_events(100, 1).unwrap()), ["e1"]);
        assert_eq!(ids(b.due_events(5_000, 10).unwrap()), ["e1", "e3", "e4"]);
        // One instance at a time.
        let claim = |owner: &str, until: i64, now: i64| Write::ClaimEvent {
            id: "e1".into(),
            lease: lease(owner, until),
            now_ms: now,
        };
        assert!(won(b, claim("gw1", 200, 100)));
        assert!(!won(b, claim("gw2", 300, 150)));
        assert!(won(b, claim("gw1", 250, 150)), "its own lease, renewed");
        // Leased: not due to anyone until it runs out; still blocks e2.
        assert_eq!(ids(b.due_events(200, 10).unwrap()), ["e3"]);
        assert_eq!(ids(b.due_events(250, 10).unwrap()), ["e1", "e3"]);
        assert!(won(b, claim("gw2", 400, 260)), "ran out: another takes it");
        // Delivered: e2 comes next; a delivered event is never claimed again.
        let mut done = b.event("e1").unwrap().unwrap();
        done.state = EventState::Delivered;
        done.attempts = 1;
        done.lease = None;
        done.delivered_ms = Some(270);
        done.updated_ms = 270;
        b.apply(&[Write::Event(done.clone())]).unwrap();
        assert_eq!(b.event("e1").unwrap(), Some(done));
        assert!(!won(b, claim("gw1", 900, 300)));
        assert_eq!(ids(b.due_events(300, 10).unwrap()), ["e2", "e3"]);
        // A dead event does not hold back the next of its resource.
        let mut dead = b.event("e2").unwrap().unwrap();
        dead.state = EventState::Dead;
        dead.last_error = Some("HTTP 500".into());
        b.apply(&[Write::Event(dead)]).unwrap();
        let e5 = event("e5", Some("pay1"), "https://a.example/hook", 14);
        b.apply(&[Write::Event(e5)]).unwrap();
        assert_eq!(ids(b.due_events(300, 10).unwrap()), ["e3", "e5"]);
        // Listing: newest first, filtered, counted.
        let (all, total) = b.events(&EventFilter::default()).unwrap();
        assert_eq!(total, 5);
        assert_eq!(ids(all), ["e5", "e4", "e3", "e2", "e1"]);
        let (dead, total) = b
            .events(&EventFilter {
                state: Some(EventState::Dead),
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!((ids(dead), total), (vec!["e2".to_string()], 1));
        let (some, total) = b
            .events(&EventFilter {
                resource: Some("pay1".into()),
                limit: 2,
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(
            (ids(some), total),
            (vec!["e5".to_string(), "e3".to_string()], 4)
        );
        let (none, total) = b
            .events(&EventFilter {
                app: Some("other".into()),
                ..EventFilter::default()
            })
            .unwrap();
        assert!(none.is_empty() && total == 0);
    }

    pub fn leases(b: &mut impl Backend) {
        // An operation begun with a lease keeps it; another instance cannot claim it before
        // it runs out, its holder can; once run out anyone can.
        let mut a = op("lease-op-1", "app", Some("lease-ref-1"), OpState::Pending);
        a.lease = Some(lease("gw1", 1_000));
        b.apply(&[Write::Begin(a.clone())]).unwrap();
        assert_eq!(b.operation("lease-op-1").unwrap().unwrap().lease, a.lease);
        let claim = |owner: &str, until: i64, now: i64| Write::Claim {
            id: "lease-op-1".into(),
            lease: lease(owner, until),
            now_ms: now,
        };
        assert!(!won(b, claim("gw2", 2_000, 999)), "held by gw1 until 1000");
        assert!(won(b, claim("gw1", 1_500, 999)), "its holder may");
        assert!(!won(b, claim("gw2", 2_000, 1_499)));
        assert!(won(b, claim("gw2", 2_000, 1_500)), "run out at 1500");
        assert_eq!(
            b.operation("lease-op-1").unwrap().unwrap().lease,
            Some(lease("gw2", 2_000))
        );
        // Renewing touches only the holder's unresolved operations.
        let mut c = op("lease-op-2", "app", None, OpState::Unknown);
        c.lease = Some(lease("gw1", 500));
        let mut done = op("lease-op-3", "app", None, OpState::Succeeded);
        done.lease = Some(lease("gw2", 500));
        b.apply(&[Write::Begin(c), Write::Begin(done)]).unwrap();
        b.apply(&[Write::Renew {
            owner: "gw2".into(),
            until_ms: 9_000,
        }])
        .unwrap();
        let until = |b: &mut dyn Backend, id: &str| {
            b.operation(id).unwrap().unwrap().lease.map(|l| l.until_ms)
        };
        assert_eq!(until(b, "lease-op-1"), Some(9_000));
        assert_eq!(until(b, "lease-op-2"), Some(500), "another's");
        assert_eq!(until(b, "lease-op-3"), Some(500), "resolved");
        // A resolved operation cannot be claimed.
        assert!(!won(
            b,
            Write::Claim {
                id: "lease-op-3".into(),
                lease: lease("gw1", 10_000),
                now_ms: 9_999,
            }
        ));
        // A reservation's step: the first of two that read the same number wins.
        let r = reservation("lease-rsv", ReservationState::Open, 1);
        b.apply(&[Write::Reservation(r.clone())]).unwrap();
        let mut next = r.clone();
        next.last_request_number = 1;
        next.pending = Some("lease-op-9".into());
        assert!(won(
            b,
            Write::Step {
                row: next.clone(),
                expected: 0
            }
        ));
        let mut rival = r.clone();
        rival.last_request_number = 1;
        rival.reserved = Decimal::ONE;
        assert!(!won(
            b,
            Write::Step {
                row: rival,
                expected: 0
            }
        ));
        assert_eq!(b.reservation("lease-rsv").unwrap().unwrap(), next);
        assert!(!won(
            b,
            Write::Step {
                row: reservation("no-such-rsv", ReservationState::Open, 1),
                expected: 0
            }
        ));
        // Named leases.
        let take = |owner: &str, until: i64, now: i64| Write::TakeLease {
            name: "job".into(),
            lease: lease(owner, until),
            now_ms: now,
        };
        assert!(won(b, take("gw1", 1_000, 0)), "free");
        assert!(!won(b, take("gw2", 1_000, 500)), "held");
        assert!(won(b, take("gw1", 2_000, 500)), "renewed by its holder");
        assert!(won(b, take("gw2", 3_000, 2_000)), "run out");
        b.apply(&[Write::DropLease {
            name: "job".into(),
            owner: "gw1".into(),
        }])
        .unwrap();
        assert!(
            !won(b, take("gw1", 4_000, 2_500)),
            "gw1 could not drop gw2's"
        );
        b.apply(&[Write::DropLease {
            name: "job".into(),
            owner: "gw2".into(),
        }])
        .unwrap();
        assert!(won(b, take("gw1", 4_000, 2_500)), "dropped: free");
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

    /// An operation with every column set, some to the edge of their type.
    pub fn full_op(id: &str, key: &str, amount: &str) -> OperationRow {
        OperationRow {
            id: id.into(),
            app: "shop".into(),
            key: Some(key.into()),
            kind: "split-leg".into(),
            request_hash: "5f2c...".into(),
            parent: Some("split-1".into()),
            reservation_id: Some("res-1".into()),
            session_id: format!("gw.example;1;{id}"),
            request_number: u32::MAX,
            subscriber: Some("tel:+34600000001".into()),
            amount: Some(Decimal::from_str(amount).unwrap()),
            currency: Some("EUR".into()),
            reference_code: Some(key.into()),
            state: OpState::Unknown,
            result_code: Some(4012),
            request: r#"{"amount":"12345.6789","note":"ü ' \" ;"}"#.into(),
            outcome: Some(r#"{"charged":"unknown"}"#.into()),
            created_ms: 1_700_000_000_123,
            updated_ms: 1_700_000_000_456,
            lease: None,
        }
    }

    /// A reservation with every column set.
    pub fn full_reservation(id: &str, reserved: &str, charged: &str) -> ReservationRow {
        ReservationRow {
            id: id.into(),
            app: "shop".into(),
            session_id: format!("gw.example;2;{id}"),
            subscriber: "tel:+34600000002".into(),
            currency: "USD".into(),
            reserved: Decimal::from_str(reserved).unwrap(),
            charged: Decimal::from_str(charged).unwrap(),
            last_request_number: 7,
            state: ReservationState::Open,
            expires_ms: 1_700_000_900_000,
            created_ms: 1_700_000_000_000,
            updated_ms: 1_700_000_000_001,
            pending: None,
        }
    }

    /// What one backend wrote, the next `open` of the same store reads back exactly: every
    /// column, decimals with their scale, listing order, the idempotency key. Returns the
    /// reopened backend (for the backend's own checks).
    pub fn survives_reopen<B: Backend>(mut open: impl FnMut() -> B) -> B {
        let a = full_op("op-a", "ref-a", "12345.6789");
        let mut b_op = full_op("op-b", "ref-b", "0.10");
        b_op.key = None;
        b_op.parent = None;
        b_op.reservation_id = None;
        b_op.subscriber = None;
        b_op.currency = None;
        b_op.reference_code = None;
        b_op.result_code = None;
        b_op.outcome = None;
        b_op.amount = None;
        b_op.request_number = 0;
        b_op.state = OpState::Pending;
        let mut c = full_op("op-c", "ref-c", "0.10");
        c.state = OpState::Succeeded;
        let r1 = full_reservation("res-1", "0.10", "12345.6789");
        let mut r2 = full_reservation("res-2", "100", "0");
        r2.state = ReservationState::Gone;
        {
            let mut b = open();
            b.apply(&[
                Write::Begin(a.clone()),
                Write::Begin(b_op.clone()),
                Write::Begin(c.clone()),
                Write::Reservation(r1.clone()),
                Write::Reservation(r2.clone()),
            ])
            .unwrap();
        }
        let mut b = open();
        assert_eq!(b.operation("op-a").unwrap(), Some(a.clone()));
        assert_eq!(b.operation("op-b").unwrap(), Some(b_op.clone()));
        assert_eq!(
            b.operation_by_key("shop", "ref-c").unwrap(),
            Some(c.clone())
        );
        let all = b.operations(&OperationFilter::default()).unwrap();
        assert_eq!(all, vec![c.clone(), b_op.clone(), a.clone()]);
        // Exact decimals: the value and its scale, as written.
        let amount = b.operation("op-a").unwrap().unwrap().amount.unwrap();
        assert_eq!(amount.to_string(), "12345.6789");
        let amount = b.operation("op-c").unwrap().unwrap().amount.unwrap();
        assert_eq!(amount.to_string(), "0.10");
        let r = b.reservation("res-1").unwrap().unwrap();
        assert_eq!(r, r1);
        assert_eq!(r.reserved.to_string(), "0.10");
        assert_eq!(r.charged.to_string(), "12345.6789");
        assert_eq!(b.reservation("res-2").unwrap(), Some(r2));
        assert_eq!(b.open_reservations().unwrap(), vec![r1]);
        let ids: Vec<_> = b.unresolved().unwrap().into_iter().map(|o| o.id).collect();
        assert_eq!(ids, vec!["op-a", "op-b"]);
        // The idempotency key still holds after the reopen.
        let again = full_op("op-a2", "ref-a", "1");
        assert_eq!(
            b.apply(&[Write::Begin(again)]).unwrap(),
            vec![Written::Begun(Begun::Existing(Box::new(a)))]
        );
        b
    }

    /// Outbox events with every column set (a lease, an error, several headers, none) read
    /// back exactly from the next `open`, in the order first written, still due.
    pub fn events_survive_reopen<B: Backend>(mut open: impl FnMut() -> B) -> B {
        let mut a = event(
            "ev-a",
            Some("pay-a"),
            "https://a.example/hook",
            1_700_000_000_000,
        );
        a.headers = vec![
            ("Authorization".into(), "Bearer t0k\u{e9}n \" ' ;".into()),
            ("X-Trace".into(), "[1, 2]".into()),
        ];
        a.attempts = u32::MAX;
        a.last_error = Some("HTTP 503: \u{fc}ber".into());
        a.lease = Some(lease("gw1", 1_700_000_000_500));
        a.updated_ms = 1_700_000_000_001;
        let mut b_ev = event("ev-b", None, "https://b.example/hook", 5);
        b_ev.headers = Vec::new();
        b_ev.state = EventState::Delivered;
        b_ev.delivered_ms = Some(6);
        b_ev.content_type = "application/json".into();
        let c = event("ev-c", Some("pay-a"), "https://a.example/hook", 2);
        {
            let mut b = open();
            b.apply(&[
                Write::Event(c.clone()),
                Write::Event(a.clone()),
                Write::Event(b_ev.clone()),
            ])
            .unwrap();
            // Written again: keeps its place.
            b.apply(&[Write::Event(c.clone())]).unwrap();
        }
        let mut b = open();
        assert_eq!(b.event("ev-a").unwrap(), Some(a.clone()));
        assert_eq!(b.event("ev-b").unwrap(), Some(b_ev.clone()));
        assert_eq!(
            b.events(&EventFilter::default()).unwrap(),
            (vec![b_ev, a.clone(), c.clone()], 3)
        );
        // ev-c, first written, goes first; ev-a waits for it.
        let due: Vec<_> = b
            .due_events(i64::MAX, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(due, ["ev-c"]);
        b
    }

    /// Charges begun then updated, and a reservation, through a [`Store`] (each call durable
    /// on return); what was written. [`check_written`] reads it back from a reopened backend.
    pub async fn write_through_store(store: &Store) -> Vec<OperationRow> {
        let mut written = Vec::new();
        for i in 0..20 {
            let mut op = full_op(&format!("op-{i}"), &format!("ref-{i}"), "12345.6789");
            assert_eq!(store.begin(op.clone()).await.unwrap(), Begun::Inserted);
            op.state = OpState::Succeeded;
            op.result_code = Some(2001);
            op.amount = Some(Decimal::new(10, 2));
            store.update(op.clone()).await.unwrap();
            written.push(op);
        }
        store
            .put_reservation(full_reservation("res-1", "0.10", "0"))
            .await
            .unwrap();
        written
    }

    pub fn check_written(b: &mut impl Backend, written: &[OperationRow]) {
        for op in written {
            assert_eq!(b.operation(&op.id).unwrap().as_ref(), Some(op));
        }
        assert_eq!(
            b.operation("op-3")
                .unwrap()
                .unwrap()
                .amount
                .unwrap()
                .to_string(),
            "0.10"
        );
        assert_eq!(
            b.reservation("res-1").unwrap(),
            Some(full_reservation("res-1", "0.10", "0"))
        );
        assert!(b.unresolved().unwrap().is_empty());
    }

    /// A batch whose last write fails leaves nothing of the others, then or after `reopen`;
    /// the backend takes the next batch. `after_failure` checks the backend's own state.
    pub fn failing_batch_leaves_nothing<B: Backend>(
        mut b: B,
        after_failure: impl FnOnce(&mut B),
        reopen: impl FnOnce(B) -> B,
    ) {
        let kept = op("kept", "app", Some("k0"), OpState::Pending);
        b.apply(&[Write::Begin(kept.clone())]).unwrap();
        let mut kept_done = kept.clone();
        kept_done.state = OpState::Succeeded;
        let err = b
            .apply(&[
                Write::Begin(op("new", "app", Some("k1"), OpState::Pending)),
                Write::Update(kept_done),
                Write::Reservation(reservation("r1", ReservationState::Open, 1)),
                Write::Resource(resource("pay-f", "camara.payment", "succeeded", 1)),
                Write::Event(event("ev-f", Some("pay-f"), "https://a.example/hook", 1)),
                Write::Update(op("ghost", "app", None, OpState::Pending)),
            ])
            .unwrap_err();
        assert!(err.0.contains("ghost"), "{err}");
        assert_eq!(b.resource("pay-f").unwrap(), None);
        assert_eq!(b.event("ev-f").unwrap(), None);
        assert!(b.due_events(i64::MAX, 10).unwrap().is_empty());
        assert_eq!(b.operation("new").unwrap(), None);
        assert_eq!(b.operation_by_key("app", "k1").unwrap(), None);
        assert_eq!(b.operation("kept").unwrap(), Some(kept), "update undone");
        assert_eq!(b.reservation("r1").unwrap(), None);
        after_failure(&mut b);
        // The connection takes the next batch.
        let out = b
            .apply(&[Write::Begin(op("new", "app", Some("k1"), OpState::Pending))])
            .unwrap();
        assert_eq!(out, vec![Written::Begun(Begun::Inserted)]);
        // Nothing of the failed batch reached the disk either.
        let mut b = reopen(b);
        assert_eq!(b.reservation("r1").unwrap(), None);
        assert_eq!(b.resource("pay-f").unwrap(), None);
        assert_eq!(b.event("ev-f").unwrap(), None);
        assert_eq!(b.events(&EventFilter::default()).unwrap(), (vec![], 0));
        let ids: Vec<_> = b
            .operations(&OperationFilter::default())
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(ids, vec!["new", "kept"]);
    }

    /// An update that changes the indexed columns moves the row in every index.
    pub fn update_moves_indexed_columns(b: &mut impl Backend) {
        let a = full_op("op-a", "ref-a", "1.00");
        b.apply(&[Write::Begin(a.clone())]).unwrap();
        let mut moved = a.clone();
        moved.key = Some("ref-z".into());
        moved.reference_code = Some("ref-z".into());
        moved.reservation_id = None;
        moved.session_id = "gw.example;9;op-a".into();
        moved.state = OpState::Succeeded;
        b.apply(&[Write::Update(moved.clone())]).unwrap();
        assert_eq!(b.operation("op-a").unwrap(), Some(moved.clone()));
        assert_eq!(b.operation_by_key("shop", "ref-a").unwrap(), None);
        assert_eq!(b.operation_by_key("shop", "ref-z").unwrap(), Some(moved));
        let mut ids = |f: &OperationFilter| -> Vec<String> {
            b.operations(f).unwrap().into_iter().map(|o| o.id).collect()
        };
        let f = |reference_code: &str| OperationFilter {
            reference_code: Some(reference_code.into()),
            ..OperationFilter::default()
        };
        assert!(ids(&f("ref-a")).is_empty());
        assert_eq!(ids(&f("ref-z")), vec!["op-a"]);
        let f = OperationFilter {
            reservation_id: Some("res-1".into()),
            ..OperationFilter::default()
        };
        assert!(ids(&f).is_empty());
        assert!(b.unresolved().unwrap().is_empty());
    }

    /// The second begin of a key in one batch finds the first.
    pub fn same_key_twice_in_one_batch(b: &mut impl Backend) {
        let first = op("a", "app", Some("k"), OpState::Pending);
        let out = b
            .apply(&[
                Write::Begin(first.clone()),
                Write::Begin(op("b", "app", Some("k"), OpState::Pending)),
            ])
            .unwrap();
        assert_eq!(
            out,
            vec![
                Written::Begun(Begun::Inserted),
                Written::Begun(Begun::Existing(Box::new(first)))
            ]
        );
    }

    /// One batch whose writes depend on each other's order (a backend that applies a batch
    /// other than write by write must come to the same): each begin sees what the writes
    /// before it in the batch left, an update the begins before it, and of two writes of
    /// one id the last one stays.
    pub fn order_within_a_batch(b: &mut impl Backend) {
        let retry_me = op("u1", "app", Some("k1"), OpState::Pending);
        let moving = op("u2", "app", Some("k2"), OpState::Pending);
        let kept = op("u3", "app", Some("k3"), OpState::Pending);
        b.apply(&[
            Write::Begin(retry_me.clone()),
            Write::Begin(moving.clone()),
            Write::Begin(kept.clone()),
        ])
        .unwrap();
        let mut retryable = retry_me.clone();
        retryable.state = OpState::Retryable;
        let mut moved = moving.clone();
        moved.key = Some("k2-moved".into());
        let mut kept_done = kept.clone();
        kept_done.state = OpState::Succeeded;
        kept_done.result_code = Some(2001);
        let mut kept_later = kept_done.clone();
        kept_later.updated_ms = 9;
        let fresh = |id: &str, key: &str| op(id, "app", Some(key), OpState::Pending);
        let mut r = reservation("r1", ReservationState::Open, 1);
        let mut r_last = r.clone();
        r_last.state = ReservationState::Released;
        r_last.charged = Decimal::new(7, 0);
        r.charged = Decimal::new(3, 0);
        let out = b
            .apply(&[
                // A begin before an update of the row it meets: the row as it was.
                Write::Begin(fresh("b0", "k3")),
                Write::Update(retryable),
                // Updated to retryable just before: gives way.
                Write::Begin(fresh("b1", "k1")),
                Write::Update(moved.clone()),
                // Moved off its key just before: the key is free.
                Write::Begin(fresh("b2", "k2")),
                // Moved onto that key: taken.
                Write::Begin(fresh("b3", "k2-moved")),
                Write::Update(kept_done.clone()),
                // Met after the update: the updated row.
                Write::Begin(fresh("b4", "k3")),
                Write::Update(kept_later.clone()),
                Write::Reservation(r),
                Write::Reservation(r_last.clone()),
                // Begun and updated in the same batch.
                Write::Begin(fresh("b5", "k5")),
                Write::Update({
                    let mut o = fresh("b5", "k5");
                    o.state = OpState::Refused;
                    o
                }),
            ])
            .unwrap();
        let existing = |o: &OperationRow| Written::Begun(Begun::Existing(Box::new(o.clone())));
        let inserted = Written::Begun(Begun::Inserted);
        assert_eq!(
            out,
            vec![
                existing(&kept),
                Written::Done,
                inserted.clone(),
                Written::Done,
                inserted.clone(),
                existing(&moved),
                Written::Done,
                existing(&kept_done),
                Written::Done,
                Written::Done,
                Written::Done,
                inserted,
                Written::Done,
            ]
        );
        assert_eq!(b.operation("u1").unwrap(), None, "gave way");
        assert_eq!(
            b.operation_by_key("app", "k1").unwrap(),
            Some(fresh("b1", "k1"))
        );
        assert_eq!(
            b.operation_by_key("app", "k2").unwrap(),
            Some(fresh("b2", "k2"))
        );
        assert_eq!(b.operation_by_key("app", "k2-moved").unwrap(), Some(moved));
        assert_eq!(b.operation("u3").unwrap(), Some(kept_later));
        assert_eq!(b.operation("b0").unwrap(), None);
        assert_eq!(b.reservation("r1").unwrap(), Some(r_last));
        assert_eq!(
            b.operation("b5").unwrap().map(|o| o.state),
            Some(OpState::Refused)
        );
        // Insertion order is the batch's.
        let ids: Vec<_> = b
            .operations(&OperationFilter::default())
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(ids, vec!["b5", "b2", "b1", "u3", "u2"]);
        // A begin of an id that exists, under a key no row holds (or none), replaces that row
        // in its place; beside it, a begin of a new key.
        let mut again = op("u3", "app", Some("k3-again"), OpState::Pending);
        again.request = "{\"again\":true}".into();
        let mut keyless = op("b5", "app", None, OpState::Unknown);
        keyless.request = "{\"keyless\":true}".into();
        let out = b
            .apply(&[
                Write::Begin(again.clone()),
                Write::Begin(keyless.clone()),
                Write::Begin(fresh("b6", "k6")),
            ])
            .unwrap();
        assert_eq!(out, vec![Written::Begun(Begun::Inserted); 3]);
        assert_eq!(b.operation_by_key("app", "k3-again").unwrap(), Some(again));
        assert_eq!(b.operation_by_key("app", "k3").unwrap(), None);
        assert_eq!(b.operation("b5").unwrap(), Some(keyless));
        let ids: Vec<_> = b
            .operations(&OperationFilter::default())
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(ids, vec!["b6", "b5", "b2", "b1", "u3", "u2"]);
    }

    /// 400 concurrent callers on 100 keys through `store` (group commit): every one answered,
    /// one row per key, each updated once.
    pub async fn concurrent_callers(store: Store) {
        let mut tasks = Vec::new();
        for i in 0..400 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("ref-{}", i % 100);
                let mut op = op(&format!("op-{i}"), "app", Some(&key), OpState::Pending);
                match s.begin(op.clone()).await.unwrap() {
                    Begun::Inserted => {
                        op.state = OpState::Succeeded;
                        op.result_code = Some(2001);
                        s.update(op).await.unwrap();
                        true
                    }
                    Begun::Existing(_) => false,
                }
            }));
        }
        let mut inserted = 0;
        for t in tasks {
            if t.await.unwrap() {
                inserted += 1;
            }
        }
        assert_eq!(inserted, 100, "one row per key");
        store.flush().await.unwrap();
        let all = store.operations(OperationFilter::default()).await.unwrap();
        assert_eq!(all.len(), 100);
        let keys: std::collections::HashSet<_> = all.iter().filter_map(|o| o.key.clone()).collect();
        assert_eq!(keys.len(), 100);
        assert!(all.iter().all(|o| o.state == OpState::Succeeded));
        assert!(store.unresolved().await.unwrap().is_empty());
        let m = store.metrics();
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(m.writes.load(Relaxed), 500);
        assert_eq!(m.failures.load(Relaxed), 0);
    }

    /// Rows that `corrupt` damages (operation "bad-amount": its amount; "bad-state": its
    /// state, to `charged?`; "good": its request_number, to -1; reservation "r1": its charged
    /// amount) are errors that name the row and the column; a begin meeting one fails.
    pub fn corrupt_rows<B: Backend>(b: &mut B, corrupt: impl FnOnce(&mut B)) {
        b.apply(&[
            Write::Begin(op("good", "app", Some("k1"), OpState::Pending)),
            Write::Begin(op("bad-amount", "app", Some("k2"), OpState::Pending)),
            Write::Begin(op("bad-state", "app", Some("k3"), OpState::Pending)),
            Write::Reservation(reservation("r1", ReservationState::Open, 1)),
        ])
        .unwrap();
        corrupt(b);
        let err = b.operation("bad-amount").unwrap_err();
        assert!(
            err.0.contains("\"bad-amount\"") && err.0.contains("amount"),
            "{err}"
        );
        let err = b.operation_by_key("app", "k3").unwrap_err();
        assert!(
            err.0.contains("\"bad-state\"") && err.0.contains("charged?"),
            "{err}"
        );
        let err = b.operation("good").unwrap_err();
        assert!(
            err.0.contains("\"good\"") && err.0.contains("request_number"),
            "{err}"
        );
        assert!(b.unresolved().is_err());
        let err = b.open_reservations().unwrap_err();
        assert!(
            err.0.contains("\"r1\"") && err.0.contains("charged"),
            "{err}"
        );
        // A begin that meets the corrupt row fails its batch instead of replacing it.
        let err = b
            .apply(&[Write::Begin(op(
                "again",
                "app",
                Some("k2"),
                OpState::Pending,
            ))])
            .unwrap_err();
        assert!(err.0.contains("bad-amount"), "{err}");
        assert_eq!(b.operation("again").unwrap(), None);
    }

    pub fn number(category: &str, value: &str, ported_in: bool) -> InventoryRow {
        InventoryRow {
            id: format!("{}-{value}", category.to_ascii_lowercase()),
            category: category.into(),
            value: value.into(),
            status: if ported_in {
                InventoryStatus::PortingIn
            } else {
                InventoryStatus::Available
            },
            holder: None,
            hold_until_ms: None,
            ported_in,
            body: r#"{"tier":"gold \u00e9"}"#.into(),
            created_ms: 1,
            updated_ms: 1,
        }
    }

    /// The inventory: import (idempotent: a re-import keeps holds), reserve (free, own,
    /// expired), assign, release, activate, the listing's filters and paging.
    pub fn inventory(b: &mut impl Backend) {
        let a = number("MSISDN", "34600000777", false);
        let c = number("MSISDN", "34600000001", false);
        let p = number("MSISDN", "34600000002", true);
        let sim = number("ICCID", "8934071234567890123", false);
        let out = b
            .apply(&[
                Write::ImportInventory(a.clone()),
                Write::ImportInventory(c.clone()),
                Write::ImportInventory(p.clone()),
                Write::ImportInventory(sim.clone()),
            ])
            .unwrap();
        assert_eq!(out, vec![Written::Done; 4]);
        assert_eq!(b.inventory(&a.id).unwrap(), Some(a.clone()));
        assert_eq!(b.inventory("msisdn-0").unwrap(), None);
        let w = |b: &mut dyn FnMut(Write) -> bool, w: Write| b(w);
        let mut won_ = |x: Write| won(b, x);
        let reserve = |id: &str, holder: &str, until: i64, now: i64| Write::Reserve {
            id: id.into(),
            holder: holder.into(),
            until_ms: until,
            now_ms: now,
        };
        // Free: taken; another holder: refused; the same holder: renewed.
        assert!(w(&mut won_, reserve(&a.id, "cart-1", 100, 10)));
        assert!(!w(&mut won_, reserve(&a.id, "cart-2", 200, 20)));
        assert!(w(&mut won_, reserve(&a.id, "cart-1", 150, 30)));
        // Expired (at 150): another holder takes it.
        assert!(!w(&mut won_, reserve(&a.id, "cart-2", 300, 149)));
        assert!(w(&mut won_, reserve(&a.id, "cart-2", 300, 150)));
        // Not imported, ported in: refused.
        assert!(!w(&mut won_, reserve("msisdn-9", "cart-1", 100, 10)));
        assert!(!w(&mut won_, reserve(&p.id, "cart-1", 100, 10)));
        // Release only by the holder.
        let release = |id: &str, holder: &str| Write::Release {
            id: id.into(),
            holder: holder.into(),
            now_ms: 160,
        };
        assert!(!w(&mut won_, release(&a.id, "cart-1")));
        assert!(w(&mut won_, release(&a.id, "cart-2")));
        assert!(!w(&mut won_, release(&a.id, "cart-2")));
        // Assign: only the holder, within the hold; again by it: still won.
        let assign = |id: &str, holder: &str, now: i64| Write::Assign {
            id: id.into(),
            holder: holder.into(),
            owner: holder.replace("cart", "order"),
            now_ms: now,
        };
        assert!(!w(&mut won_, assign(&a.id, "cart-3", 170)));
        assert!(w(&mut won_, reserve(&a.id, "cart-3", 400, 170)));
        assert!(!w(&mut won_, assign(&a.id, "cart-4", 180)));
        assert!(!w(&mut won_, assign(&a.id, "cart-3", 400)));
        assert!(w(&mut won_, assign(&a.id, "cart-3", 399)));
        assert!(w(&mut won_, assign(&a.id, "cart-3", 500)));
        // Assigned: nobody reserves or releases it, even long after.
        assert!(!w(&mut won_, reserve(&a.id, "cart-5", 9_000, 8_000)));
        assert!(!w(&mut won_, release(&a.id, "cart-3")));
        // A hold that ran out cannot be assigned.
        assert!(w(&mut won_, reserve(&c.id, "cart-6", 200, 100)));
        assert!(!w(&mut won_, assign(&c.id, "cart-6", 200)));
        // Ported in: activated once, for its holder.
        let activate = |id: &str, holder: &str| Write::Activate {
            id: id.into(),
            holder: holder.into(),
            now_ms: 600,
        };
        assert!(!w(&mut won_, activate(&a.id, "order-1")));
        assert!(w(&mut won_, activate(&p.id, "order-1")));
        assert!(w(&mut won_, activate(&p.id, "order-1")));
        assert!(!w(&mut won_, activate(&p.id, "order-2")));
        let got = b.inventory(&a.id).unwrap().unwrap();
        assert_eq!(got.status, InventoryStatus::Assigned);
        assert_eq!(got.holder.as_deref(), Some("order-3"));
        assert_eq!(got.hold_until_ms, None);
        assert_eq!(got.updated_ms, 500);
        let got = b.inventory(&p.id).unwrap().unwrap();
        assert_eq!(
            (got.status, got.holder.as_deref()),
            (InventoryStatus::Active, Some("order-1"))
        );
        // Unassign: only an assignment, only by its holder; then anyone may take it.
        let unassign = |id: &str, holder: &str| Write::Unassign {
            id: id.into(),
            holder: holder.into(),
            now_ms: 650,
        };
        assert!(!won(b, unassign(&a.id, "cart-4")));
        assert!(!won(b, unassign(&p.id, "order-1")));
        assert!(!won(b, unassign(&a.id, "cart-3")));
        assert!(won(b, unassign(&a.id, "order-3")));
        assert!(!won(b, unassign(&a.id, "order-3")));
        let got = b.inventory(&a.id).unwrap().unwrap();
        assert_eq!((got.status, got.holder), (InventoryStatus::Available, None));
        assert!(won(b, reserve(&a.id, "cart-8", 900, 660)));
        assert!(won(b, release(&a.id, "cart-8")));
        assert!(won(b, reserve(&a.id, "cart-3", 900, 660)));
        assert!(won(b, assign(&a.id, "cart-3", 500)));
        // A re-import keeps status and holder, takes the new characteristics.
        assert!(won(b, reserve(&sim.id, "cart-7", 1_000, 700)));
        let mut again = sim.clone();
        again.body = r#"{"tier":"silver"}"#.into();
        again.updated_ms = 800;
        b.apply(&[
            Write::ImportInventory(again),
            Write::ImportInventory(number("MSISDN", "34600000777", false)),
        ])
        .unwrap();
        let got = b.inventory(&sim.id).unwrap().unwrap();
        assert_eq!(got.status, InventoryStatus::Reserved);
        assert_eq!(got.holder.as_deref(), Some("cart-7"));
        assert_eq!(got.hold_until_ms, Some(1_000));
        assert_eq!(got.body, r#"{"tier":"silver"}"#);
        assert_eq!(got.updated_ms, 800);
        assert_eq!(
            b.inventory(&a.id).unwrap().unwrap().status,
            InventoryStatus::Assigned
        );
        // Listings (by category, then value): c's hold ran out at 200, so it is available.
        let list = |b: &mut dyn Backend, f: InventoryFilter| {
            let (rows, total) = b.inventory_list(&f).unwrap();
            (rows.into_iter().map(|r| r.id).collect::<Vec<_>>(), total)
        };
        let f = |category: Option<&str>, status, pattern: Option<&str>| InventoryFilter {
            category: category.map(Into::into),
            status,
            pattern: pattern.map(Into::into),
            now_ms: 900,
            ..InventoryFilter::default()
        };
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            list(b, f(None, None, None)),
            (
                s(&[
                    "iccid-8934071234567890123",
                    "msisdn-34600000001",
                    "msisdn-34600000002",
                    "msisdn-34600000777"
                ]),
                4
            )
        );
        assert_eq!(
            list(b, f(Some("MSISDN"), Some(InventoryStatus::Available), None)),
            (s(&["msisdn-34600000001"]), 1)
        );
        assert_eq!(
            list(b, f(None, Some(InventoryStatus::Reserved), None)),
            (s(&["iccid-8934071234567890123"]), 1)
        );
        assert_eq!(
            list(b, f(Some("MSISDN"), None, Some("%777%"))),
            (s(&["msisdn-34600000777"]), 1)
        );
        assert_eq!(
            list(b, f(Some("MSISDN"), None, Some("346000000_2"))),
            (s(&["msisdn-34600000002"]), 1)
        );
        assert_eq!(list(b, f(Some("ICCID"), None, Some("%777%"))), (s(&[]), 0));
        let mut page = f(Some("MSISDN"), None, None);
        page.offset = 1;
        page.limit = 1;
        assert_eq!(list(b, page), (s(&["msisdn-34600000002"]), 3));
        // Past the hold (at 1_000), the reserved SIM lists as available.
        let mut later = f(None, Some(InventoryStatus::Available), None);
        later.now_ms = 1_000;
        assert_eq!(
            list(b, later),
            (s(&["iccid-8934071234567890123", "msisdn-34600000001"]), 2)
        );
        // One value is one resource: another id for it fails the batch.
        let mut dup = number("MSISDN", "34600000001", false);
        dup.id = "other".into();
        assert!(b.apply(&[Write::ImportInventory(dup)]).is_err());
        assert_eq!(b.inventory("other").unwrap(), None);
    }

    /// `holders` holders race through `stores` (standing for gateway instances on one
    /// database; the holders alternate between them) for ten numbers, every holder trying
    /// every number: each number is won by exactly one holder, who holds it in the store.
    pub async fn inventory_race(stores: Vec<Store>, holders: usize) {
        let first = stores.first().unwrap().clone();
        let numbers: Vec<InventoryRow> = (0..10)
            .map(|i| number("MSISDN", &format!("3460010000{i}"), false))
            .collect();
        first.import_inventory(numbers.clone()).await.unwrap();
        let now = super::super::now_ms();
        let mut tasks = Vec::new();
        for h in 0..holders {
            let store = stores[h % stores.len()].clone();
            let ids: Vec<String> = numbers.iter().map(|n| n.id.clone()).collect();
            tasks.push(tokio::spawn(async move {
                let holder = format!("cart-{h}");
                let mut won = Vec::new();
                // Each holder tries the numbers from another starting point.
                for k in 0..ids.len() {
                    let id = &ids[(h + k) % ids.len()];
                    if store
                        .reserve_inventory(id, &holder, now + 60_000, now)
                        .await
                        .unwrap()
                    {
                        won.push(id.clone());
                    }
                }
                (holder, won)
            }));
        }
        let mut winners: std::collections::HashMap<String, Vec<String>> = Default::default();
        for t in tasks {
            let (holder, won) = t.await.unwrap();
            for id in won {
                winners.entry(id).or_default().push(holder.clone());
            }
        }
        assert_eq!(winners.len(), 10, "every number won: {winners:?}");
        for n in &numbers {
            let w = &winners[&n.id];
            assert_eq!(w.len(), 1, "{}: won by {w:?}", n.id);
            for s in &stores {
                let row = s.inventory(&n.id).await.unwrap().unwrap();
                assert_eq!(row.status, InventoryStatus::Reserved);
                assert_eq!(row.holder.as_ref(), Some(&w[0]), "{}", n.id);
            }
        }
    }

    /// Conditional puts: an insert only where the id is free, a compare-and-set on
    /// `updated_ms`; optional columns kept; a lost condition changes nothing.
    pub fn conditional_resources(b: &mut impl Backend) {
        let put = |row: &ResourceRow, expected: Option<i64>| Write::PutResourceIf {
            row: row.clone(),
            expected_updated_ms: expected,
        };
        let won = |b: &mut dyn FnMut(&[Write]) -> Vec<Written>, w: Write| {
            matches!(b(&[w]).as_slice(), [Written::Won(true)])
        };
        let mut apply = |ws: &[Write]| b.apply(ws).unwrap();
        let mut first = resource(
            "identity.email:ana@example.com",
            "identity.key",
            "taken",
            10,
        );
        first.parent = Some("user-1".into());
        first.due_ms = Some(99);
        assert!(won(&mut apply, put(&first, None)));
        let mut second = resource(
            "identity.email:ana@example.com",
            "identity.key",
            "taken",
            11,
        );
        second.parent = Some("user-2".into());
        // Taken: the second claim loses, whatever it expects.
        assert!(!won(&mut apply, put(&second, None)));
        assert!(!won(&mut apply, put(&second, Some(9))));
        // Compare-and-set on updated_ms.
        let mut next = first.clone();
        next.state = "confirmed".into();
        next.updated_ms = 20;
        next.due_ms = None;
        assert!(won(&mut apply, put(&next, Some(10))));
        assert!(!won(&mut apply, put(&next, Some(10))));
        // A swap of a row that does not exist: lost (it does not insert).
        assert!(!won(
            &mut apply,
            put(&resource("nobody", "k", "s", 1), Some(1))
        ));
        let got = b
            .resource("identity.email:ana@example.com")
            .unwrap()
            .unwrap();
        assert_eq!(got, next);
        assert!(b.resource("nobody").unwrap().is_none());
    }

    /// Many writers through `stores` (two instances) claiming one id and incrementing one
    /// counter by compare-and-set: one claim wins; no increment is lost.
    pub async fn conditional_race(stores: Vec<Store>, writers: usize) {
        let counter = resource("counter", "test.counter", "0", 1);
        assert!(
            stores[0]
                .put_resource_if(counter.clone(), None)
                .await
                .unwrap()
        );
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = stores[w % stores.len()].clone();
            tasks.push(tokio::spawn(async move {
                let claim = resource("claim", "test.claim", &format!("writer-{w}"), 1);
                let claimed = store.put_resource_if(claim, None).await.unwrap();
                let mut tries = 0u32;
                loop {
                    tries += 1;
                    let cur = store.resource("counter").await.unwrap().unwrap();
                    let n: u64 = cur.state.parse().unwrap();
                    let mut next = cur.clone();
                    next.state = (n + 1).to_string();
                    next.updated_ms = cur.updated_ms + 1;
                    if store
                        .put_resource_if(next, Some(cur.updated_ms))
                        .await
                        .unwrap()
                    {
                        break;
                    }
                    assert!(tries < 10_000, "writer {w} never got its increment in");
                }
                claimed
            }));
        }
        let mut claims = 0;
        for t in tasks {
            claims += usize::from(t.await.unwrap());
        }
        assert_eq!(claims, 1, "one claim wins");
        for s in &stores {
            let c = s.resource("counter").await.unwrap().unwrap();
            assert_eq!(c.state, writers.to_string(), "no increment lost");
        }
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
        conformance::leases(&mut MemoryBackend::default());
        conformance::events(&mut MemoryBackend::default());
        conformance::update_moves_indexed_columns(&mut MemoryBackend::default());
        conformance::same_key_twice_in_one_batch(&mut MemoryBackend::default());
        conformance::order_within_a_batch(&mut MemoryBackend::default());
        conformance::inventory(&mut MemoryBackend::default());
        conformance::conditional_resources(&mut MemoryBackend::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conditional_race() {
        conformance::conditional_race(vec![crate::store::Store::memory()], 100).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inventory_race() {
        conformance::inventory_race(vec![crate::store::Store::memory()], 300).await;
    }

    #[test]
    fn like_patterns() {
        assert!(like("%777%", "34600777001"));
        assert!(like("%777", "34600000777"));
        assert!(!like("%777", "34600777001"));
        assert!(like("3460000000_", "34600000001"));
        assert!(!like("3460000000_", "346000000012"));
        assert!(like("%", ""));
        assert!(!like("_", ""));
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
