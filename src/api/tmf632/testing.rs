//! The harness the party and account families' tests share: the real router over a memory
//! store, four applications (`shop`, `other`, `payer` limited to payments, `ops` an
//! administrator), requests by API key.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

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

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A TMF Error with `status` and `code`: its message.
    pub fn error(&self, status: u16, code: &str) -> String {
        let v = self.json();
        assert_eq!(self.status.as_u16(), status, "{v}");
        assert_eq!(v["@type"], "Error", "{v}");
        assert_eq!(v["code"], code, "{v}");
        assert_eq!(v["status"], status.to_string(), "{v}");
        v["message"].as_str().unwrap().to_string()
    }

    pub fn id(&self) -> String {
        let v = self.json();
        v["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id: {v}"))
            .to_string()
    }
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
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-api-key", key);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let res = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body.unwrap_or_default())).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        Resp {
            status,
            headers,
            body,
        }
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
