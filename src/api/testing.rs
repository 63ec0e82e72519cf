//! What the families' handler tests share: one request through the router with an API key,
//! and its answer read back (tests only).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

/// An answer of the router.
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

    /// The `id` of the resource answered.
    pub fn id(&self) -> String {
        let v = self.json();
        v["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id: {v}"))
            .to_string()
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

    /// A TMF Error: its status is a 4xx, the body says so; the message.
    pub fn client_error(&self) -> String {
        let v = self.json();
        assert!(self.status.is_client_error(), "{} {v}", self.status);
        assert_eq!(v["@type"], "Error", "{v}");
        assert_eq!(v["status"], self.status.as_u16().to_string(), "{v}");
        v["message"].as_str().unwrap().to_string()
    }
}

/// `method uri` with `X-API-Key: key`, the body (if any) as `content_type`.
pub async fn send(
    router: &Router,
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
    let res = router
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
