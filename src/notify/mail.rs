//! The outbox's mail channel: an event whose URL is `mailto:<address>` is sent by SMTP
//! (RFC 5321) through `[notifications.smtp]`, under the outbox's retry rules.
//!
//! ```text
//! EventRow { url: "mailto:ana@example.com", content_type: "application/json",
//!            body: {"subject": "...", "text": "..."} }
//!   -> From: [notifications.smtp] from, To: the address, Subject, text/plain; charset=utf-8,
//!      Message-ID: <event id@from's domain> (the same on every attempt: a duplicate after
//!      an attempt whose outcome was lost can be recognised)
//! SMTP answer: 2xx delivered | 4xx (transient, RFC 5321 4.2.1) retry | 5xx dead
//! connection refused / reset, TLS failure, timeout: retry
//! no [notifications.smtp] host: dead at once ("no [notifications.smtp] configured"),
//!   or written to the log and counted delivered with `log = true` (demo), or written as
//!   `<id>.eml` into `mailbox_dir` (demo: a local mailbox, lettre's file transport)
//! ```
//!
//! The mail server is the operator's own configuration, so it is not subject to
//! `[notifications] allowed_networks` (which is about the URLs API consumers give).

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::outbox::{Attempt, clip};
use crate::config::notifications::{SmtpConfig, SmtpTls};
use crate::store::EventRow;

/// The URL scheme of mail events.
pub const SCHEME: &str = "mailto:";
/// The content type of a mail event's body ([`MailBody`] as JSON).
pub const CONTENT_TYPE: &str = "application/json";
/// `last_error` of a mail event when this instance has no mail server.
pub const NO_SMTP: &str = "no [notifications.smtp] configured";

/// The body of a mail event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailBody {
    /// One line.
    pub subject: String,
    /// Plain text (UTF-8).
    pub text: String,
}

/// The URL of a mail event to `address`.
pub fn mailto(address: &str) -> String {
    format!("{SCHEME}{address}")
}

/// Whether an event goes by mail.
pub fn is_mail(url: &str) -> bool {
    url.get(..SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
}

/// The sender of mail events (cheap to clone).
#[derive(Clone)]
pub struct Mailer {
    target: Target,
    timeout: Duration,
}

#[derive(Clone)]
enum Target {
    /// No mail server: dead at once.
    None,
    /// No mail server, demo: the log.
    Log,
    /// Shared: the transport's configuration is large, and the outbox clones itself per delivery.
    Smtp(Arc<Smtp>),
    /// No mail server, demo: `.eml` files in a directory.
    Mailbox(Arc<LocalMailbox>),
}

struct LocalMailbox {
    transport: AsyncFileTransport<Tokio1Executor>,
    from: Mailbox,
}

/// The `From:` of the demo mailbox when `from` is not given.
const DEMO_FROM: &str = "Charging gateway demo <gateway@demo.invalid>";

struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::None => "none",
            Target::Log => "log",
            Target::Smtp(_) => "smtp",
            Target::Mailbox(_) => "mailbox",
        };
        f.debug_struct("Mailer").field("target", &target).finish()
    }
}

impl Mailer {
    /// From `[notifications.smtp]`; `hello` is the name given in EHLO (the Origin-Host).
    /// Fails on a `from` that is not a mailbox, or TLS parameters that cannot be built.
    pub fn new(c: &SmtpConfig, hello: &str) -> Result<Self, String> {
        let target = if c.host.is_empty() && !c.mailbox_dir.is_empty() {
            let from = if c.from.trim().is_empty() {
                DEMO_FROM
            } else {
                c.from.as_str()
            };
            let from: Mailbox = from
                .parse()
                .map_err(|e| format!("notifications.smtp.from: {e}"))?;
            std::fs::create_dir_all(&c.mailbox_dir)
                .map_err(|e| format!("notifications.smtp.mailbox_dir: {}: {e}", c.mailbox_dir))?;
            Target::Mailbox(Arc::new(LocalMailbox {
                transport: AsyncFileTransport::new(&c.mailbox_dir),
                from,
            }))
        } else if c.host.is_empty() {
            if c.log { Target::Log } else { Target::None }
        } else {
            let from: Mailbox = c
                .from
                .parse()
                .map_err(|e| format!("notifications.smtp.from: {e}"))?;
            let tls = match c.tls {
                SmtpTls::None => Tls::None,
                SmtpTls::Starttls => Tls::Required(tls_parameters(&c.host)?),
                SmtpTls::Tls => Tls::Wrapper(tls_parameters(&c.host)?),
            };
            let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.host.as_str())
                .port(c.effective_port())
                .tls(tls)
                .timeout(Some(c.timeout))
                .hello_name(ClientId::Domain(hello.to_string()));
            if !c.username.is_empty() {
                b = b.credentials(Credentials::new(c.username.clone(), c.password.clone()));
            }
            Target::Smtp(Arc::new(Smtp {
                transport: b.build(),
                from,
            }))
        };
        Ok(Self {
            target,
            timeout: c.timeout,
        })
    }

    /// The longest one attempt takes.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends mail event `ev` once (no store access).
    pub async fn attempt(&self, ev: &EventRow) -> Attempt {
        let Some(to) = ev.url.get(SCHEME.len()..) else {
            return Attempt::Dead("the mailto: URL names no address".into());
        };
        let to: Address = match to.parse() {
            Ok(a) => a,
            Err(_) => {
                return Attempt::Dead(format!("{:?} is not a mail address", clip(to)));
            }
        };
        let body: MailBody = match serde_json::from_str(&ev.body) {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Dead(format!(
                    "the body of a mail event must be {{\"subject\", \"text\"}}: {e}"
                ));
            }
        };
        let (transport, from) = match &self.target {
            Target::None => return Attempt::Dead(NO_SMTP.into()),
            Target::Log => {
                info!(
                    event = %ev.id,
                    to = %to,
                    subject = %body.subject,
                    text = %body.text,
                    "mail (no [notifications.smtp] host, smtp.log = true): logged, not sent"
                );
                return Attempt::Delivered;
            }
            Target::Mailbox(m) => {
                let message = match build(&m.from, to, &ev.id, body) {
                    Ok(message) => message,
                    Err(dead) => return dead,
                };
                return match m.transport.send(message).await {
                    Ok(id) => {
                        info!(event = %ev.id, file = %format!("{id}.eml"), "mail written to the demo mailbox");
                        Attempt::Delivered
                    }
                    Err(e) => Attempt::Failed {
                        reason: "mailbox",
                        error: format!("the demo mailbox could not be written: {e}"),
                        retry_after: None,
                    },
                };
            }
            Target::Smtp(smtp) => (&smtp.transport, &smtp.from),
        };
        let message = match build(from, to, &ev.id, body) {
            Ok(m) => m,
            Err(dead) => return dead,
        };
        match tokio::time::timeout(self.timeout, transport.send(message)).await {
            Ok(Ok(_)) => Attempt::Delivered,
            Ok(Err(e)) => classify(&e),
            Err(_) => Attempt::Failed {
                reason: "timeout",
                error: format!(
                    "SMTP timed out after {}",
                    humantime::format_duration(self.timeout)
                ),
                retry_after: None,
            },
        }
    }
}

/// The message of mail event `event` (its Message-ID the same on every attempt).
fn build(from: &Mailbox, to: Address, event: &str, body: MailBody) -> Result<Message, Attempt> {
    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(body.subject.as_str())
        .message_id(Some(message_id(event, from.email.domain())))
        .header(ContentType::TEXT_PLAIN)
        .body(body.text)
        .map_err(|e| Attempt::Dead(format!("the mail cannot be built: {e}")))
}

fn tls_parameters(host: &str) -> Result<TlsParameters, String> {
    TlsParameters::new(host.to_string())
        .map_err(|e| format!("notifications.smtp: TLS parameters for {host}: {e}"))
}

/// `<id@domain>` with the characters RFC 5322 `dot-atom-text` refuses replaced by `-`.
fn message_id(event: &str, domain: &str) -> String {
    let local: String = event
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '=') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("<{}@{domain}>", local.trim_matches('.'))
}

/// An SMTP failure under the outbox's rules: 4xx retried, 5xx dead, the rest retried.
fn classify(e: &lettre::transport::smtp::Error) -> Attempt {
    let text = clip(&e.to_string());
    if e.is_permanent() {
        return Attempt::Dead(format!("SMTP {text}"));
    }
    if e.is_transient() {
        return Attempt::Failed {
            reason: "status",
            error: format!("SMTP {text}"),
            retry_after: None,
        };
    }
    if e.is_timeout() {
        return Attempt::Failed {
            reason: "timeout",
            error: format!("SMTP {text}"),
            retry_after: None,
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return Attempt::Failed {
                reason: "connect",
                error: "SMTP connection refused".into(),
                retry_after: None,
            };
        }
        source = s.source();
    }
    Attempt::Failed {
        reason: "request",
        error: format!("SMTP {text}"),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailto_urls_and_message_ids() {
        assert_eq!(mailto("ana@example.com"), "mailto:ana@example.com");
        assert!(is_mail("mailto:ana@example.com"));
        assert!(is_mail("MAILTO:ana@example.com"));
        assert!(!is_mail("https://example.com/mailto:"));
        assert!(!is_mail("mail"));
        assert_eq!(
            message_id("followup-cart 1/é", "shop.example"),
            "<followup-cart-1--@shop.example>"
        );
    }

    fn event(url: &str, body: &str) -> EventRow {
        EventRow {
            id: "ev-m".into(),
            app: "shop".into(),
            kind: "k".into(),
            resource: None,
            url: url.into(),
            headers: Vec::new(),
            content_type: CONTENT_TYPE.into(),
            body: body.into(),
            state: crate::store::EventState::Pending,
            attempts: 0,
            next_ms: 0,
            last_error: None,
            lease: None,
            created_ms: 0,
            updated_ms: 0,
            delivered_ms: None,
        }
    }

    #[tokio::test]
    async fn without_a_mail_server_an_event_is_dead_or_logged() {
        let body = r#"{"subject": "s", "text": "t"}"#;
        let none = Mailer::new(&SmtpConfig::default(), "gw.example").unwrap();
        assert_eq!(
            none.attempt(&event("mailto:a@example.com", body)).await,
            Attempt::Dead(NO_SMTP.into())
        );
        let log = Mailer::new(
            &SmtpConfig {
                log: true,
                ..SmtpConfig::default()
            },
            "gw.example",
        )
        .unwrap();
        assert_eq!(
            log.attempt(&event("mailto:a@example.com", body)).await,
            Attempt::Delivered
        );
        // What can never be sent is dead whatever the server.
        assert!(matches!(
            log.attempt(&event("mailto:not an address", body)).await,
            Attempt::Dead(w) if w.contains("not a mail address")
        ));
        assert!(matches!(
            log.attempt(&event("mailto:a@example.com", "{}")).await,
            Attempt::Dead(w) if w.contains("subject")
        ));
    }

    #[tokio::test]
    async fn the_demo_mailbox_keeps_each_mail_as_an_eml_file() {
        let dir = std::env::temp_dir().join(format!("gw-mailbox-{}", fastrand::u64(..)));
        let mailer = Mailer::new(
            &SmtpConfig {
                mailbox_dir: dir.join("box").display().to_string(),
                ..SmtpConfig::default()
            },
            "gw.example",
        )
        .unwrap();
        let body = r#"{"subject": "Your code", "text": "Your code is 123456."}"#;
        assert_eq!(
            mailer.attempt(&event("mailto:ana@example.com", body)).await,
            Attempt::Delivered
        );
        let files: Vec<_> = std::fs::read_dir(dir.join("box"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(
            files[0].extension().is_some_and(|e| e == "eml"),
            "{files:?}"
        );
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("To: ana@example.com"), "{text}");
        assert!(text.contains("Subject: Your code"), "{text}");
        assert!(text.contains("Your code is 123456."), "{text}");
        assert!(text.contains("Message-ID: <ev-m@demo.invalid>"), "{text}");
        // A mail server and the demo mailbox at once is a configuration error.
        let both = SmtpConfig {
            host: "smtp.example".into(),
            from: "a@example.com".into(),
            mailbox_dir: "x".into(),
            ..SmtpConfig::default()
        };
        assert!(both.validate().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
