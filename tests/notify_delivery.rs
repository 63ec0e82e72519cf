//! The outbox's delivery over real HTTP: receivers listening on 127.0.0.1 (port 0) in this
//! process, the delivery worker (`notify::Outbox`) over a memory store, the admin endpoints
//! through the gateway's router. Every wait has a generous deadline; no assertion is on time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tower::ServiceExt;

use charging_gateway::api::{self, ApiState, Apps};
use charging_gateway::config::GatewayConfig;
use charging_gateway::config::notifications::NotificationsConfig;
use charging_gateway::gateway::{Gateway, StartOptions};
use charging_gateway::notify::{Outbox, OutboxHandle, OutboxSettings};
use charging_gateway::store::{EventRow, EventState, Store, now_ms};

/// How long any wait may take before the test fails (nothing here needs more than seconds).
const DEADLINE: Duration = Duration::from_secs(30);

// ---- receivers -------------------------------------------------------------------------------

/// What a receiver answers to its n-th request.
#[derive(Clone, Debug)]
enum Reply {
    Status(u16),
    /// Status with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// 302 to this URL.
    Redirect(String),
    /// Reads the request, never answers.
    Hold,
}

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Got {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Script = Box<dyn Fn(usize) -> Reply + Send>;

struct ReceiverState {
    got: Mutex<Vec<Got>>,
    script: Mutex<Script>,
}

/// An HTTP listener on 127.0.0.1 recording every request and answering by its script.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(script: impl Fn(usize) -> Reply + Send + 'static) -> Self {
        let state = Arc::new(ReceiverState {
            got: Mutex::new(Vec::new()),
            script: Mutex::new(Box::new(script)),
        });
        let st = Arc::clone(&state);
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let st = Arc::clone(&st);
            async move { answer(st, req).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// Always the same answer.
    async fn answering(reply: Reply) -> Self {
        Self::start(move |_| reply.clone()).await
    }

    fn set_script(&self, script: impl Fn(usize) -> Reply + Send + 'static) {
        *self.state.script.lock().unwrap() = Box::new(script);
    }

    fn got(&self) -> Vec<Got> {
        self.state.got.lock().unwrap().clone()
    }

    /// Waits (within [`DEADLINE`]) until the receiver got at least `n` requests; returns them.
    /// Also the helper for a crash test: the gateway killed between a commit and a delivery,
    /// restarted, then the event expected at the listener.
    async fn wait_requests(&self, n: usize) -> Vec<Got> {
        wait_until(&format!("{n} requests at {}", self.url), || {
            self.state.got.lock().unwrap().len() >= n
        })
        .await;
        self.got()
    }

    /// How many requests carried each `X-Event-Id`.
    fn ids(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for g in self.got() {
            *m.entry(g.header("x-event-id").unwrap_or("").to_string())
                .or_default() += 1;
        }
        m
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(st: Arc<ReceiverState>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let n = {
        let mut got = st.got.lock().unwrap();
        got.push(Got {
            method: parts.method,
            path: parts.uri.path().to_string(),
            headers: parts.headers,
            body,
        });
        got.len()
    };
    let reply = (st.script.lock().unwrap())(n);
    match reply {
        Reply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Reply::RetryAfter(s, secs) => (
            StatusCode::from_u16(s).unwrap(),
            [("retry-after", secs.to_string())],
        )
            .into_response(),
        Reply::Redirect(to) => (StatusCode::FOUND, [("location", to)]).into_response(),
        Reply::Hold => std::future::pending().await,
    }
}

/// A bare TCP listener that counts the connections it accepts (and holds them).
async fn counting_listener() -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&n);
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (port, n, task)
}

// ---- the worker ------------------------------------------------------------------------------

/// Loopback allowed, http allowed, small back-offs.
fn notifications() -> NotificationsConfig {
    NotificationsConfig {
        allow_http: true,
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_attempts: 6,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        concurrency: 4,
        poll_interval: Duration::from_millis(100),
        ..NotificationsConfig::default()
    }
}

fn start_worker(store: &Store, id: &str, n: &NotificationsConfig) -> OutboxHandle {
    let settings = OutboxSettings::new(n, id.to_string(), Duration::from_secs(1));
    Outbox::new(store.clone(), settings).unwrap().spawn()
}

fn event(id: &str, url: &str) -> EventRow {
    let now = now_ms();
    EventRow {
        id: id.into(),
        app: "shop".into(),
        kind: "org.camaraproject.carrier-billing.v0.payment-completed".into(),
        resource: Some(format!("pay-{id}")),
        url: url.into(),
        headers: vec![
            ("Authorization".into(), "Bearer s3cr3t-token".into()),
            ("X-Tenant".into(), "north".into()),
        ],
        content_type: "application/cloudevents+json".into(),
        body: format!(
            r#"{{"specversion":"1.0","id":"{id}","type":"payment-completed","data":{{"amount":"0.10"}}}}"#
        ),
        state: EventState::Pending,
        attempts: 0,
        next_ms: now,
        last_error: None,
        lease: None,
        created_ms: now,
        updated_ms: now,
        delivered_ms: None,
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the stored event satisfies `f`; returns it.
async fn wait_event(store: &Store, id: &str, f: impl Fn(&EventRow) -> bool) -> EventRow {
    let start = Instant::now();
    loop {
        let e = store.event(id).await.unwrap().expect("the event exists");
        if f(&e) {
            return e;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "gave up waiting on event {id}: {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_state(store: &Store, id: &str, state: EventState) -> EventRow {
    wait_event(store, id, |e| e.state == state).await
}

// ---- delivery --------------------------------------------------------------------------------

#[tokio::test]
async fn an_event_is_posted_with_its_headers_and_body_and_marked_delivered() {
    let rx = Receiver::answering(Reply::Status(204)).await;
    let store = Store::memory();
    let worker = start_worker(&store, "gw-a", &notifications());
    let ev = event("ev-1", &format!("{}/hooks/payments?x=1", rx.url));
    store.put_event(ev.clone()).await.unwrap();
    let done = wait_state(&store, "ev-1", EventState::Delivered).await;
    assert_eq!(done.attempts, 1);
    assert!(done.delivered_ms.is_some());
    assert_eq!(done.lease, None);
    assert_eq!(done.last_error, None);
    let got = rx.got();
    assert_eq!(got.len(), 1);
    let g = &got[0];
    assert_eq!(g.method, Method::POST);
    assert_eq!(g.path, "/hooks/payments");
    assert_eq!(g.body, Bytes::from(ev.body.clone()));
    assert_eq!(
        g.header("content-type"),
        Some("application/cloudevents+json")
    );
    assert_eq!(g.header("authorization"), Some("Bearer s3cr3t-token"));
    assert_eq!(g.header("x-tenant"), Some("north"));
    assert_eq!(g.header("x-event-id"), Some("ev-1"));
    worker.stop(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_name_is_reached_through_the_addresses_the_policy_allows() {
    // localhost: ::1 (not allowed here) is dropped, 127.0.0.1 (allowed) is connected to, on
    // the URL's port.
    let rx = Receiver::answering(Reply::Status(200)).await;
    let port = rx.url.rsplit(':').next().unwrap().to_string();
    let store = Store::memory();
    let worker = start_worker(&store, "gw-a", &notifications());
    store
        .put_event(event(
            "ev-name-ok",
            &format!("http://localhost:{port}/hook"),
        ))
        .await
        .unwrap();
    let done = wait_state(&store, "ev-name-ok", EventState::Delivered).await;
    assert_eq!(done.attempts, 1);
    assert_eq!(
        rx.got()[0].header("host"),
        Some(format!("localhost:{port}").as_str())
    );
    worker.stop(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn failures_are_retried_until_the_receiver_takes_the_event() {
    let rx = Receiver::start(|n| {
        if n <= 3 {
            Reply::Status(500)
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let store = Store::memory();
    let worker = start_worker(&store, "gw-a", &notifications());
    store
        .put_event(event("ev-r", &format!("{}/hook", rx.url)))
        .await
        .unwrap();
    let done = wait_state(&store, "ev-r", EventState::Delivered).await;
    assert_eq!(done.attempts, 4);
    assert_eq!(done.last_error, None);
    let got = rx.got();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|g| g.header("x-event-id") == Some("ev-r")));
    assert!(got.iter().all(|g| g.body == got[0].body));
    worker.stop(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_retry_after_on_503_is_honoured_within_backoff_max() {
    let rx = Receiver::start(|n| {
        if n == 1 {
            Reply::RetryAfter(503, 1)
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let store = Store::memory();
    let n = NotificationsConfig {
        backoff_max: Duration::from_secs(2),
        ..notifications()
    };
    let worker = start_worker(&store, "gw-a", &n);
    store
        .put_event(event("ev-ra", &format!("{}/hook", rx.url)))
        .await
        .unwrap();
    let failed = wait_event(&store, "ev-ra", |e| e.attempts >= 1).await;
    // Seen between the two attempts (a second apart): the pause the 503 asked for.
    assert_eq!(failed.state, EventState::Pending, "{failed:?}");
    assert_eq!(failed.last_error.as_deref(), Some("HTTP 503"));
    let pause = failed.next_ms - failed.updated_ms;
    assert!((1000..=2000).contains(&pause), "paused {pause} ms");
    let done = wait_state(&store, "ev-ra", EventState::Delivered).await;
    assert_eq!(done.attempts, 2);
    worker.stop(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_goes_dead_and_an_admin_retry_delivers_it() {
    let rx = Receiver::answering(Reply::Hold).await;
    let store = Store::memory();
    let n = NotificationsConfig {
        connect_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        max_attempts: 3,
        ..notifications()
    };
    let worker = start_worker(&store, "gw-a", &n);
    store
        .put_event(event("ev-t", &format!("{}/hook", rx.url)))
        .await
        .unwrap();
    let dead = wait_state(&store, "ev-t", EventState::Dead).await;
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.last_error.as_deref(), Some("timed out after 300ms"));
    assert_eq!(dead.lease, None);
    assert_eq!(rx.got().len(), 3);

    let admin = AdminApi::start(store.clone()).await;
    let (status, v) = admin.get("/admin/events?state=dead").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 1);
    let listed = &v["events"][0];
    assert_eq!(listed["id"], "ev-t");
    assert_eq!(listed["state"], "dead");
    assert_eq!(listed["attempts"], 3);
    assert_eq!(listed["lastError"], "timed out after 300ms");
    assert_eq!(
        listed["headers"],
        serde_json::json!(["Authorization", "X-Tenant"])
    );
    assert!(
        !v.to_string().contains("s3cr3t"),
        "a header value shown: {v}"
    );
    assert_eq!(listed["body"]["id"], "ev-t");

    // The receiver is fixed; the operator sends the event again.
    rx.set_script(|_| Reply::Status(202));
    let (status, v) = admin.post("/admin/events/ev-t/retry").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "pending");
    assert_eq!(v["attempts"], 0);
    let done = wait_state(&store, "ev-t", EventState::Delivered).await;
    assert_eq!(done.attempts, 1);
    let (status, v) = admin.get("/admin/events/ev-t").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["state"], "delivered");
    assert!(v["deliveredMs"].is_i64());
    // Delivered: not sent again. Unknown: 404. Both in the admin error format.
    let (status, v) = admin.post("/admin/events/ev-t/retry").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|t| t.contains("delivered already")),
        "{v}"
    );
    let (status, _) = admin.post("/admin/events/nope/retry").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin.get("/admin/events/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin.get("/admin/events?state=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, v) = admin.get("/admin/events?resource=pay-ev-t&limit=5").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["total"], 1);
    // Admin applications only.
    for (method, path) in [
        (Method::GET, "/admin/events"),
        (Method::GET, "/admin/events/ev-t"),
        (Method::POST, "/admin/events/ev-t/retry"),
    ] {
        let (status, v) = admin.send_as(method, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {v}");
    }
    worker.stop(Duration::from_secs(10)).await;
    admin.stop().await;
}

#[tokio::test]
async fn gone_is_dead_at_once() {
    let rx = Receiver::answering(Reply::Status(410)).await;
    let store = Store::memory();
    let worker = start_worker(&store, "gw-a", &notifications());
    store
        .put_event(event("ev-g", &format!("{}/hook", rx.url)))
        .await
        .unwrap();
    let dead = wait_state(&store, "ev-g", EventState::Dead).await;
    assert_eq!(dead.attempts, 1);
    assert_eq!(
        dead.last_error.as_deref(),
        Some("the receiver answered 410 Gone")
    );
    assert_eq!(rx.got().len(), 1);
    worker.stop(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let elsewhere = Receiver::answering(Reply::Status(204)).await;
    let rx = Receiver::answering(Reply::Redirect(format!("{}/stolen", elsewhere.url))).await;
    let store = Store::memory();
    let n = NotificationsConfig {
        max_attempts: 2,
        ..notifications()
    };
    let worker = start_worker(&store, "gw-a", &n);
    store
        .put_event(event("ev-3xx", &format!("{}/hook", rx.url)))
        .await
        .unwrap();
    let dead = wait_state(&store, "ev-3xx", EventState::Dead).await;
    assert_eq!(dead.attempts, 2);
    assert_eq!(
        dead.last_error.as_deref(),
        Some("HTTP 302: redirect not followed")
    );
    assert_eq!(rx.got().len(), 2);
    assert!(elsewhere.got().is_empty(), "the redirect was followed");
    worker.stop(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn refused_destinations_get_no_connection() {
    // A listener on loopback, which this policy does not allow (http yes, loopback no).
    let (port, accepted, task) = counting_listener().await;
    let store = Store::memory();
    let n = NotificationsConfig {
        allowed_networks: Vec::new(),
        max_attempts: 2,
        ..notifications()
    };
    let worker = start_worker(&store, "gw-a", &n);
    // A name that resolves to loopback only: the resolver drops every address.
    store
        .put_event(event("ev-name", &format!("http://localhost:{port}/hook")))
        .await
        .unwrap();
    // Address literals: refused before any request (the resolver is not asked for them).
    store
        .put_event(event("ev-lit", &format!("http://127.0.0.1:{port}/hook")))
        .await
        .unwrap();
    store
        .put_event(event("ev-private", "http://10.0.0.1:8080/hook"))
        .await
        .unwrap();
    let by_name = wait_state(&store, "ev-name", EventState::Dead).await;
    assert_eq!(by_name.attempts, 2);
    let why = by_name.last_error.unwrap_or_default();
    assert!(
        why.contains("localhost") && why.contains("not public"),
        "{why}"
    );
    for id in ["ev-lit", "ev-private"] {
        let dead = wait_state(&store, id, EventState::Dead).await;
        assert_eq!(dead.attempts, 1, "{id}");
        let why = dead.last_error.unwrap_or_default();
        assert!(
            why.starts_with("the URL is refused") && why.contains("not a public one"),
            "{id}: {why}"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "a connection was made");
    worker.stop(Duration::from_secs(10)).await;
    task.abort();
}

#[tokio::test]
async fn two_workers_on_one_store_deliver_each_event_once() {
    let rx = Receiver::answering(Reply::Status(204)).await;
    let store = Store::memory();
    let a = start_worker(&store, "gw-a", &notifications());
    let b = start_worker(&store, "gw-b", &notifications());
    let ids: Vec<String> = (0..40).map(|i| format!("ev-{i:02}")).collect();
    for id in &ids {
        store
            .put_event(event(id, &format!("{}/hook", rx.url)))
            .await
            .unwrap();
    }
    for id in &ids {
        let done = wait_state(&store, id, EventState::Delivered).await;
        assert_eq!(done.attempts, 1, "{id}");
    }
    let seen = rx.ids();
    assert_eq!(seen.len(), ids.len(), "{seen:?}");
    for id in &ids {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "{id} delivered {:?} times",
            seen.get(id)
        );
    }
    a.stop(Duration::from_secs(10)).await;
    b.stop(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_stopped_worker_delivers_nothing_more_and_another_takes_over() {
    let rx = Receiver::answering(Reply::Status(204)).await;
    let store = Store::memory();
    let a = start_worker(&store, "gw-a", &notifications());
    a.stop(Duration::from_secs(10)).await;
    store
        .put_event(event("ev-late", &format!("{}/hook", rx.url)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.got().is_empty());
    let b = start_worker(&store, "gw-b", &notifications());
    let got = rx.wait_requests(1).await;
    assert_eq!(got[0].header("x-event-id"), Some("ev-late"));
    wait_state(&store, "ev-late", EventState::Delivered).await;
    b.stop(Duration::from_secs(10)).await;
}

// ---- mail (mailto: events over SMTP) ---------------------------------------------------------

/// A scripted SMTP server on 127.0.0.1 (port 0): 220 greeting, EHLO/MAIL/RSET/NOOP 250, RCPT
/// answered `rcpt`, DATA 354 then 250, QUIT 221. Records each message's data.
async fn fake_smtp(rcpt: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let sock = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let rec = Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((stream, _)) = sock.accept().await {
            let rec = Arc::clone(&rec);
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 fake.smtp ready\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply = match verb.as_str() {
                        "EHLO" | "HELO" => "250 fake.smtp".to_string(),
                        "MAIL" | "RSET" | "NOOP" => "250 OK".to_string(),
                        "RCPT" => rcpt.to_string(),
                        "DATA" => {
                            let _ = w.write_all(b"354 go ahead\r\n").await;
                            let mut data = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            rec.lock().unwrap().push(data);
                            "250 queued".to_string()
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => "502 not implemented".to_string(),
                    };
                    if w.write_all(format!("{reply}\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, got)
}

fn with_smtp(port: u16) -> NotificationsConfig {
    let mut n = notifications();
    n.smtp.host = "127.0.0.1".into();
    n.smtp.port = port;
    n.smtp.tls = charging_gateway::config::notifications::SmtpTls::None;
    n.smtp.from = "Shop <shop@shop.example>".into();
    n.smtp.timeout = Duration::from_secs(3);
    n
}

fn mail_event(id: &str, to: &str) -> EventRow {
    EventRow {
        url: format!("mailto:{to}"),
        headers: Vec::new(),
        content_type: "application/json".into(),
        body: r#"{"subject": "Your cart is waiting", "text": "Cart c-1: 12.50 EUR"}"#.into(),
        ..event(id, "")
    }
}

#[tokio::test]
async fn a_mail_event_is_sent_by_smtp_and_marked_delivered() {
    let (port, got) = fake_smtp("250 OK").await;
    let store = Store::memory();
    store
        .put_event(mail_event("mail-ok", "ana@example.com"))
        .await
        .unwrap();
    let w = start_worker(&store, "gw-mail", &with_smtp(port));
    let e = wait_state(&store, "mail-ok", EventState::Delivered).await;
    assert_eq!(e.attempts, 1);
    let data = got.lock().unwrap().clone();
    assert_eq!(data.len(), 1, "{data:?}");
    assert!(
        data[0].contains("Subject: Your cart is waiting"),
        "{}",
        data[0]
    );
    assert!(data[0].contains("To: ana@example.com"), "{}", data[0]);
    assert!(data[0].contains("Cart c-1: 12.50 EUR"), "{}", data[0]);
    assert!(
        data[0].contains("Message-ID: <mail-ok@shop.example>"),
        "{}",
        data[0]
    );
    w.stop(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn smtp_5xx_is_dead_at_once_and_4xx_is_retried() {
    let (refusing, _) = fake_smtp("550 5.1.1 no such user").await;
    let (deferring, _) = fake_smtp("451 4.3.0 try later").await;
    let store = Store::memory();
    store
        .put_event(mail_event("mail-550", "nobody@example.com"))
        .await
        .unwrap();
    let w = start_worker(&store, "gw-550", &with_smtp(refusing));
    let e = wait_state(&store, "mail-550", EventState::Dead).await;
    assert_eq!(e.attempts, 1, "a permanent refusal is not retried");
    assert!(
        e.last_error.as_deref().unwrap_or("").contains("550"),
        "{e:?}"
    );
    w.stop(Duration::from_secs(10)).await;

    let store = Store::memory();
    store
        .put_event(mail_event("mail-451", "later@example.com"))
        .await
        .unwrap();
    let w = start_worker(&store, "gw-451", &with_smtp(deferring));
    let e = wait_event(&store, "mail-451", |e| e.attempts >= 2).await;
    assert_eq!(e.state, EventState::Pending);
    assert!(
        e.last_error.as_deref().unwrap_or("").contains("451"),
        "{e:?}"
    );
    w.stop(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn an_unreachable_mail_server_is_retried_and_none_configured_is_dead() {
    // A port nothing listens on (bound, then closed).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let store = Store::memory();
    store
        .put_event(mail_event("mail-down", "ana@example.com"))
        .await
        .unwrap();
    let w = start_worker(&store, "gw-down", &with_smtp(port));
    let e = wait_event(&store, "mail-down", |e| e.attempts >= 2).await;
    assert_eq!(e.state, EventState::Pending);
    assert!(
        e.last_error
            .as_deref()
            .unwrap_or("")
            .contains("connection refused"),
        "{e:?}"
    );
    w.stop(Duration::from_secs(10)).await;

    let store = Store::memory();
    store
        .put_event(mail_event("mail-none", "ana@example.com"))
        .await
        .unwrap();
    let w = start_worker(&store, "gw-none", &notifications());
    let e = wait_state(&store, "mail-none", EventState::Dead).await;
    assert_eq!(e.attempts, 1);
    assert_eq!(
        e.last_error.as_deref(),
        Some("no [notifications.smtp] configured")
    );
    w.stop(Duration::from_secs(10)).await;
}

// ---- the admin API over a gateway without peers ---------------------------------------------

struct AdminApi {
    router: axum::Router,
    gw: Gateway,
}

impl AdminApi {
    async fn start(store: Store) -> Self {
        let cfg = GatewayConfig::from_toml(
            r#"
[diameter]
origin_host = "gw.charging.local"
origin_realm = "charging.local"
[diameter.timers]
reconnect_min = "1s"
reconnect_max = "5s"
drain_timeout = "1s"
[[diameter.peers]]
host = "ocs.charging.local"
realm = "charging.local"
address = "127.0.0.1:1"
[store]
backend = "memory"
[[apps]]
id = "ops"
username = "ops"
password = "ops-pw"
admin = true
"#,
        )
        .unwrap();
        let apps = Arc::new(Apps::new(&cfg.apps));
        let gw = Gateway::start_with(
            cfg,
            StartOptions {
                sim: None,
                store: Some(store),
            },
        )
        .await
        .unwrap();
        let state = ApiState::new(Arc::clone(&gw.charging), apps, Arc::new(|| true), None);
        let router = api::router(state, &gw.config.http);
        Self { router, gw }
    }

    async fn send(&self, method: Method, path: &str) -> (StatusCode, serde_json::Value) {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ops:ops-pw")
        );
        self.send_as(method, path, Some(&auth)).await
    }

    async fn send_as(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let req = req.body(Body::empty()).unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (status, v)
    }

    async fn get(&self, path: &str) -> (StatusCode, serde_json::Value) {
        self.send(Method::GET, path).await
    }

    async fn post(&self, path: &str) -> (StatusCode, serde_json::Value) {
        self.send(Method::POST, path).await
    }

    async fn stop(self) {
        self.gw.shutdown().await;
    }
}
