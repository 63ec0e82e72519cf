//! Helpers shared by integration tests: real external peers (freeDiameter), the gateway
//! as a separate process, and Wireshark's judgement of what went on the wire. Each test crate
//! uses only part of them.
#![allow(dead_code)]

pub mod cc_flows;
pub mod freediameter;
pub mod postgres;
pub mod process;
pub mod smtp;
pub mod wire;

/// Polls `f` every 100 ms until it gives a value (at most 30 s, then the test fails naming
/// `what`).
pub async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "gave up waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
