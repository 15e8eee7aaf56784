//! The Redis backend (`service-sessions:persistence:redis:*:1.0`), on the `redis` crate (tokio,
//! Redis Cluster, rustls): standalone Redis or a Redis Cluster shared by any number of service
//! instances.
//!
//! **Key layout.** Every key starts with `options.key_prefix` (default `sessions`); nothing else
//! in the database is read, listed or written (no `KEYS`, no `SCAN` on any call path; `clear`
//! walks its own indexes). Sessions live in `options.buckets` buckets (default 1 on one server,
//! 16 on a cluster); a user's sessions all live in the bucket `crc32(user_id) % buckets`, and the
//! keys of bucket `n` share the hash tag `{n}`, so they sit in one hash slot:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:{n}:s:<id>` | hash | the session ([`codec::FIELDS`]: times in ms, `user`/`data` as JSON text) |
//! | `<prefix>:{n}:all` | zset | every session, score `-request_time` (so ascending = list order: time descending, then id) |
//! | `<prefix>:{n}:open`, `:closed` | zset | open / closed sessions, same score |
//! | `<prefix>:{n}:u:<user_id>` | zset | the user's sessions, same score |
//! | `<prefix>:{n}:exp` | zset | open sessions with an `expire_time`, score `expire_time` (the sweep) |
//! | `<prefix>:{n}:noexp` | zset | open sessions without one, score `request_time` (the idle cutoff) |
//! | `<prefix>:{n}:purge` | zset | closed sessions, score `close_time` (the purge, oldest first) |
//! | `<prefix>:{n}:drop` | zset | every session with a `PEXPIREAT`, score that time |
//! | `<prefix>:{n}:owner` | hash | id → user_id (to unindex a session Redis dropped) |
//! | `<prefix>:id:{<id>}` | string | the session's bucket (only with more than one bucket) |
//! | `<prefix>:lease:{<name>}` | string | the owner of a lease of background work (the sweep), with `PX` = its deadline |
//!
//! **Atomicity.** Every write is one Lua script ([`scripts`]) on one bucket, so on one slot:
//! the record and all its index entries change together. `update` and `delete_if` read the
//! record, decide with [`WriteCondition::holds`] and compute the new `expire_time` with
//! [`SessionChange::apply`] (it depends only on `open_time`, `ttl`, `active` and `now`), then
//! the script re-checks the condition on the record as it is, applies the change (`HINCRBY
//! version`) and reindexes — so concurrent writers never retry against each other; only when the
//! record changed between read and write in a way that matters (closed, its liveness branch,
//! the expected version) is the step tried again, a bounded number of times. `create_limited`
//! reads the user's open sessions, picks the victims with [`limit_victims`] (the rule every
//! backend shares), and commits with a script that first checks that the user's open sessions
//! are still exactly those at those versions (else the step is retried until the call deadline):
//! an optimistic transaction on the user's slot. `rotate_id` moves the record (same bucket: same
//! user) guarded by the version it read. Sweep, `close_user_sessions` and purge close or delete
//! inside one script per bucket (the sweep and purge in batches).
//!
//! **Expiry the Redis way.** Each session key carries `PEXPIREAT`: `expire_time +
//! options.expire_grace` while open (default grace 7 days: an expired session still reads as
//! closed, and the sweep can close it, until then; `expire_grace: 0` drops it exactly at
//! `expire_time`), `close_time + options.retention` once closed (default 7 days; 0 = no native
//! expiry for closed sessions, the purge deletes them). Reads still apply the contract's
//! read-time expiry through the controller. Index entries of sessions Redis dropped are removed
//! by the next sweep, list or scan in that bucket (the `drop` index says which are due), so
//! lists and totals never show them.
//!
//! **Lists** (`get_sessions`): an `id` filter reads that record; a `user_id` filter reads the
//! user's index within the time window (its sessions are few) and filters `active` there; an
//! `active` filter pages the `open` or `closed` index and the rest the `all` index, by score
//! range (`from_time` inclusive, `to_time` exclusive) with `LIMIT`, `total` by `ZCOUNT`. With
//! more than one bucket the listings that are not per user are a **scatter-gather**: every
//! bucket returns its first `skip + take` items (in parallel, each on its own master), the
//! service merges them (a k-way merge, at most `buckets × (skip + take)` items, and `skip +
//! take` is capped by `options.max_scatter_window`, default 10 000) and sums the totals.
//!
//! **Availability.** `open` does not wait for the server; each call is bounded by
//! `options.connect_timeout + options.socket_timeout` (defaults 2 s + 5 s); an unreachable server
//! (refused, reset, timed out, cluster down or failing over) is `NoResponse` /
//! `STORE_UNAVAILABLE` (HTTP 503), and the client reconnects by itself. Readiness
//! ([`Component::health`]) is a `PING` answered within the connect timeout. With
//! `options.wait_replicas: n` every write is followed by `WAIT n options.wait_timeout` on the
//! session's master, and a write fewer replicas confirmed in time is answered 503
//! `STORE_NOT_REPLICATED` (it is applied on the master, but not acknowledged as done); see the
//! README for what that guarantees.
//!
//! **Bad data.** A record that is not a readable session (a key of the wrong type, a missing or
//! malformed field) is logged with its id hashed, counted in `store_bad_documents_total`, left out
//! of lists and scans, and answered 500 `SESSION_UNREADABLE` by a call on that very id — which
//! never rewrites it. **Secrets** (the URI's userinfo, the password) stay out of `Debug`, logs
//! and errors.

mod buckets;
pub mod codec;
mod connection;
mod replies;
mod scripts;
mod settings;

use super::{
    limit_victims, listing_order, read_decide_write, session_exists, session_limit, SessionChange, SessionLimit,
    SessionUpdate, SessionsPersistence, UpdateOutcome, WriteCondition,
};
use crate::data::version1::errors::SESSION_EXISTS;
use crate::data::version1::{SessionV1, SessionsFilter};
use crate::persistence::network::Readiness;
use crate::toolkit::component::{Component, ComponentHealth, OwnedTask};
use crate::toolkit::config::ComponentConfig;
use crate::toolkit::data::{DataPage, PagingParams};
use crate::toolkit::errors::ApplicationError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use codec::{int, ms, record_args, text};
use connection::{as_array, Shared};
use replies::{condition_args, opt_arg, score_range, step, Step};
use scripts::Scripts;
use settings::Settings;
pub use settings::{
    DEFAULT_CLUSTER_BUCKETS, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_KEY_PREFIX, DEFAULT_MAX_SCATTER_WINDOW,
    DEFAULT_RETENTION_MS, DEFAULT_SOCKET_TIMEOUT_MS,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Most sessions one sweep script closes.
const SWEEP_BATCH: u64 = 1000;

/// The Redis persistence component.
pub struct SessionsRedisPersistence {
    shared: Arc<Shared>,
    connector: OwnedTask,
}

impl std::fmt::Debug for SessionsRedisPersistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsRedisPersistence").field("store", &self.shared.settings.target).finish_non_exhaustive()
    }
}

impl SessionsRedisPersistence {
    /// Builds the store from its entry: `connection.uri` (`redis://` / `rediss://`, default
    /// `redis://127.0.0.1:6379`), `connection.nodes` (with `options.cluster: true`: the seed
    /// nodes), `credential.username`/`password`, `options.key_prefix` (default `sessions`),
    /// `options.connect_timeout` (ms, default 2000), `options.socket_timeout` (ms, default 5000),
    /// `options.max_page_size` (default 100), `options.retention` and `options.expire_grace` (ms,
    /// default 7 days each), `options.buckets` (default 1, or 16 on a cluster),
    /// `options.max_scatter_window` (default 10 000), `options.wait_replicas` (default 0) and
    /// `options.wait_timeout` (ms, default 1000). Nothing connects until [`Component::open`].
    ///
    /// # Errors
    /// `BAD_CONFIG` listing every invalid setting.
    pub fn from_config(config: &ComponentConfig) -> Result<Self, ApplicationError> {
        let settings = Settings::from_config(config)?;
        Ok(Self {
            shared: Arc::new(Shared {
                settings,
                scripts: Scripts::default(),
                conn: OnceCell::new(),
                readiness: Readiness::default(),
            }),
            connector: OwnedTask::new(),
        })
    }
}

#[async_trait]
impl Component for SessionsRedisPersistence {
    async fn open(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        let shared = self.shared.clone();
        self.connector.start(|stop| shared.run_connector(stop));
        Ok(())
    }

    async fn close(&self, _cid: Option<&str>) -> Result<(), ApplicationError> {
        self.connector.stop().await;
        self.shared.readiness.reset();
        Ok(())
    }

    async fn health(&self) -> ComponentHealth {
        let s = &self.shared;
        if let Some(not_ready) = s.readiness.not_prepared("Redis", &s.settings.target) {
            return not_ready;
        }
        match s.ping().await {
            Ok(()) => ComponentHealth::ready(),
            Err(e) => ComponentHealth::not_ready(format!("Redis {}: {}", s.settings.target, e.message)),
        }
    }
}

#[async_trait]
impl SessionsPersistence for SessionsRedisPersistence {
    async fn get_page_by_filter(
        &self,
        cid: Option<&str>,
        filter: &SessionsFilter,
        paging: &PagingParams,
    ) -> Result<DataPage<SessionV1>, ApplicationError> {
        let s = self.settings();
        let skip = paging.skip();
        let take = paging.take(s.max_page_size);
        if let Some(id) = &filter.id {
            let found = self.read(cid, id).await?.map(|(_, x)| x).filter(|x| {
                filter.user_id.as_ref().is_none_or(|u| *u == x.user_id)
                    && filter.active.is_none_or(|a| a == x.active)
                    && filter.from_time.is_none_or(|t| x.request_time >= t)
                    && filter.to_time.is_none_or(|t| x.request_time < t)
            });
            let total = paging.total.then_some(u64::from(found.is_some()));
            let data = found
                .into_iter()
                .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                .take(1)
                .map(|x| x.without_payload());
            return Ok(DataPage { total, data: data.collect() });
        }
        let range = score_range(filter.from_time, filter.to_time);
        if let Some(user) = &filter.user_id {
            let n = s.bucket_of(user);
            let (total, data) =
                self.list_bucket(cid, n, "user", user, &range, skip, take, paging.total, filter.active).await?;
            return Ok(DataPage { total, data });
        }
        let mode = match filter.active {
            Some(true) => "open",
            Some(false) => "closed",
            None => "all",
        };
        if !self.multi() {
            let (total, data) = self.list_bucket(cid, 0, mode, "", &range, skip, take, paging.total, None).await?;
            return Ok(DataPage { total, data });
        }
        // Scatter-gather: each bucket's first skip + take, merged.
        let window = skip.saturating_add(take);
        if window > s.max_scatter_window {
            return Err(ApplicationError::bad_request(
                "PAGING_TOO_DEEP",
                "skip + take is beyond what a listing across the cluster serves",
            )
            .with_details("max_scatter_window", s.max_scatter_window)
            .with_correlation_id(cid));
        }
        let calls = self.buckets().map(|n| self.list_bucket(cid, n, mode, "", &range, 0, window, paging.total, None));
        let results = futures::future::try_join_all(calls).await?;
        let mut total = paging.total.then_some(0u64);
        let mut all = Vec::new();
        for (t, items) in results {
            if let (Some(sum), Some(t)) = (total.as_mut(), t) {
                *sum += t;
            }
            all.extend(items);
        }
        all.sort_by(listing_order);
        let data = all
            .into_iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(usize::try_from(take).unwrap_or(usize::MAX))
            .collect();
        Ok(DataPage { total, data })
    }

    async fn get_one_by_id(&self, cid: Option<&str>, id: &str) -> Result<Option<SessionV1>, ApplicationError> {
        Ok(self.read(cid, id).await?.map(|(_, s)| s))
    }

    async fn create(&self, cid: Option<&str>, session: SessionV1) -> Result<SessionV1, ApplicationError> {
        let s = self.settings();
        let n = s.bucket_of(&session.user_id);
        if !self.claim(cid, &session.id, n).await? {
            return Err(session_exists(&session.id).with_correlation_id(cid));
        }
        let sh = &self.shared;
        let mut inv = sh.scripts.create.prepare_invoke();
        inv.arg(&session.id).arg(opt_arg(s.drop_time(&session)));
        for a in record_args(&session) {
            inv.arg(a);
        }
        let v = sh.eval(cid, "create", n, &mut inv).await?;
        if int(&v) != Some(1) {
            return Err(session_exists(&session.id).with_correlation_id(cid));
        }
        sh.wait_replicas(cid, n).await?;
        Ok(session)
    }

    async fn update(
        &self,
        cid: Option<&str>,
        id: &str,
        update: SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        let sh = &self.shared;
        let write = |(n, current): (u32, SessionV1)| {
            let mut next = current.clone();
            update.change.apply(&mut next, update.now, &update.policy);
            let (kind, payload) = match &update.change {
                SessionChange::StoreData(v) => ("data", v.to_bytes()),
                SessionChange::UpdateUser(v) => ("user", v.to_bytes()),
                SessionChange::Touch => ("touch", Vec::new()),
                SessionChange::Close => ("close", Vec::new()),
            };
            let mut inv = sh.scripts.update.prepare_invoke();
            inv.arg(id)
                .arg(kind)
                .arg(payload)
                .arg(ms(update.now))
                .arg(opt_arg(next.expire_time.map(ms)))
                .arg(opt_arg(self.settings().drop_time(&next)));
            for a in condition_args(&update.condition, &current) {
                inv.arg(a);
            }
            async move {
                match step(sh.eval(cid, "update", n, &mut inv).await?) {
                    Step::Done(fields) => {
                        let s = sh.decode_one(cid, id, &fields, true)?;
                        sh.wait_replicas(cid, n).await?;
                        Ok(Some(UpdateOutcome::Updated(s)))
                    }
                    Step::NotFound => Ok(Some(UpdateOutcome::NotFound)),
                    Step::Changed => Ok(None),
                    Step::Unreadable | Step::Taken => Err(sh.unreadable(cid, id)),
                }
            }
        };
        read_decide_write(&update.condition, |(_, c): &(u32, SessionV1)| c, || self.read(cid, id), write).await
    }

    async fn close_expired(
        &self,
        cid: Option<&str>,
        idle_cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        let s = self.settings();
        let sh = &self.shared;
        let cutoff = if idle_cutoff == DateTime::<Utc>::MIN_UTC { String::new() } else { ms(idle_cutoff).to_string() };
        let sweep = |n: u32| {
            let cutoff = cutoff.clone();
            async move {
                let mut closed = 0u64;
                loop {
                    let mut inv = sh.scripts.sweep.prepare_invoke();
                    inv.arg(ms(now)).arg(&cutoff).arg(opt_arg(s.close_drop(now))).arg(SWEEP_BATCH);
                    let v = sh.eval(cid, "sweep", n, &mut inv).await?;
                    let parts = as_array(&v);
                    closed += parts.first().and_then(int).and_then(|c| u64::try_from(c).ok()).unwrap_or(0);
                    let gone: Vec<String> =
                        parts.get(2).map(|g| as_array(g).iter().filter_map(text).collect()).unwrap_or_default();
                    self.drop_pointers(cid, &gone).await;
                    if parts.get(1).and_then(int) != Some(1) {
                        break;
                    }
                }
                if closed > 0 {
                    sh.wait_replicas(cid, n).await?;
                }
                Ok::<u64, ApplicationError>(closed)
            }
        };
        let counts = futures::future::try_join_all(self.buckets().map(sweep)).await?;
        Ok(counts.into_iter().sum())
    }

    async fn delete_if(
        &self,
        cid: Option<&str>,
        id: &str,
        condition: &WriteCondition,
    ) -> Result<UpdateOutcome, ApplicationError> {
        let sh = &self.shared;
        let write = |(n, current): (u32, SessionV1)| {
            let mut inv = sh.scripts.delete.prepare_invoke();
            inv.arg(id);
            for a in condition_args(condition, &current) {
                inv.arg(a);
            }
            async move {
                match step(sh.eval(cid, "delete", n, &mut inv).await?) {
                    Step::Done(fields) => {
                        self.drop_pointers(cid, &[id.to_string()]).await;
                        sh.wait_replicas(cid, n).await?;
                        Ok(Some(UpdateOutcome::Updated(sh.decode_one(cid, id, &fields, true)?)))
                    }
                    Step::NotFound => Ok(Some(UpdateOutcome::NotFound)),
                    Step::Changed => Ok(None),
                    Step::Unreadable | Step::Taken => Err(sh.unreadable(cid, id)),
                }
            }
        };
        read_decide_write(condition, |(_, c): &(u32, SessionV1)| c, || self.read(cid, id), write).await
    }

    async fn create_limited(
        &self,
        cid: Option<&str>,
        session: SessionV1,
        limit: &SessionLimit,
    ) -> Result<SessionV1, ApplicationError> {
        let s = self.settings();
        let sh = &self.shared;
        let n = s.bucket_of(&session.user_id);
        if !self.claim(cid, &session.id, n).await? {
            return Err(session_exists(&session.id).with_correlation_id(cid));
        }
        let deadline = Instant::now() + s.call_timeout;
        let mut attempt: u32 = 0;
        let result = loop {
            attempt = attempt.saturating_add(1);
            let v = sh.eval(cid, "user_open", n, &mut sh.scripts.user_open.arg(&session.user_id)).await?;
            let open = sh.decode_all(as_array(&v), false);
            let Some(victims) = limit_victims(open.clone(), limit) else {
                break Err(session_limit(&session.user_id, limit.max).with_correlation_id(cid));
            };
            match self.commit_limited(cid, n, &session, &open, &victims, limit.now).await? {
                Some(true) => break Ok(()),
                Some(false) => break Err(session_exists(&session.id).with_correlation_id(cid)),
                None => {}
            }
            // Another open or close for this user came first: decide again, after a short pause.
            let cap = 1u64 << attempt.min(5);
            let pause = Duration::from_millis(cap / 2 + u64::from(getrandom::u32().unwrap_or(0)) % cap);
            if Instant::now() + pause >= deadline {
                break Err(sh
                    .unavailable(format!("create_limited: still conflicting after {attempt} attempts"))
                    .with_correlation_id(cid));
            }
            tokio::time::sleep(pause).await;
        };
        match &result {
            Ok(()) => sh.wait_replicas(cid, n).await?,
            Err(e) if e.code != SESSION_EXISTS => self.drop_pointers(cid, std::slice::from_ref(&session.id)).await,
            Err(_) => {}
        }
        result.map(|()| session)
    }

    async fn close_user_sessions(
        &self,
        cid: Option<&str>,
        user_id: &str,
        except_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64, ApplicationError> {
        let s = self.settings();
        let sh = &self.shared;
        let n = s.bucket_of(user_id);
        let mut inv = sh.scripts.close_user.prepare_invoke();
        inv.arg(user_id)
            .arg(except_id.unwrap_or(""))
            .arg(u8::from(except_id.is_some()))
            .arg(ms(now))
            .arg(opt_arg(s.close_drop(now)));
        let v = sh.eval(cid, "close_user", n, &mut inv).await?;
        let closed = int(&v).and_then(|c| u64::try_from(c).ok()).unwrap_or(0);
        if closed > 0 {
            sh.wait_replicas(cid, n).await?;
        }
        Ok(closed)
    }

    async fn purge_closed(
        &self,
        cid: Option<&str>,
        closed_before: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, ApplicationError> {
        if limit == 0 {
            return Ok(0);
        }
        let sh = &self.shared;
        let before = ms(closed_before);
        let find = |n: u32| async move {
            let mut inv = sh.scripts.purge_find.prepare_invoke();
            inv.arg(before).arg(limit);
            let v = sh.eval(cid, "purge_find", n, &mut inv).await?;
            let pairs = as_array(&v);
            let found: Vec<(i64, String, u32)> = pairs
                .chunks(2)
                .filter_map(|p| {
                    let id = text(p.first()?)?;
                    let score = text(p.get(1)?)?.parse::<f64>().ok()?;
                    #[allow(clippy::cast_possible_truncation)]
                    Some((score as i64, id, n))
                })
                .collect();
            Ok::<_, ApplicationError>(found)
        };
        let mut candidates: Vec<(i64, String, u32)> =
            futures::future::try_join_all(self.buckets().map(find)).await?.into_iter().flatten().collect();
        candidates.sort();
        candidates.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut deleted = 0u64;
        for n in self.buckets() {
            let ids: Vec<&String> = candidates.iter().filter(|c| c.2 == n).map(|c| &c.1).collect();
            if ids.is_empty() {
                continue;
            }
            let mut inv = sh.scripts.purge_delete.prepare_invoke();
            inv.arg(before);
            for id in &ids {
                inv.arg(id.as_str());
            }
            let v = sh.eval(cid, "purge_delete", n, &mut inv).await?;
            let gone: Vec<String> = as_array(&v).iter().filter_map(text).collect();
            deleted += gone.len() as u64;
            self.drop_pointers(cid, &gone).await;
        }
        Ok(deleted)
    }

    async fn rotate_id(
        &self,
        cid: Option<&str>,
        id: &str,
        new_id: &str,
        update: &SessionUpdate,
    ) -> Result<UpdateOutcome, ApplicationError> {
        let sh = &self.shared;
        let write = |(n, current): (u32, SessionV1)| async move {
            let mut moved = current.clone();
            update.change.apply(&mut moved, update.now, &update.policy);
            moved.id = new_id.to_string();
            if !self.claim(cid, new_id, n).await? {
                return Err(session_exists(new_id).with_correlation_id(cid));
            }
            let mut inv = sh.scripts.rotate.prepare_invoke();
            inv.arg(id)
                .arg(new_id)
                .arg(current.version)
                .arg(if current.active { "1" } else { "0" })
                .arg(opt_arg(self.settings().drop_time(&moved)));
            for a in record_args(&moved) {
                inv.arg(a);
            }
            let outcome = step(sh.eval(cid, "rotate", n, &mut inv).await?);
            if !matches!(outcome, Step::Done(_)) && !matches!(outcome, Step::Taken) {
                self.drop_pointers(cid, &[new_id.to_string()]).await;
            }
            match outcome {
                Step::Done(_) => {
                    self.drop_pointers(cid, &[id.to_string()]).await;
                    sh.wait_replicas(cid, n).await?;
                    Ok(Some(UpdateOutcome::Updated(moved)))
                }
                Step::NotFound => Ok(Some(UpdateOutcome::NotFound)),
                Step::Taken => Err(session_exists(new_id).with_correlation_id(cid)),
                Step::Changed => Ok(None),
                Step::Unreadable => Err(sh.unreadable(cid, id)),
            }
        };
        read_decide_write(&update.condition, |(_, c): &(u32, SessionV1)| c, || self.read(cid, id), write).await
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
        let sh = &self.shared;
        let (score, after_id) =
            after.map_or((String::new(), String::new()), |(t, id)| ((-ms(t)).to_string(), id.to_string()));
        let one = |n: u32| {
            let (score, after_id) = (score.clone(), after_id.clone());
            async move {
                let mut inv = sh.scripts.scan.prepare_invoke();
                inv.arg(score).arg(after_id).arg(limit);
                let v = sh.eval(cid, "scan", n, &mut inv).await?;
                Ok::<_, ApplicationError>(sh.decode_all(as_array(&v), true))
            }
        };
        let mut all: Vec<SessionV1> =
            futures::future::try_join_all(self.buckets().map(one)).await?.into_iter().flatten().collect();
        all.sort_by(listing_order);
        all.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(all)
    }

    /// One script on `<prefix>:lease:{<name>}`: taken (with `PX` = `until - now`, so Redis's
    /// own clock ends it) when absent or already `owner`'s; otherwise another instance holds it.
    async fn acquire_lease(
        &self,
        cid: Option<&str>,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, ApplicationError> {
        let sh = &self.shared;
        let hold = (until - now).num_milliseconds().max(1);
        let mut conn = sh.conn(cid).await?;
        let mut inv = sh.scripts.lease.prepare_invoke();
        inv.key(format!("{}:lease:{{{name}}}", sh.settings.prefix)).arg(owner).arg(hold);
        match tokio::time::timeout(sh.settings.call_timeout, inv.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(taken)) => Ok(taken == 1),
            Ok(Err(e)) => Err(sh.map_error(&e, "lease").with_correlation_id(cid)),
            Err(_) => Err(sh.unavailable("lease: no answer in time").with_correlation_id(cid)),
        }
    }

    async fn clear(&self, cid: Option<&str>) -> Result<(), ApplicationError> {
        let sh = &self.shared;
        for n in self.buckets() {
            let v = sh.eval(cid, "clear", n, &mut sh.scripts.clear.prepare_invoke()).await?;
            let ids: Vec<String> = as_array(&v).iter().filter_map(text).collect();
            self.drop_pointers(cid, &ids).await;
        }
        Ok(())
    }
}
