//! Model-based test: random command sequences run against the real controller on the memory
//! backend and against a plain reference model of the contract; every observable result must
//! agree. `run_sequence` takes any persistence, so other backends run the same sequences.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};
use service_sessions::data::version1::OpenSessionRequest;
use service_sessions::data::version1::{SessionV1, SessionsFilter};
use service_sessions::logic::{ControllerOptions, SessionsController};
use service_sessions::persistence::memory::SessionsMemoryPersistence;
use service_sessions::persistence::{LimitPolicy, SessionsPersistence};
use service_sessions::toolkit::data::PagingParams;
use service_sessions::toolkit::time::{parse_time, ManualClock};
use std::collections::BTreeSet;
use std::sync::Arc;

const IDLE: i64 = 3_600_000;
const LIFETIME: i64 = 7_200_000;
const LIMIT: usize = 3;

/// One step of a sequence. Sessions are named by the order they were opened (a handle).
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Open { user: u8, ttl: Option<i64> },
    Store { s: usize, v: u8, stale: bool },
    UpdateUser { s: usize, v: u8 },
    Touch { s: usize },
    Rotate { s: usize },
    Close { s: usize },
    Delete { s: usize },
    Get { s: usize },
    Validate { s: usize },
    CloseUser { user: u8, except: Option<usize> },
    CloseExpired,
    List { user: Option<u8>, active: Option<bool> },
    Advance { ms: i64 },
}

/// What a step showed, with ids replaced by handles.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Obs {
    Nothing,
    Error(String),
    Session {
        handle: usize,
        active: bool,
        version: i64,
        data: Value,
        user: Value,
        request_ms: i64,
        expire_ms: Option<i64>,
        close_ms: Option<i64>,
    },
    Count(u64),
    Handles(BTreeSet<usize>),
    Validity(bool, Option<i64>),
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let s = 0usize..6;
    prop_oneof![
        3 => (0u8..2, prop::option::weighted(0.3, prop::sample::select(vec![1000i64, 60_000, 10_000_000]))).prop_map(|(user, ttl)| Op::Open { user, ttl }),
        3 => (s.clone(), 0u8..4, prop::bool::weighted(0.2)).prop_map(|(s, v, stale)| Op::Store { s, v, stale }),
        1 => (s.clone(), 0u8..4).prop_map(|(s, v)| Op::UpdateUser { s, v }),
        2 => s.clone().prop_map(|s| Op::Touch { s }),
        1 => s.clone().prop_map(|s| Op::Rotate { s }),
        1 => s.clone().prop_map(|s| Op::Close { s }),
        1 => s.clone().prop_map(|s| Op::Delete { s }),
        2 => s.clone().prop_map(|s| Op::Get { s }),
        1 => s.clone().prop_map(|s| Op::Validate { s }),
        1 => (0u8..2, prop::option::of(s)).prop_map(|(user, except)| Op::CloseUser { user, except }),
        1 => Just(Op::CloseExpired),
        1 => (prop::option::of(0u8..2), prop::option::of(any::<bool>())).prop_map(|(user, active)| Op::List { user, active }),
        3 => prop::sample::select(vec![1i64, 999, 1000, 59_999, 60_000, 3_599_999, 3_600_000, 3_600_001]).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn t0() -> DateTime<Utc> {
    parse_time("2026-01-01T00:00:00Z").unwrap()
}

fn ms(t: DateTime<Utc>) -> i64 {
    (t - t0()).num_milliseconds()
}

// ---------------------------------------------------------------- the reference model

#[derive(Debug, Clone)]
struct M {
    user: u8,
    active: bool,
    deleted: bool,
    open: i64,
    request: i64,
    close: Option<i64>,
    ttl: Option<i64>,
    version: i64,
    data: Value,
    user_val: Value,
}

impl M {
    fn expire(&self) -> Option<i64> {
        self.active.then(|| (self.request + self.ttl.unwrap_or(IDLE)).min(self.open + LIFETIME))
    }
    fn alive(&self, now: i64) -> bool {
        self.active && self.expire().is_some_and(|e| e >= now)
    }
    fn change(&mut self, now: i64) {
        self.request = now;
        self.version += 1;
    }
    fn close_at(&mut self, now: i64) {
        self.change(now);
        self.active = false;
        self.close = Some(now);
        self.data = Value::Null;
        self.user_val = Value::Null;
    }
    fn obs(&self, handle: usize) -> Obs {
        Obs::Session {
            handle,
            active: self.active,
            version: self.version,
            data: self.data.clone(),
            user: self.user_val.clone(),
            request_ms: self.request,
            expire_ms: self.expire(),
            close_ms: self.close,
        }
    }
}

#[derive(Debug, Default)]
struct Model {
    now: i64,
    sessions: Vec<M>,
}

impl Model {
    fn live(&mut self, s: usize) -> Option<&mut M> {
        self.sessions.get_mut(s).filter(|m| !m.deleted)
    }

    fn close_expired(&mut self) -> u64 {
        let now = self.now;
        let mut n = 0;
        for m in self.sessions.iter_mut().filter(|m| !m.deleted && m.active && !m.alive(now)) {
            m.close_at(now);
            n += 1;
        }
        n
    }

    /// A guarded write: closed → SESSION_CLOSED; expired → closed now, SESSION_CLOSED.
    fn write(&mut self, s: usize, stale: bool, apply: impl FnOnce(&mut M)) -> Obs {
        let now = self.now;
        let Some(m) = self.live(s) else { return Obs::Nothing };
        if !m.active {
            return Obs::Error("SESSION_CLOSED".into());
        }
        if !m.alive(now) {
            m.close_at(now);
            return Obs::Error("SESSION_CLOSED".into());
        }
        if stale {
            return Obs::Error("SESSION_VERSION_CONFLICT".into());
        }
        m.change(now);
        apply(m);
        m.obs(s)
    }

    fn step(&mut self, op: &Op) -> Obs {
        let now = self.now;
        match op {
            Op::Open { user, ttl } => {
                let mine: Vec<usize> = (0..self.sessions.len())
                    .filter(|i| {
                        !self.sessions[*i].deleted && self.sessions[*i].user == *user && self.sessions[*i].active
                    })
                    .collect();
                let (alive, expired): (Vec<usize>, Vec<usize>) =
                    mine.iter().partition(|i| self.sessions[**i].alive(now));
                for i in expired {
                    self.sessions[i].close_at(now);
                }
                let alive = alive.len();
                if alive >= LIMIT {
                    return Obs::Error("SESSION_LIMIT".into());
                }
                self.sessions.push(M {
                    user: *user,
                    active: true,
                    deleted: false,
                    open: now,
                    request: now,
                    close: None,
                    ttl: *ttl,
                    version: 1,
                    data: Value::Null,
                    user_val: Value::Null,
                });
                self.sessions[self.sessions.len() - 1].obs(self.sessions.len() - 1)
            }
            Op::Store { s, v, stale } => self.write(*s, *stale, |m| m.data = json!(v)),
            Op::UpdateUser { s, v } => self.write(*s, false, |m| m.user_val = json!({"u": v})),
            Op::Touch { s } | Op::Rotate { s } => self.write(*s, false, |_| {}),
            Op::Close { s } => match self.live(*s) {
                None => Obs::Nothing,
                Some(m) => {
                    if m.active {
                        m.close_at(now);
                    }
                    m.obs(*s)
                }
            },
            Op::Delete { s } => match self.live(*s) {
                None => Obs::Nothing,
                Some(m) => {
                    m.deleted = true;
                    m.obs(*s)
                }
            },
            Op::Get { s } => match self.live(*s) {
                None => Obs::Nothing,
                Some(m) => {
                    if m.active && !m.alive(now) {
                        m.close_at(now);
                    }
                    m.obs(*s)
                }
            },
            Op::Validate { s } => match self.live(*s) {
                Some(m) if m.alive(now) => Obs::Validity(true, m.expire().map(|e| e - now)),
                _ => Obs::Validity(false, None),
            },
            Op::CloseUser { user, except } => {
                let mut n = 0;
                for (i, m) in self.sessions.iter_mut().enumerate() {
                    if !m.deleted && m.active && m.user == *user && Some(i) != *except {
                        m.close_at(now);
                        n += 1;
                    }
                }
                Obs::Count(n)
            }
            Op::CloseExpired => Obs::Count(self.close_expired()),
            Op::List { user, active } => {
                self.close_expired();
                Obs::Handles(
                    (0..self.sessions.len())
                        .filter(|i| {
                            let m = &self.sessions[*i];
                            !m.deleted && user.is_none_or(|u| u == m.user) && active.is_none_or(|a| a == m.active)
                        })
                        .collect(),
                )
            }
            Op::Advance { ms } => {
                self.now += ms;
                Obs::Nothing
            }
        }
    }
}

// ---------------------------------------------------------------- the real service

/// Runs a sequence against a controller on `store`; returns what every step showed.
pub(crate) async fn run_sequence(store: Arc<dyn SessionsPersistence>, ops: &[Op]) -> Vec<Obs> {
    let clock = Arc::new(ManualClock::new(t0()));
    let options = ControllerOptions {
        expire_timeout: IDLE as u64,
        max_lifetime: LIFETIME as u64,
        cleanup_interval: 0,
        max_sessions_per_user: LIMIT as u64,
        limit_policy: LimitPolicy::Deny,
        ..Default::default()
    };
    let c = SessionsController::with(options, store, clock.clone());
    let mut ids: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let handle_of = |ids: &Vec<String>, id: &str| ids.iter().position(|x| x == id);
    for op in ops {
        let id = |s: &usize| ids.get(*s).cloned().unwrap_or_else(|| "ffffffffffffffffffffffffffffffff".to_string());
        let session =
            |ids: &Vec<String>, r: Result<Option<SessionV1>, service_sessions::toolkit::errors::ApplicationError>| {
                match r {
                    Ok(Some(s)) => observe(handle_of(ids, &s.id).unwrap_or(usize::MAX), &s),
                    Ok(None) => Obs::Nothing,
                    Err(e) => Obs::Error(e.code),
                }
            };
        let obs = match op {
            Op::Open { user, ttl } => {
                let r = c
                    .open_session(
                        None,
                        OpenSessionRequest { user_id: format!("u{user}"), ttl: *ttl, ..Default::default() },
                    )
                    .await;
                match r {
                    Ok(s) => {
                        ids.push(s.id.clone());
                        observe(ids.len() - 1, &s)
                    }
                    Err(e) => Obs::Error(e.code),
                }
            }
            Op::Store { s, v, stale } => {
                let version = if *stale { Some(1_000_000) } else { None };
                let r = c.store_session_data(None, &id(s), json!(v), version).await;
                session(&ids, r)
            }
            Op::UpdateUser { s, v } => session(&ids, c.update_session_user(None, &id(s), json!({"u": v}), None).await),
            Op::Touch { s } => session(&ids, c.touch_session(None, &id(s), None).await),
            Op::Rotate { s } => {
                let r = c.rotate_session_id(None, &id(s), None).await;
                if let Ok(Some(moved)) = &r {
                    ids[*s] = moved.id.clone();
                }
                session(&ids, r)
            }
            Op::Close { s } => session(&ids, c.close_session(None, &id(s), None).await),
            Op::Delete { s } => session(&ids, c.delete_session_by_id(None, &id(s), None).await),
            Op::Get { s } => session(&ids, c.get_session_by_id(None, &id(s)).await),
            Op::Validate { s } => {
                let v = c.validate_session(None, &id(s)).await.unwrap();
                Obs::Validity(v.is_valid, v.ttl)
            }
            Op::CloseUser { user, except } => {
                let except = except.map(|e| id(&e));
                Obs::Count(c.close_user_sessions(None, &format!("u{user}"), except.as_deref()).await.unwrap())
            }
            Op::CloseExpired => Obs::Count(c.close_expired_sessions(None).await.unwrap()),
            Op::List { user, active } => {
                let filter =
                    SessionsFilter { user_id: user.map(|u| format!("u{u}")), active: *active, ..Default::default() };
                let page = c.get_sessions(None, &filter, &PagingParams::new(0, 100, true)).await.unwrap();
                let order: Vec<(std::cmp::Reverse<DateTime<Utc>>, String)> =
                    page.data.iter().map(|s| (std::cmp::Reverse(s.request_time), s.id.clone())).collect();
                let mut sorted = order.clone();
                sorted.sort();
                assert_eq!(order, sorted, "list order is request_time desc, id asc");
                assert_eq!(page.total, Some(page.data.len() as u64));
                Obs::Handles(page.data.iter().filter_map(|s| handle_of(&ids, &s.id)).collect())
            }
            Op::Advance { ms } => {
                clock.advance_ms(*ms);
                Obs::Nothing
            }
        };
        out.push(obs);
    }
    out
}

fn observe(handle: usize, s: &SessionV1) -> Obs {
    Obs::Session {
        handle,
        active: s.active,
        version: s.version,
        data: s.data.clone().unwrap_or(Value::Null),
        user: s.user.clone().unwrap_or(Value::Null),
        request_ms: ms(s.request_time),
        expire_ms: s.expire_time.map(ms),
        close_ms: s.close_time.map(ms),
    }
}

/// The model's answers for a sequence.
pub(crate) fn model_answers(ops: &[Op]) -> Vec<Obs> {
    let mut m = Model::default();
    ops.iter().map(|op| m.step(op)).collect()
}

/// Sequences shared with the backends' differential tests.
pub(crate) fn sequences() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn the_memory_backend_behaves_like_the_model(ops in sequences()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = rt.block_on(run_sequence(Arc::new(SessionsMemoryPersistence::new()), &ops));
        let want = model_answers(&ops);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert_eq!(g, w, "step {} {:?} of {:?}", i, ops[i], ops);
        }
    }
}
