//! The Origin-State-Id of each OCS (RFC 6733 section 8.16), to tell when one restarted.
//!
//! "The Origin-State-Id AVP ... is a monotonically increasing value that is advanced whenever
//! a Diameter entity restarts with loss of previous state". An OCS that restarted may have
//! lost its duplicate detection: a request re-sent with the T flag to learn an unknown outcome
//! may then be applied a second time. The gateway still re-sends (never dropping one), and
//! records every operation resolved across such a restart for the operator to reconcile.
//!
//! ```text
//! CCA / CEA from ocs1 (Origin-State-Id 7) --observe--> { ocs1: 7 }
//! CCA from ocs1 (Origin-State-Id 9)       --observe--> { ocs1: 9, previous 7, changed at t }
//! an operation first sent before t, resolved after it --> restart_since(ocs1, sent) = (7, 9)
//! ```

use std::sync::Mutex;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// What is known of one OCS's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcsState {
    /// The OCS (its Origin-Host, lower case).
    pub ocs: String,
    pub origin_state_id: u32,
    /// The Origin-State-Id before the last change, if one was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<u32>,
    /// When the last change was seen (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_ms: Option<i64>,
}

/// The Origin-State-Ids seen, per OCS.
#[derive(Default)]
pub struct OcsStates {
    known: DashMap<String, OcsState>,
    listener: Mutex<Option<mpsc::UnboundedSender<OcsState>>>,
}

impl std::fmt::Debug for OcsStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcsStates")
            .field("known", &self.known.len())
            .finish()
    }
}

impl OcsStates {
    /// Every new state from now on is also sent here (to be kept in the store).
    pub fn set_listener(&self, tx: mpsc::UnboundedSender<OcsState>) {
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// `ocs` said `origin_state_id` at `now_ms`. Cheap when nothing changed (one look-up).
    pub fn observe(&self, ocs: &str, origin_state_id: u32, now_ms: i64) {
        if ocs.is_empty() {
            return;
        }
        let key = super::style::lower(ocs);
        let next = match self.known.get(key.as_ref()) {
            Some(s) if s.origin_state_id == origin_state_id => return,
            Some(s) => {
                warn!(
                    ocs = %key,
                    before = s.origin_state_id,
                    now = origin_state_id,
                    "the OCS restarted (its Origin-State-Id changed): requests re-sent to it with \
                     the T flag may be applied again if it lost its duplicate detection; those \
                     resolved across the restart are listed at /admin/ocs"
                );
                OcsState {
                    ocs: key.to_string(),
                    origin_state_id,
                    previous: Some(s.origin_state_id),
                    changed_ms: Some(now_ms),
                }
            }
            None => OcsState {
                ocs: key.to_string(),
                origin_state_id,
                previous: None,
                changed_ms: None,
            },
        };
        if let Some(tx) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(next.clone());
        }
        self.known.insert(next.ocs.clone(), next);
    }

    /// A state read from the store (seen before a restart of the gateway, or by another
    /// instance). A newer change already seen here is kept.
    pub fn seed(&self, s: OcsState) {
        let key = s.ocs.to_ascii_lowercase();
        if let Some(k) = self.known.get(&key)
            && k.changed_ms >= s.changed_ms
        {
            return;
        }
        info!(ocs = %key, origin_state_id = s.origin_state_id, "OCS state known from the store");
        self.known.insert(key.clone(), OcsState { ocs: key, ..s });
    }

    /// `(before, after)` when `ocs` was seen to restart after `since_ms`.
    pub fn restart_since(&self, ocs: &str, since_ms: i64) -> Option<(Option<u32>, u32)> {
        let s = self.known.get(&ocs.to_ascii_lowercase())?;
        let changed = s.changed_ms?;
        (changed > since_ms).then_some((s.previous, s.origin_state_id))
    }

    pub fn snapshot(&self) -> Vec<OcsState> {
        let mut v: Vec<OcsState> = self.known.iter().map(|e| e.value().clone()).collect();
        v.sort_by(|a, b| a.ocs.cmp(&b.ocs));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_origin_state_id_is_a_restart_for_what_was_sent_before_it() {
        let s = OcsStates::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        s.set_listener(tx);
        s.observe("OCS1.example", 7, 1_000);
        assert!(rx.try_recv().is_ok(), "a first state is news");
        s.observe("ocs1.example", 7, 2_000);
        assert!(rx.try_recv().is_err(), "the same state is not");
        assert_eq!(s.restart_since("ocs1.example", 0), None);
        s.observe("ocs1.example", 9, 3_000);
        assert_eq!(rx.try_recv().map(|x| x.previous), Ok(Some(7)));
        // Sent at 2.5 s, answered after the restart seen at 3 s.
        assert_eq!(s.restart_since("ocs1.example", 2_500), Some((Some(7), 9)));
        // Sent after the restart: nothing to reconcile.
        assert_eq!(s.restart_since("ocs1.example", 3_000), None);
        assert_eq!(s.restart_since("other", 0), None);
    }

    #[test]
    fn a_state_from_the_store_never_hides_a_newer_change() {
        let s = OcsStates::default();
        s.observe("ocs", 7, 1);
        s.observe("ocs", 9, 5);
        s.seed(OcsState {
            ocs: "OCS".into(),
            origin_state_id: 8,
            previous: Some(7),
            changed_ms: Some(3),
        });
        assert_eq!(s.snapshot()[0].origin_state_id, 9);
        // Known from the store, then the OCS restarts again: the change is against it.
        let fresh = OcsStates::default();
        fresh.seed(OcsState {
            ocs: "ocs".into(),
            origin_state_id: 9,
            previous: None,
            changed_ms: None,
        });
        fresh.observe("ocs", 11, 10);
        assert_eq!(fresh.restart_since("ocs", 9), Some((Some(9), 11)));
    }
}
