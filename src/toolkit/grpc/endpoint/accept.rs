//! The accept loop: the listener, the connection cap, TLS or the plain-text HTTP/2 check, and
//! the drain on close.

use super::connection::serve_connection;
use super::routing::Shared;
use super::settings::GrpcEndpointOptions;
use crate::toolkit::net::{self, AcceptErrors};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The HTTP/2 connection preface every gRPC client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Looks at a plain-text connection's first bytes: anything but the HTTP/2 preface (a plain
/// HTTP/1 request) gets `505 HTTP Version Not Supported` and a clean close instead of a reset.
/// True when the connection was refused (or sent nothing in time).
async fn refused_http1(stream: &mut tokio::net::TcpStream, timeout: Duration) -> bool {
    use tokio::io::AsyncWriteExt;
    let mut buf = [0u8; 24];
    let sniff = async {
        loop {
            let n = stream.peek(&mut buf).await.unwrap_or(0);
            let seen = buf.get(..n).unwrap_or_default();
            if n == 0 || !H2_PREFACE.starts_with(seen) {
                return n > 0;
            }
            if n >= H2_PREFACE.len() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let http1 = match tokio::time::timeout(timeout, sniff).await {
        Ok(http1) => http1,
        Err(_) => return true,
    };
    if !http1 {
        return false;
    }
    let body = "gRPC requires HTTP/2\n";
    let reply = format!(
        "HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(timeout, async {
        let _ = stream.write_all(reply.as_bytes()).await;
        // Read what the client sent before closing, so the close is a FIN, not a reset.
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match stream.try_read(&mut sink) {
                Ok(0) => break,
                Ok(n) => drained += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        let _ = stream.shutdown().await;
    })
    .await;
    true
}

/// The accept loop: serves until cancelled, then lets in-flight requests finish within
/// `options.shutdown_timeout` and drops what is left.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    options: GrpcEndpointOptions,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    cancel: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let kill = CancellationToken::new();
    let mut accept_errors = AcceptErrors::new("gRPC");
    while let Some((stream, permit)) = net::accept(&listener, &permits, &cancel, &mut accept_errors).await {
        let (shared, options, drain, kill) = (shared.clone(), options.clone(), cancel.clone(), kill.clone());
        let acceptor = acceptor.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let mut stream = stream;
            match acceptor {
                None => {
                    let handshake = Duration::from_millis(options.handshake_timeout.max(1));
                    if !refused_http1(&mut stream, handshake).await {
                        serve_connection(stream, shared, options, drain, kill).await;
                    }
                }
                Some(acceptor) => {
                    let handshake = Duration::from_millis(options.handshake_timeout.max(1));
                    let tls = tokio::select! {
                        () = kill.cancelled() => return,
                        tls = net::handshake(&acceptor, stream, handshake) => match tls {
                            Some(tls) => tls,
                            None => return,
                        },
                    };
                    serve_connection(tls, shared, options, drain, kill).await;
                }
            }
        });
    }
    drop(listener);
    net::drain(tracker, kill, options.shutdown_timeout, "gRPC").await;
}
