//! The identity operations on a memory store: the code read from the outbox event, as the
//! mail would carry it.

use super::*;
use crate::config::notifications::NotificationsConfig;
use crate::store::EventFilter;

const NOW: i64 = 1_700_000_000_000;

fn state() -> IdentityState {
    let mut n = NotificationsConfig::default();
    n.smtp.log = true;
    IdentityState::new(Store::memory(), password::cheap(), &n)
}

fn ana() -> Address {
    Address::Email("ana@example.com".into())
}

fn signup(pw: &str) -> SignUp {
    SignUp {
        email: Some("ana@example.com".into()),
        password: pw.into(),
        ..SignUp::default()
    }
}

/// The events for `ana@example.com`, oldest first.
async fn events(st: &IdentityState) -> Vec<EventRow> {
    let (mut ev, _) = st
        .store
        .events(EventFilter {
            resource: Some(ana().row_id()),
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    ev.sort_by_key(|e| e.created_ms);
    ev
}

fn code_of(e: &EventRow) -> String {
    let b: MailBody = serde_json::from_str(&e.body).unwrap();
    let i = b.text.find("code is ").unwrap() + 8;
    b.text[i..i + 6].to_string()
}

async fn last_code(st: &IdentityState) -> String {
    let ev = events(st).await;
    code_of(ev.iter().rev().find(|e| e.kind == CODE_EVENT).unwrap())
}

#[tokio::test]
async fn sign_up_confirm_sign_in_refresh_sign_out() {
    let st = state();
    st.sign_up("shop", signup("secret-pw-1"), NOW)
        .await
        .unwrap();
    let ev = events(&st).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].url, "mailto:ana@example.com");
    let code = code_of(&ev[0]);
    // Stored only as hashes: neither the code nor the password is in any row.
    let (rows, _) = st
        .store
        .resources(crate::store::ResourceFilter::default())
        .await
        .unwrap();
    for r in &rows {
        assert!(
            !r.body.contains(&code) && !r.body.contains("secret-pw-1"),
            "{r:?}"
        );
    }
    // Unconfirmed: no sign-in.
    assert!(matches!(
        st.sign_in("shop", &ana(), "secret-pw-1", NOW).await,
        Err(IdentityError::BadCredentials)
    ));
    // The code with another password confirms nothing.
    assert!(matches!(
        st.confirm("shop", &ana(), &code, "other-password", NOW)
            .await,
        Err(IdentityError::BadCode)
    ));
    let user = st
        .confirm("shop", &ana(), &code, "secret-pw-1", NOW)
        .await
        .unwrap();
    assert_eq!(user.email.as_deref(), Some("ana@example.com"));
    // The confirmed sign-up is a TMF629 customer (of its TMF632 individual).
    let customer = st
        .store
        .resources(crate::store::ResourceFilter {
            kind: Some(crate::parties::kind::CUSTOMER.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .0;
    assert_eq!(customer.len(), 1);
    assert!(customer[0].id.contains(&user.customer_id), "{customer:?}");
    // A used code confirms no more.
    assert!(
        st.confirm("shop", &ana(), &code, "secret-pw-1", NOW)
            .await
            .is_err()
    );
    // Another application's front end: the same answer as a wrong password.
    assert!(matches!(
        st.sign_in("other", &ana(), "secret-pw-1", NOW).await,
        Err(IdentityError::BadCredentials)
    ));
    let t = st
        .sign_in("shop", &ana(), "secret-pw-1", NOW)
        .await
        .unwrap();
    assert_eq!(t.claims.sub, user.id);
    assert_eq!(t.claims.cid, user.customer_id);
    assert_eq!(t.claims.app, "shop");
    assert_eq!(t.expires_in, 900);
    let c = verify_access_token_at(&st, &t.access_token, NOW)
        .await
        .unwrap();
    assert_eq!(c, t.claims);
    // Refresh rotates; the old refresh token, presented again, revokes the session.
    let t2 = st.refresh("shop", &t.refresh_token, NOW).await.unwrap();
    assert_ne!(t2.refresh_token, t.refresh_token);
    assert!(
        verify_access_token_at(&st, &t2.access_token, NOW)
            .await
            .is_ok()
    );
    assert!(matches!(
        st.refresh("shop", &t.refresh_token, NOW).await,
        Err(IdentityError::BadRefresh)
    ));
    assert!(matches!(
        st.refresh("shop", &t2.refresh_token, NOW).await,
        Err(IdentityError::BadRefresh)
    ));
    assert_eq!(
        verify_access_token_at(&st, &t2.access_token, NOW).await,
        Err(TokenError::Revoked)
    );
    // A new session; sign-out revokes it.
    let t3 = st
        .sign_in("shop", &ana(), "secret-pw-1", NOW)
        .await
        .unwrap();
    st.sign_out("shop", &t3.refresh_token, NOW).await.unwrap();
    st.sign_out("shop", &t3.refresh_token, NOW).await.unwrap();
    assert_eq!(
        verify_access_token_at(&st, &t3.access_token, NOW).await,
        Err(TokenError::Revoked)
    );
    assert!(st.refresh("shop", &t3.refresh_token, NOW).await.is_err());
}

#[tokio::test]
async fn a_registered_address_answers_as_a_new_one_and_is_told_so() {
    let st = state();
    st.sign_up("shop", signup("secret-pw-1"), NOW)
        .await
        .unwrap();
    let code = last_code(&st).await;
    st.confirm("shop", &ana(), &code, "secret-pw-1", NOW)
        .await
        .unwrap();
    // The same Ok; a "you already have an account" mail, no code; the password unchanged.
    st.sign_up("shop", signup("attacker-pw"), NOW + 60_000)
        .await
        .unwrap();
    let ev = events(&st).await;
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1].kind, REGISTERED_EVENT);
    assert!(ev[1].body.contains("already have an account"));
    assert!(
        st.sign_in("shop", &ana(), "attacker-pw", NOW)
            .await
            .is_err()
    );
    assert!(st.sign_in("shop", &ana(), "secret-pw-1", NOW).await.is_ok());
}

#[tokio::test]
async fn wrong_codes_use_the_sign_up_up_and_a_resend_starts_again() {
    let st = state();
    st.sign_up("shop", signup("secret-pw-1"), NOW)
        .await
        .unwrap();
    let code = last_code(&st).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for _ in 0..5 {
        assert!(matches!(
            st.confirm("shop", &ana(), wrong, "secret-pw-1", NOW).await,
            Err(IdentityError::BadCode)
        ));
    }
    // Locked: the right code is refused too, with the same answer.
    assert!(matches!(
        st.confirm("shop", &ana(), &code, "secret-pw-1", NOW).await,
        Err(IdentityError::BadCode)
    ));
    // A resend: a new code, the attempts from zero; the old code is void.
    st.resend("shop", &ana(), NOW + 31_000).await.unwrap();
    let fresh = last_code(&st).await;
    if fresh != code {
        assert!(
            st.confirm("shop", &ana(), &code, "secret-pw-1", NOW + 31_000)
                .await
                .is_err()
        );
    }
    st.confirm("shop", &ana(), &fresh, "secret-pw-1", NOW + 32_000)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_code_is_refused_and_the_address_taken_over() {
    let st = state();
    st.sign_up("shop", signup("typo-owner-pw"), NOW)
        .await
        .unwrap();
    let code = last_code(&st).await;
    let later = NOW + 10 * 60_000;
    assert!(matches!(
        st.confirm("shop", &ana(), &code, "typo-owner-pw", later)
            .await,
        Err(IdentityError::BadCode)
    ));
    // The owner signs up later: a fresh sign-up, their password.
    st.sign_up("shop", signup("real-owner-pw"), later)
        .await
        .unwrap();
    let code2 = last_code(&st).await;
    st.confirm("shop", &ana(), &code2, "real-owner-pw", later)
        .await
        .unwrap();
    assert!(
        st.sign_in("shop", &ana(), "real-owner-pw", later)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn resends_are_limited_and_unknown_addresses_answer_the_same() {
    let st = state();
    // Unknown address: Ok, nothing sent.
    st.resend("shop", &ana(), NOW).await.unwrap();
    assert!(events(&st).await.is_empty());
    st.sign_up("shop", signup("secret-pw-1"), NOW + 30_000)
        .await
        .unwrap();
    // Within resend_interval of the last resend window: 429.
    let mut t = NOW + 60_000;
    st.resend("shop", &ana(), t).await.unwrap();
    assert!(matches!(
        st.resend("shop", &ana(), t + 1).await,
        Err(IdentityError::Limited(s)) if (1..=30).contains(&s)
    ));
    // max_sends = 4: the first and three resends.
    for _ in 0..4 {
        t += 30_000;
        st.resend("shop", &ana(), t).await.unwrap();
    }
    let codes = events(&st)
        .await
        .iter()
        .filter(|e| e.kind == CODE_EVENT)
        .count();
    assert_eq!(codes, 4);
}

#[tokio::test]
async fn sign_up_limit_and_sign_in_lockout() {
    let st = state();
    for i in 0..5 {
        st.sign_up("shop", signup("secret-pw-1"), NOW + i)
            .await
            .unwrap();
    }
    assert!(matches!(
        st.sign_up("shop", signup("secret-pw-1"), NOW + 10).await,
        Err(IdentityError::Limited(_))
    ));
    let code = last_code(&st).await;
    st.confirm("shop", &ana(), &code, "secret-pw-1", NOW)
        .await
        .unwrap();
    for _ in 0..5 {
        assert!(matches!(
            st.sign_in("shop", &ana(), "wrong-password", NOW).await,
            Err(IdentityError::BadCredentials)
        ));
    }
    // Locked: even the right password waits.
    assert!(matches!(
        st.sign_in("shop", &ana(), "secret-pw-1", NOW + 1000).await,
        Err(IdentityError::Limited(899))
    ));
    assert!(
        st.sign_in("shop", &ana(), "secret-pw-1", NOW + 15 * 60_000)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_signing_key_is_claimed_once_in_the_store() {
    let st = state();
    let other = IdentityState::new(
        st.store.clone(),
        password::cheap(),
        &NotificationsConfig::default(),
    );
    assert_eq!(
        st.signing_key().await.unwrap(),
        other.signing_key().await.unwrap()
    );
    assert_eq!(st.signing_key().await.unwrap().len(), 32);
}

#[tokio::test]
async fn inputs_are_checked() {
    assert!(email("email", "Ana@Example.COM").unwrap() == "ana@example.com");
    assert!(email("email", "not-an-address").is_err());
    assert!(email("email", &format!("{}@example.com", "a".repeat(250))).is_err());
    assert_eq!(
        phone("phoneNumber", "+34 671 234 567").unwrap(),
        "+34671234567"
    );
    assert!(phone("phoneNumber", "671234567").is_err());
    let st = state();
    let s = SignUp {
        email: Some("ana@example.com".into()),
        password: "short".into(),
        ..SignUp::default()
    };
    assert!(matches!(
        st.sign_up("shop", s, NOW).await,
        Err(IdentityError::Invalid {
            field: "password",
            ..
        })
    ));
    // No SMS webhook: a phone sign-up cannot be served.
    let s = SignUp {
        phone: Some("+34671234567".into()),
        password: "long enough".into(),
        ..SignUp::default()
    };
    assert!(matches!(
        st.sign_up("shop", s, NOW).await,
        Err(IdentityError::NoChannel(_))
    ));
}
