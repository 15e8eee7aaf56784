//! The MongoDB backend (`service-sessions:persistence:mongodb:*:1.0`), on the official `mongodb`
//! driver: how several stateless service instances share one store.
//!
//! **Atomicity.** Every method is one server-side atomic step, so several service instances can
//! share the collection:
//!
//! - `update` is, in the common case, one `find_one_and_update` and nothing else
//!   (`queries::one_step_write`): its filter holds the [`WriteCondition`] as a query and pins
//!   what [`SessionChange::apply`] reads (an open record, no own `ttl`, a `version`, the liveness
//!   branch the policy writes, an `open_time` recent enough for `max_lifetime` not to come first),
//!   so the update — the fields the change touches, `expire_time = now + idle`, `version + 1` —
//!   is the result of `apply` on whatever record matches. When it matches nothing (no such id,
//!   the condition false, or a record the filter does not cover: a legacy one, one with its own
//!   `ttl`), the record is read, the outcome decided with [`WriteCondition::holds`] and
//!   `SessionChange::apply` — the logic the memory backend runs — and written with a
//!   `find_one_and_update` whose filter is `_id`, the condition (with the liveness branch of the
//!   record as read) and the `active` flag as read; its update sets the fields the change
//!   touches, the recomputed `expire_time` and increments `version`. Concurrent writers never
//!   retry against each other (no write is lost: each gets its own version). When that write
//!   matches nothing, the record is read again: gone → `NotFound`, condition now false →
//!   `ConditionFailed` with that record; otherwise (changed in between, still qualifying) the
//!   step is tried again, a bounded number of times.
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

mod answer;
pub mod codec;
mod connection;
mod queries;
mod settings;

use super::{
    limit_victims, read_decide_write, session_exists, session_limit, MustAct, SessionAnswer, SessionLimit,
    SessionUpdate, SessionsPersistence, UpdateOutcome, WriteCondition,
};
use crate::data::version1::{SessionV1, SessionsFilter};
use crate::persistence::network::Readiness;
use crate::toolkit::component::{Component, ComponentHealth, OwnedTask};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use codec::{bson_time, decode_raw, session_document, DecodeError, Decoded};
use connection::{is_duplicate_key, Shared, TxError};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document, RawBsonRef, RawDocumentBuf};
use mongodb::options::ReturnDocument;
use mongodb::Collection;
use parking_lot::Mutex;
use queries::{change_update, close_steps, expired_filter, list_filter, one_step_write, write_filter_for};
use settings::Settings;
pub use settings::{DEFAULT_COLLECTION, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_DATABASE, DEFAULT_SOCKET_TIMEOUT_MS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::OnceCell;

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
                readiness: Readiness::default(),
                reachable: Arc::new(AtomicBool::new(false)),
                round_trips: AtomicU64::new(0),
                legacy_clear_until: Mutex::new(None),
            }),
            connector: OwnedTask::new(),
        })
    }

    async fn collection(&self) -> Result<&Collection<Document>, ApplicationError> {
        self.shared.collection().await
    }

    /// The document under `id` as the driver returns it, or `None`.
    async fn find_raw(&self, cid: Option<&str>, id: &str) -> Result<Option<RawDocumentBuf>, ApplicationError> {
        let coll = self.shared.raw_collection().await?;
        let find = coll.find_one(doc! { "_id": id }).max_time(self.shared.settings.call_timeout);
        self.shared.call(cid, "find_one", find).await
    }

    /// The record under `id` as read, or `None`; a document that is not a session is a 500.
    async fn read(&self, cid: Option<&str>, id: &str) -> Result<Option<Decoded>, ApplicationError> {
        self.find_raw(cid, id).await?.map(|d| self.shared.decode(cid, &d, true)).transpose()
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

    /// How many calls this store has sent to the server so far (each one command, one round
    /// trip; the background index creation and transactions not included): what a test counts to
    /// hold a read to one round trip and an uncontended write to one.
    pub fn round_trips(&self) -> u64 {
        self.shared.round_trips.load(Ordering::Relaxed)
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
        let coll = self.shared.raw_collection().await?;
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
    cursor: mongodb::Cursor<RawDocumentBuf>,
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
                Ok(Some(RawBsonRef::String(s))) => s.to_string(),
                Ok(Some(other)) => format!("<{:?}>", other.element_type()),
                Ok(None) | Err(_) => "<none>".to_string(),
            };
            (id, decode_raw(&d, true).map(|decoded| decoded.session))
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
        self.shared.readiness.reset();
        Ok(())
    }

    async fn health(&self) -> ComponentHealth {
        let s = &self.shared;
        if let Some(not_ready) = s.readiness.not_prepared("MongoDB", &s.settings.target) {
            not_ready
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
        let coll = self.shared.raw_collection().await?;
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
                .try_collect::<Vec<RawDocumentBuf>>()
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

    /// One `find_one` as `get_one_by_id`, the text written straight from the raw document
    /// (`answer`); a session to act on, or a document that path leaves to the codec, is decoded
    /// and judged as by default.
    async fn get_one_json(
        &self,
        cid: Option<&str>,
        id: &str,
        must_act: MustAct<'_>,
    ) -> Result<Option<SessionAnswer>, ApplicationError> {
        let Some(d) = self.find_raw(cid, id).await? else { return Ok(None) };
        if let Some(text) = answer::session_text(&d, must_act) {
            return Ok(Some(SessionAnswer::Text(text)));
        }
        Ok(Some(SessionAnswer::judge(self.shared.decode(cid, &d, true)?.session, must_act)))
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
        update: SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        let coll = self.shared.raw_collection().await?;
        // The common case in one round trip: no read, the condition and the inputs of the new
        // state in the filter. A miss (not found, condition false, or a record the filter does
        // not cover) goes the read-decide-write way below, which tells them apart.
        if let Some((filter, change)) = one_step_write(id, &update) {
            let write = coll
                .find_one_and_update(filter, change)
                .return_document(ReturnDocument::After)
                .max_time(self.shared.settings.call_timeout);
            if let Some(d) = self.shared.call(cid, "find_one_and_update", write).await? {
                return Ok(UpdateOutcome::Updated(self.shared.decode(cid, &d, true)?.session));
            }
        }
        let shared = &self.shared;
        let write = |current: Decoded| {
            let mut next = current.session.clone();
            update.change.apply(&mut next, update.now, &update.policy);
            let filter = write_filter_for(id, &update.condition, &current);
            let change = change_update(
                &update.change,
                next.request_time,
                next.expire_time,
                current.legacy_version.then_some(next.version),
            );
            let write = coll
                .find_one_and_update(filter, change)
                .return_document(ReturnDocument::After)
                .max_time(shared.settings.call_timeout);
            async move {
                let updated = shared.call(cid, "find_one_and_update", write).await?;
                updated.map(|d| Ok(UpdateOutcome::Updated(shared.decode(cid, &d, true)?.session))).transpose()
            }
        };
        read_decide_write(&update.condition, |c: &Decoded| &c.session, || self.read(cid, id), write).await
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

    /// Reads first, so a document that is not a session is answered (500) and left as it is,
    /// then deletes with the guard of what was read (see [`write_filter_for`]).
    async fn delete_if(
        &self,
        cid: Option<&str>,
        id: &str,
        condition: &WriteCondition,
    ) -> Result<UpdateOutcome, ApplicationError> {
        let coll = self.shared.raw_collection().await?;
        let shared = &self.shared;
        let write = |current: Decoded| {
            let delete = coll.find_one_and_delete(write_filter_for(id, condition, &current));
            async move {
                let deleted =
                    shared.call(cid, "find_one_and_delete", delete.max_time(shared.settings.call_timeout)).await?;
                deleted.map(|d| Ok(UpdateOutcome::Updated(shared.decode(cid, &d, true)?.session))).transpose()
            }
        };
        read_decide_write(condition, |c: &Decoded| &c.session, || self.read(cid, id), write).await
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
        let (sessions, raw, locks, limit, shared) =
            (store.sessions.clone(), store.raw.clone(), store.locks.clone(), *limit, self.shared.clone());
        self.shared
            .transaction(cid, "create_limited", move |tx| {
                let (sessions, raw, locks) = (sessions.clone(), raw.clone(), locks.clone());
                let (new, shared, user_id, id) = (new.clone(), shared.clone(), user_id.clone(), id.clone());
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
                    let mut cursor = raw
                        .find(doc! { "user_id": &user_id, "active": true })
                        .projection(doc! { "user": 0, "data": 0 })
                        .session(&mut *tx)
                        .await?;
                    let open: Vec<RawDocumentBuf> = cursor.stream(&mut *tx).try_collect().await?;
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
        let (sessions, raw, update, shared) =
            (store.sessions.clone(), store.raw.clone(), update.clone(), self.shared.clone());
        let (id, new_id, cid_owned) = (id.to_string(), new_id.to_string(), cid.map(str::to_string));
        self.shared
            .transaction(cid, "rotate_id", move |tx| {
                let (sessions, raw, update, shared) = (sessions.clone(), raw.clone(), update.clone(), shared.clone());
                let (id, new_id, cid) = (id.clone(), new_id.clone(), cid_owned.clone());
                Box::pin(async move {
                    let Some(current) = raw.find_one(doc! { "_id": &id }).session(&mut *tx).await? else {
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
        let coll = self.shared.raw_collection().await?;
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
                .try_collect::<Vec<RawDocumentBuf>>()
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
