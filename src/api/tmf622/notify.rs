//! The notification step of an order: what the customer is told when the order ends.

use crate::api::ApiState;
use crate::store::EventRow;

use super::pipeline::OrderDoc;

/// The outbox events that tell the customer of `doc` (its cart's contacts).
pub fn order_events(_st: &ApiState, _app: &str, _doc: &OrderDoc, _now_ms: i64) -> Vec<EventRow> {
    Vec::new()
}
