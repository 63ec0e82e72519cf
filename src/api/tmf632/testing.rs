//! The harness the party and account families' tests share: the real router over a memory
//! store, four applications (`shop`, `other`, `payer` limited to payments, `ops` an
//! administrator), requests by API key.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use serde_json::Value;

pub use crate::api::testing::Resp;
use crate::api::{ApiState, Apps, router};
use crate::config::{AppConfig, HttpConfig};
use crate::store::Store;

pub const INDIVIDUALS: &str = "/tmf-api/partyManagement/v4/individual";
pub const ORGANIZATIONS: &str = "/tmf-api/partyManagement/v4/organization";
pub const CUSTOMERS: &str = "/tmf-api/customerManagement/v4/customer";
pub const ACCOUNTS: &str = "/tmf-api/accountManagement/v4/billingAccount";

fn app(id: &str, key: &str, ops: &[&str], admin: bool) -> AppConfig {
    AppConfig {
        id: id.into(),
        username: String::new(),
        password: String::new(),
        password_sha256: String::new(),
        api_key: key.into(),
        allowed_currencies: vec![],
        max_amount: None,
        allowed_operations: ops.iter().map(|s| s.to_string()).collect(),
        admin,
        oidc_client_id: String::new(),
    }
}

pub struct World {
    _gw: crate::gateway::Gateway,
    pub store: Store,
    router: Router,
}

pub async fn world() -> World {
    let store = Store::memory();
    let gw = crate::gateway::testing::start(crate::gateway::testing::TestGateway {
        accounts: None,
        tx: Duration::from_secs(1),
        reservation_ttl: Duration::from_secs(3600),
        reaper_interval: Duration::from_secs(3600),
        store: Some(store.clone()),
    })
    .await;
    let state = ApiState::new(
        Arc::clone(&gw.charging),
        Arc::new(Apps::new(&[
            app("shop", "k-shop", &[], false),
            app("other", "k-other", &[], false),
            app("payer", "k-payer", &["payment"], false),
            app("ops", "k-ops", &[], true),
        ])),
        Arc::new(|| true),
        None,
    );
    World {
        _gw: gw,
        store,
        router: router(state, &HttpConfig::default()),
    }
}

impl World {
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        key: &str,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> Resp {
        crate::api::testing::send(&self.router, method, uri, key, content_type, body).await
    }

    pub async fn post_as(&self, key: &str, uri: &str, body: Value) -> Resp {
        self.send(
            Method::POST,
            uri,
            key,
            Some("application/json"),
            Some(body.to_string()),
        )
        .await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Resp {
        self.post_as("k-shop", uri, body).await
    }

    pub async fn get_as(&self, key: &str, uri: &str) -> Resp {
        self.send(Method::GET, uri, key, None, None).await
    }

    pub async fn get(&self, uri: &str) -> Resp {
        self.get_as("k-shop", uri).await
    }

    pub async fn merge(&self, uri: &str, body: Value) -> Resp {
        self.send(
            Method::PATCH,
            uri,
            "k-shop",
            Some("application/merge-patch+json"),
            Some(body.to_string()),
        )
        .await
    }

    pub async fn delete(&self, uri: &str) -> Resp {
        self.send(Method::DELETE, uri, "k-shop", None, None).await
    }

    /// A created resource's id (asserting the 201).
    pub async fn created(&self, uri: &str, body: Value) -> String {
        let r = self.post(uri, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
        r.id()
    }
}

/// An individual's body with email `email` and phone `phone`.
pub fn person(given: &str, email: &str, phone: &str) -> Value {
    serde_json::json!({
        "givenName": given, "familyName": "García",
        "contactMedium": [
            {"mediumType": "email", "preferred": true,
             "characteristic": {"emailAddress": email}},
            {"mediumType": "mobile", "characteristic": {"phoneNumber": phone}}
        ]
    })
}
