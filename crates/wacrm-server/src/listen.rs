//! Accepting connections, each with a deadline for its request heads, and shutting down.
//!
//! - A connection must send each request's head within
//!   [`ServerConfig::header_read_timeout_ms`], and an idle keep-alive connection is closed after
//!   the same time (hyper's `header_read_timeout`, which also runs while a keep-alive
//!   connection waits for its next request), so silent or trickling clients do not keep their
//!   connections, and the memory each holds, for ever. Bodies have their own deadline, on the
//!   webhook route ([`crate::body_deadline`]).
//! - On shutdown the server stops accepting, lets every in-flight request finish and closes
//!   idle connections, then returns.
//!
//! The number of connections is not capped here: a cap that stops accepting stalls clients
//! that keep spare connections open (see docs/performance.md, "Connections under overload").

use std::io;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ServerConfig;

/// How long the accept loop pauses after an error that is not about one connection (out of
/// file descriptors, say): accepting again at once would spin.
const RESOURCE_PAUSE: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops accepting, finishes
/// in-flight requests, closes idle connections and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout());
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            metrics::gauge!("wacrm_http_connections").increment(1.0);
            if let Err(e) = connection.await {
                // A client that went away or overran the head deadline: nothing to do.
                tracing::debug!(error = %e, "connection ended with an error");
            }
            metrics::gauge!("wacrm_http_connections").decrement(1.0);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors of `accept` that concern one connection (reset before it was taken) are passed over;
/// any other (out of file descriptors, of memory) pauses the loop, which would otherwise spin.
async fn accept_failed(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::debug!(error = %e, "a connection failed before it was accepted");
    } else {
        tracing::error!(error = %e, "cannot accept connections; pausing");
        tokio::time::sleep(RESOURCE_PAUSE).await;
    }
}
