//! The connection: the client and its collections, built lazily; error mapping; the call
//! deadline; index preparation; transactions with retries; the background connector.

use super::codec::{decode_raw, DecodeError, Decoded};
use super::queries::index_models;
use super::settings::Settings;
use crate::data::version1::SessionV1;
use crate::persistence::network::{store_auth_failed, store_failed, store_unavailable, Readiness};
use crate::persistence::redact;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::log::redact_id;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use mongodb::bson::{doc, Document, RawBsonRef, RawDocument, RawDocumentBuf};
use mongodb::error::{Error as DriverError, ErrorKind, WriteFailure};
use mongodb::event::sdam::SdamEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use mongodb::{Client, ClientSession, Collection};
use parking_lot::Mutex;
use prometheus::IntCounter;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// How long a look that found no open record without `expire_time` holds for the sweep.
pub(super) const LEGACY_RECHECK: Duration = Duration::from_secs(60);

/// Suffix of the collection of per-user guard documents (see the module documentation).
pub(super) const LOCKS_SUFFIX: &str = "_user_locks";

/// Suffix of the collection of leases of background work (see the module documentation).
pub(super) const LEASES_SUFFIX: &str = "_leases";

/// Server error code of a write conflict between transactions.
pub(super) const WRITE_CONFLICT: i32 = 112;

/// Server error codes that mean "the server is going away or not primary now": the call may
/// succeed later, so they are `NoResponse` like network failures.
pub(super) const UNAVAILABLE_CODES: &[i32] = &[
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

/// Why a transaction body stopped.
pub(super) enum TxError {
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
pub(super) const NAMESPACE_EXISTS: i32 = 48;

/// Server error codes of `create_index` when an index with the same keys exists under another
/// name or with other options (IndexOptionsConflict, IndexKeySpecsConflict, IndexAlreadyExists).
pub(super) const INDEX_CONFLICT_CODES: &[i32] = &[85, 86, 68];

/// `store_bad_documents_total{backend="mongodb"}`.
pub(super) fn bad_documents_counter() -> Option<&'static IntCounter> {
    static C: LazyLock<Option<IntCounter>> = LazyLock::new(|| crate::persistence::bad_records_counter("mongodb"));
    C.as_ref()
}

/// The server's error code, if any.
pub(super) fn error_code(e: &DriverError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

/// Whether a transaction failed in a way that running it again may fix.
pub(super) fn is_transient(e: &DriverError) -> bool {
    e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR) || error_code(e) == Some(WRITE_CONFLICT)
}

/// Commits, retrying the commit itself while its result is unknown (the driver makes the retry
/// safe); a transient failure is left to the caller, which runs the whole transaction again.
pub(super) async fn commit(session: &mut ClientSession) -> Result<(), DriverError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match session.commit_transaction().await {
            Err(e) if tries < 3 && e.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT) => {}
            result => return result,
        }
    }
}

pub(super) fn is_duplicate_key(e: &DriverError) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

/// The client and the collections it serves.
pub(super) struct Store {
    pub(super) client: Client,
    pub(super) sessions: Collection<Document>,
    /// The same collection, its documents returned as raw BSON: every read decodes them with
    /// [`decode_raw`] straight into sessions, without a [`Document`] tree in between.
    pub(super) raw: Collection<RawDocumentBuf>,
    /// Per-user guard documents of `create_limited` (`<collection>_user_locks`).
    pub(super) locks: Collection<Document>,
    /// Leases of background work (`<collection>_leases`): `{_id: name, owner, until}`.
    pub(super) leases: Collection<Document>,
}

/// The state shared by the component and its connector task.
pub(super) struct Shared {
    pub(super) settings: Settings,
    /// The client and collections, built on first use (no I/O for `mongodb://` URIs).
    pub(super) store: OnceCell<Store>,
    /// Indexes were ensured (the server answered at least once), or why not yet.
    pub(super) readiness: Readiness,
    /// The driver currently knows a writable server (from its topology events).
    pub(super) reachable: Arc<AtomicBool>,
    /// Calls sent through [`Shared::call`] (see `SessionsMongoDbPersistence::round_trips`).
    pub(super) round_trips: AtomicU64,
    /// Until when the expiry sweep may leave out open records without `expire_time` (written
    /// before the field existed): set when a look found none, for [`LEGACY_RECHECK`].
    pub(super) legacy_clear_until: Mutex<Option<Instant>>,
}

impl Shared {
    pub(super) fn unavailable(&self, message: impl Into<String>) -> ApplicationError {
        store_unavailable(&message.into(), &self.settings.secrets)
    }

    /// Maps a driver error: unreachable/interrupted → `NoResponse` (503), the rest → internal.
    pub(super) fn map_error(&self, e: &DriverError, op: &str) -> ApplicationError {
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
            (_, Some(code)) => store_failed(format!("{op}: server error code {code}")),
            (ErrorKind::Authentication { .. }, _) => store_auth_failed(&format!("{op}: {e}"), &self.settings.secrets),
            _ => store_failed(redact(&format!("{op}: {e}"), &self.settings.secrets)),
        }
    }

    /// Builds the client (parsing a `mongodb+srv` URI resolves DNS, hence the timeout).
    pub(super) async fn connect(&self) -> Result<Store, ApplicationError> {
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
        let raw = sessions.clone_with_type::<RawDocumentBuf>();
        Ok(Store { client, sessions, raw, locks, leases })
    }

    pub(super) async fn store(&self) -> Result<&Store, ApplicationError> {
        self.store.get_or_try_init(|| self.connect()).await
    }

    /// Whether the sweep must also look for open records without `expire_time` (they expire by
    /// the idle cutoff). No index serves that part (`$exists: false`), so on servers that scan
    /// for it every sweep would read the whole collection; instead one look decides, and a look
    /// that finds none holds for [`LEGACY_RECHECK`]. Records this service writes carry
    /// `expire_time` whenever an idle timeout is configured; without one the cutoff is the
    /// earliest time and that part could never match anyway.
    pub(super) async fn legacy_records_possible(
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

    pub(super) async fn collection(&self) -> Result<&Collection<Document>, ApplicationError> {
        self.store().await.map(|s| &s.sessions)
    }

    /// The sessions collection read as raw BSON (see [`Store::raw`]).
    pub(super) async fn raw_collection(&self) -> Result<&Collection<RawDocumentBuf>, ApplicationError> {
        self.store().await.map(|s| &s.raw)
    }

    /// Decodes a document a call asked for by id: a document that is not a session is that
    /// call's 500 (`SESSION_UNREADABLE`), logged and counted.
    pub(super) fn decode(
        &self,
        cid: Option<&str>,
        d: &RawDocument,
        payload: bool,
    ) -> Result<Decoded, ApplicationError> {
        decode_raw(d, payload).map_err(|e| {
            self.bad_document(d, &e);
            e.to_error().with_correlation_id(cid)
        })
    }

    /// Decodes the documents of a list, leaving out (logged and counted) those that are not
    /// sessions: one foreign document never breaks anyone else's page.
    pub(super) fn decode_all(&self, docs: &[RawDocumentBuf], payload: bool) -> Vec<SessionV1> {
        docs.iter()
            .filter_map(|d| match decode_raw(d, payload) {
                Ok(decoded) => Some(decoded.session),
                Err(e) => {
                    self.bad_document(d, &e);
                    None
                }
            })
            .collect()
    }

    /// Logs (with the id hashed) and counts a document that is not a session.
    pub(super) fn bad_document(&self, d: &RawDocument, e: &DecodeError) {
        let id = match d.get("_id") {
            Ok(Some(RawBsonRef::String(s))) => redact_id(s),
            Ok(Some(other)) => format!("<{:?}>", other.element_type()),
            Ok(None) | Err(_) => "<none>".to_string(),
        };
        tracing::warn!(store = %self.settings.target, session = %id, field = e.field, reason = e.reason,
            "A stored document is not a readable session; it is left out of lists and left as it is.");
        if let Some(c) = bad_documents_counter() {
            c.inc();
        }
    }

    /// Runs one driver call under the call deadline, mapping its error.
    pub(super) async fn call<T>(
        &self,
        cid: Option<&str>,
        op: &str,
        f: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T, ApplicationError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.settings.call_timeout, f.into_future()).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_error(&e, op).with_correlation_id(cid)),
            Err(_) => Err(self.unavailable(format!("{op}: no answer in time")).with_correlation_id(cid)),
        }
    }

    /// Ensures the indexes; succeeds once the server has answered.
    pub(super) async fn prepare(&self) -> Result<(), ApplicationError> {
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
    pub(super) async fn transaction<T, F>(
        &self,
        cid: Option<&str>,
        op: &str,
        mut body: F,
    ) -> Result<T, ApplicationError>
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
    pub(super) async fn run_connector(self: Arc<Self>, stop: CancellationToken) {
        self.readiness.connect("MongoDB", &self.settings.target, stop, || self.prepare()).await;
    }
}
