//! The machine's ceiling: a minimal hyper server that reads each request's body and answers 200
//! with no work at all. Driven by the same generator as wacrm, it says what loopback HTTP alone
//! costs on this machine, and wacrm's throughput is reported as a ratio of it.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn answer(request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, hyper::Error> {
    // Read the body, as wacrm must, so the comparison is fair.
    request.into_body().collect().await?;
    Ok(Response::new(Empty::new()))
}

/// Serves on `addr` until the process ends.
pub async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
