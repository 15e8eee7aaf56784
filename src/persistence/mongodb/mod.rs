//! The MongoDB backend (`service-sessions:persistence:mongodb:*:1.0`), on the official `mongodb`
//! driver: how several stateless service instances share one store.
//!
//! **Atomicity.** Every method is one server-side atomic step, so several service instances can
//! share the collection:
//!
//! - `update` reads the record, decides the outcome with [`WriteCondition::holds`] and computes the
//!   new state with [`SessionChange::apply`] — the logic the memory backend runs — and then writes
//!   with one `find_one_and_update` whose filter is `_id`, the condition expressed as a query
//!   (`active`, `version`, and liveness as `$or: [{expire_time >= alive_at}, {no expire_time,
//!   request_time >= idle_cutoff}]`) and the `active` flag as read. Its update document sets only
//!   the fields the change touches, the recomputed `expire_time` (which depends only on `open_time`,
//!   `ttl` and `active` — fields no matching concurrent write changes — and on `now`) and
//!   increments `version`. So the stored result equals `SessionChange::apply` on whatever record
//!   the write matched, and concurrent writers never retry against each other (no write is lost:
//!   each gets its own version). When the write matches nothing, the record is read again: gone →
//!   `NotFound`, condition now false → `ConditionFailed` with that record; otherwise (changed in
//!   between, still qualifying) the whole step is tried again, a bounded number of times.
//! - `delete_if` is one `find_one_and_delete` with the same filter, and the same re-read on a miss.
//! - `close_expired` and `close_user_sessions` are one `update_many` each: a session already
//!   closed no longer matches `active: true`, so sweeps running on every instance at once close
//!   (and bump the version of) each session once.
//! - `purge_closed` finds at most `limit` ids of closed sessions (`close_time < before`, oldest
//!   first), then one `delete_many` on those ids that are still closed.
//! - `create_limited` and `rotate_id` are multi-document **transactions** (a replica set or a
//!   sharded cluster is needed for them; a standalone `mongod` refuses transactions).
//!   `create_limited` first upserts a per-user guard document in `<collection>_user_locks`, so
//!   two transactions opening sessions for one user always write the same document and cannot
//!   both commit (the loser gets a `WriteConflict` / `TransientTransactionError` and is retried
//!   from the start); inside it the user's open sessions are read, expired ones and — under
//!   `CloseOldest` — the oldest by `open_time` are closed, and the new session is inserted.
//!   `rotate_id` inserts the moved record under the new id and deletes the old id guarded by the
//!   version that was read (a concurrent change aborts and retries the transaction). Retries are
//!   bounded by the call deadline.
//! - `create` is one `insert_one` (duplicate key → `SESSION_EXISTS`).
//!
//! **Documents** are the original service's ([`codec`]): `_id` = the session id, the SessionV1
//! field names, BSON dates, `user` and `data` as native BSON values; `version`, `expire_time` and
//! `ttl` beside them, optional on read. So the original and this service share one collection in
//! either direction: documents the original wrote are legacy sessions (version 1, expiry by the
//! idle cutoff on `request_time` until their first write here adds `version` and `expire_time`),
//! and the original reads what this service writes. A document that is not a session (a missing
//! field, a wrong type, a non-string `_id`) is logged with its id hashed, counted in
//! `store_bad_documents_total`, left out of lists and scans, and answered as a 500
//! `SESSION_UNREADABLE` by a call on that very id — which never rewrites it.
//!
//! **Indexes** (created on open one by one, idempotently, with the driver's default names; an
//! index the collection already has with the same keys and other options is kept):
//! `{user_id: 1, request_time: -1, _id: 1}`, `{active: 1, request_time: -1, _id: 1}` and
//! `{request_time: -1, _id: 1}` — each serves a `get_sessions` filter *and* its sort order
//! (`request_time` descending, `_id` ascending); `{active: 1, expire_time: 1}` serves the expiry
//! sweep and `{active: 1, close_time: 1}` the purge, so no read needs a collection scan.
//!
//! **A fleet.** Any number of instances share the collection safely (every write is one
//! conditional step, above). Background work that one instance suffices for — the expiry sweep
//! and the purge — takes a lease in `<collection>_leases` (`{_id: name, owner, until}`, one
//! conditional upsert: taken when free, past its deadline or already the caller's), so one
//! instance sweeps at a time and another takes over when the holder stops renewing. Reads and
//! find-and-modify writes carry `maxTimeMS` = the call timeout, so the server gives up on work
//! whose client has given up; the persistence component's `options.max_in_flight` (default 256)
//! sheds calls beyond it at once (503 `OVERLOADED`, see `persistence::instrumented`).
//!
//! **Availability.** `open` never waits for the server: the client connects lazily, and an owned
//! background task creates the indexes, retrying with backoff until the server answers. Readiness
//! ([`Component::health`], shown by `/status` and `/ready`) is "indexes ensured and a writable
//! server known", the latter kept current by the driver's topology events, so it drops while the
//! server is down and comes back with it. Each call is bounded: server selection and connecting
//! by `options.connect_timeout` (default 2 s), the whole call by `connect_timeout +
//! socket_timeout`; an unreachable store is `NoResponse` / `STORE_UNAVAILABLE` (HTTP 503), and the
//! driver reconnects by itself when the server returns.
//!
//! **Secrets.** The URI and password are kept out of `Debug`, logs and error messages (driver
//! messages are redacted; server errors are reported by code only, since their text can quote
//! document values).

pub mod codec;

use super::{
    limit_victims, redact, session_exists, session_limit, uri_userinfo, SessionChange, SessionLimit, SessionUpdate,
    SessionsPersistence, UpdateOutcome, WriteCondition, DEFAULT_MAX_PAGE_SIZE,
};
use crate::data::version1::{SessionV1, SessionsFilter};
use crate::toolkit::component::{Component, ComponentHealth, OwnedTask};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::log::redact_id;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use codec::{bson_time, decode_session, json_to_bson, session_document, DecodeError, Decoded};
use futures::future::BoxFuture;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime as BsonDateTime, Document};
use mongodb::error::{Error as DriverError, ErrorKind, WriteFailure};
use mongodb::event::sdam::SdamEvent;
use mongodb::event::EventHandler;
use mongodb::options::{ClientOptions, ConnectionString, HostInfo, ReturnDocument};
use mongodb::{Client, ClientSession, Collection, IndexModel};
use parking_lot::Mutex;
use prometheus::IntCounter;
use serde::Deserialize;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// How long a look that found no open record without `expire_time` holds for the sweep.
const LEGACY_RECHECK: Duration = Duration::from_secs(60);

/// Default `options.connect_timeout` in milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Default `options.socket_timeout` in milliseconds.
pub const DEFAULT_SOCKET_TIMEOUT_MS: u64 = 5_000;
/// Default `collection`.
pub const DEFAULT_COLLECTION: &str = "sessions";
/// Database used when neither the URI nor `connection.database` names one.
pub const DEFAULT_DATABASE: &str = "app";

/// How often a write whose condition failed is retried when the current record turns out to
/// satisfy the condition (it was changed by another instance between the two steps).
const WRITE_ATTEMPTS: usize = 5;

/// Suffix of the collection of per-user guard documents (see the module documentation).
const LOCKS_SUFFIX: &str = "_user_locks";

/// Suffix of the collection of leases of background work (see the module documentation).
const LEASES_SUFFIX: &str = "_leases";

/// Server error code of a write conflict between transactions.
const WRITE_CONFLICT: i32 = 112;

/// Server error codes that mean "the server is going away or not primary now": the call may
/// succeed later, so they are `NoResponse` like network failures.
const UNAVAILABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// The config entry as written (contract §7).
#[derive(Default, Deserialize)]
#[serde(default)]
struct MongoSettings {
    collection: Option<String>,
    connection: ConnectionSettings,
    credential: CredentialSettings,
    options: MongoOptions,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ConnectionSettings {
    uri: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CredentialSettings {
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(default)]
struct MongoOptions {
    max_pool_size: Option<u32>,
    connect_timeout: u64,
    socket_timeout: u64,
    max_page_size: u64,
    auth_source: Option<String>,
}

impl Default for MongoOptions {
    fn default() -> Self {
        Self {
            max_pool_size: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT_MS,
            socket_timeout: DEFAULT_SOCKET_TIMEOUT_MS,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            auth_source: None,
        }
    }
}

/// Validated settings. Holds secrets: no `Debug`.
struct Settings {
    /// The connection string (may embed credentials).
    uri: String,
    /// Username and password from `credential.*`, applied when the URI has none.
    credential: Option<(String, Option<String>)>,
    auth_source: Option<String>,
    database: String,
    collection: String,
    max_pool_size: Option<u32>,
    connect_timeout: Duration,
    call_timeout: Duration,
    max_page_size: u64,
    /// `host:port,…/database.collection` for logs and health (no credentials).
    target: String,
    /// Text that must never appear in a message (userinfo of the URI, the password).
    secrets: Vec<String>,
}

impl Settings {
    fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let s: MongoSettings = config.section()?;
        let bad = |m: String| {
            ApplicationError::config(
                "BAD_CONFIG",
                format!("Component #{} ({}): {m}", config.index + 1, config.descriptor),
            )
            .with_details("descriptor", config.descriptor.to_string())
        };
        let mut problems = Vec::new();
        let collection = s.collection.unwrap_or_else(|| DEFAULT_COLLECTION.to_string());
        if collection.is_empty()
            || collection.contains('$')
            || collection.contains('\0')
            || collection.starts_with("system.")
        {
            problems.push(format!("collection '{collection}' is not a valid collection name"));
        }
        let o = &s.options;
        if o.connect_timeout == 0 {
            problems.push("options.connect_timeout must be positive".to_string());
        }
        if o.max_page_size == 0 {
            problems.push("options.max_page_size must be positive".to_string());
        }
        if o.max_pool_size == Some(0) {
            problems.push("options.max_pool_size must be positive".to_string());
        }
        let mut secrets = Vec::new();
        if let Some(p) = s.credential.password.as_ref().filter(|p| !p.is_empty()) {
            secrets.push(p.clone());
        }
        let uri = match &s.connection.uri {
            Some(uri) => {
                if let Some(userinfo) = uri_userinfo(uri) {
                    secrets.push(userinfo.to_string());
                }
                uri.clone()
            }
            None => {
                let host = s.connection.host.as_deref().unwrap_or("localhost");
                let port = s.connection.port.unwrap_or(27017);
                if port == 0 {
                    problems.push("connection.port must be between 1 and 65535".to_string());
                }
                // A bare IPv6 address needs brackets in a URI.
                if host.contains(':') && !host.starts_with('[') {
                    format!("mongodb://[{host}]:{port}/")
                } else {
                    format!("mongodb://{host}:{port}/")
                }
            }
        };
        let parsed = match ConnectionString::parse(&uri) {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(format!("connection is not a valid MongoDB URI: {}", redact(&e.to_string(), &secrets)));
                None
            }
        };
        if !problems.is_empty() {
            return Err(bad(problems.join("; ")).with_details("errors", problems));
        }
        let database = parsed
            .as_ref()
            .and_then(|c| c.default_database.clone())
            .or(s.connection.database.filter(|d| !d.is_empty()))
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let hosts = match parsed.as_ref().map(|c| &c.host_info) {
            Some(HostInfo::HostIdentifiers(hosts)) => {
                hosts.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            }
            Some(HostInfo::DnsRecord(name)) => format!("srv:{name}"),
            _ => String::from("?"),
        };
        let username = s.credential.username.filter(|u| !u.is_empty());
        Ok(Self {
            uri,
            credential: username.map(|u| (u, s.credential.password.filter(|p| !p.is_empty()))),
            auth_source: o.auth_source.clone().filter(|a| !a.is_empty()),
            target: format!("{hosts}/{database}.{collection}"),
            database,
            collection,
            max_pool_size: o.max_pool_size,
            connect_timeout: Duration::from_millis(o.connect_timeout),
            call_timeout: Duration::from_millis(o.connect_timeout.saturating_add(o.socket_timeout)),
            max_page_size: o.max_page_size,
            secrets,
        })
    }
}

/// The guard of a write to `current`, a record just read on which `c` held: the id, the
/// [`WriteCondition`] as a query (the rule of [`WriteCondition::holds`]) with only the liveness
/// branch that applies to `current` (it has an `expire_time` or it has not) instead of an `$or` of
/// both, and its `active`, for which `expire_time` was computed. A record that changed branch in between fails the guard and is read
/// again. Without the `$or`, every server finds the record through the `_id` index (one test
/// server scanned the collection for `_id` beside an `$or`: 10 ms instead of 0.4 ms at 20 000
/// documents). A legacy record (no `version`) is guarded by that absence: its first write sets
/// `version` (see [`change_update`]), so of two racing first writes one fails the guard and is
/// tried again.
fn write_filter_for(id: &str, c: &WriteCondition, current: &Decoded) -> Document {
    let mut f = doc! { "_id": id, "active": current.session.active };
    if let Some((with, without)) = alive_filter(c.alive_at, c.idle_cutoff) {
        f.extend(if current.session.expire_time.is_some() { with } else { without });
    }
    if current.legacy_version {
        f.insert("version", doc! { "$exists": false });
    } else if let Some(v) = c.expected_version {
        f.insert("version", v);
    }
    f
}

/// The `$or` branches of [`is_alive`](super::is_alive): a record with an `expire_time` is alive while
/// `expire_time >= now`; one without is alive while `request_time >= idle_cutoff`.
fn alive_filter(now: Option<DateTime<Utc>>, idle_cutoff: Option<DateTime<Utc>>) -> Option<(Document, Document)> {
    let with = match now {
        Some(now) => doc! { "expire_time": { "$gte": bson_time(now) } },
        None => doc! { "expire_time": { "$exists": true } },
    };
    let without = match idle_cutoff {
        Some(c) => doc! { "expire_time": { "$exists": false }, "request_time": { "$gte": bson_time(c) } },
        None => doc! { "expire_time": { "$exists": false } },
    };
    (now.is_some() || idle_cutoff.is_some()).then_some((with, without))
}

/// The query of the open sessions that are not alive at `now` (see [`is_alive`](super::is_alive)).
fn expired_filter(now: DateTime<Utc>, idle_cutoff: DateTime<Utc>) -> Document {
    doc! {
        "active": true,
        "$or": [
            { "expire_time": { "$lt": bson_time(now) } },
            { "expire_time": { "$exists": false }, "request_time": { "$lt": bson_time(idle_cutoff) } },
        ],
    }
}

/// The update document that turns a record into `next`, the result of [`SessionChange::apply`]
/// on it: only the fields `change` touches, `expire_time`, and the version — `+ 1`, or set to
/// `next.version` on a legacy record that has no `version` field yet.
fn change_update(change: &SessionChange, next: &SessionV1, legacy_version: bool) -> Document {
    let now = bson_time(next.request_time);
    let mut set = match change {
        SessionChange::StoreData(v) => doc! { "data": json_to_bson(v), "request_time": now },
        SessionChange::UpdateUser(v) => doc! { "user": json_to_bson(v), "request_time": now },
        SessionChange::Touch => doc! { "request_time": now },
        SessionChange::Close => close_set(now),
    };
    let mut update = Document::new();
    if legacy_version {
        set.insert("version", next.version);
    } else {
        update.insert("$inc", doc! { "version": 1_i64 });
    }
    match next.expire_time {
        Some(t) => {
            set.insert("expire_time", bson_time(t));
        }
        None => {
            update.insert("$unset", doc! { "expire_time": "" });
        }
    }
    update.insert("$set", set);
    update
}

fn close_set(now: BsonDateTime) -> Document {
    doc! { "active": false, "close_time": now, "request_time": now, "user": Bson::Null, "data": Bson::Null }
}

/// The `update_many` steps that close the sessions `filter` matches at `now` (as
/// [`SessionChange::Close`] does): records with a `version` get it incremented, legacy records
/// (none yet, written by the original) get version 2 — one step each, since one update document
/// cannot do both.
fn close_steps(filter: &Document, now: DateTime<Utc>) -> [(Document, Document); 2] {
    let with_version = |exists: bool| {
        let mut f = filter.clone();
        f.insert("version", doc! { "$exists": exists });
        f
    };
    let set = close_set(bson_time(now));
    let mut legacy_set = set.clone();
    legacy_set.insert("version", 2_i64);
    [
        (with_version(true), doc! { "$set": set, "$unset": { "expire_time": "" }, "$inc": { "version": 1_i64 } }),
        (with_version(false), doc! { "$set": legacy_set, "$unset": { "expire_time": "" } }),
    ]
}

/// The query of a `get_sessions` filter.
fn list_filter(filter: &SessionsFilter) -> Document {
    let mut f = Document::new();
    if let Some(id) = &filter.id {
        f.insert("_id", id.as_str());
    }
    if let Some(user) = &filter.user_id {
        f.insert("user_id", user.as_str());
    }
    if let Some(active) = filter.active {
        f.insert("active", active);
    }
    let mut window = Document::new();
    if let Some(from) = filter.from_time {
        window.insert("$gte", bson_time(from));
    }
    if let Some(to) = filter.to_time {
        window.insert("$lt", bson_time(to));
    }
    if !window.is_empty() {
        f.insert("request_time", window);
    }
    f
}

/// The indexes every read and the sweep rely on.
fn index_models() -> Vec<IndexModel> {
    [
        doc! { "user_id": 1, "request_time": -1, "_id": 1 },
        doc! { "active": 1, "request_time": -1, "_id": 1 },
        doc! { "request_time": -1, "_id": 1 },
        doc! { "active": 1, "expire_time": 1 },
        doc! { "active": 1, "close_time": 1 },
    ]
    .into_iter()
    .map(|keys| IndexModel::builder().keys(keys).build())
    .collect()
}

/// Why a transaction body stopped.
enum TxError {
    /// A driver error; the transaction is retried when it is transient.
    Driver(DriverError),
    /// A final answer (`SESSION_LIMIT`, `SESSION_EXISTS`, a bad document): abort and return it.
    App(ApplicationError),
    /// A guarded write matched nothing because the record changed: retry from the start.
    Raced,
}

impl From<DriverError> for TxError {
    fn from(e: DriverError) -> Self {
        Self::Driver(e)
    }
}

impl From<ApplicationError> for TxError {
    fn from(e: ApplicationError) -> Self {
        Self::App(e)
    }
}

/// Server error code of `create_collection` on an existing collection.
const NAMESPACE_EXISTS: i32 = 48;

/// Server error codes of `create_index` when an index with the same keys exists under another
/// name or with other options (IndexOptionsConflict, IndexKeySpecsConflict, IndexAlreadyExists).
const INDEX_CONFLICT_CODES: &[i32] = &[85, 86, 68];

/// `store_bad_documents_total{backend="mongodb"}`.
fn bad_documents_counter() -> Option<&'static IntCounter> {
    static C: LazyLock<Option<IntCounter>> = LazyLock::new(|| super::bad_records_counter("mongodb"));
    C.as_ref()
}

/// The server's error code, if any.
fn error_code(e: &DriverError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

/// Whether a transaction failed in a way that running it again may fix.
fn is_transient(e: &DriverError) -> bool {
    e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR) || error_code(e) == Some(WRITE_CONFLICT)
}

/// Commits, retrying the commit itself while its result is unknown (the driver makes the retry
/// safe); a transient failure is left to the caller, which runs the whole transaction again.
async fn commit(session: &mut ClientSession) -> Result<(), DriverError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match session.commit_transaction().await {
            Err(e) if tries < 3 && e.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT) => {}
            result => return result,
        }
    }
}

fn is_duplicate_key(e: &DriverError) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

/// The client and the collections it serves.
struct Store {
    client: Client,
    sessions: Collection<Document>,
    /// Per-user guard documents of `create_limited` (`<collection>_user_locks`).
    locks: Collection<Document>,
    /// Leases of background work (`<collection>_leases`): `{_id: name, owner, until}`.
    leases: Collection<Document>,
}

/// The state shared by the component and its connector task.
struct Shared {
    settings: Settings,
    /// The client and collections, built on first use (no I/O for `mongodb://` URIs).
    store: OnceCell<Store>,
    /// Indexes were ensured (the server answered at least once).
    prepared: AtomicBool,
    /// The driver currently knows a writable server (from its topology events).
    reachable: Arc<AtomicBool>,
    /// The latest connection problem, for `health` (redacted).
    last_error: Mutex<Option<String>>,
    /// Until when the expiry sweep may leave out open records without `expire_time` (written
    /// before the field existed): set when a look found none, for [`LEGACY_RECHECK`].
    legacy_clear_until: Mutex<Option<Instant>>,
}

impl Shared {
    fn unavailable(&self, message: impl Into<String>) -> ApplicationError {
        ApplicationError::no_response("STORE_UNAVAILABLE", "The sessions store is not reachable")
            .with_cause(redact(&message.into(), &self.settings.secrets))
    }

    /// Maps a driver error: unreachable/interrupted → `NoResponse` (503), the rest → internal.
    fn map_error(&self, e: &DriverError, op: &str) -> ApplicationError {
        let code = error_code(e);
        let unreachable = matches!(
            e.kind.as_ref(),
            ErrorKind::ServerSelection { .. }
                | ErrorKind::Io(_)
                | ErrorKind::ConnectionPoolCleared { .. }
                | ErrorKind::DnsResolve { .. }
                | ErrorKind::Shutdown
        ) || code.is_some_and(|c| UNAVAILABLE_CODES.contains(&c));
        // Readiness is left to the driver's topology events: one failed call is not an outage.
        if unreachable {
            return self.unavailable(format!("{op}: {e}"));
        }
        match (e.kind.as_ref(), code) {
            // Server messages can quote document values: keep the code only.
            (_, Some(code)) => ApplicationError::internal("STORE_FAILED", "The sessions store failed")
                .with_cause(format!("{op}: server error code {code}")),
            (ErrorKind::Authentication { .. }, _) => {
                ApplicationError::config("STORE_AUTH_FAILED", "The sessions store refused the credentials")
                    .with_cause(redact(&format!("{op}: {e}"), &self.settings.secrets))
            }
            _ => ApplicationError::internal("STORE_FAILED", "The sessions store failed")
                .with_cause(redact(&format!("{op}: {e}"), &self.settings.secrets)),
        }
    }

    /// Builds the client (parsing a `mongodb+srv` URI resolves DNS, hence the timeout).
    async fn connect(&self) -> Result<Store, ApplicationError> {
        let s = &self.settings;
        let parsed = tokio::time::timeout(s.connect_timeout, ClientOptions::parse(&s.uri)).await;
        let mut options = match parsed {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(self.map_error(&e, "parse connection")),
            Err(_) => return Err(self.unavailable("resolving the connection string timed out")),
        };
        options.connect_timeout = Some(s.connect_timeout);
        options.server_selection_timeout = Some(s.connect_timeout);
        if s.max_pool_size.is_some() {
            options.max_pool_size = s.max_pool_size;
        }
        if options.app_name.is_none() {
            options.app_name = Some("service-sessions".to_string());
        }
        if let Some((username, password)) = &s.credential {
            if options.credential.as_ref().is_none_or(|c| c.username.is_none()) {
                let mut c = options.credential.take().unwrap_or_default();
                c.username = Some(username.clone());
                c.password = password.clone();
                c.source = c.source.or_else(|| s.auth_source.clone()).or_else(|| Some(s.database.clone()));
                options.credential = Some(c);
            }
        } else if let (Some(source), Some(c)) = (&s.auth_source, options.credential.as_mut()) {
            c.source = Some(source.clone());
        }
        let reachable = self.reachable.clone();
        options.sdam_event_handler = Some(EventHandler::callback(move |event: SdamEvent| {
            if let SdamEvent::TopologyDescriptionChanged(e) = event {
                reachable.store(e.new_description.has_writable_server(), Ordering::Relaxed);
            }
        }));
        let client = Client::with_options(options).map_err(|e| self.map_error(&e, "create client"))?;
        let db = client.database(&s.database);
        let sessions = db.collection::<Document>(&s.collection);
        let locks = db.collection::<Document>(&format!("{}{LOCKS_SUFFIX}", s.collection));
        let leases = db.collection::<Document>(&format!("{}{LEASES_SUFFIX}", s.collection));
        Ok(Store { client, sessions, locks, leases })
    }

    async fn store(&self) -> Result<&Store, ApplicationError> {
        self.store.get_or_try_init(|| self.connect()).await
    }

    /// Whether the sweep must also look for open records without `expire_time` (they expire by
    /// the idle cutoff). No index serves that part (`$exists: false`), so on servers that scan
    /// for it every sweep would read the whole collection; instead one look decides, and a look
    /// that finds none holds for [`LEGACY_RECHECK`]. Records this service writes carry
    /// `expire_time` whenever an idle timeout is configured; without one the cutoff is the
    /// earliest time and that part could never match anyway.
    async fn legacy_records_possible(
        &self,
        cid: Option<&str>,
        coll: &Collection<Document>,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<bool, ApplicationError> {
        if idle_cutoff == DateTime::<Utc>::MIN_UTC {
            return Ok(false);
        }
        if self.legacy_clear_until.lock().is_some_and(|until| Instant::now() < until) {
            return Ok(false);
        }
        let look =
            coll.find_one(doc! { "active": true, "expire_time": { "$exists": false } }).projection(doc! { "_id": 1 });
        let found = self.call(cid, "find_one", look).await?.is_some();
        *self.legacy_clear_until.lock() = (!found).then(|| Instant::now() + LEGACY_RECHECK);
        Ok(found)
    }

    async fn collection(&self) -> Result<&Collection<Document>, ApplicationError> {
        self.store().await.map(|s| &s.sessions)
    }

    /// Decodes a document a call asked for by id: a document that is not a session is that
    /// call's 500 (`SESSION_UNREADABLE`), logged and counted.
    fn decode(&self, cid: Option<&str>, d: &Document, payload: bool) -> Result<Decoded, ApplicationError> {
        decode_session(d, payload).map_err(|e| {
            self.bad_document(d, &e);
            e.to_error().with_correlation_id(cid)
        })
    }

    /// Decodes the documents of a list, leaving out (logged and counted) those that are not
    /// sessions: one foreign document never breaks anyone else's page.
    fn decode_all(&self, docs: &[Document], payload: bool) -> Vec<SessionV1> {
        docs.iter()
            .filter_map(|d| match decode_session(d, payload) {
                Ok(decoded) => Some(decoded.session),
                Err(e) => {
                    self.bad_document(d, &e);
                    None
                }
            })
            .collect()
    }

    /// Logs (with the id hashed) and counts a document that is not a session.
    fn bad_document(&self, d: &Document, e: &DecodeError) {
        let id = match d.get("_id") {
            Some(Bson::String(s)) => redact_id(s),
            Some(other) => format!("<{:?}>", other.element_type()),
            None => "<none>".to_string(),
        };
        tracing::warn!(store = %self.settings.target, session = %id, field = e.field, reason = e.reason,
            "A stored document is not a readable session; it is left out of lists and left as it is.");
        if let Some(c) = bad_documents_counter() {
            c.inc();
        }
    }

    /// Runs one driver call under the call deadline, mapping its error.
    async fn call<T>(
        &self,
        cid: Option<&str>,
        op: &str,
        f: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T, ApplicationError> {
        match tokio::time::timeout(self.settings.call_timeout, f.into_future()).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_error(&e, op).with_correlation_id(cid)),
            Err(_) => Err(self.unavailable(format!("{op}: no answer in time")).with_correlation_id(cid)),
        }
    }

    /// Ensures the indexes; succeeds once the server has answered.
    async fn prepare(&self) -> Result<(), ApplicationError> {
        let store = self.store().await?;
        // One by one, beside whatever the collection already holds: an index with the same keys
        // under another name or with other options is left as it is (the reads work with it).
        for model in index_models() {
            let keys = model.keys.clone();
            match tokio::time::timeout(self.settings.call_timeout, store.sessions.create_index(model)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if error_code(&e).is_some_and(|c| INDEX_CONFLICT_CODES.contains(&c)) => {
                    tracing::warn!(store = %self.settings.target, index = %keys,
                        "An index with these keys already exists with other options; keeping it.");
                }
                Ok(Err(e)) => return Err(self.map_error(&e, "create index")),
                Err(_) => return Err(self.unavailable("create index: no answer in time")),
            }
        }
        // Transactions may not create collections on older servers: create the guard collection
        // up front ("already exists" is fine).
        let db = store.client.database(&self.settings.database);
        match tokio::time::timeout(self.settings.call_timeout, db.create_collection(store.locks.name())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if error_code(&e) == Some(NAMESPACE_EXISTS) => Ok(()),
            Ok(Err(e)) => Err(self.map_error(&e, "create collection")),
            Err(_) => Err(self.unavailable("create collection: no answer in time")),
        }
    }

    /// Runs `body` in a transaction and commits it, retrying the whole transaction on transient
    /// errors (write conflicts) and on [`TxError::Raced`], with a short randomized backoff, until
    /// the call deadline.
    async fn transaction<T, F>(&self, cid: Option<&str>, op: &str, mut body: F) -> Result<T, ApplicationError>
    where
        F: for<'s> FnMut(&'s mut ClientSession) -> BoxFuture<'s, Result<T, TxError>>,
    {
        let store = self.store().await?;
        let deadline = Instant::now() + self.settings.call_timeout;
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let mut session = self.call(cid, op, store.client.start_session()).await?;
            let run = async {
                session.start_transaction().await?;
                let value = body(&mut session).await?;
                commit(&mut session).await?;
                Ok::<T, TxError>(value)
            };
            let error = match tokio::time::timeout_at(deadline.into(), run).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => e,
                // Dropping the session aborts its transaction.
                Err(_) => return Err(self.unavailable(format!("{op}: no answer in time")).with_correlation_id(cid)),
            };
            // Best effort (it fails harmlessly when nothing is in progress); the server also aborts
            // the transaction when the session ends.
            let _ = tokio::time::timeout(self.settings.connect_timeout, session.abort_transaction()).await;
            let retry = match &error {
                TxError::App(_) => false,
                TxError::Raced => true,
                TxError::Driver(e) => is_transient(e),
            };
            if !retry {
                return Err(match error {
                    TxError::App(e) => e,
                    TxError::Driver(e) => self.map_error(&e, op),
                    TxError::Raced => self.unavailable(format!("{op}: conflicting writes")),
                }
                .with_correlation_id(cid));
            }
            let cap = 1u64 << attempt.min(6);
            let pause = Duration::from_millis(cap + u64::from(getrandom::u32().unwrap_or(0)) % cap);
            if Instant::now() + pause >= deadline {
                return Err(self
                    .unavailable(format!("{op}: still conflicting after {attempt} attempts"))
                    .with_correlation_id(cid));
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// The connector task: prepares the store in the background until it answers.
    async fn run_connector(self: Arc<Self>, stop: CancellationToken) {
        let ready = super::connect_in_background(
            "MongoDB",
            &self.settings.target,
            stop,
            || self.prepare(),
            |message| *self.last_error.lock() = Some(message),
        )
        .await;
        if ready {
            self.prepared.store(true, Ordering::Relaxed);
            *self.last_error.lock() = None;
        }
    }
}

/// The MongoDB persistence component.
pub struct SessionsMongoDbPersistence {
    shared: Arc<Shared>,
    connector: OwnedTask,
}

impl std::fmt::Debug for SessionsMongoDbPersistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsMongoDbPersistence")
            .field("store", &self.shared.settings.target)
            .finish_non_exhaustive()
    }
}

impl SessionsMongoDbPersistence {
    /// Builds the store from its entry: `collection`, `connection.uri` or
    /// `connection.host`/`port`/`database`, `credential.username`/`password`,
    /// `options.max_pool_size`, `options.connect_timeout` (ms, default 2000),
    /// `options.socket_timeout` (ms, default 5000), `options.auth_source`,
    /// `options.max_page_size` (default 100). Nothing connects until [`Component::open`].
    ///
    /// # Errors
    /// `BAD_CONFIG` listing every invalid setting (an unparseable URI included).
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let settings = Settings::from_config(config)?;
        Ok(Self {
            shared: Arc::new(Shared {
                settings,
                store: OnceCell::new(),
                prepared: AtomicBool::new(false),
                reachable: Arc::new(AtomicBool::new(false)),
                last_error: Mutex::new(None),
                legacy_clear_until: Mutex::new(None),
            }),
            connector: OwnedTask::new(),
        })
    }

    async fn collection(&self) -> Result<&Collection<Document>, ApplicationError> {
        self.shared.collection().await
    }

    /// The record under `id` as read, or `None`; a document that is not a session is a 500.
    async fn read(&self, cid: Option<&str>, id: &str) -> Result<Option<Decoded>, ApplicationError> {
        let coll = self.collection().await?;
        let find = coll.find_one(doc! { "_id": id }).max_time(self.shared.settings.call_timeout);
        let found = self.shared.call(cid, "find_one", find).await?;
        found.map(|d| self.shared.decode(cid, &d, true)).transpose()
    }

    /// Runs the [`close_steps`] of `filter` (in `tx` when given); returns how many closed.
    async fn close_matching(
        &self,
        cid: Option<&str>,
        coll: &Collection<Document>,
        filter: &Document,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        let mut closed = 0;
        for (f, u) in close_steps(filter, now) {
            closed += self.shared.call(cid, "update_many", coll.update_many(f, u)).await?.modified_count;
        }
        Ok(closed)
    }

    /// `host:port,…/database.collection` (never credentials): where the sessions live.
    pub fn target(&self) -> &str {
        &self.shared.settings.target
    }

    /// Reads every document of the collection in `_id` order, each decoded as a session or left
    /// as why it is not one. Read-only, for migration tools: it works without [`Component::open`]
    /// (the client connects on first use), creates no index and writes nothing, so it can read a
    /// collection the original service still uses.
    ///
    /// # Errors
    /// Store failures (`STORE_UNAVAILABLE` when the server does not answer in time).
    pub async fn read_documents(&self, cid: Option<&str>) -> Result<DocumentReader<'_>, ApplicationError> {
        let coll = self.collection().await?;
        let cursor = self.shared.call(cid, "find", coll.find(doc! {}).sort(doc! { "_id": 1 }).batch_size(1000)).await?;
        Ok(DocumentReader { shared: &self.shared, cursor, cid: cid.map(str::to_string) })
    }

    /// Drops the whole collection, indexes included, and its guard documents (tests and tooling;
    /// `clear` keeps the indexes).
    ///
    /// # Errors
    /// Store failures.
    pub async fn drop_collection(&self, cid: Option<&str>) -> Result<(), ApplicationError> {
        let store = self.shared.store().await?;
        self.shared.call(cid, "drop", store.leases.drop()).await?;
        self.shared.call(cid, "drop", store.locks.drop()).await?;
        self.shared.call(cid, "drop", store.sessions.drop()).await
    }
}

/// The documents of a collection one by one (see [`SessionsMongoDbPersistence::read_documents`]).
pub struct DocumentReader<'a> {
    shared: &'a Shared,
    cursor: mongodb::Cursor<Document>,
    cid: Option<String>,
}

impl std::fmt::Debug for DocumentReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentReader").field("cid", &self.cid).finish_non_exhaustive()
    }
}

impl DocumentReader<'_> {
    /// The next document: its `_id` as text (a string id as it is, another type as `<type>`) and
    /// the session, or why it is not one; `None` after the last.
    ///
    /// # Errors
    /// Store failures while fetching the next batch.
    pub async fn next(&mut self) -> Result<Option<(String, Result<SessionV1, DecodeError>)>, ApplicationError> {
        let next = self.shared.call(self.cid.as_deref(), "find", self.cursor.try_next()).await?;
        Ok(next.map(|d| {
            let id = match d.get("_id") {
                Some(Bson::String(s)) => s.clone(),
                Some(other) => format!("<{:?}>", other.element_type()),
                None => "<none>".to_string(),
            };
            (id, decode_session(&d, true).map(|decoded| decoded.session))
        }))
    }
}

#[async_trait]
impl Component for SessionsMongoDbPersistence {
    async fn open(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        let shared = self.shared.clone();
        self.connector.start(|stop| shared.run_connector(stop));
        Ok(())
    }

    async fn close(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        self.connector.stop().await;
        if let Some(store) = self.shared.store.get() {
            let shutdown = store.client.clone().shutdown().immediate(true);
            if tokio::time::timeout(self.shared.settings.call_timeout, shutdown).await.is_err() {
                tracing::warn!(store = %self.shared.settings.target, "MongoDB client did not shut down in time.");
            }
        }
        self.shared.prepared.store(false, Ordering::Relaxed);
        Ok(())
    }

    async fn health(&self) -> ComponentHealth {
        let s = &self.shared;
        if !s.prepared.load(Ordering::Relaxed) {
            let why = s.last_error.lock().clone().unwrap_or_else(|| "connecting".to_string());
            ComponentHealth::not_ready(format!("MongoDB {}: {why}", s.settings.target))
        } else if !s.reachable.load(Ordering::Relaxed) {
            ComponentHealth::not_ready(format!("MongoDB {}: no writable server", s.settings.target))
        } else {
            ComponentHealth::ready()
        }
    }
}

#[async_trait]
impl SessionsPersistence for SessionsMongoDbPersistence {
    async fn get_page_by_filter(
        &self,
        cid: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<DataPage<SessionV1>, ApplicationError> {
        let coll = self.collection().await?;
        let query = list_filter(filter);
        let take = i64::try_from(paging.take(self.shared.settings.max_page_size)).unwrap_or(i64::MAX);
        let find = async {
            coll.find(query.clone())
                .sort(doc! { "request_time": -1, "_id": 1 })
                .skip(paging.skip())
                .limit(take)
                .max_time(self.shared.settings.call_timeout)
                .projection(doc! { "user": 0, "data": 0 })
                .await?
                .try_collect::<Vec<Document>>()
                .await
        };
        let docs = self.shared.call(cid, "find", find).await?;
        let total = if paging.total {
            let count = coll.count_documents(query).max_time(self.shared.settings.call_timeout);
            Some(self.shared.call(cid, "count", count).await?)
        } else {
            None
        };
        Ok(DataPage { total, data: self.shared.decode_all(&docs, false) })
    }

    async fn get_one_by_id(&self, cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        Ok(self.read(cid, id).await?.map(|d| d.session))
    }

    async fn create(&self, cid: Option<&str>, session: SessionV1) -> Result<SessionV1, ApplicationError> {
        let coll = self.collection().await?;
        let doc = session_document(&session);
        match tokio::time::timeout(self.shared.settings.call_timeout, coll.insert_one(doc)).await {
            Ok(Ok(_)) => Ok(session),
            Ok(Err(e)) if is_duplicate_key(&e) => Err(session_exists(&session.id).with_correlation_id(cid)),
            Ok(Err(e)) => Err(self.shared.map_error(&e, "insert_one").with_correlation_id(cid)),
            Err(_) => Err(self.shared.unavailable("insert_one: no answer in time").with_correlation_id(cid)),
        }
    }

    async fn update(
        &self,
        cid: Option<&str>,
        id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        let coll = self.collection().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(current) = self.read(cid, id).await? else { return Ok(UpdateOutcome::NotFound) };
            // Tried again only when the record changed between the read and the write and still
            // qualifies; after that many attempts the record as read is the answer.
            if !update.condition.holds(&current.session) || attempt > WRITE_ATTEMPTS {
                return Ok(UpdateOutcome::ConditionFailed(current.session));
            }
            let mut next = current.session.clone();
            update.change.apply(&mut next, update.now, &update.policy);
            let filter = write_filter_for(id, &update.condition, &current);
            let change = change_update(&update.change, &next, current.legacy_version);
            let updated = self
                .shared
                .call(
                    cid,
                    "find_one_and_update",
                    coll.find_one_and_update(filter, change)
                        .return_document(ReturnDocument::After)
                        .max_time(self.shared.settings.call_timeout),
                )
                .await?;
            if let Some(d) = updated {
                return Ok(UpdateOutcome::Updated(self.shared.decode(cid, &d, true)?.session));
            }
        }
    }

    async fn close_expired(
        &self,
        cid: Option<&str>,
        idle_cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        let coll = self.collection().await?;
        let filter = if self.shared.legacy_records_possible(cid, coll, idle_cutoff).await? {
            expired_filter(now, idle_cutoff)
        } else {
            doc! { "active": true, "expire_time": { "$lt": bson_time(now) } }
        };
        // The controller sweeps before every list. Mostly nothing has expired: look first (one
        // read on the expiry index) and write only when there is something to close, instead of
        // an `update_many` with its write locks on every list call.
        let any =
            coll.find_one(filter.clone()).projection(doc! { "_id": 1 }).max_time(self.shared.settings.call_timeout);
        if self.shared.call(cid, "find_one", any).await?.is_none() {
            return Ok(0);
        }
        self.close_matching(cid, coll, &filter, now).await
    }

    async fn delete_by_id(&self, cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        Ok(match self.delete_if(cid, id, &WriteCondition::default()).await? {
            UpdateOutcome::Updated(s) => Some(s),
            UpdateOutcome::NotFound | UpdateOutcome::ConditionFailed(_) => None,
        })
    }

    /// Reads first, so a document that is not a session is answered (500) and left as it is,
    /// then deletes with the guard of what was read (see [`write_filter_for`]).
    async fn delete_if(
        &self,
        cid: Option<&str>,
        id: &str,
        condition: &WriteCondition,
    ) -> Result<UpdateOutcome, ApplicationError> {
        let coll = self.collection().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(current) = self.read(cid, id).await? else { return Ok(UpdateOutcome::NotFound) };
            if !condition.holds(&current.session) || attempt > WRITE_ATTEMPTS {
                return Ok(UpdateOutcome::ConditionFailed(current.session));
            }
            let filter = write_filter_for(id, condition, &current);
            let delete = coll.find_one_and_delete(filter).max_time(self.shared.settings.call_timeout);
            let deleted = self.shared.call(cid, "find_one_and_delete", delete).await?;
            if let Some(d) = deleted {
                return Ok(UpdateOutcome::Updated(self.shared.decode(cid, &d, true)?.session));
            }
        }
    }

    async fn create_limited(
        &self,
        cid: Option<&str>,
        session: SessionV1,
        limit: &SessionLimit,
    ) -> Result<SessionV1, ApplicationError> {
        let store = self.shared.store().await?;
        let new = session_document(&session);
        let (user_id, id) = (session.user_id.clone(), session.id.clone());
        let (sessions, locks, limit, shared) =
            (store.sessions.clone(), store.locks.clone(), *limit, self.shared.clone());
        self.shared
            .transaction(cid, "create_limited", move |tx| {
                let (sessions, locks, new, shared) = (sessions.clone(), locks.clone(), new.clone(), shared.clone());
                let (user_id, id) = (user_id.clone(), id.clone());
                Box::pin(async move {
                    // Every transaction opening a session for this user writes this document
                    // (`$inc` always changes it), so two of them cannot both commit.
                    locks
                        .update_one(doc! { "_id": &user_id }, doc! { "$inc": { "opens": 1_i64 } })
                        .upsert(true)
                        .session(&mut *tx)
                        .await
                        .map_err(|e| if is_duplicate_key(&e) { TxError::Raced } else { e.into() })?;
                    if sessions.find_one(doc! { "_id": &id }).session(&mut *tx).await?.is_some() {
                        return Err(session_exists(&id).into());
                    }
                    let mut cursor = sessions
                        .find(doc! { "user_id": &user_id, "active": true })
                        .projection(doc! { "user": 0, "data": 0 })
                        .session(&mut *tx)
                        .await?;
                    let open: Vec<Document> = cursor.stream(&mut *tx).try_collect().await?;
                    let open = shared.decode_all(&open, false);
                    let to_close = limit_victims(open, &limit).ok_or_else(|| session_limit(&user_id, limit.max))?;
                    if !to_close.is_empty() {
                        let filter = doc! { "_id": { "$in": &to_close }, "active": true };
                        let mut closed = 0;
                        for (f, u) in close_steps(&filter, limit.now) {
                            closed += sessions.update_many(f, u).session(&mut *tx).await?.modified_count;
                        }
                        if closed != to_close.len() as u64 {
                            return Err(TxError::Raced);
                        }
                    }
                    sessions.insert_one(&new).session(&mut *tx).await.map_err(|e| {
                        if is_duplicate_key(&e) {
                            TxError::App(session_exists(&id))
                        } else {
                            e.into()
                        }
                    })?;
                    Ok(())
                })
            })
            .await?;
        Ok(session)
    }

    async fn close_user_sessions(
        &self,
        cid: Option<&str>,
        user_id: &str,
        except_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        let coll = self.collection().await?;
        let mut filter = doc! { "user_id": user_id, "active": true };
        if let Some(except) = except_id {
            filter.insert("_id", doc! { "$ne": except });
        }
        self.close_matching(cid, coll, &filter, now).await
    }

    async fn purge_closed(
        &self,
        cid: Option<&str>,
        closed_before: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, ApplicationError> {
        // A driver limit of 0 means "no limit".
        if limit == 0 {
            return Ok(0);
        }
        let coll = self.collection().await?;
        let find = async {
            coll.find(doc! { "active": false, "close_time": { "$lt": bson_time(closed_before) } })
                .sort(doc! { "close_time": 1, "_id": 1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .projection(doc! { "_id": 1 })
                .await?
                .try_collect::<Vec<Document>>()
                .await
        };
        let found = self.shared.call(cid, "find", find).await?;
        let ids: Vec<&str> = found.iter().filter_map(|d| d.get_str("_id").ok()).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let filter = doc! { "_id": { "$in": ids }, "active": false };
        let result = self.shared.call(cid, "delete_many", coll.delete_many(filter)).await?;
        Ok(result.deleted_count)
    }

    async fn rotate_id(
        &self,
        cid: Option<&str>,
        id: &str,
        new_id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        let store = self.shared.store().await?;
        if self.shared.call(cid, "find_one", store.sessions.find_one(doc! { "_id": new_id })).await?.is_some() {
            return Err(session_exists(new_id).with_correlation_id(cid));
        }
        let (sessions, update, shared) = (store.sessions.clone(), update.clone(), self.shared.clone());
        let (id, new_id, cid_owned) = (id.to_string(), new_id.to_string(), cid.map(str::to_string));
        self.shared
            .transaction(cid, "rotate_id", move |tx| {
                let (sessions, update, shared) = (sessions.clone(), update.clone(), shared.clone());
                let (id, new_id, cid) = (id.clone(), new_id.clone(), cid_owned.clone());
                Box::pin(async move {
                    let Some(current) = sessions.find_one(doc! { "_id": &id }).session(&mut *tx).await? else {
                        return Ok(UpdateOutcome::NotFound);
                    };
                    let current = shared.decode(cid.as_deref(), &current, true)?;
                    if !update.condition.holds(&current.session) {
                        return Ok(UpdateOutcome::ConditionFailed(current.session));
                    }
                    let mut moved = current.session.clone();
                    update.change.apply(&mut moved, update.now, &update.policy);
                    moved.id = new_id.clone();
                    sessions.insert_one(session_document(&moved)).session(&mut *tx).await.map_err(|e| {
                        if is_duplicate_key(&e) {
                            TxError::App(session_exists(&new_id))
                        } else {
                            e.into()
                        }
                    })?;
                    let version = if current.legacy_version {
                        Bson::Document(doc! { "$exists": false })
                    } else {
                        Bson::Int64(current.session.version)
                    };
                    let old = doc! { "_id": &id, "version": version };
                    if sessions.delete_one(old).session(&mut *tx).await?.deleted_count != 1 {
                        return Err(TxError::Raced);
                    }
                    Ok(UpdateOutcome::Updated(moved))
                })
            })
            .await
    }

    async fn scan(
        &self,
        cid: Option<&str>,
        after: Option<(DateTime<Utc>, &str)>,
        limit: u64,
    ) -> Result<Vec<SessionV1>, ApplicationError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let coll = self.collection().await?;
        let query = match after {
            Some((t, id)) => doc! { "$or": [
                { "request_time": { "$lt": bson_time(t) } },
                { "request_time": bson_time(t), "_id": { "$gt": id } },
            ] },
            None => Document::new(),
        };
        let find = async {
            coll.find(query)
                .sort(doc! { "request_time": -1, "_id": 1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .await?
                .try_collect::<Vec<Document>>()
                .await
        };
        let docs = self.shared.call(cid, "find", find).await?;
        Ok(self.shared.decode_all(&docs, true))
    }

    /// One conditional upsert: the lease document is taken when its owner is `owner` or its
    /// deadline is past; when another instance holds it, the upsert's insert collides on `_id`.
    async fn acquire_lease(
        &self,
        cid: Option<&str>,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, ApplicationError> {
        let store = self.shared.store().await?;
        let filter = doc! { "_id": name, "$or": [{ "owner": owner }, { "until": { "$lt": bson_time(now) } }] };
        let update = doc! { "$set": { "owner": owner, "until": bson_time(until) } };
        let take = store.leases.update_one(filter, update).upsert(true);
        match tokio::time::timeout(self.shared.settings.call_timeout, take).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if is_duplicate_key(&e) => Ok(false),
            Ok(Err(e)) => Err(self.shared.map_error(&e, "update_one").with_correlation_id(cid)),
            Err(_) => Err(self.shared.unavailable("update_one: no answer in time").with_correlation_id(cid)),
        }
    }

    async fn clear(&self, cid: Option<&str>) -> Result<(), ApplicationError> {
        let store = self.shared.store().await?;
        self.shared.call(cid, "delete_many", store.sessions.delete_many(doc! {})).await?;
        self.shared.call(cid, "delete_many", store.locks.delete_many(doc! {})).await?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::toolkit::descriptor::Descriptor;
    use crate::toolkit::time::parse_time;
    use serde_json::{json, Value};

    fn entry(v: Value) -> ComponentConfig {
        ComponentConfig::new(Descriptor::new("service-sessions", "persistence", "mongodb", "default", "1.0"), v)
    }

    #[test]
    fn settings_follow_the_contract_keys_and_defaults() {
        let s = Settings::from_config(&entry(json!({}))).unwrap();
        assert_eq!(
            (s.uri.as_str(), s.database.as_str(), s.collection.as_str()),
            ("mongodb://localhost:27017/", "app", "sessions")
        );
        assert_eq!(
            (s.connect_timeout, s.call_timeout, s.max_page_size),
            (Duration::from_millis(2000), Duration::from_millis(7000), 100)
        );
        let s = Settings::from_config(&entry(json!({
            "collection": "s2",
            "connection": {"host": "db1", "port": "27018", "database": "x"},
            "credential": {"username": "u", "password": "p@ss"},
            "options": {"max_pool_size": "7", "connect_timeout": "1000", "max_page_size": 5}
        })))
        .unwrap();
        assert_eq!((s.uri.as_str(), s.target.as_str()), ("mongodb://db1:27018/", "db1:27018/x.s2"));
        assert_eq!((s.max_pool_size, s.connect_timeout, s.max_page_size), (Some(7), Duration::from_millis(1000), 5));
        assert_eq!(s.credential, Some(("u".to_string(), Some("p@ss".to_string()))));
        // The URI wins over host/port, and its database over connection.database.
        let s = Settings::from_config(&entry(json!({
            "connection": {"uri": "mongodb://bob:s3cret@h1:1,h2:2/prod?replicaSet=rs", "host": "ignored", "database": "y"},
        })))
        .unwrap();
        assert_eq!((s.database.as_str(), s.target.as_str()), ("prod", "h1:1,h2:2/prod.sessions"));
        assert_eq!(redact("failed for bob:s3cret@h1", &s.secrets), "failed for ***@h1");
        // Empty template values mean "not set".
        let s =
            Settings::from_config(&entry(json!({"connection": {"uri": "", "host": "", "port": "", "database": ""}})));
        assert_eq!(s.unwrap().uri, "mongodb://localhost:27017/");
    }

    #[test]
    fn settings_report_every_problem_without_secrets() {
        let e = Settings::from_config(&entry(json!({
            "collection": "a$b",
            "connection": {"uri": "nosql://bob:s3cret@h1"},
            "options": {"connect_timeout": 0, "max_page_size": 0}
        })))
        .err()
        .unwrap();
        assert_eq!(e.code, "BAD_CONFIG");
        assert_eq!(e.details["errors"].as_array().unwrap().len(), 4, "{e:?}");
        assert!(!e.message.contains("s3cret"), "{}", e.message);
    }

    #[test]
    fn conditions_and_changes_become_filters_and_updates() {
        let t = parse_time("2026-01-01T00:00:00.000Z").unwrap();
        let t1 = t + chrono::Duration::milliseconds(1000);
        let c = WriteCondition {
            require_active: true,
            alive_at: Some(t1),
            idle_cutoff: Some(t),
            expected_version: Some(3),
        };
        let mut next = SessionV1::open("x".into(), "u".into(), t);
        next.expire_time = Some(t1);
        let current = Decoded { session: next.clone(), legacy_version: false };
        assert_eq!(
            write_filter_for("x", &c, &current),
            doc! { "_id": "x", "active": true, "expire_time": { "$gte": bson_time(t1) }, "version": 3_i64 }
        );
        let mut legacy_time = current.clone();
        legacy_time.session.expire_time = None;
        assert_eq!(
            write_filter_for("x", &c, &legacy_time),
            doc! {
                "_id": "x", "active": true, "expire_time": { "$exists": false },
                "request_time": { "$gte": bson_time(t) }, "version": 3_i64,
            }
        );
        assert_eq!(write_filter_for("x", &WriteCondition::default(), &current), doc! { "_id": "x", "active": true });
        assert_eq!(
            change_update(&SessionChange::StoreData(json!({"a": 1, "$b": [2]})), &next, false),
            doc! {
                "$inc": { "version": 1_i64 },
                "$set": { "data": { "a": 1, "%%24b": [2] }, "request_time": bson_time(t), "expire_time": bson_time(t1) },
            }
        );
        next.expire_time = None;
        assert_eq!(
            change_update(&SessionChange::Close, &next, false),
            doc! { "$inc": { "version": 1_i64 }, "$unset": { "expire_time": "" }, "$set": close_set(bson_time(t)) }
        );
        // A legacy record (no `version` yet) gets its version set, not incremented.
        next.version = 2;
        let mut set = close_set(bson_time(t));
        set.insert("version", 2_i64);
        assert_eq!(
            change_update(&SessionChange::Close, &next, true),
            doc! { "$unset": { "expire_time": "" }, "$set": set }
        );
        let legacy = Decoded { session: next.clone(), legacy_version: true };
        assert_eq!(
            write_filter_for("x", &WriteCondition { expected_version: Some(1), ..Default::default() }, &legacy),
            doc! { "_id": "x", "active": true, "version": { "$exists": false } }
        );
        let [(f1, _), (f2, u2)] = close_steps(&doc! { "active": true }, t);
        assert_eq!(
            (f1, f2),
            (
                doc! { "active": true, "version": { "$exists": true } },
                doc! { "active": true, "version": { "$exists": false } }
            )
        );
        assert_eq!(u2.get_document("$set").unwrap().get_i64("version").unwrap(), 2);
        let f =
            SessionsFilter { user_id: Some("u".into()), active: Some(false), from_time: Some(t), ..Default::default() };
        assert_eq!(list_filter(&f), doc! { "user_id": "u", "active": false, "request_time": { "$gte": bson_time(t) } });
    }

    #[test]
    fn shipped_config_template_enables_mongodb_with_the_mongo_variables() {
        use crate::toolkit::config::{parse_config, ConfigParameters};
        let template = include_str!("../../../config/config.yml");
        let persistences = |params: &[(&str, &str)]| {
            let params: ConfigParameters = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            parse_config(template, &params)
                .unwrap()
                .into_iter()
                .filter(|c| c.descriptor.typ() == Some("persistence"))
                .collect::<Vec<_>>()
        };
        let only = persistences(&[("MONGO_ENABLED", "true")]);
        assert_eq!(only.len(), 1, "MONGO_ENABLED replaces the default memory store");
        assert_eq!(only[0].descriptor.to_string(), "service-sessions:persistence:mongodb:default:1.0");
        let s = Settings::from_config(&only[0]).unwrap();
        assert_eq!((s.uri.as_str(), s.target.as_str()), ("mongodb://localhost:27017/", "localhost:27017/app.sessions"));
        assert_eq!(s.credential, None);

        let c = persistences(&[
            ("MONGO_ENABLED", "1"),
            ("MONGO_SERVICE_HOST", "db"),
            ("MONGO_SERVICE_PORT", "27018"),
            ("MONGO_DB", "sess"),
            ("MONGO_COLLECTION", "s1"),
            ("MONGO_USER", "app"),
            ("MONGO_PASS", r#"p"a#ss: \x"#),
        ]);
        let s = Settings::from_config(&c[0]).unwrap();
        assert_eq!((s.uri.as_str(), s.target.as_str()), ("mongodb://db:27018/", "db:27018/sess.s1"));
        assert_eq!(s.credential, Some(("app".to_string(), Some(r#"p"a#ss: \x"#.to_string()))));

        let c = persistences(&[("MONGO_ENABLED", "1"), ("MONGO_SERVICE_URI", "mongodb://u:p@h1,h2/d?replicaSet=rs")]);
        let s = Settings::from_config(&c[0]).unwrap();
        assert_eq!(
            (s.uri.as_str(), s.target.as_str()),
            ("mongodb://u:p@h1,h2/d?replicaSet=rs", "h1:27017,h2:27017/d.sessions")
        );

        let default = persistences(&[]);
        assert_eq!(default.len(), 1);
        assert_eq!(default[0].descriptor.kind(), Some("memory"));
    }

    #[test]
    fn userinfo_is_found_only_in_the_authority() {
        assert_eq!(uri_userinfo("mongodb://a:b@h/db?x=@"), Some("a:b"));
        assert_eq!(uri_userinfo("mongodb://h/db?x=a@b"), None);
        assert_eq!(uri_userinfo("mongodb+srv://u@cluster.example"), Some("u"));
    }
}
