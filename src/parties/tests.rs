//! `ensure_individual_customer` and the claims: idempotent sign-ups, conflicts, a stale
//! claim taken over, and 50 sign-ups of one address racing through two stores on one SQLite
//! file and on one PostgreSQL database (skipped without PostgreSQL, failed under `CI=true`).

use std::path::PathBuf;

use super::*;
use crate::store::{ResourceFilter, Store};

use crate::store::postgres::test_server;

fn ana() -> Contact {
    Contact {
        email: Some("Ana@Example.com".into()),
        phone: None,
        given_name: Some("Ana".into()),
        family_name: Some("García".into()),
    }
}

async fn count(store: &Store, kind: &str) -> usize {
    store
        .resources(ResourceFilter {
            kind: Some(kind.into()),
            state: Some(state::LIVE.into()),
            ..ResourceFilter::default()
        })
        .await
        .unwrap()
        .1
}

#[tokio::test]
async fn a_sign_up_makes_an_individual_and_its_customer_once() {
    let store = Store::memory();
    let first = ensure_individual_customer(&store, "shop", &ana())
        .await
        .unwrap();
    assert!(first.created);
    assert!(first.individual_id.starts_with(prefix::INDIVIDUAL));
    assert!(first.customer_id.starts_with(prefix::CUSTOMER));
    let ind = load(&store, kind::INDIVIDUAL, &first.individual_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ind.row.app, "shop");
    assert_eq!(ind.doc["fullName"], "Ana García");
    assert_eq!(
        ind.doc["contactMedium"][0]["characteristic"]["emailAddress"],
        "Ana@Example.com"
    );
    let cust = load(&store, kind::CUSTOMER, &first.customer_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cust.row.parent.as_deref(),
        Some(first.individual_id.as_str())
    );
    assert_eq!(cust.doc["engagedParty"]["@referredType"], "Individual");

    // Again, the email in another case and a phone now: the same two, nothing new.
    let again = Contact {
        email: Some("ana@example.COM".into()),
        phone: Some("+34600000001".into()),
        ..Contact::default()
    };
    let second = ensure_individual_customer(&store, "shop", &again)
        .await
        .unwrap();
    assert_eq!(
        second,
        Linked {
            created: false,
            ..first.clone()
        }
    );
    assert_eq!(count(&store, kind::CUSTOMER).await, 1);
    assert_eq!(count(&store, kind::INDIVIDUAL).await, 1);

    // Another application's sign-up of the address is refused; an unknown phone is new.
    let e = ensure_individual_customer(&store, "other", &ana())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        PartyError::Conflict {
            field: "email".into(),
            value: "ana@example.com".into()
        }
    );
    let phone = Contact {
        phone: Some("+34600000002".into()),
        ..Contact::default()
    };
    let p = ensure_individual_customer(&store, "shop", &phone)
        .await
        .unwrap();
    assert!(p.created);
    // An email of one customer and the phone of another: which one would it be?
    let both = Contact {
        email: Some("ana@example.com".into()),
        phone: Some("+34600000002".into()),
        ..Contact::default()
    };
    let e = ensure_individual_customer(&store, "shop", &both)
        .await
        .unwrap_err();
    assert!(
        matches!(e, PartyError::Conflict { ref field, .. } if field == "phone"),
        "{e}"
    );
}

#[tokio::test]
async fn bad_contacts_are_refused_by_name() {
    let store = Store::memory();
    for (c, field) in [
        (Contact::default(), "contact"),
        (
            Contact {
                email: Some("ana@".into()),
                ..Contact::default()
            },
            "email",
        ),
        (
            Contact {
                phone: Some("600000001".into()),
                ..Contact::default()
            },
            "phone",
        ),
        (
            Contact {
                phone: Some("+34600000001".into()),
                given_name: Some("x".repeat(300)),
                ..Contact::default()
            },
            "givenName",
        ),
    ] {
        match ensure_individual_customer(&store, "shop", &c).await {
            Err(PartyError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{c:?}: {other:?}"),
        }
    }
    assert_eq!(count(&store, kind::INDIVIDUAL).await, 0);
}

#[tokio::test]
async fn a_claim_left_by_a_dead_instance_is_taken_over_once_stale() {
    let store = Store::memory();
    let key = Key::email("ana@example.com");
    let now = crate::store::now_ms();
    // Claimed, and the instance died before writing its customer.
    let old = now - CLAIM_GRACE_MS - 1_000;
    assert_eq!(
        claims::claim(
            &store,
            &key,
            "shop",
            "customer-ghost",
            "individual-ghost",
            old
        )
        .await
        .unwrap(),
        Claim::Made
    );
    // A fresh one is still the in-flight customer's.
    let fresh = Key::email("luis@example.com");
    claims::claim(
        &store,
        &fresh,
        "shop",
        "customer-late",
        "individual-late",
        now,
    )
    .await
    .unwrap();
    assert_eq!(
        claims::claim(&store, &fresh, "shop", "customer-x", "individual-x", now)
            .await
            .unwrap(),
        Claim::Lost(Holder {
            app: "shop".into(),
            customer: "customer-late".into(),
            party: "individual-late".into()
        })
    );
    let l = ensure_individual_customer(&store, "shop", &ana())
        .await
        .unwrap();
    assert!(l.created);
    assert_eq!(
        claims::holder(&store, &key)
            .await
            .unwrap()
            .unwrap()
            .customer,
        l.customer_id
    );
    // Released, then claimed again by compare-and-set.
    assert!(
        claims::release(&store, &key, &l.customer_id, now)
            .await
            .unwrap()
    );
    assert_eq!(claims::holder(&store, &key).await.unwrap(), None);
    assert_eq!(
        claims::claim(&store, &key, "shop", "customer-y", "individual-y", now)
            .await
            .unwrap(),
        Claim::Made
    );
}

/// 50 sign-ups of one address through `stores`: one individual, one customer; every call
/// answers that one.
async fn race(stores: Vec<Store>) {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = stores[i % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            ensure_individual_customer(&store, "shop", &ana()).await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().unwrap());
    }
    assert_eq!(
        answers.iter().filter(|l| l.created).count(),
        1,
        "{answers:?}"
    );
    let won = answers.iter().find(|l| l.created).unwrap();
    assert!(
        answers
            .iter()
            .all(|l| l.customer_id == won.customer_id && l.individual_id == won.individual_id),
        "{answers:?}"
    );
    for s in &stores {
        assert_eq!(count(s, kind::CUSTOMER).await, 1);
        assert_eq!(count(s, kind::INDIVIDUAL).await, 1);
        assert!(
            load(s, kind::CUSTOMER, &won.customer_id)
                .await
                .unwrap()
                .is_some()
        );
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sign_ups_through_two_stores_on_one_sqlite_file_make_one_customer() {
    let dir = TempDir(std::env::temp_dir().join(format!(
        "cgw-parties-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let open = || {
        Store::open(&crate::config::StoreConfig {
            backend: "sqlite".into(),
            data_dir: dir.0.clone(),
            ..crate::config::StoreConfig::default()
        })
        .unwrap()
    };
    race(vec![open(), open()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sign_ups_through_two_instances_on_postgres_make_one_customer() {
    let Some(server) = test_server::Server::shared_or_skip("parties::race_on_postgres") else {
        return;
    };
    let url = server.database("parties_race");
    let open = |url: String| {
        std::thread::spawn(move || {
            Store::open(&crate::config::StoreConfig {
                backend: "postgres".into(),
                url,
                max_batch: 16,
                ..crate::config::StoreConfig::default()
            })
            .unwrap()
        })
        .join()
        .unwrap()
    };
    race(vec![open(url.clone()), open(url)]).await;
}
