//! The floor of the HTTP benchmark: a bare hyper server that answers every request with `hello`,
//! built with the same hyper, hyper-util, tokio runtime, allocator and release profile as the
//! service. `benches/http_bench.sh` measures it in the same run as the service and prints each
//! scenario's server CPU per request as a multiple of this one's. Not a test.
//!
//!   cargo build --release --example bare_hello && target/release/examples/bare_hello 18091

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use std::convert::Infallible;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn hello(_request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(18091);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let builder = std::sync::Arc::new(Builder::new(TokioExecutor::new()));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(hello);
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
