//! The notification step of an order: the customer is told that the order is complete,
//! with the numbers it got and what was charged, through the outbox (`mailto:` by
//! `[notifications.smtp]`, preferred, or the `[notifications.sms]` webhook), one event per
//! order (`order-<id>`), written in the commit that ends the step. A cart without a contact
//! on a configured channel: nothing is sent (the step records no event).

use serde_json::json;

use super::pipeline::OrderDoc;
use crate::api::ApiState;
use crate::api::tmf663::model::Medium;
use crate::notify::mail::{self, MailBody};
use crate::store::{EventRow, EventState};

/// Event kind of an order's notification.
pub const EVENT_KIND: &str = "tmf622.order.completed";

/// The outbox events that tell the customer of `doc` it is complete.
pub fn order_events(st: &ApiState, app: &str, doc: &OrderDoc, now_ms: i64) -> Vec<EventRow> {
    let n = &st.notifications;
    let email = n
        .smtp
        .enabled()
        .then(|| doc.contact.iter().find(|c| c.medium == Medium::Email))
        .flatten();
    let sms = n
        .sms
        .enabled()
        .then(|| doc.contact.iter().find(|c| c.medium == Medium::Sms))
        .flatten();
    let numbers: Vec<&str> = doc.resources().map(|r| r.value.as_str()).collect();
    let charged = doc.charge.as_ref().map_or_else(
        || "nothing was charged".to_string(),
        |c| format!("{} {} was charged", c.amount, c.currency),
    );
    let text = format!(
        "Your order {} is complete. Your number(s): {}. {charged}.",
        doc.id,
        if numbers.is_empty() {
            "none".to_string()
        } else {
            numbers.join(", ")
        }
    );
    let (url, headers, body) = match (email, sms) {
        (Some(to), _) => {
            let body = MailBody {
                subject: format!("Your order {} is complete", doc.id),
                text,
            };
            (
                mail::mailto(to.address.trim()),
                Vec::new(),
                serde_json::to_string(&body).unwrap_or_default(),
            )
        }
        (None, Some(to)) => {
            let headers = if n.sms.token.is_empty() {
                Vec::new()
            } else {
                vec![("Authorization".into(), format!("Bearer {}", n.sms.token))]
            };
            let body = json!({"to": to.address, "text": text}).to_string();
            (n.sms.url.clone(), headers, body)
        }
        (None, None) => return Vec::new(),
    };
    vec![EventRow {
        id: format!("order-{}", doc.id),
        app: app.into(),
        kind: EVENT_KIND.into(),
        resource: Some(doc.id.clone()),
        url,
        headers,
        content_type: mail::CONTENT_TYPE.into(),
        body,
        state: EventState::Pending,
        attempts: 0,
        next_ms: now_ms,
        last_error: None,
        lease: None,
        created_ms: now_ms,
        updated_ms: now_ms,
        delivered_ms: None,
    }]
}
