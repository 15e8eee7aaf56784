//! Talks to a running sessions service with the Rust client SDK: opens a session, stores data
//! in it (with optimistic concurrency), reads it back, lists the user's sessions and closes it.
//!
//! Start the service (`cargo run` serves on port 8080), then:
//!
//! ```text
//! cargo run --example sessions_client                          # http://localhost:8080
//! cargo run --example sessions_client -- http://host:9000      # or SESSIONS_URL=...
//! ```

use anyhow::Context;
use serde_json::json;
use service_sessions::clients::version1::{ConcurrencyControl, SessionsClientV1, SessionsHttpClientV1};
use service_sessions::data::version1::OpenSessionRequest;
use service_sessions::data::version1::SessionsFilter;
use service_sessions::toolkit::data::PagingParams;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SESSIONS_URL").ok())
        .unwrap_or_else(|| "http://localhost:8080".to_string());
    let client = SessionsHttpClientV1::from_uri(&url).context("bad service URL")?;
    println!("Sessions service at {}", client.base_url());

    let request = OpenSessionRequest {
        user_id: "example-user".to_string(),
        user_name: Some("Example User".to_string()),
        address: Some("127.0.0.1".to_string()),
        client: Some("sessions_client example".to_string()),
        ..Default::default()
    };
    let session = client.open_session(Some("example-open"), request).await.context("open_session")?;
    println!("opened   {} (version {})", session.id, session.version);

    let data = json!({"cart": ["book", "pen"], "theme": "dark"});
    let stored = client
        .update_data(Some("example-store"), &session.id, data, ConcurrencyControl::retry())
        .await
        .context("store_session_data")?
        .context("the session disappeared")?;
    println!("stored   version {}, data {}", stored.version, stored.data.unwrap_or_default());

    let read = client
        .get_session_by_id(Some("example-read"), &session.id)
        .await
        .context("get_session_by_id")?
        .context("the session disappeared")?;
    println!("read     active={} request_time={}", read.active, read.request_time.to_rfc3339());

    let filter = SessionsFilter { user_id: Some("example-user".to_string()), ..Default::default() };
    let page = client
        .get_sessions(Some("example-list"), &filter, &PagingParams::new(0, 10, true))
        .await
        .context("get_sessions")?;
    println!("listed   {} of {} session(s) of example-user", page.data.len(), page.total.unwrap_or_default());

    let closed = client
        .close_session(Some("example-close"), &session.id, None)
        .await
        .context("close_session")?
        .context("the session disappeared")?;
    println!("closed   active={} close_time={:?}", closed.active, closed.close_time.map(|t| t.to_rfc3339()));
    Ok(())
}
