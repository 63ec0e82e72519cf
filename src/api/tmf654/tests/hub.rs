//! TMF654 listeners (`/hub`): what each application's listeners receive, read back from the
//! durable outbox (the memory store) exactly as it will be posted.

use super::*;
use crate::store::{EventFilter, EventRow, EventState, ResourceFilter};

const HUB: &str = "/tmf-api/prepayBalanceManagement/v4/hub";

impl World {
    async fn register(&self, auth: &(&str, String), body: &Value) -> Resp {
        self.send(
            Method::POST,
            HUB,
            &[
                (auth.0, auth.1.as_str()),
                ("content-type", "application/json"),
            ],
            body.to_string(),
        )
        .await
    }

    /// A listener registered and checked: its id.
    async fn listener(&self, auth: &(&str, String), callback: &str, query: Option<&str>) -> String {
        let mut body = json!({ "callback": callback });
        if let Some(q) = query {
            body["query"] = json!(q);
        }
        let r = self.register(auth, &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let v = r.json();
        let id = v["id"].as_str().unwrap().to_string();
        assert!(id.starts_with("hub-"), "{v}");
        let mut expected = json!({ "id": id, "callback": callback });
        if let Some(q) = query {
            expected["query"] = json!(q);
        }
        assert_eq!(v, expected);
        assert_eq!(r.header("location"), Some(format!("{HUB}/{id}").as_str()));
        assert_eq!(
            r.header("content-type"),
            Some("application/json;charset=utf-8")
        );
        id
    }

    async fn delete(&self, path: &str, auth: &(&str, String)) -> Resp {
        self.send(
            Method::DELETE,
            path,
            &[(auth.0, auth.1.as_str())],
            Body::empty(),
        )
        .await
    }

    /// The outbox events of `app`, oldest first.
    async fn events(&self, app: &str) -> Vec<EventRow> {
        let (mut rows, total) = self
            .store
            .events(EventFilter {
                app: Some(app.into()),
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), total);
        rows.reverse();
        rows
    }
}

fn body(e: &EventRow) -> Value {
    serde_json::from_str(&e.body).unwrap()
}

/// The envelope an event of `event_type` about `topup` (as GET shows it) must be, at `time`.
fn envelope(event_id: &Value, event_type: &str, topup: &Value, time: &str) -> Value {
    let id = topup["id"].as_str().unwrap();
    let status = topup["status"].as_str().unwrap();
    let (title, description) = if event_type == "TopupBalanceCreateEvent" {
        (
            "TopupBalance created",
            format!("topupBalance {id} created ({status})"),
        )
    } else {
        (
            "TopupBalance state change",
            format!("topupBalance {id} is {status}"),
        )
    };
    json!({
        "eventId": event_id,
        "eventTime": time,
        "eventType": event_type,
        "correlationId": id,
        "domain": "prepayBalanceManagement",
        "title": title,
        "description": description,
        "timeOcurred": time,
        "event": {"topupBalance": topup},
    })
}

/// The event as recorded for delivery: to `url`, about `resource`, pending.
fn check_row(e: &EventRow, app: &str, kind: &str, resource: &str, url: &str) {
    assert_eq!(e.app, app);
    assert_eq!(e.kind, kind);
    assert_eq!(e.resource.as_deref(), Some(resource));
    assert_eq!(e.url, url);
    assert_eq!(e.content_type, "application/json");
    assert!(e.headers.is_empty(), "{:?}", e.headers);
    assert_eq!(e.state, EventState::Pending);
    assert_eq!(e.attempts, 0);
}

/// The top-up `v` (final, as GET shows it) as it was when created: `created`, not confirmed.
fn as_created(v: &Value) -> Value {
    let mut c = v.clone();
    c["status"] = json!("created");
    c.as_object_mut().unwrap().remove("confirmationDate");
    c
}

#[tokio::test]
async fn listeners_get_their_applications_events_as_queried_until_deleted() {
    let w = world().await;
    let all = "http://127.0.0.1:9/all";
    let done = "http://127.0.0.1:9/completed";
    let theirs = "http://127.0.0.1:9/other";
    let a1 = w.listener(&shop(), all, None).await;
    let query = "eventType=TopupBalanceStateChangeEvent&status=completed";
    let a2 = w.listener(&shop(), done, Some(query)).await;
    let b = w.listener(&key("k-other"), theirs, None).await;
    // Read back by its application only.
    let r = w.get(&format!("{HUB}/{a2}"), &shop()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"id": a2, "callback": done, "query": query})
    );
    let r = w.get(&format!("{HUB}/{a2}"), &key("k-other")).await;
    assert_eq!(
        (r.status, r.error().0.as_str()),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    // Registering writes no event.
    assert!(w.events("shop").await.is_empty());

    let r = w.post(&shop(), &[], &topup(json!(10), "34671999000")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let view = w.get(&format!("{TOPUPS}/{id}"), &shop()).await.json();
    assert_eq!(view["status"], "completed");
    let confirmed = view["confirmationDate"].as_str().unwrap().to_string();
    let ev = w.events("shop").await;
    // The listener without a query: created, then completed; the other: completed only.
    assert_eq!(ev.len(), 3, "{ev:#?}");
    check_row(&ev[0], "shop", "TopupBalanceCreateEvent", &id, all);
    let created = body(&ev[0]);
    assert_eq!(
        created,
        envelope(
            &created["eventId"],
            "TopupBalanceCreateEvent",
            &as_created(&view),
            created["eventTime"].as_str().unwrap()
        )
    );
    assert_eq!(created["eventTime"], view["requestedDate"]);
    // One event for each listener (in no particular order between listeners).
    let to = |url: &str| {
        ev[1..]
            .iter()
            .find(|e| e.url == url)
            .unwrap_or_else(|| panic!("nothing to {url}: {ev:#?}"))
    };
    let (to_all, to_done) = (to(all), to(done));
    check_row(to_all, "shop", "TopupBalanceStateChangeEvent", &id, all);
    check_row(to_done, "shop", "TopupBalanceStateChangeEvent", &id, done);
    let changed = body(to_all);
    assert_eq!(
        changed,
        envelope(
            &changed["eventId"],
            "TopupBalanceStateChangeEvent",
            &view,
            &confirmed
        )
    );
    // One event, posted to each listener: the same eventId, a delivery id per listener.
    assert_eq!(body(to_done), changed);
    assert_ne!(to_all.id, to_done.id);
    assert_ne!(created["eventId"], changed["eventId"]);
    // The other application's listener got nothing of it.
    assert!(w.events("other").await.is_empty());

    // The other application's top-up goes to its listener only.
    let r = w
        .post(&key("k-other"), &[], &topup(json!(5), "34600000001"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let theirs_id = r.json()["id"].as_str().unwrap().to_string();
    let ev_b = w.events("other").await;
    let kinds: Vec<(&str, &str, &str)> = ev_b
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.resource.as_deref().unwrap(),
                e.url.as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("TopupBalanceCreateEvent", theirs_id.as_str(), theirs),
            ("TopupBalanceStateChangeEvent", theirs_id.as_str(), theirs)
        ]
    );
    assert_eq!(w.events("shop").await.len(), 3);

    // Deleted: no more events to it; deleting again, or reading it, is 404.
    let r = w.delete(&format!("{HUB}/{a1}"), &key("k-other")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another application's");
    let r = w.delete(&format!("{HUB}/{a1}"), &shop()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    let r = w.delete(&format!("{HUB}/{a1}"), &shop()).await;
    assert_eq!(
        (r.status, r.error().0.as_str()),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    assert_eq!(
        w.get(&format!("{HUB}/{a1}"), &shop()).await.status,
        StatusCode::NOT_FOUND
    );
    let r = w.post(&shop(), &[], &topup(json!(7), "34671999000")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let second = r.json()["id"].as_str().unwrap().to_string();
    let ev = w.events("shop").await;
    assert_eq!(ev.len(), 4, "{ev:#?}");
    check_row(
        &ev[3],
        "shop",
        "TopupBalanceStateChangeEvent",
        &second,
        done,
    );
    assert_eq!(body(&ev[3])["event"]["topupBalance"]["status"], "completed");
    // A refused top-up is `failed`: not what the remaining listener asked for.
    let r = w.post(&shop(), &[], &topup(json!(7), "34699999999")).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "unknown subscriber: {:?}",
        r.body
    );
    assert_eq!(w.events("shop").await.len(), 4);
    // The deleted listener is kept as such (a tombstone), the others active.
    let (hubs, _) = w
        .store
        .resources(ResourceFilter {
            kind: Some("tmf654.hub".into()),
            ascending: true,
            ..ResourceFilter::default()
        })
        .await
        .unwrap();
    let mut states: Vec<(&str, &str)> = hubs
        .iter()
        .map(|h| (h.id.as_str(), h.state.as_str()))
        .collect();
    states.sort();
    let mut expected = vec![
        (a1.as_str(), "deleted"),
        (a2.as_str(), "active"),
        (b.as_str(), "active"),
    ];
    expected.sort();
    assert_eq!(states, expected);
}

#[tokio::test]
async fn the_scheduler_s_periods_and_cancellations_are_events_for_listeners_of_that_time() {
    let w = world().await;
    let jan31 = datetime!(2025-01-31 10:00 UTC);
    let clock = Arc::new(ManualClock::new(jan31));
    let topups = Topups::new(Arc::clone(&w.charging));
    // Created (and its first period run) before any listener: no event.
    let parent = topups
        .create(
            "shop",
            Some("auto-ev"),
            new_topup(monthly("2025-01-31T10:00:00Z", Some(2)), jan31),
            jan31,
        )
        .await
        .unwrap()
        .record
        .view
        .id;
    assert!(w.events("shop").await.is_empty());
    let url = "http://127.0.0.1:9/events";
    w.listener(&shop(), url, None).await;
    let s = w.scheduler(&clock);
    clock.set(datetime!(2025-02-28 10:00 UTC));
    assert_eq!(s.tick().await.periods, 1);
    let child = format!("{parent}-p2");
    let ev = w.events("shop").await;
    let seen: Vec<(&str, &str, String, String)> = ev
        .iter()
        .map(|e| {
            check_row(e, "shop", &e.kind, e.resource.as_deref().unwrap(), url);
            let b = body(e);
            (
                e.kind.as_str(),
                e.resource.as_deref().unwrap(),
                b["event"]["topupBalance"]["status"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                b["eventTime"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let at = "2025-02-28T10:00:00.000Z".to_string();
    assert_eq!(
        seen,
        [
            (
                "TopupBalanceCreateEvent",
                child.as_str(),
                "created".into(),
                at.clone()
            ),
            (
                "TopupBalanceStateChangeEvent",
                child.as_str(),
                "completed".into(),
                at.clone()
            ),
            // The last period ran: the automatic top-up is completed.
            (
                "TopupBalanceStateChangeEvent",
                parent.as_str(),
                "completed".into(),
                at.clone()
            ),
        ]
    );
    // Each carries the resource as GET shows it then.
    let c = w.get(&format!("{TOPUPS}/{child}"), &shop()).await.json();
    assert_eq!(body(&ev[1])["event"]["topupBalance"], c);
    let p = w.get(&format!("{TOPUPS}/{parent}"), &shop()).await.json();
    assert_eq!(body(&ev[2])["event"]["topupBalance"], p);
    assert_eq!(
        body(&ev[2])["event"]["topupBalance"]["balanceTopup"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // An automatic top-up created (its first period in the future) and cancelled through the
    // API: created, then cancelled.
    let r = w
        .post(&shop(), &[], &monthly("2099-01-01T00:00:00Z", None))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let auto = r.json()["id"].as_str().unwrap().to_string();
    let r = w.delete(&format!("{TOPUPS}/{auto}"), &shop()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let ev = w.events("shop").await;
    let tail: Vec<(&str, &str, &str)> = ev[3..]
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.resource.as_deref().unwrap(),
                if body(e)["event"]["topupBalance"]["status"] == "created" {
                    "created"
                } else {
                    "cancelled"
                },
            )
        })
        .collect();
    assert_eq!(
        tail,
        [
            ("TopupBalanceCreateEvent", auto.as_str(), "created"),
            ("TopupBalanceStateChangeEvent", auto.as_str(), "cancelled"),
        ]
    );
    assert_eq!(
        body(ev.last().unwrap())["event"]["topupBalance"]["status"],
        "cancelled"
    );
    let cancelled = w.get(&format!("{TOPUPS}/{auto}"), &shop()).await.json();
    assert_eq!(body(ev.last().unwrap())["event"]["topupBalance"], cancelled);
}

#[tokio::test]
async fn bad_callbacks_and_queries_are_refused_by_name_and_register_nothing() {
    let w = world().await;
    for (body, field, needle) in [
        (json!({}), "callback", "required"),
        (json!({"callback": ""}), "callback", "required"),
        (json!({"callback": 5}), "callback", "invalid type"),
        (
            json!({"callback": "not a url"}),
            "callback",
            "not an absolute URL",
        ),
        (
            json!({"callback": "ftp://127.0.0.1/x"}),
            "callback",
            "scheme ftp",
        ),
        (
            json!({"callback": "http://10.0.0.1/x"}),
            "callback",
            "the address 10.0.0.1 is not a public one",
        ),
        (
            json!({"callback": "http://user:pw@127.0.0.1/x"}),
            "callback",
            "user information",
        ),
        (
            json!({"callback": "http://127.0.0.1:9/x", "query": "colour=red"}),
            "query",
            "\"colour\" cannot be filtered on",
        ),
        (
            json!({"callback": "http://127.0.0.1:9/x", "query": "eventType=TopupBalanceDeleteEvent"}),
            "query",
            "TopupBalanceDeleteEvent",
        ),
        (
            json!({"callback": "http://127.0.0.1:9/x", "query": "status=done"}),
            "query",
            "status \"done\"",
        ),
        (
            json!({"callback": "http://127.0.0.1:9/x", "query": "status"}),
            "query",
            "name=value expected",
        ),
        (
            json!({"callback": "http://127.0.0.1:9/x", "topic": "x"}),
            "topic",
            "unknown member",
        ),
    ] {
        let r = w.register(&shop(), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {:?}", r.body);
        let (code, message) = r.error();
        assert_eq!(code, "INVALID_ARGUMENT", "{body}");
        assert!(
            message.starts_with(&format!("{field}: ")) && message.contains(needle),
            "{body}: {message}"
        );
    }
    // Without authentication, or without the top-up operation: refused too.
    let r = w
        .send(
            Method::POST,
            HUB,
            &[("content-type", "application/json")],
            json!({"callback": "http://127.0.0.1:9/x"}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = w
        .register(
            &key("k-kiosk"),
            &json!({"callback": "http://127.0.0.1:9/x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w.delete(&format!("{HUB}/hub-nope"), &shop()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let (hubs, total) = w
        .store
        .resources(ResourceFilter {
            kind: Some("tmf654.hub".into()),
            ..ResourceFilter::default()
        })
        .await
        .unwrap();
    assert_eq!((hubs.len(), total), (0, 0));
    // Nothing registered: a top-up records no event.
    let r = w.post(&shop(), &[], &topup(json!(1), "34671999000")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(w.events("shop").await.is_empty());
}

#[tokio::test]
async fn the_default_policy_refuses_http_and_private_callbacks() {
    let w = world().await;
    // The same router over the default [notifications]: https and public addresses only.
    let state = ApiState::new(
        Arc::clone(&w.charging),
        Arc::new(Apps::new(&apps())),
        Arc::new(|| true),
        None,
    );
    let strict = World {
        router: router(state, &HttpConfig::default()),
        ..w
    };
    for (callback, needle) in [
        ("http://8.8.8.8/x", "http is not accepted"),
        (
            "https://127.0.0.1/x",
            "the address 127.0.0.1 is not a public one",
        ),
        (
            "https://10.0.0.1/x",
            "the address 10.0.0.1 is not a public one",
        ),
    ] {
        let r = strict
            .register(&shop(), &json!({ "callback": callback }))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{callback}");
        let (_, message) = r.error();
        assert!(message.contains(needle), "{callback}: {message}");
    }
}
