//! Notifications: the durable outbox's delivery, and the rules for the URLs API consumers give.
//!
//! ```text
//! api::<family>  state change + its events --put_resource_with_events--> store (one commit)
//!                                                                            |
//! notify::Outbox (one per instance): due events --claim (lease)--> POST url  v
//!                 2xx: delivered; 410: dead; else retry after a back-off with jitter,
//!                 dead after notifications.max_attempts (GET/POST /admin/events)
//!                 a mailto: URL goes by SMTP instead ([`mail`]): 2xx delivered, 4xx
//!                 retried, 5xx dead, no [notifications.smtp]: dead at once
//! ```
//!
//! A URL is a destination the consumer chose, so it is checked twice against
//! [`Destinations`]: when registered (scheme, host, every address its name resolves to) and
//! again for every connection (the resolver the HTTP client uses drops addresses outside the
//! policy, so a name that changes its answer after registration reaches nothing it should not).

pub mod destinations;
pub mod mail;
pub mod outbox;

pub use destinations::{DestinationError, Destinations, redact_url};
pub use outbox::{Attempt, Outbox, OutboxHandle, OutboxSettings, PolicyResolver};
