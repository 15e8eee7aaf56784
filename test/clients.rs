//! The Rust client SDK. One fixture — functions taking an `Arc<dyn SessionsClientV1>` (and the
//! manual clock of the service) — runs against the HTTP client, created by the factory in a
//! second container and talking to a real service on port 0, and against the direct client,
//! created by the factory inside the service's own container, and against the commandable gRPC
//! client (all of it) and the typed `sessions_v1.proto` client (what that proto can show), both
//! made by the factory in a second container. Then the HTTP-only behaviour:
//! every error variant end to end, retries, timeouts, correlation id placement and the API key.

use crate::helpers::{sessions_yaml, spawn_app, TestApp};
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use service_sessions::build::SessionsServiceFactory;
use service_sessions::clients::version1::{
    ClientResult, ConcurrencyControl, CorrelationIdPlace, HttpClientSettings, SessionsClientError, SessionsClientV1,
    SessionsDirectClientV1, SessionsErrorKind as K, SessionsHttpClientV1,
};
use service_sessions::data::version1::errors::{SESSION_CLOSED, SESSION_LIMIT, SESSION_VERSION_CONFLICT};
use service_sessions::data::version1::{OpenSessionRequest, SessionV1, SessionValidity, SessionsFilter};
use service_sessions::toolkit::config::ConfigParameters;
use service_sessions::toolkit::container::Container;
use service_sessions::toolkit::data::{DataPage, PagingParams};
use service_sessions::toolkit::descriptor::Descriptor;
use service_sessions::toolkit::errors::ApplicationError;
use service_sessions::toolkit::grpc::GrpcEndpoint;
use service_sessions::toolkit::http::endpoint::RequestInterceptor;
use service_sessions::toolkit::http::{error_response, HttpEndpoint, HttpRequest, HttpResponse};
use service_sessions::toolkit::time::{parse_time, ManualClock};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use warp::http::StatusCode;

type Client = Arc<dyn SessionsClientV1>;
type Page = DataPage<SessionV1>;

const UNKNOWN: &str = "0123456789abcdef0123456789abcdef";

fn t(s: &str) -> chrono::DateTime<chrono::Utc> {
    parse_time(s).unwrap()
}

fn open(user_id: &str) -> OpenSessionRequest {
    OpenSessionRequest { user_id: user_id.to_string(), ..Default::default() }
}

/// Asserts the kind and code of a failed call and returns the error.
#[track_caller]
fn failed<T: std::fmt::Debug>(r: Result<T, SessionsClientError>, kind: K, code: &str) -> SessionsClientError {
    let e = r.expect_err("the call should fail");
    assert_eq!((e.kind(), e.code()), (kind, code), "{e:?}");
    e
}

// ---------------------------------------------------------------------------------------------
// Targets

/// A running service and a client of it.
struct Target {
    app: TestApp,
    client: Client,
    /// The container that holds the HTTP client component (HTTP target only).
    client_container: Option<Container>,
}

impl Target {
    fn clock(&self) -> Arc<ManualClock> {
        self.app.clock()
    }

    async fn stop(self) {
        if let Some(c) = self.client_container {
            c.close(None).await;
        }
        self.app.stop().await;
    }
}

/// The service, and an HTTP client made by the factory in another container.
async fn http_target(extra_controller_options: &str) -> Target {
    let app = spawn_app(&sessions_yaml(extra_controller_options)).await;
    let yaml = format!(
        r#"
- descriptor: "service-sessions:client:commandable-http:default:1.0"
  connection: {{ uri: "http://{}" }}
  options: {{ retries: 0, timeout: 10000 }}
"#,
        app.address
    );
    let container = Container::new(Arc::new(SessionsServiceFactory::composite()));
    container.open_text(&yaml, &ConfigParameters::new(), Some("test")).await.unwrap();
    let client = container
        .references()
        .get_one_required::<dyn SessionsClientV1>(&Descriptor::new(
            "service-sessions",
            "client",
            "commandable-http",
            "*",
            "1.0",
        ))
        .unwrap();
    Target { app, client, client_container: Some(container) }
}

/// The service with a direct client component in its own container.
async fn direct_target(extra_controller_options: &str) -> Target {
    let yaml = format!(
        "{}- descriptor: \"service-sessions:client:direct:default:1.0\"\n",
        sessions_yaml(extra_controller_options)
    );
    let app = spawn_app(&yaml).await;
    let client = app
        .container
        .references()
        .get_one_required::<dyn SessionsClientV1>(&Descriptor::new("service-sessions", "client", "direct", "*", "1.0"))
        .unwrap();
    Target { app, client, client_container: None }
}

/// The service with its gRPC endpoint and both gRPC services, and a gRPC client (`kind`
/// `commandable-grpc` or `grpc`) made by the factory in another container.
async fn grpc_target(kind: &str, extra_controller_options: &str) -> Target {
    let service = format!(
        "{}- descriptor: \"pip-services:endpoint:grpc:default:1.0\"\n  connection: {{ protocol: http, host: 127.0.0.1, port: 0 }}\n- descriptor: \"service-sessions:service:grpc:default:1.0\"\n- descriptor: \"service-sessions:service:commandable-grpc:default:1.0\"\n",
        sessions_yaml(extra_controller_options)
    );
    let app = spawn_app(&service).await;
    let endpoint = app
        .container
        .references()
        .get_one_required::<GrpcEndpoint>(&Descriptor::new("*", "endpoint", "grpc", "*", "1.0"))
        .unwrap();
    let yaml = format!(
        "- descriptor: \"service-sessions:client:{kind}:default:1.0\"\n  connection: {{ uri: \"http://{}\" }}\n",
        endpoint.local_addr().unwrap()
    );
    let container = Container::new(Arc::new(SessionsServiceFactory::composite()));
    container.open_text(&yaml, &ConfigParameters::new(), Some("test")).await.unwrap();
    let client = container
        .references()
        .get_one_required::<dyn SessionsClientV1>(&Descriptor::new("service-sessions", "client", kind, "*", "1.0"))
        .unwrap();
    Target { app, client, client_container: Some(container) }
}

/// Runs each fixture against every client: `fixture("extra controller options")`.
macro_rules! on_both_clients {
    ($($fixture:ident($extra:expr)),* $(,)?) => {
        mod over_http {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $fixture() {
                    let target = super::http_target($extra).await;
                    super::$fixture(target.client.clone(), target.clock()).await;
                    target.stop().await;
                }
            )*
        }
        mod direct {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $fixture() {
                    let target = super::direct_target($extra).await;
                    super::$fixture(target.client.clone(), target.clock()).await;
                    target.stop().await;
                }
            )*
        }
        mod over_commandable_grpc {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $fixture() {
                    let target = super::grpc_target("commandable-grpc", $extra).await;
                    super::$fixture(target.client.clone(), target.clock()).await;
                    target.stop().await;
                }
            )*
        }
    };
}

on_both_clients!(
    crud(""),
    unknown_ids_are_none(""),
    lists_with_filters_and_paging(""),
    extensions(""),
    errors_are_typed(""),
    session_limit("    max_sessions_per_user: 1"),
    strict_and_last_write_wins(""),
    retry_rereads_after_racing_writes(""),
    retry_survives_a_concurrent_writer(""),
    modify_loses_nothing_under_concurrent_modifiers(""),
);

/// The typed `sessions_v1.proto` client runs the fixtures whose sessions it can show (the proto
/// has no `version`, `expire_time` or `ttl`), and its own CRUD below.
macro_rules! on_typed_grpc_client {
    ($($fixture:ident($extra:expr)),* $(,)?) => {
        mod over_typed_grpc {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $fixture() {
                    let target = super::grpc_target("grpc", $extra).await;
                    super::$fixture(target.client.clone(), target.clock()).await;
                    target.stop().await;
                }
            )*
        }
    };
}

on_typed_grpc_client!(
    typed_crud(""),
    unknown_ids_are_none(""),
    lists_with_filters_and_paging(""),
    errors_are_typed(""),
    session_limit("    max_sessions_per_user: 1"),
    strict_and_last_write_wins(""),
);

/// `crud` as `sessions_v1.proto` shows it: the same values without `version` and `expire_time`.
async fn typed_crud(client: Client, clock: Arc<ManualClock>) {
    let request = OpenSessionRequest {
        user_id: "u1".into(),
        user_name: Some("Ann".into()),
        address: None,
        client: Some("web".into()),
        user: json!({"roles": ["admin"]}),
        data: json!(0),
        ttl: None,
    };
    let s = client.open_session(Some("c-open"), request).await.unwrap();
    assert_eq!(
        (s.user_id.as_str(), s.user_name.as_deref(), s.address.as_deref(), s.client.as_deref()),
        ("u1", Some("Ann"), None, Some("web"))
    );
    assert_eq!((s.active, s.version, s.open_time, s.request_time), (true, 0, t("2026-01-01T00:00:00Z"), s.open_time));
    assert_eq!(
        (s.user.clone(), s.data.clone(), s.close_time, s.expire_time),
        (Some(json!({"roles": ["admin"]})), Some(json!(0)), None, None)
    );
    assert_eq!(client.get_session_by_id(None, &s.id).await.unwrap(), Some(s.clone()));
    clock.advance_ms(1_000);
    let stored = client.store_session_data(None, &s.id, json!(false), None).await.unwrap().unwrap();
    assert_eq!((stored.data.clone(), stored.request_time), (Some(json!(false)), t("2026-01-01T00:00:01Z")));
    let user = client.update_session_user(None, &s.id, json!({"name": "B"}), None).await.unwrap().unwrap();
    assert_eq!((user.user.clone(), user.data.clone()), (Some(json!({"name": "B"})), Some(json!(false))));
    let closed = client.close_session(None, &s.id, None).await.unwrap().unwrap();
    assert_eq!(
        (closed.active, closed.close_time, closed.user.clone()),
        (false, Some(t("2026-01-01T00:00:01Z")), Some(Value::Null))
    );
    client.close_expired_sessions(Some("c-sweep")).await.unwrap();
    assert_eq!(client.delete_session_by_id(None, &s.id, None).await.unwrap(), Some(closed));
    assert_eq!(client.get_session_by_id(None, &s.id).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// The fixture

async fn crud(client: Client, clock: Arc<ManualClock>) {
    let request = OpenSessionRequest {
        user_id: "u1".into(),
        user_name: Some("Ann".into()),
        address: Some("10.1.2.3".into()),
        client: Some("web".into()),
        user: json!({"roles": ["admin"]}),
        data: json!({"cart": []}),
        ttl: None,
    };
    let s = client.open_session(Some("c-open"), request).await.unwrap();
    assert_eq!(s.id.len(), 32);
    assert_eq!(
        (s.user_id.as_str(), s.user_name.as_deref(), s.address.as_deref(), s.client.as_deref()),
        ("u1", Some("Ann"), Some("10.1.2.3"), Some("web"))
    );
    assert_eq!((s.active, s.version, s.open_time, s.request_time), (true, 1, t("2026-01-01T00:00:00Z"), s.open_time));
    assert_eq!((s.user.clone(), s.data.clone()), (Some(json!({"roles": ["admin"]})), Some(json!({"cart": []}))));
    assert_eq!((s.close_time, s.expire_time), (None, Some(t("2026-01-01T01:00:00Z"))));
    assert_eq!(client.get_session_by_id(None, &s.id).await.unwrap(), Some(s.clone()));

    clock.advance_ms(1_000);
    let stored = client.store_session_data(Some("c-store"), &s.id, json!(false), None).await.unwrap().unwrap();
    assert_eq!((stored.data.clone(), stored.version), (Some(json!(false)), 2));
    assert_eq!(stored.request_time, t("2026-01-01T00:00:01Z"));
    let user = client.update_session_user(None, &s.id, json!({"name": "Ann B"}), Some(2)).await.unwrap().unwrap();
    assert_eq!(
        (user.user.clone(), user.data.clone(), user.version),
        (Some(json!({"name": "Ann B"})), Some(json!(false)), 3)
    );
    clock.advance_ms(1_000);
    let touched = client.touch_session(None, &s.id, None).await.unwrap().unwrap();
    assert_eq!((touched.version, touched.request_time), (4, t("2026-01-01T00:00:02Z")));
    assert_eq!(touched.expire_time, Some(t("2026-01-01T01:00:02Z")));

    client.close_expired_sessions(Some("c-sweep")).await.unwrap();
    let closed = client.close_session(None, &s.id, None).await.unwrap().unwrap();
    assert_eq!((closed.active, closed.close_time, closed.version), (false, Some(t("2026-01-01T00:00:02Z")), 5));
    assert_eq!((closed.user.clone(), closed.data.clone()), (Some(Value::Null), Some(Value::Null)));
    clock.advance_ms(1_000);
    assert_eq!(client.close_session(None, &s.id, None).await.unwrap(), Some(closed.clone()), "closing is idempotent");
    assert_eq!(client.delete_session_by_id(None, &s.id, Some(5)).await.unwrap(), Some(closed));
    assert_eq!(client.get_session_by_id(None, &s.id).await.unwrap(), None);
    assert_eq!(client.delete_session_by_id(None, &s.id, None).await.unwrap(), None);
}

async fn unknown_ids_are_none(client: Client, _clock: Arc<ManualClock>) {
    assert_eq!(client.get_session_by_id(None, UNKNOWN).await.unwrap(), None);
    assert_eq!(client.store_session_data(None, UNKNOWN, json!(1), None).await.unwrap(), None);
    assert_eq!(client.update_session_user(None, UNKNOWN, json!(1), Some(1)).await.unwrap(), None);
    assert_eq!(client.close_session(None, UNKNOWN, None).await.unwrap(), None);
    assert_eq!(client.delete_session_by_id(None, UNKNOWN, Some(1)).await.unwrap(), None);
    assert_eq!(client.touch_session(None, UNKNOWN, None).await.unwrap(), None);
    assert_eq!(client.rotate_session_id(None, UNKNOWN, None).await.unwrap(), None);
    assert_eq!(client.update_data(None, UNKNOWN, json!(1), ConcurrencyControl::retry()).await.unwrap(), None);
    assert_eq!(client.update_user(None, UNKNOWN, json!(1), ConcurrencyControl::Strict(1)).await.unwrap(), None);
    assert_eq!(client.modify_data(None, UNKNOWN, 3, &|v| v.clone()).await.unwrap(), None);
    let v = client.validate_session(None, UNKNOWN).await.unwrap();
    assert_eq!((v.is_valid, v.expire_time, v.ttl), (false, None, None));
}

async fn lists_with_filters_and_paging(client: Client, clock: Arc<ManualClock>) {
    let with_data =
        |u: &str| OpenSessionRequest { user_id: u.into(), data: json!({"secret": 1}), ..Default::default() };
    let a = client.open_session(None, with_data("u1")).await.unwrap();
    clock.advance_ms(1_000);
    let b = client.open_session(None, with_data("u2")).await.unwrap();
    clock.advance_ms(1_000);
    let c = client.open_session(None, with_data("u1")).await.unwrap();
    let ids = |page: &Page| page.data.iter().map(|s| s.id.clone()).collect::<Vec<_>>();

    let all = client.get_sessions(None, &SessionsFilter::default(), &PagingParams::default()).await.unwrap();
    assert_eq!((ids(&all), all.total), (vec![c.id.clone(), b.id.clone(), a.id.clone()], None));
    assert!(all.data.iter().all(|s| s.user.is_none() && s.data.is_none()), "list items leave out user and data");

    let u1 = SessionsFilter { user_id: Some("u1".into()), ..Default::default() };
    let page = client.get_sessions(Some("c-list"), &u1, &PagingParams::new(0, 0, true)).await.unwrap();
    assert_eq!((ids(&page), page.total), (vec![c.id.clone(), a.id.clone()], Some(2)));
    let page = client.get_sessions(None, &SessionsFilter::default(), &PagingParams::new(1, 1, true)).await.unwrap();
    assert_eq!((ids(&page), page.total), (vec![b.id.clone()], Some(3)));

    let window = SessionsFilter {
        from_time: Some(t("2026-01-01T00:00:01Z")),
        to_time: Some(t("2026-01-01T00:00:02Z")),
        ..Default::default()
    };
    assert_eq!(ids(&client.get_sessions(None, &window, &PagingParams::default()).await.unwrap()), vec![b.id.clone()]);
    let by_id = SessionsFilter { id: Some(a.id.clone()), ..Default::default() };
    assert_eq!(ids(&client.get_sessions(None, &by_id, &PagingParams::default()).await.unwrap()), vec![a.id.clone()]);

    clock.advance_ms(1_000);
    client.close_session(None, &a.id, None).await.unwrap();
    let closed = SessionsFilter { active: Some(false), ..Default::default() };
    assert_eq!(ids(&client.get_sessions(None, &closed, &PagingParams::default()).await.unwrap()), vec![a.id.clone()]);
    let open = SessionsFilter { active: Some(true), ..Default::default() };
    assert_eq!(ids(&client.get_sessions(None, &open, &PagingParams::default()).await.unwrap()), vec![c.id, b.id]);
}

async fn extensions(client: Client, clock: Arc<ManualClock>) {
    let short = client.open_session(None, OpenSessionRequest { ttl: Some(60_000), ..open("u1") }).await.unwrap();
    assert_eq!((short.ttl, short.expire_time), (Some(60_000), Some(t("2026-01-01T00:01:00Z"))));
    clock.advance_ms(10_000);
    let v = client.validate_session(None, &short.id).await.unwrap();
    assert_eq!((v.is_valid, v.expire_time, v.ttl), (true, Some(t("2026-01-01T00:01:00Z")), Some(50_000)));

    let rotated = client.rotate_session_id(Some("c-rotate"), &short.id, Some(1)).await.unwrap().unwrap();
    assert_ne!(rotated.id, short.id);
    assert_eq!((rotated.user_id.as_str(), rotated.version, rotated.active), ("u1", 2, true));
    assert_eq!(client.get_session_by_id(None, &short.id).await.unwrap(), None);
    assert_eq!(client.get_session_by_id(None, &rotated.id).await.unwrap().map(|s| s.version), Some(2));

    let other = client.open_session(None, open("u1")).await.unwrap();
    let stranger = client.open_session(None, open("u2")).await.unwrap();
    assert_eq!(client.close_user_sessions(None, "u1", Some(&rotated.id)).await.unwrap(), 1);
    assert!(client.validate_session(None, &rotated.id).await.unwrap().is_valid);
    assert!(!client.validate_session(None, &other.id).await.unwrap().is_valid);
    assert!(client.validate_session(None, &stranger.id).await.unwrap().is_valid);
    assert_eq!(client.close_user_sessions(None, "u1", None).await.unwrap(), 1);
    assert_eq!(client.close_user_sessions(None, "nobody", None).await.unwrap(), 0);

    assert_eq!(client.purge_sessions(None).await.unwrap(), 0, "closed sessions are kept for the retention period");
    clock.advance_ms(8 * 86_400_000);
    assert_eq!(client.purge_sessions(Some("c-purge")).await.unwrap(), 2);
    assert_eq!(client.get_session_by_id(None, &other.id).await.unwrap(), None);
    assert!(client.get_session_by_id(None, &stranger.id).await.unwrap().is_some(), "open sessions are not purged");
}

async fn errors_are_typed(client: Client, clock: Arc<ManualClock>) {
    // An id no session can have is an unknown id, as the original answers it: never an error.
    let long = "x".repeat(200);
    for odd in ["", "not a valid id!", long.as_str(), "ünïcödé", "../../etc/passwd"] {
        assert_eq!(client.get_session_by_id(Some("c-odd"), odd).await.unwrap(), None, "{odd}");
        assert_eq!(client.store_session_data(None, odd, json!(1), None).await.unwrap(), None, "{odd}");
        assert_eq!(client.update_session_user(None, odd, json!(1), None).await.unwrap(), None, "{odd}");
        assert_eq!(client.close_session(None, odd, None).await.unwrap(), None, "{odd}");
        assert_eq!(client.delete_session_by_id(None, odd, None).await.unwrap(), None, "{odd}");
        assert_eq!(client.touch_session(None, odd, None).await.unwrap(), None, "{odd}");
        assert_eq!(client.rotate_session_id(None, odd, None).await.unwrap(), None, "{odd}");
        assert!(!client.validate_session(None, odd).await.unwrap().is_valid, "{odd}");
    }
    let e = failed(
        client.store_session_data(Some("c-bad"), UNKNOWN, Value::Null, None).await,
        K::BadRequest,
        "INVALID_DATA",
    );
    assert_eq!(e.correlation_id(), Some("c-bad"));
    assert_eq!(e.info().status, Some(400));
    assert_eq!(e.message(), "Validation failed: data must not be null");
    assert_eq!(e.details()["results"][0]["code"], "VALUE_IS_NULL");
    let e = failed(client.close_session(None, UNKNOWN, Some(0)).await, K::BadRequest, "INVALID_DATA");
    assert!(e.message().contains("version"), "{}", e.message());
    let long = "x".repeat(257);
    failed(client.open_session(None, open(&long)).await, K::BadRequest, "INVALID_DATA");
    let e = failed(
        client.open_session(None, OpenSessionRequest { ttl: Some(10), ..open("u1") }).await,
        K::BadRequest,
        "INVALID_DATA",
    );
    assert!(e.message().contains("ttl"), "{}", e.message());

    let s = client.open_session(None, open("u1")).await.unwrap();
    let e = failed(
        client.store_session_data(Some("c-stale"), &s.id, json!(1), Some(7)).await,
        K::VersionConflict,
        SESSION_VERSION_CONFLICT,
    );
    assert_eq!((e.current_version(), e.correlation_id(), e.info().status), (Some(1), Some("c-stale"), Some(409)));
    assert_eq!(e.details()["session_id"], json!(s.id));
    failed(client.delete_session_by_id(None, &s.id, Some(2)).await, K::VersionConflict, SESSION_VERSION_CONFLICT);

    client.close_session(None, &s.id, None).await.unwrap();
    let e = failed(client.store_session_data(Some("c-closed"), &s.id, json!(1), None).await, K::Closed, SESSION_CLOSED);
    assert_eq!((e.details()["session_id"].clone(), e.correlation_id()), (json!(s.id), Some("c-closed")));
    failed(client.update_session_user(None, &s.id, json!(1), None).await, K::Closed, SESSION_CLOSED);
    failed(client.update_data(None, &s.id, json!(1), ConcurrencyControl::retry()).await, K::Closed, SESSION_CLOSED);

    let idle = client.open_session(None, open("u1")).await.unwrap();
    clock.advance_ms(2 * 3_600_000);
    let e = failed(client.touch_session(None, &idle.id, None).await, K::Closed, SESSION_CLOSED);
    assert_eq!(e.to_string(), "Session closed: Session is closed (SESSION_CLOSED)");
    let expired = client.get_session_by_id(None, &idle.id).await.unwrap().unwrap();
    assert!(!expired.active, "an expired session is closed on the spot");
}

async fn session_limit(client: Client, _clock: Arc<ManualClock>) {
    client.open_session(None, open("u1")).await.unwrap();
    let e = failed(client.open_session(Some("c-limit"), open("u1")).await, K::SessionLimit, SESSION_LIMIT);
    assert_eq!((e.details()["max_sessions"].clone(), e.current_version()), (json!(1), None));
    client.open_session(None, open("u2")).await.unwrap();
}

async fn strict_and_last_write_wins(client: Client, _clock: Arc<ManualClock>) {
    let s = client.open_session(None, open("u1")).await.unwrap();
    let v2 = client.update_data(None, &s.id, json!({"a": 1}), ConcurrencyControl::Strict(1)).await.unwrap().unwrap();
    assert_eq!((v2.version, v2.data), (2, Some(json!({"a": 1}))));
    let e = failed(
        client.update_data(None, &s.id, json!({"a": 2}), ConcurrencyControl::Strict(1)).await,
        K::VersionConflict,
        SESSION_VERSION_CONFLICT,
    );
    assert_eq!(e.current_version(), Some(2));
    failed(
        client.update_user(None, &s.id, json!("u"), ConcurrencyControl::Strict(1)).await,
        K::VersionConflict,
        SESSION_VERSION_CONFLICT,
    );
    let v3 = client.update_user(None, &s.id, json!("u"), ConcurrencyControl::LastWriteWins).await.unwrap().unwrap();
    assert_eq!((v3.version, v3.user, v3.data), (3, Some(json!("u")), Some(json!({"a": 1}))));
    let v4 = client.update_user(None, &s.id, json!("w"), ConcurrencyControl::retry()).await.unwrap().unwrap();
    assert_eq!((v4.version, v4.user), (4, Some(json!("w"))));
}

/// Wraps a client so that a rival write lands between a versioned write's read and the write
/// itself, for the first `races` versioned writes: a deterministic race on every client.
struct Racing {
    inner: Client,
    races: AtomicU32,
}

impl Racing {
    fn new(inner: Client, races: u32) -> Self {
        Self { inner, races: AtomicU32::new(races) }
    }

    /// The rival: a read-modify-write that increments `n` (so its effect can be counted).
    async fn rival(&self, id: &str) {
        if self.races.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            let current = self.inner.get_session_by_id(None, id).await.unwrap().unwrap();
            let n = current.data.as_ref().and_then(|d| d["n"].as_i64()).unwrap_or(0);
            self.inner.store_session_data(None, id, json!({"n": n + 1}), None).await.unwrap();
        }
    }
}

#[async_trait]
impl SessionsClientV1 for Racing {
    async fn get_sessions(&self, cid: Option<&str>, f: &SessionsFilter, p: &PagingParams) -> ClientResult<Page> {
        self.inner.get_sessions(cid, f, p).await
    }
    async fn get_session_by_id(&self, cid: Option<&str>, id: &str) -> ClientResult<Option<SessionV1>> {
        self.inner.get_session_by_id(cid, id).await
    }
    async fn open_session(&self, cid: Option<&str>, r: OpenSessionRequest) -> ClientResult<SessionV1> {
        self.inner.open_session(cid, r).await
    }
    async fn store_session_data(
        &self,
        cid: Option<&str>,
        id: &str,
        data: Value,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        if version.is_some() {
            self.rival(id).await;
        }
        self.inner.store_session_data(cid, id, data, version).await
    }
    async fn update_session_user(
        &self,
        cid: Option<&str>,
        id: &str,
        user: Value,
        version: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        if version.is_some() {
            self.rival(id).await;
        }
        self.inner.update_session_user(cid, id, user, version).await
    }
    async fn close_session(&self, cid: Option<&str>, id: &str, v: Option<i64>) -> ClientResult<Option<SessionV1>> {
        self.inner.close_session(cid, id, v).await
    }
    async fn close_expired_sessions(&self, cid: Option<&str>) -> ClientResult<()> {
        self.inner.close_expired_sessions(cid).await
    }
    async fn delete_session_by_id(
        &self,
        cid: Option<&str>,
        id: &str,
        v: Option<i64>,
    ) -> ClientResult<Option<SessionV1>> {
        self.inner.delete_session_by_id(cid, id, v).await
    }
    async fn touch_session(&self, cid: Option<&str>, id: &str, v: Option<i64>) -> ClientResult<Option<SessionV1>> {
        self.inner.touch_session(cid, id, v).await
    }
    async fn validate_session(&self, cid: Option<&str>, id: &str) -> ClientResult<SessionValidity> {
        self.inner.validate_session(cid, id).await
    }
    async fn close_user_sessions(&self, cid: Option<&str>, user: &str, except: Option<&str>) -> ClientResult<u64> {
        self.inner.close_user_sessions(cid, user, except).await
    }
    async fn rotate_session_id(&self, cid: Option<&str>, id: &str, v: Option<i64>) -> ClientResult<Option<SessionV1>> {
        self.inner.rotate_session_id(cid, id, v).await
    }
    async fn purge_sessions(&self, cid: Option<&str>) -> ClientResult<u64> {
        self.inner.purge_sessions(cid).await
    }
}

/// `Retry` re-reads after each lost race and writes again, within its bound; `Strict` does
/// not; `modify_data` re-applies its change to the newest data, so the rival's increments
/// and its own all count.
async fn retry_rereads_after_racing_writes(client: Client, _clock: Arc<ManualClock>) {
    let s = client.open_session(None, OpenSessionRequest { data: json!({"n": 0}), ..open("u1") }).await.unwrap();
    let racing = Racing::new(client.clone(), 3);
    let won = racing.update_data(None, &s.id, json!({"n": 10}), ConcurrencyControl::Retry { attempts: 4 }).await;
    let won = won.unwrap().unwrap();
    assert_eq!((won.data, won.version), (Some(json!({"n": 10})), 1 + 3 + 1), "three lost races, then the write");

    let racing = Racing::new(client.clone(), 3);
    let e = racing.update_user(None, &s.id, json!("u"), ConcurrencyControl::Retry { attempts: 3 }).await;
    assert_eq!(failed(e, K::VersionConflict, SESSION_VERSION_CONFLICT).current_version(), Some(8), "the bound holds");
    let racing = Racing::new(client.clone(), 1);
    let e = racing.update_data(None, &s.id, json!({"n": 0}), ConcurrencyControl::Strict(8)).await;
    failed(e, K::VersionConflict, SESSION_VERSION_CONFLICT);

    let racing = Racing::new(client.clone(), 2);
    let increment = |v: &Value| json!({"n": v["n"].as_i64().unwrap_or(0) + 1});
    let done = racing.modify_data(None, &s.id, 3, &increment).await.unwrap().unwrap();
    // Each rival above incremented n: 10 + 3 + 1 = 14 before this call; two rivals and ours
    // make 17, and every lost race cost one attempt.
    assert_eq!((done.data, done.version), (Some(json!({"n": 17})), 12));
    let e = Racing::new(client.clone(), 2).modify_data(None, &s.id, 2, &increment).await;
    failed(e, K::VersionConflict, SESSION_VERSION_CONFLICT);
}

/// A writer stores data in a loop (last write wins) while the client updates with `Retry`:
/// every update succeeds with its own data and every write is applied exactly once. Each failed
/// attempt needs a writer write in between, so `WRITES + 1` attempts always suffice. Over HTTP
/// the two really race; in process the calls rarely interleave, which is why
/// `retry_rereads_after_racing_writes` forces the race on both clients.
async fn retry_survives_a_concurrent_writer(client: Client, _clock: Arc<ManualClock>) {
    const WRITES: i64 = 60;
    const UPDATES: i64 = 12;
    let s = client.open_session(None, open("u1")).await.unwrap();
    let writer = {
        let (client, id) = (client.clone(), s.id.clone());
        tokio::spawn(async move {
            for i in 0..WRITES {
                let w = client.store_session_data(None, &id, json!({"writer": i}), None).await.unwrap().unwrap();
                assert_eq!(w.data, Some(json!({"writer": i})));
            }
        })
    };
    let attempts = u32::try_from(WRITES + 1).unwrap();
    let mut last_version = 1;
    for i in 0..UPDATES {
        let data = json!({"client": i});
        let u = client.update_data(None, &s.id, data.clone(), ConcurrencyControl::Retry { attempts }).await.unwrap();
        let u = u.unwrap();
        assert_eq!(u.data, Some(data));
        assert!(u.version > last_version);
        last_version = u.version;
    }
    writer.await.unwrap();
    let end = client.get_session_by_id(None, &s.id).await.unwrap().unwrap();
    assert_eq!(end.version, 1 + WRITES + UPDATES, "every write applied exactly once");
}

/// Two tasks increment a counter in the session data with `modify_data`: no increment is lost.
async fn modify_loses_nothing_under_concurrent_modifiers(client: Client, _clock: Arc<ManualClock>) {
    const EACH: i64 = 25;
    let s = client.open_session(None, OpenSessionRequest { data: json!({"n": 0}), ..open("u1") }).await.unwrap();
    let increment = |v: &Value| json!({"n": v["n"].as_i64().unwrap_or(0) + 1});
    let attempts = u32::try_from(2 * EACH + 1).unwrap();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (client, id) = (client.clone(), s.id.clone());
            tokio::spawn(async move {
                for _ in 0..EACH {
                    client.modify_data(None, &id, attempts, &increment).await.unwrap().unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let end = client.get_session_by_id(None, &s.id).await.unwrap().unwrap();
    assert_eq!((end.data, end.version), (Some(json!({"n": 2 * EACH})), 1 + 2 * EACH));
}

// ---------------------------------------------------------------------------------------------
// HTTP only: transport, retries, headers

/// Answers from a script before the service sees the request, and records every request.
#[derive(Default)]
struct Scripted {
    replies: Mutex<VecDeque<HttpResponse>>,
    seen: Mutex<Vec<HttpRequest>>,
    api_key: Option<String>,
}

#[async_trait]
impl RequestInterceptor for Scripted {
    async fn inspect(&self, request: &HttpRequest) -> Option<HttpResponse> {
        self.seen.lock().unwrap().push(request.clone());
        if let Some(key) = &self.api_key {
            if request.header("x-api-key") != Some(key.as_str()) {
                return Some(error_response(&ApplicationError::unauthorized(
                    "INVALID_API_KEY",
                    "API key is missing or wrong",
                )));
            }
        }
        self.replies.lock().unwrap().pop_front()
    }
}

impl Scripted {
    fn push(&self, r: HttpResponse) {
        self.replies.lock().unwrap().push_back(r);
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn last(&self) -> HttpRequest {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

async fn scripted_app(api_key: Option<&str>) -> (TestApp, Arc<Scripted>) {
    let app = spawn_app(&sessions_yaml("")).await;
    let script = Arc::new(Scripted { api_key: api_key.map(str::to_string), ..Default::default() });
    app.container
        .references()
        .get_one_required::<HttpEndpoint>(&Descriptor::new("*", "endpoint", "http", "*", "1.0"))
        .unwrap()
        .add_interceptor(script.clone());
    (app, script)
}

fn client_for(address: &str, tune: impl FnOnce(&mut HttpClientSettings)) -> SessionsHttpClientV1 {
    let mut settings = HttpClientSettings::for_uri(&format!("http://{address}"));
    settings.options.retry_delay = 1;
    settings.options.retry_max_delay = 4;
    tune(&mut settings);
    SessionsHttpClientV1::new(settings).unwrap()
}

fn unavailable() -> HttpResponse {
    error_response(&ApplicationError::no_response("STORE_DOWN", "The store did not answer"))
}

#[tokio::test]
async fn http_wrong_base_route_is_not_found() {
    let app = spawn_app(&sessions_yaml("")).await;
    let client = client_for(&app.address.to_string(), |s| s.base_route = "v9/nothing".into());
    let e = failed(client.get_session_by_id(Some("c-route"), UNKNOWN).await, K::NotFound, "ROUTE_NOT_FOUND");
    assert_eq!((e.info().status, e.correlation_id()), (Some(404), Some("c-route")));
    assert_eq!(e.details()["route"], "/v9/nothing/get_session_by_id");
    app.stop().await;
}

#[tokio::test]
async fn http_api_key_is_sent_and_a_refusal_is_unauthorized() {
    let (app, script) = scripted_app(Some("k-secret")).await;
    let address = app.address.to_string();
    let anonymous = client_for(&address, |_| {});
    let e = failed(anonymous.open_session(Some("c-anon"), open("u1")).await, K::Unauthorized, "INVALID_API_KEY");
    assert_eq!((e.info().status, e.correlation_id()), (Some(401), Some("c-anon")));
    let wrong = client_for(&address, |s| s.credential.api_key = Some("k-wrong".into()));
    failed(wrong.get_session_by_id(None, UNKNOWN).await, K::Unauthorized, "INVALID_API_KEY");

    let keyed = client_for(&address, |s| s.credential.api_key = Some("k-secret".into()));
    assert!(!format!("{keyed:?}").contains("k-secret"));
    let s = keyed.open_session(None, open("u1")).await.unwrap();
    assert_eq!(script.last().header("x-api-key"), Some("k-secret"));
    assert_eq!(keyed.get_session_by_id(None, &s.id).await.unwrap().map(|g| g.id), Some(s.id));
    app.stop().await;
}

#[tokio::test]
async fn http_nothing_listening_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = client_for(&format!("127.0.0.1:{port}"), |s| {
        s.options.retries = 2;
        s.options.connect_timeout = 1_000;
    });
    let e = failed(client.get_session_by_id(Some("c-down"), UNKNOWN).await, K::Unavailable, "CANNOT_CONNECT");
    assert_eq!((e.info().status, e.correlation_id()), (None, Some("c-down")));
    assert!(e.is_unavailable());
    failed(client.open_session(None, open("u1")).await, K::Unavailable, "CANNOT_CONNECT");
    let as_app: ApplicationError = e.into();
    assert_eq!((as_app.category.as_str(), as_app.status), ("NoResponse", 503));
}

#[tokio::test]
async fn http_no_answer_in_time_is_unavailable() {
    // A listener that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let client = client_for(&address, |s| {
        s.options.timeout = 200;
        s.options.retries = 1;
    });
    failed(client.get_session_by_id(Some("c-slow"), UNKNOWN).await, K::Unavailable, "TIMEOUT");
    failed(client.store_session_data(None, UNKNOWN, json!(1), None).await, K::Unavailable, "TIMEOUT");
    held.abort();
}

#[tokio::test]
async fn http_retries_only_idempotent_calls_and_only_when_unavailable() {
    let (app, script) = scripted_app(None).await;
    let client = client_for(&app.address.to_string(), |s| s.options.retries = 3);
    let s = client.open_session(None, open("u1")).await.unwrap();
    let base = script.count();

    script.push(unavailable());
    script.push(unavailable());
    let got = client.get_session_by_id(Some("c-retry"), &s.id).await.unwrap();
    assert_eq!(got.map(|g| g.id), Some(s.id.clone()));
    assert_eq!(script.count() - base, 3, "two 503s, then the answer");

    for _ in 0..5 {
        script.push(unavailable());
    }
    let e = failed(client.close_session(None, &s.id, None).await, K::Unavailable, "STORE_DOWN");
    assert_eq!(e.info().status, Some(503));
    assert_eq!(script.count() - base, 3 + 4, "one call and three retries");
    script.replies.lock().unwrap().clear();

    script.push(unavailable());
    failed(client.store_session_data(None, &s.id, json!(1), None).await, K::Unavailable, "STORE_DOWN");
    assert_eq!(script.count() - base, 8, "writes are not repeated");
    assert_eq!(client.get_session_by_id(None, &s.id).await.unwrap().map(|g| g.version), Some(1), "nothing was written");

    script.push(error_response(&ApplicationError::internal("BOOM", "Internal error")));
    let e = failed(client.validate_session(Some("c-500"), &s.id).await, K::Internal, "BOOM");
    assert_eq!((e.message(), e.info().status, e.correlation_id()), ("Internal error", Some(500), Some("c-500")));
    assert_eq!(script.count() - base, 10, "a server failure is not retried");
    app.stop().await;
}

#[tokio::test]
async fn http_answers_without_an_error_description_are_classified_by_status() {
    let (app, script) = scripted_app(None).await;
    let client = client_for(&app.address.to_string(), |s| s.options.retries = 0);
    let text =
        |status: StatusCode, body: &'static str| HttpResponse::with_body(status, "text/plain", Bytes::from(body));
    let cases = [
        (StatusCode::BAD_GATEWAY, K::Unavailable, "HTTP_502"),
        (StatusCode::GATEWAY_TIMEOUT, K::Unavailable, "HTTP_504"),
        (StatusCode::UNAUTHORIZED, K::Unauthorized, "HTTP_401"),
        (StatusCode::FORBIDDEN, K::Unauthorized, "HTTP_403"),
        (StatusCode::NOT_FOUND, K::NotFound, "HTTP_404"),
        (StatusCode::CONFLICT, K::Conflict, "HTTP_409"),
        (StatusCode::PAYLOAD_TOO_LARGE, K::BadRequest, "HTTP_413"),
        (StatusCode::INTERNAL_SERVER_ERROR, K::Internal, "HTTP_500"),
    ];
    for (status, kind, code) in cases {
        script.push(text(status, "<html>proxy page</html>"));
        let e = failed(client.get_session_by_id(None, UNKNOWN).await, kind, code);
        assert_eq!(e.info().status, Some(status.as_u16()));
    }
    script.push(text(StatusCode::OK, "not json"));
    let e = failed(client.get_session_by_id(Some("c-junk"), UNKNOWN).await, K::Internal, "BAD_RESPONSE");
    assert_eq!(e.correlation_id(), Some("c-junk"));
    script.push(HttpResponse::empty(StatusCode::NO_CONTENT));
    failed(client.open_session(None, open("u1")).await, K::Internal, "BAD_RESPONSE");
    app.stop().await;
}

#[tokio::test]
async fn http_correlation_id_goes_where_configured() {
    let (app, script) = scripted_app(None).await;
    let address = app.address.to_string();
    let place = |p: CorrelationIdPlace| client_for(&address, move |s| s.options.correlation_id_place = p);
    let where_it_went = |r: HttpRequest| {
        (r.query_value("correlation_id").map(str::to_string), r.header("correlation_id").map(str::to_string))
    };
    let cid = Some("c 1&x".to_string());

    place(CorrelationIdPlace::Query).get_session_by_id(cid.as_deref(), UNKNOWN).await.unwrap();
    assert_eq!(where_it_went(script.last()), (cid.clone(), None));
    place(CorrelationIdPlace::Both).get_session_by_id(Some("c2"), UNKNOWN).await.unwrap();
    assert_eq!(where_it_went(script.last()), (Some("c2".into()), Some("c2".into())));
    place(CorrelationIdPlace::Headers).get_session_by_id(Some("c3"), UNKNOWN).await.unwrap();
    assert_eq!(where_it_went(script.last()), (None, Some("c3".into())));
    assert_eq!(script.last().correlation_id.as_deref(), Some("c3"));
    place(CorrelationIdPlace::Both).get_session_by_id(None, UNKNOWN).await.unwrap();
    assert_eq!(where_it_went(script.last()), (None, None));
    let body: Value = serde_json::from_slice(&script.last().body).unwrap();
    assert_eq!(body, json!({"session_id": UNKNOWN}));
    app.stop().await;
}

#[tokio::test]
async fn http_sends_what_pip_clients_send() {
    let (app, script) = scripted_app(None).await;
    let client = client_for(&app.address.to_string(), |_| {});
    let body = |r: HttpRequest| (r.path.clone(), serde_json::from_slice::<Value>(&r.body).unwrap());
    let filter = SessionsFilter { user_id: Some("1".into()), active: Some(true), ..Default::default() };
    client.get_sessions(None, &filter, &PagingParams::new(0, 10, true)).await.unwrap();
    assert_eq!(
        body(script.last()),
        (
            "/v1/sessions/get_sessions".to_string(),
            json!({"filter": {"user_id": "1", "active": "true"}, "paging": {"skip": 0, "take": 10, "total": true}})
        )
    );
    let s =
        client.open_session(None, OpenSessionRequest { user_name: Some("Ann".into()), ..open("u1") }).await.unwrap();
    assert_eq!(
        body(script.last()).1,
        json!({"user_id": "u1", "user_name": "Ann", "address": null, "client": null, "user": null, "data": null})
    );
    client.store_session_data(None, &s.id, json!({"k": 1}), Some(1)).await.unwrap();
    assert_eq!(body(script.last()).1, json!({"session_id": s.id, "version": 1, "data": {"k": 1}}));
    client.close_user_sessions(None, "u1", Some(&s.id)).await.unwrap();
    assert_eq!(body(script.last()).1, json!({"user_id": "u1", "except_session_id": s.id}));
    client.close_expired_sessions(None).await.unwrap();
    assert_eq!(body(script.last()), ("/v1/sessions/close_expired_sessions".to_string(), json!({})));
    app.stop().await;
}

#[tokio::test]
async fn direct_client_without_a_controller_is_internal() {
    let client = SessionsDirectClientV1::new();
    let e = failed(client.get_session_by_id(Some("c-none"), UNKNOWN).await, K::Internal, "NOT_REFERENCED");
    assert_eq!(e.correlation_id(), Some("c-none"));
}
