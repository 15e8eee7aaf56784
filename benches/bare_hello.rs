//! The floor of the HTTP benchmark: a bare hyper server built with the same hyper, hyper-util,
//! tokio runtime, allocator and release profile as the service. `benches/http_bench.sh` measures
//! it in the same run as the service and prints each scenario's server CPU per request as a
//! multiple of this one's. Not a test.
//!
//! - `GET` (any path) answers `hello`: the floor the targets are set against.
//! - `POST` (any path) reads the whole body and answers a fixed session's JSON text with the
//!   headers the service sends on every answer (`Content-Type` and the three no-cache ones): the
//!   same bytes on the wire as a `get_session_by_id` and its answer, with no work between them.
//!   It tells how much of a command's cost is the shape of its HTTP exchange.
//!
//!   cargo build --release --example bare_hello && target/release/examples/bare_hello 18091

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, EXPIRES, PRAGMA};
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use std::convert::Infallible;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A session as `get_session_by_id` answers it (the benchmark's sessions have this shape).
const SESSION: &[u8] = br#"{"id":"2cc744037e29455cb5183260cb134493","user_id":"u42","user_name":null,"address":null,"client":"bench","active":true,"open_time":"2026-11-30T09:27:51.263Z","request_time":"2026-11-30T09:27:51.263Z","user":null,"data":null,"version":1,"expire_time":"2026-12-01T09:27:51.263Z"}"#;

async fn hello(request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::POST {
        return Ok(Response::new(Full::new(Bytes::from_static(b"hello"))));
    }
    // The body is read whole, as the service reads a command's parameters.
    let _body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from_static(SESSION)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(EXPIRES, HeaderValue::from_static("0"));
    Ok(response)
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
