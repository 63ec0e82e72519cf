//! The REST server: HTTP/1.1 connections accepted on a TCP listener and served by the
//! [`router`](super::router), each one given `http.header_timeout` to send a request's head,
//! and one graceful stop.
//!
//! ```text
//! accept ──> connection task (hyper HTTP/1.1, keep-alive)
//!              request line + headers within header_timeout, else the connection is closed
//!              (a new connection, or a kept-alive one after its last answer: idle counts)
//!            ──> api::router: body within body_timeout (408), then request_timeout, handler
//! stop   ──> no new connections; each open one finishes the request in flight and closes;
//!            returns when all are closed
//! ```
//!
//! `axum::serve` offers no header timeout (it gives hyper no timer, so hyper's own stays off):
//! a client that trickles headers, or never sends any, held its connection task for as long
//! as it liked. This is the same accept loop, with hyper's `header_read_timeout` set, over
//! `hyper-util`'s graceful-shutdown watcher.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tracing::debug;

/// Serves `app` on `listener` until `stop` completes; then stops accepting, lets every open
/// connection finish the request it is serving, and returns once all are closed (the caller
/// bounds that wait: `http.shutdown_grace`). A client that has not sent a whole request head
/// within `header_timeout` of the server waiting for one is disconnected.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    stop: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        // axum's accept: connection errors skipped, others (EMFILE) logged and retried after
        // a second.
        let (stream, peer) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut stop => break,
        };
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // A header timeout, a client gone mid-request, a malformed request head.
                debug!(%peer, error = %e, "REST connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
