//! The follow-up of abandoned carts: a cart its customer left untouched for
//! `[shop] abandoned_after` gets one message, by email (`[notifications.smtp]`) or SMS
//! (`[notifications.sms]`), through the notification outbox.
//!
//! ```text
//! every [shop] follow_up_interval (gateway serve, when [shop] follow_up = true):
//!   resources(kind tmf663.cart, state active, due_ms <= now - abandoned_after, oldest first,
//!             [shop] batch)
//!   each: try the cart's lock (model::lock_name; busy: a writer has it, next pass)
//!         re-read: still active, never followed up, follow_up_due <= now - abandoned_after
//!         contact: the first email if mail is configured, else the first SMS number if the
//!                  SMS webhook is; none usable: due_ms cleared (nothing to send)
//!         ONE transaction (put_resource_with_events):
//!           cart: follow_up = {sentMs, medium, event}, due_ms none
//!           event followup-<cart>: mailto:<address> {subject, text}
//!                              or <sms url> {to, text} (Authorization: Bearer <token>)
//! ```
//!
//! Exactly once across the instances sharing the store: the lock and the re-check under it
//! decide; the cart and its event are written together, so a follow-up recorded is a message
//! queued, and a message queued is recorded. The outbox then delivers it at least once (its
//! retries and dead letters; `GET /admin/events/followup-<cart>`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::model::{self, CartDoc, Contact, FollowUp, Medium};
use crate::charging::locks::Locks;
use crate::config::GatewayConfig;
use crate::config::notifications::SmsConfig;
use crate::config::shop::{self, ShopConfig};
use crate::notify::mail::{self, MailBody};
use crate::store::{EventRow, EventState, ResourceFilter, ResourceRow, Store, StoreError};

/// Follow-ups queued, by `medium` (`email`, `sms`).
pub const CART_FOLLOWUPS: &str = "gateway_cart_followups_total";

/// The outbox event kind of a follow-up.
pub const EVENT_KIND: &str = "tmf663.cart.followUp";

/// Describes the follow-up's metric to the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        CART_FOLLOWUPS,
        "Abandoned-cart follow-ups queued in the outbox, by medium"
    );
}

/// The id of the outbox event of cart `cart`'s follow-up (one per cart).
pub fn event_id(cart: &str) -> String {
    format!("followup-{cart}")
}

/// What the sweeper needs of the configuration.
#[derive(Clone, Debug)]
pub struct SweeperSettings {
    pub shop: ShopConfig,
    /// Mail can be sent (`[notifications.smtp] host`, or its demo `log`).
    pub email: bool,
    /// The SMS webhook, if configured.
    pub sms: Option<SmsConfig>,
}

impl SweeperSettings {
    pub fn from_config(cfg: &GatewayConfig) -> Self {
        let n = &cfg.notifications;
        Self {
            shop: cfg.shop.clone(),
            email: n.smtp.enabled(),
            sms: n.sms.enabled().then(|| n.sms.clone()),
        }
    }

    /// Whether any channel is configured.
    pub fn any_channel(&self) -> bool {
        self.email || self.sms.is_some()
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Carts followed up now (their event queued).
    pub sent: usize,
    /// Carts whose lock was busy (a writer, or another instance's sweeper): next pass.
    pub busy: usize,
    /// Carts no longer due when re-read under the lock (touched, checked out, deleted,
    /// followed up elsewhere), or with no usable contact.
    pub skipped: usize,
}

/// The sweeper (cheap to clone).
#[derive(Clone)]
pub struct Sweeper {
    store: Store,
    locks: Locks,
    settings: Arc<SweeperSettings>,
}

impl std::fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeper")
            .field("abandoned_after", &self.settings.shop.abandoned_after)
            .finish()
    }
}

/// A running sweeper: [`SweeperHandle::stop`] ends it.
#[derive(Debug)]
pub struct SweeperHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Sweeper {
    pub fn new(store: Store, locks: Locks, settings: SweeperSettings) -> Self {
        Self {
            store,
            locks,
            settings: Arc::new(settings),
        }
    }

    /// One pass at `now_ms`: every due cart (at most `[shop] batch`) followed up or left.
    pub async fn sweep(&self, now_ms: i64) -> Result<Pass, StoreError> {
        let s = &self.settings.shop;
        let after = i64::try_from(s.abandoned_after.as_millis()).unwrap_or(i64::MAX);
        let threshold = now_ms.saturating_sub(after);
        let (due, _) = self
            .store
            .resources(ResourceFilter {
                kind: Some(model::KIND_CART.into()),
                state: Some(model::state::ACTIVE.into()),
                due_before_ms: Some(threshold),
                ascending: true,
                limit: s.batch,
                ..ResourceFilter::default()
            })
            .await?;
        let mut pass = Pass::default();
        for row in due {
            match self.one(&row.id, threshold, now_ms).await {
                Ok(Outcome::Sent) => pass.sent += 1,
                Ok(Outcome::Busy) => pass.busy += 1,
                Ok(Outcome::Skipped) => pass.skipped += 1,
                Err(e) => {
                    // The cart stays due: the next pass tries again.
                    warn!(cart = %row.id, error = %e, "cart follow-up failed");
                }
            }
        }
        Ok(pass)
    }

    async fn one(&self, id: &str, threshold: i64, now_ms: i64) -> Result<Outcome, StoreError> {
        let Some(_held) = self.locks.try_hold(&model::lock_name(id)).await? else {
            return Ok(Outcome::Busy);
        };
        let Some(row) = self.store.resource(id).await? else {
            return Ok(Outcome::Skipped);
        };
        if row.kind != model::KIND_CART {
            return Ok(Outcome::Skipped);
        }
        let mut doc: CartDoc = serde_json::from_str(&row.body)
            .map_err(|e| StoreError(format!("cart {id} unreadable: {e}")))?;
        let due = model::follow_up_due(&doc, &row.state);
        if due.is_none_or(|t| t > threshold) {
            // Touched since the listing (a later due time, written by its writer), or no
            // longer due at all; a row still marked due for nothing is cleared.
            if due.is_none() && row.due_ms.is_some() {
                self.store
                    .put_resource(ResourceRow {
                        due_ms: None,
                        ..row
                    })
                    .await?;
            }
            return Ok(Outcome::Skipped);
        }
        let Some(contact) = self.contact(&doc) else {
            debug!(cart = %id, "cart follow-up: no contact on a configured channel");
            self.store
                .put_resource(ResourceRow {
                    due_ms: None,
                    ..row
                })
                .await?;
            return Ok(Outcome::Skipped);
        };
        let event = self.event(&row, &doc, &contact, now_ms);
        doc.follow_up = Some(FollowUp {
            sent_ms: now_ms,
            medium: contact.medium,
            event: event.id.clone(),
        });
        let cart = model::row(&row.app, &doc, &row.state, None, now_ms);
        self.store
            .put_resource_with_events(cart, vec![event])
            .await?;
        let medium = medium_name(contact.medium);
        metrics::counter!(CART_FOLLOWUPS, "medium" => medium).increment(1);
        info!(cart = %id, app = %row.app, medium, "abandoned cart: follow-up queued");
        Ok(Outcome::Sent)
    }

    /// The first email address if mail is configured, else the first SMS number if the SMS
    /// webhook is.
    fn contact(&self, doc: &CartDoc) -> Option<Contact> {
        let first = |m: Medium| {
            doc.contact
                .iter()
                .find(|c| c.medium == m && !c.address.trim().is_empty())
        };
        let email = self.settings.email.then(|| first(Medium::Email)).flatten();
        let sms = self.settings.sms.as_ref().and_then(|_| first(Medium::Sms));
        email.or(sms).cloned()
    }

    fn event(&self, row: &ResourceRow, doc: &CartDoc, to: &Contact, now_ms: i64) -> EventRow {
        let s = &self.settings.shop;
        let total = total_text(doc);
        let url = s.cart_url(&doc.id);
        let text = |t: &str| shop::render(t, &doc.id, &total, &url);
        let (target, headers, body) = match (to.medium, &self.settings.sms) {
            (Medium::Sms, Some(sms)) => {
                let headers = if sms.token.is_empty() {
                    Vec::new()
                } else {
                    vec![("Authorization".into(), format!("Bearer {}", sms.token))]
                };
                let body = json!({"to": to.address, "text": text(&s.sms_text)});
                (sms.url.clone(), headers, body.to_string())
            }
            _ => {
                let body = MailBody {
                    subject: text(&s.subject),
                    text: text(&s.text),
                };
                let body = serde_json::to_string(&body).unwrap_or_default();
                (mail::mailto(to.address.trim()), Vec::new(), body)
            }
        };
        EventRow {
            id: event_id(&doc.id),
            app: row.app.clone(),
            kind: EVENT_KIND.into(),
            resource: Some(doc.id.clone()),
            url: target,
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
        }
    }

    /// Starts the pass loop (every `[shop] follow_up_interval`, on the system clock).
    pub fn spawn(self) -> SweeperHandle {
        let (stop, mut stopped) = watch::channel(false);
        let every = self
            .settings
            .shop
            .follow_up_interval
            .max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            info!(
                interval = ?every,
                abandoned_after = ?self.settings.shop.abandoned_after,
                "cart follow-up started"
            );
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tick.tick() => {}
                }
                match self.sweep(crate::store::now_ms()).await {
                    Ok(p) if p.sent > 0 || p.busy > 0 => {
                        debug!(
                            sent = p.sent,
                            busy = p.busy,
                            skipped = p.skipped,
                            "cart follow-up pass"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "cart follow-up: reading due carts failed"),
                }
            }
            info!("cart follow-up stopped");
        });
        SweeperHandle { stop, task }
    }
}

impl SweeperHandle {
    /// Stops the loop: waits up to `grace` for the pass in progress, then aborts it (a cart
    /// cut there is written whole or not at all: one transaction).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(grace, self.task).await.is_err() {
            abort.abort();
        }
    }
}

enum Outcome {
    Sent,
    Busy,
    Skipped,
}

fn medium_name(m: Medium) -> &'static str {
    match m {
        Medium::Email => "email",
        Medium::Sms => "sms",
    }
}

/// The cart's total as the message shows it: `12.50 EUR`, recurring prices with their period
/// (`9.99 EUR/month`), joined with ` + `; `0` for an empty cart.
pub fn total_text(doc: &CartDoc) -> String {
    let parts: Vec<String> = doc
        .total
        .iter()
        .filter(|t| !t.amount.is_zero())
        .map(|t| match &t.period {
            Some(p) => format!("{} {}/{p}", t.amount, t.currency),
            None => format!("{} {}", t.amount, t.currency),
        })
        .collect();
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(" + ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tmf663::model::{Total, row, state};
    use crate::store::EventFilter;

    const HOUR: i64 = 3_600_000;
    const NOW: i64 = 1_800_000_000_000;

    fn settings(email: bool, sms: bool) -> SweeperSettings {
        SweeperSettings {
            shop: ShopConfig {
                follow_up: true,
                abandoned_after: Duration::from_secs(24 * 3600),
                shop_url: "https://shop.example/cart/{cart}".into(),
                ..ShopConfig::default()
            },
            email,
            sms: sms.then(|| SmsConfig {
                url: "https://sms.example/send".into(),
                token: "sms-token".into(),
            }),
        }
    }

    fn sweeper(store: &Store, owner: &str, s: SweeperSettings) -> Sweeper {
        let locks = Locks::new(store.clone(), owner.into(), Duration::from_secs(30), true);
        Sweeper::new(store.clone(), locks, s)
    }

    fn cart(id: &str, updated_ms: i64, contact: Vec<Contact>) -> CartDoc {
        CartDoc {
            id: id.into(),
            items: Vec::new(),
            contact,
            related_party: Vec::new(),
            characteristic: Vec::new(),
            valid_for: None,
            total: vec![Total {
                price_type: model::ONE_TIME.into(),
                period: None,
                currency: "EUR".into(),
                amount: "12.50".parse().unwrap(),
                duty_free: "10.33".parse().unwrap(),
            }],
            follow_up: None,
            order: None,
            customer: None,
            created_ms: updated_ms,
            updated_ms,
        }
    }

    fn email(a: &str) -> Contact {
        Contact {
            medium: Medium::Email,
            address: a.into(),
        }
    }

    fn sms(a: &str) -> Contact {
        Contact {
            medium: Medium::Sms,
            address: a.into(),
        }
    }

    /// Stores `doc` in `st` as its writers do (due time from the model).
    async fn put(store: &Store, doc: &CartDoc, st: &str) {
        let due = model::follow_up_due(doc, st);
        store
            .put_resource(row("shop", doc, st, due, doc.updated_ms))
            .await
            .unwrap();
    }

    async fn stored(store: &Store, id: &str) -> (ResourceRow, CartDoc) {
        let r = store.resource(id).await.unwrap().unwrap();
        let d = serde_json::from_str(&r.body).unwrap();
        (r, d)
    }

    async fn events(store: &Store) -> Vec<EventRow> {
        store.events(EventFilter::default()).await.unwrap().0
    }

    #[tokio::test]
    async fn an_abandoned_cart_gets_one_mail_and_records_it() {
        let store = Store::memory();
        let sw = sweeper(&store, "gw1", settings(true, true));
        let doc = cart(
            "cart-1",
            NOW - 25 * HOUR,
            vec![sms("+34600000001"), email("ana@example.com")],
        );
        put(&store, &doc, state::ACTIVE).await;
        let pass = sw.sweep(NOW).await.unwrap();
        assert_eq!(pass.sent, 1, "{pass:?}");

        let evs = events(&store).await;
        assert_eq!(evs.len(), 1);
        let ev = &evs[0];
        assert_eq!(ev.id, "followup-cart-1");
        assert_eq!(ev.resource.as_deref(), Some("cart-1"));
        assert_eq!(ev.app, "shop");
        // Email preferred over SMS, whatever the order of the contacts.
        assert_eq!(ev.url, "mailto:ana@example.com");
        assert_eq!(ev.state, EventState::Pending);
        assert_eq!(ev.next_ms, NOW);
        let body: MailBody = serde_json::from_str(&ev.body).unwrap();
        assert_eq!(body.subject, "Your cart is waiting for you");
        assert!(body.text.contains("cart-1"), "{}", body.text);
        assert!(body.text.contains("12.50 EUR"), "{}", body.text);
        assert!(
            body.text.contains("https://shop.example/cart/cart-1"),
            "{}",
            body.text
        );

        let (r, d) = stored(&store, "cart-1").await;
        assert_eq!(r.due_ms, None);
        assert_eq!(r.state, state::ACTIVE);
        assert_eq!(
            d.follow_up,
            Some(FollowUp {
                sent_ms: NOW,
                medium: Medium::Email,
                event: "followup-cart-1".into(),
            })
        );
        // The customer's last change is still what it was.
        assert_eq!(d.updated_ms, NOW - 25 * HOUR);

        // A second pass, even much later, sends nothing more.
        assert_eq!(sw.sweep(NOW + 48 * HOUR).await.unwrap(), Pass::default());
        assert_eq!(events(&store).await.len(), 1);
    }

    #[tokio::test]
    async fn touched_checked_out_deleted_and_uncontactable_carts_get_nothing() {
        let store = Store::memory();
        let sw = sweeper(&store, "gw1", settings(true, false));
        // Touched an hour ago: not abandoned yet.
        put(
            &store,
            &cart("recent", NOW - HOUR, vec![email("a@example.com")]),
            state::ACTIVE,
        )
        .await;
        for (id, st) in [("done", state::CHECKED_OUT), ("gone", state::DELETED)] {
            let doc = cart(id, NOW - 30 * HOUR, vec![email("b@example.com")]);
            put(&store, &doc, st).await;
            // Even a row wrongly left due is not listed: only active carts are.
            store
                .put_resource(row("shop", &doc, st, Some(NOW - 30 * HOUR), NOW))
                .await
                .unwrap();
        }
        // No contact: never due.
        put(
            &store,
            &cart("nobody", NOW - 30 * HOUR, Vec::new()),
            state::ACTIVE,
        )
        .await;
        // No contact, but a row marked due: re-checked, and cleared.
        let doc = cart("nobody-due", NOW - 30 * HOUR, Vec::new());
        store
            .put_resource(row("shop", &doc, state::ACTIVE, Some(NOW - 30 * HOUR), NOW))
            .await
            .unwrap();
        // Only an SMS number, and no SMS webhook: nothing to send, due cleared.
        put(
            &store,
            &cart("sms-only", NOW - 30 * HOUR, vec![sms("+34600000002")]),
            state::ACTIVE,
        )
        .await;

        let pass = sw.sweep(NOW).await.unwrap();
        assert_eq!(pass.sent, 0, "{pass:?}");
        assert!(events(&store).await.is_empty());
        for id in ["nobody-due", "sms-only"] {
            let (r, d) = stored(&store, id).await;
            assert_eq!(r.due_ms, None, "{id}");
            assert_eq!(d.follow_up, None, "{id}");
        }
        assert_eq!(
            stored(&store, "recent").await.0.due_ms,
            Some(NOW - HOUR),
            "a cart not yet abandoned keeps its due time"
        );
    }

    #[tokio::test]
    async fn a_cart_touched_after_the_listing_is_left_alone() {
        let store = Store::memory();
        let sw = sweeper(&store, "gw1", settings(true, false));
        let old = cart("c-t", NOW - 30 * HOUR, vec![email("a@example.com")]);
        put(&store, &old, state::ACTIVE).await;
        // The customer changes it while the sweeper would be between listing and lock: the
        // writer holds the lock, so the sweeper skips it...
        let held = sw
            .locks
            .try_hold(&model::lock_name("c-t"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sw.sweep(NOW).await.unwrap().busy, 1);
        let touched = CartDoc {
            updated_ms: NOW - 1000,
            ..old
        };
        put(&store, &touched, state::ACTIVE).await;
        drop(held);
        // ...and once it is written, the cart is no longer abandoned.
        assert_eq!(sw.sweep(NOW).await.unwrap(), Pass::default());
        assert!(events(&store).await.is_empty());
        // A day after that change it is.
        assert_eq!(sw.sweep(NOW + 25 * HOUR).await.unwrap().sent, 1);
    }

    #[tokio::test]
    async fn two_sweepers_on_one_store_send_one_follow_up_per_cart() {
        let store = Store::memory();
        let one = sweeper(&store, "gw1", settings(true, true));
        let two = sweeper(&store, "gw2", settings(true, true));
        for i in 0..20 {
            let contact = if i % 2 == 0 {
                vec![email(&format!("c{i}@example.com"))]
            } else {
                vec![sms(&format!("+3460000{i:04}"))]
            };
            put(
                &store,
                &cart(&format!("cart-{i:02}"), NOW - 30 * HOUR - i, contact),
                state::ACTIVE,
            )
            .await;
        }
        let mut sent = 0;
        // Concurrent passes, repeated until nothing is left (a busy cart is retried).
        for _ in 0..10 {
            let (a, b) = tokio::join!(one.sweep(NOW), two.sweep(NOW));
            sent += a.unwrap().sent + b.unwrap().sent;
        }
        assert_eq!(sent, 20);
        let evs = events(&store).await;
        assert_eq!(evs.len(), 20);
        let mut ids: Vec<&str> = evs.iter().map(|e| e.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 20);
        let sms_ev = evs.iter().find(|e| e.id == "followup-cart-01").unwrap();
        assert_eq!(sms_ev.url, "https://sms.example/send");
        assert_eq!(
            sms_ev.headers,
            vec![("Authorization".to_string(), "Bearer sms-token".to_string())]
        );
        let body: serde_json::Value = serde_json::from_str(&sms_ev.body).unwrap();
        assert_eq!(body["to"], "+34600000001");
        assert!(body["text"].as_str().unwrap().contains("cart-01"), "{body}");
        for i in 0..20 {
            let (_, d) = stored(&store, &format!("cart-{i:02}")).await;
            let f = d.follow_up.expect("recorded");
            let medium = if i % 2 == 0 {
                Medium::Email
            } else {
                Medium::Sms
            };
            assert_eq!(f.medium, medium);
        }
    }

    #[tokio::test]
    async fn a_pass_takes_at_most_a_batch_oldest_first() {
        let store = Store::memory();
        let mut s = settings(true, false);
        s.shop.batch = 2;
        let sw = sweeper(&store, "gw1", s);
        for i in 0..3 {
            let mut doc = cart(
                &format!("b{i}"),
                NOW - 30 * HOUR,
                vec![email("x@example.com")],
            );
            doc.created_ms = NOW - 40 * HOUR + i64::from(i);
            put(&store, &doc, state::ACTIVE).await;
        }
        assert_eq!(sw.sweep(NOW).await.unwrap().sent, 2);
        assert!(stored(&store, "b2").await.1.follow_up.is_none());
        assert_eq!(sw.sweep(NOW).await.unwrap().sent, 1);
        assert!(stored(&store, "b2").await.1.follow_up.is_some());
    }

    #[test]
    fn totals_are_shown_with_their_currency_and_period() {
        let mut d = cart("c", 0, Vec::new());
        assert_eq!(total_text(&d), "12.50 EUR");
        d.total.push(Total {
            price_type: "recurring".into(),
            period: Some("month".into()),
            currency: "EUR".into(),
            amount: "9.99".parse().unwrap(),
            duty_free: "8.26".parse().unwrap(),
        });
        assert_eq!(total_text(&d), "12.50 EUR + 9.99 EUR/month");
        d.total.clear();
        assert_eq!(total_text(&d), "0");
    }
}
