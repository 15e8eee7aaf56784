//! What the HTTP and gRPC endpoints share about their listener: the protocol check and the TLS
//! configuration, binding, the accept step (connection cap, failed accepts logged without
//! flooding), the TLS handshake under a time limit, the drain on close, and the running task.
//!
//! Each endpoint keeps what differs: how a connection is served, its watchdog and its limits.

use crate::toolkit::component::ComponentHealth;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::http::endpoint::{ConnectionSettings, CredentialSettings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The TLS configuration for `connection.protocol` (`None` for `http`), offering `alpn`.
/// `endpoint` names the endpoint in the error (`HTTP`, `gRPC`).
///
/// # Errors
/// `WRONG_PROTOCOL` for anything but `http`/`https`, `NO_SSL_KEY_FILE`, `NO_SSL_CRT_FILE`,
/// `READ_FAILED`, `BAD_SSL`.
pub(crate) fn server_tls(
    connection: &ConnectionSettings,
    credential: &CredentialSettings,
    alpn: &[&[u8]],
    endpoint: &str,
) -> Result<Option<Arc<ServerConfig>>, ApplicationError> {
    match connection.protocol.to_ascii_lowercase().as_str() {
        "http" => Ok(None),
        "https" => {
            let mut cfg = tls_config(credential)?;
            cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Some(Arc::new(cfg)))
        }
        other => Err(ApplicationError::config(
            "WRONG_PROTOCOL",
            format!("Protocol \"{other}\" is not supported by the {endpoint} endpoint: use http or https"),
        )),
    }
}

fn tls_config(c: &CredentialSettings) -> Result<ServerConfig, ApplicationError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let key_file = c
        .ssl_key_file
        .as_deref()
        .ok_or_else(|| ApplicationError::config("NO_SSL_KEY_FILE", "SSL key file is not configured in credentials"))?;
    let crt_file = c
        .ssl_crt_file
        .as_deref()
        .ok_or_else(|| ApplicationError::config("NO_SSL_CRT_FILE", "SSL crt file is not configured in credentials"))?;
    let certs =
        CertificateDer::pem_file_iter(crt_file).and_then(|it| it.collect::<Result<Vec<_>, _>>()).map_err(|e| {
            ApplicationError::file_error("READ_FAILED", "Cannot read the SSL certificate file").with_cause(e)
        })?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| ApplicationError::file_error("READ_FAILED", "Cannot read the SSL key file").with_cause(e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| ApplicationError::config("BAD_SSL", "The SSL key and certificate cannot be used").with_cause(e))
}

/// Binds `host:port`, returning the listener and its real address (the port chosen when 0).
///
/// # Errors
/// `CANNOT_CONNECT` (status 500) when the address cannot be bound or read.
pub(crate) async fn bind(
    connection: &ConnectionSettings,
    endpoint: &str,
) -> Result<(TcpListener, SocketAddr), ApplicationError> {
    let bind = format!("{}:{}", connection.host, connection.port);
    let listener = TcpListener::bind(&bind).await.map_err(|e| {
        ApplicationError::no_response("CANNOT_CONNECT", format!("Opening {endpoint} endpoint on {bind} failed"))
            .with_status(500)
            .with_cause(e)
            .with_details("url", bind.clone())
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| ApplicationError::internal("CANNOT_CONNECT", "Cannot read the bound address").with_cause(e))?;
    Ok((listener, address))
}

/// The next connection, once a slot under the connection cap is free; `None` once `cancel`
/// fires (or the cap's semaphore is closed). A failed accept is logged through `errors` and
/// retried after a short pause.
pub(crate) async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    cancel: &CancellationToken,
    errors: &mut AcceptErrors,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    let permit = tokio::select! {
        () = cancel.cancelled() => return None,
        p = permits.clone().acquire_owned() => p.ok()?,
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, permit));
                }
                Err(e) => {
                    errors.failed(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Failed accepts (out of descriptors, mostly) logged at most once every 10 s with a count, so a
/// flood cannot fill the log.
#[derive(Debug)]
pub(crate) struct AcceptErrors {
    endpoint: &'static str,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    /// Counts the failed accepts of the `endpoint` (`HTTP`, `gRPC`).
    pub(crate) fn new(endpoint: &'static str) -> Self {
        Self { endpoint, last_logged: None, suppressed: 0 }
    }

    fn failed(&mut self, e: &std::io::Error) {
        if self.last_logged.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, suppressed = self.suppressed, "Accepting a {} connection failed.", self.endpoint);
        self.last_logged = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// The TLS handshake of an accepted connection, limited to `timeout`; `None` when it failed
/// (logged at debug) or took too long.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed.");
            None
        }
        Err(_) => None,
    }
}

/// After the accept loop: lets the connection tasks finish within `shutdown_timeout_ms`, then
/// cancels `kill` and waits for what is left.
pub(crate) async fn drain(tracker: TaskTracker, kill: CancellationToken, shutdown_timeout_ms: u64, endpoint: &str) {
    tracker.close();
    if tokio::time::timeout(Duration::from_millis(shutdown_timeout_ms), tracker.wait()).await.is_err() {
        tracing::warn!(
            timeout_ms = shutdown_timeout_ms,
            "In-flight {endpoint} requests did not finish in time; closing them."
        );
        kill.cancel();
        tracker.wait().await;
    }
}

/// An open endpoint: its address and its accept-loop task.
#[derive(Debug)]
pub(crate) struct Listening {
    /// The bound address.
    pub(crate) address: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    endpoint: &'static str,
}

impl Listening {
    /// Runs `serve(cancel)` as the accept loop of the `endpoint` listening on `address`.
    pub(crate) fn start<F, S>(address: SocketAddr, endpoint: &'static str, protocol: &str, serve: S) -> Self
    where
        S: FnOnce(CancellationToken) -> F,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(cancel.clone()));
        tracing::info!(address = %address, protocol = %protocol, "{endpoint} endpoint listening.");
        Self { address, cancel, task, endpoint }
    }

    /// Stops the endpoint running in `slot`, if any: stops accepting and waits for the accept
    /// loop's drain.
    pub(crate) async fn stop(slot: &parking_lot::Mutex<Option<Self>>) {
        let Some(running) = slot.lock().take() else { return };
        running.cancel.cancel();
        if let Err(e) = running.task.await {
            tracing::warn!(error = %e, "{} endpoint task ended abnormally.", running.endpoint);
        }
        tracing::info!(address = %running.address, "{} endpoint closed.", running.endpoint);
    }

    /// The health of an endpoint listening on `address` (not ready when `None`).
    pub(crate) fn health(address: Option<SocketAddr>) -> ComponentHealth {
        match address {
            Some(a) => ComponentHealth { ready: true, message: format!("listening on {a}") },
            None => ComponentHealth::not_ready("not listening"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_protocols_and_missing_tls_files() {
        let credential = CredentialSettings::default();
        let mut connection = ConnectionSettings { protocol: "ftp".into(), ..ConnectionSettings::default() };
        let code = |c: &ConnectionSettings| server_tls(c, &credential, &[b"h2"], "gRPC").err().map(|e| e.code);
        assert_eq!(code(&connection).as_deref(), Some("WRONG_PROTOCOL"));
        connection.protocol = "https".into();
        assert_eq!(code(&connection).as_deref(), Some("NO_SSL_KEY_FILE"));
        connection.protocol = "HTTP".into();
        assert!(server_tls(&connection, &credential, &[b"h2"], "gRPC").is_ok_and(|tls| tls.is_none()));
    }
}
