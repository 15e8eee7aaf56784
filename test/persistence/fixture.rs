//! The conformance fixture: what every `SessionsPersistence` backend must do, case by case.
//! Every case starts from an empty store and sets times explicitly (the store is not the clock).

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use service_sessions::data::version1::{SessionV1, SessionsFilter};
use service_sessions::persistence::{
    ExpiryPolicy, LimitPolicy, OpenLimits, SessionAnswer, SessionChange, SessionLimit, SessionState, SessionUpdate,
    SessionsPersistence, UpdateOutcome, WriteCondition,
};
use service_sessions::toolkit::data::PagingParams;
use service_sessions::toolkit::json::{CanonicalJson, Json, JsonText};
use service_sessions::toolkit::time::parse_time;
use std::sync::Arc;

type Store = Arc<dyn SessionsPersistence>;

pub(crate) fn t0() -> DateTime<Utc> {
    parse_time("2026-01-01T00:00:00.000Z").unwrap()
}

pub(crate) fn at(ms: i64) -> DateTime<Utc> {
    t0() + Duration::milliseconds(ms)
}

/// A session `id` of `user` last active at `t0 + ms`.
pub(crate) fn session(id: &str, user: &str, ms: i64) -> SessionV1 {
    let mut s = SessionV1::open(id.to_string(), user.to_string(), at(ms));
    s.user_name = Some(format!("name of {user}"));
    s.address = Some("10.0.0.1".into());
    s.client = Some("test".into());
    s.user = Some(json!({"id": user, "roles": ["a", "b"]}));
    s.data = Some(json!({"cart": [1, 2, 3]}));
    s
}

fn update(condition: WriteCondition, change: SessionChange, ms: i64) -> SessionUpdate {
    SessionUpdate { condition, change, now: at(ms), policy: ExpiryPolicy::default() }
}

async fn seed(p: &Store, sessions: Vec<SessionV1>) {
    for s in sessions {
        p.create(None, s).await.unwrap();
    }
}

fn ids(page: &[SessionV1]) -> Vec<&str> {
    page.iter().map(|s| s.id.as_str()).collect()
}

async fn list(p: &Store, filter: SessionsFilter) -> Vec<String> {
    let page = p.get_page_by_filter(None, &filter, &PagingParams::default()).await.unwrap();
    page.data.into_iter().map(|s| s.id).collect()
}

pub(crate) async fn create_and_get(p: Store) {
    let s = session("a1", "u1", 0);
    assert_eq!(p.create(None, s.clone()).await.unwrap(), s);
    assert_eq!(p.get_one_by_id(None, "a1").await.unwrap(), Some(s));
    assert_eq!(p.get_one_by_id(None, "missing").await.unwrap(), None);
}

pub(crate) async fn create_rejects_taken_ids(p: Store) {
    p.create(None, session("a1", "u1", 0)).await.unwrap();
    let e = p.create(None, session("a1", "u2", 5)).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.status), ("SESSION_EXISTS", 409));
    assert_eq!(p.get_one_by_id(None, "a1").await.unwrap().unwrap().user_id, "u1");
}

pub(crate) async fn store_data_replaces_and_bumps(p: Store) {
    let s = session("a1", "u1", 0);
    seed(&p, vec![s.clone()]).await;
    let out = p
        .update(None, "a1", update(WriteCondition::default(), SessionChange::StoreData(json!({"x": 1}).into()), 500))
        .await;
    let mut expected = s;
    expected.data = Some(json!({"x": 1}));
    expected.request_time = at(500);
    expected.version = 2;
    assert_eq!(out.unwrap(), UpdateOutcome::Updated(expected.clone()));
    assert_eq!(p.get_one_by_id(None, "a1").await.unwrap(), Some(expected.clone()));
    // A payload handed over as its canonical text (what a command body's `data` is kept as)
    // reads back as the value it stands for, and answers as that text, the JSON answer too.
    let text = r#"{"cart":[1,-2,{"é":null}],"s":"a b","t":true}"#;
    let data = Json::Text(CanonicalJson::new(text).unwrap());
    let answer =
        p.update_json(None, "a1", update(WriteCondition::default(), SessionChange::StoreData(data), 600)).await;
    expected.data = Some(serde_json::from_str(text).unwrap());
    expected.request_time = at(600);
    expected.version = 3;
    let UpdateOutcome::Updated(answer) = answer.unwrap() else { panic!("not updated") };
    assert_eq!(answer.as_str(), JsonText::write(&expected).as_str());
    assert!(answer.as_str().contains(text), "{}", answer.as_str());
    assert_eq!(p.get_one_by_id(None, "a1").await.unwrap(), Some(expected.clone()));
    assert_eq!(encoded(&p, "a1").await, JsonText::write(&expected).into_string());
}

pub(crate) async fn update_user_replaces(p: Store) {
    seed(&p, vec![session("a1", "u1", 0)]).await;
    let out = p
        .update(None, "a1", update(WriteCondition::default(), SessionChange::UpdateUser(json!("bob").into()), 7))
        .await
        .unwrap();
    let UpdateOutcome::Updated(s) = out else { panic!("not updated: {out:?}") };
    assert_eq!(
        (s.user, s.data, s.version, s.request_time),
        (Some(json!("bob")), Some(json!({"cart": [1, 2, 3]})), 2, at(7))
    );
    // A user handed over as its canonical text reads back as its value and answers as the text.
    let text = r#"[{"id":"u1","roles":["a"]},-3,null]"#;
    let user = Json::Text(CanonicalJson::new(text).unwrap());
    let out = p.update_json(None, "a1", update(WriteCondition::default(), SessionChange::UpdateUser(user), 8)).await;
    let UpdateOutcome::Updated(answer) = out.unwrap() else { panic!("not updated") };
    assert!(answer.as_str().contains(&format!(r#""user":{text},"#)), "{}", answer.as_str());
    let read = p.get_one_by_id(None, "a1").await.unwrap().unwrap();
    assert_eq!((read.user, read.version), (Some(serde_json::from_str(text).unwrap()), 3));
    assert_eq!(encoded(&p, "a1").await, answer.into_string());
}

pub(crate) async fn close_clears_payload(p: Store) {
    seed(&p, vec![session("a1", "u1", 0)]).await;
    let out = p.update(None, "a1", update(WriteCondition::default(), SessionChange::Close, 9)).await.unwrap();
    let UpdateOutcome::Updated(s) = out else { panic!("not updated: {out:?}") };
    assert!(!s.active);
    assert_eq!((s.close_time, s.request_time, s.version), (Some(at(9)), at(9), 2));
    assert_eq!((s.user.clone(), s.data.clone()), (Some(Value::Null), Some(Value::Null)));
    assert_eq!(s.open_time, at(0));
    assert_eq!(p.get_one_by_id(None, "a1").await.unwrap(), Some(s));
}

pub(crate) async fn conditions_fail_with_current_record(p: Store) {
    let mut closed = session("c1", "u1", 0);
    closed.active = false;
    closed.close_time = Some(at(1));
    seed(&p, vec![session("a1", "u1", 1000), closed.clone()]).await;
    let active = WriteCondition { require_active: true, ..Default::default() };
    let store = SessionChange::StoreData(json!(1).into());
    assert_eq!(
        p.update(None, "c1", update(active, store.clone(), 5)).await.unwrap(),
        UpdateOutcome::ConditionFailed(closed)
    );
    let fresh = WriteCondition { idle_cutoff: Some(at(1001)), ..Default::default() };
    let UpdateOutcome::ConditionFailed(cur) = p.update(None, "a1", update(fresh, store.clone(), 5)).await.unwrap()
    else {
        panic!("idle cutoff must fail")
    };
    assert_eq!(cur.version, 1);
    let boundary = WriteCondition { idle_cutoff: Some(at(1000)), ..Default::default() };
    assert!(matches!(
        p.update(None, "a1", update(boundary, store.clone(), 5)).await.unwrap(),
        UpdateOutcome::Updated(_)
    ));
    let stale = WriteCondition { expected_version: Some(1), ..Default::default() };
    let UpdateOutcome::ConditionFailed(cur) = p.update(None, "a1", update(stale, store.clone(), 6)).await.unwrap()
    else {
        panic!("stale version must fail")
    };
    assert_eq!(cur.version, 2);
    let good =
        WriteCondition { expected_version: Some(2), require_active: true, idle_cutoff: Some(at(0)), alive_at: None };
    assert!(
        matches!(p.update(None, "a1", update(good, store.clone(), 7)).await.unwrap(), UpdateOutcome::Updated(s) if s.version == 3)
    );
    assert_eq!(p.update(None, "zz", update(active, store, 8)).await.unwrap(), UpdateOutcome::NotFound);
}

async fn seed_mixed(p: &Store) {
    let mut c = session("c1", "u2", 300);
    c.active = false;
    c.close_time = Some(at(300));
    seed(p, vec![session("a1", "u1", 100), session("a2", "u1", 200), c, session("a3", "u2", 400)]).await;
}

pub(crate) async fn filter_by_each_field(p: Store) {
    seed_mixed(&p).await;
    let f = |v: Value| SessionsFilter::from_value(Some(&v)).unwrap();
    assert_eq!(list(&p, f(json!({}))).await, ["a3", "c1", "a2", "a1"]);
    assert_eq!(list(&p, f(json!({"id": "a2"}))).await, ["a2"]);
    assert_eq!(list(&p, f(json!({"id": "a2", "user_id": "u2"}))).await, Vec::<String>::new());
    assert_eq!(list(&p, f(json!({"user_id": "u1"}))).await, ["a2", "a1"]);
    assert_eq!(list(&p, f(json!({"user_id": "nobody"}))).await, Vec::<String>::new());
    assert_eq!(list(&p, f(json!({"active": "true"}))).await, ["a3", "a2", "a1"]);
    assert_eq!(list(&p, f(json!({"active": false}))).await, ["c1"]);
    assert_eq!(list(&p, f(json!({"user_id": "u2", "active": "1"}))).await, ["a3"]);
    assert_eq!(list(&p, f(json!({"user_id": "u2", "active": "no"}))).await, ["c1"]);
}

pub(crate) async fn time_window_bounds(p: Store) {
    seed_mixed(&p).await;
    let f = |from: Option<i64>, to: Option<i64>| SessionsFilter {
        from_time: from.map(at),
        to_time: to.map(at),
        ..Default::default()
    };
    assert_eq!(list(&p, f(Some(200), None)).await, ["a3", "c1", "a2"], "from_time is inclusive");
    assert_eq!(list(&p, f(Some(201), None)).await, ["a3", "c1"]);
    assert_eq!(list(&p, f(None, Some(300))).await, ["a2", "a1"], "to_time is exclusive");
    assert_eq!(list(&p, f(None, Some(301))).await, ["c1", "a2", "a1"]);
    assert_eq!(list(&p, f(Some(200), Some(400))).await, ["c1", "a2"]);
    assert_eq!(list(&p, f(Some(300), Some(300))).await, Vec::<String>::new());
    assert_eq!(list(&p, f(Some(400), Some(100))).await, Vec::<String>::new());
    let user = SessionsFilter { user_id: Some("u1".into()), from_time: Some(at(150)), ..Default::default() };
    assert_eq!(list(&p, user).await, ["a2"]);
    let open = SessionsFilter { active: Some(true), to_time: Some(at(400)), ..Default::default() };
    assert_eq!(list(&p, open).await, ["a2", "a1"]);
}

pub(crate) async fn order_is_time_desc_then_id(p: Store) {
    seed(&p, vec![session("b", "u1", 10), session("c", "u1", 20), session("a", "u1", 10), session("d", "u2", 20)])
        .await;
    assert_eq!(list(&p, SessionsFilter::default()).await, ["c", "d", "a", "b"]);
    let u1 = SessionsFilter { user_id: Some("u1".into()), ..Default::default() };
    assert_eq!(list(&p, u1).await, ["c", "a", "b"]);
}

pub(crate) async fn paging_and_totals(p: Store) {
    let sessions: Vec<SessionV1> =
        (0..150).map(|i| session(&format!("s{i:03}"), if i % 3 == 0 { "x" } else { "y" }, i)).collect();
    seed(&p, sessions).await;
    let all = SessionsFilter::default();
    let page = p.get_page_by_filter(None, &all, &PagingParams::default()).await.unwrap();
    assert_eq!((page.data.len(), page.total), (100, None), "default take is max_page_size, no total");
    assert_eq!(page.data[0].id, "s149");
    let page = p.get_page_by_filter(None, &all, &PagingParams::new(0, 1000, true)).await.unwrap();
    assert_eq!((page.data.len(), page.total), (100, Some(150)), "take is capped");
    let page = p.get_page_by_filter(None, &all, &PagingParams::new(10, 5, true)).await.unwrap();
    assert_eq!(ids(&page.data), ["s139", "s138", "s137", "s136", "s135"]);
    assert_eq!(page.total, Some(150));
    let page = p.get_page_by_filter(None, &all, &PagingParams::new(148, 10, false)).await.unwrap();
    assert_eq!(ids(&page.data), ["s001", "s000"]);
    let page = p.get_page_by_filter(None, &all, &PagingParams::new(500, 10, true)).await.unwrap();
    assert_eq!((page.data.len(), page.total), (0, Some(150)));
    let x = SessionsFilter { user_id: Some("x".into()), ..Default::default() };
    let page = p.get_page_by_filter(None, &x, &PagingParams::new(0, 3, true)).await.unwrap();
    assert_eq!(ids(&page.data), ["s147", "s144", "s141"]);
    assert_eq!(page.total, Some(50));
}

pub(crate) async fn list_leaves_out_payload(p: Store) {
    seed(&p, vec![session("a1", "u1", 0)]).await;
    let page = p.get_page_by_filter(None, &SessionsFilter::default(), &PagingParams::default()).await.unwrap();
    assert_eq!(page.data, vec![session("a1", "u1", 0).without_payload()]);
    let json = serde_json::to_value(&page.data[0]).unwrap();
    assert!(json.get("user").is_none() && json.get("data").is_none());
}

/// The page's JSON text (what `get_sessions` answers), however the backend writes it, is the
/// encoding of the page of sessions: closed, without texts, with own `ttl`, windows, skips, totals.
pub(crate) async fn page_text_is_the_encoded_page(p: Store) {
    let mut bare = SessionV1::open("b0".into(), "u2".into(), at(5));
    bare.expire_time = Some(at(50_000));
    bare.ttl = Some(60_000);
    let mut quoted = session("q\"0", "u\u{e9}\n", 7);
    quoted.client = None;
    seed(&p, vec![session("a1", "u1", 1), bare, quoted, session("a2", "u1", 9), session("a3", "u1", 9)]).await;
    let close = update(WriteCondition::default(), SessionChange::Close, 11);
    assert!(matches!(p.update(None, "a2", close.clone()).await.unwrap(), UpdateOutcome::Updated(_)));
    let u1 = SessionsFilter { user_id: Some("u1".into()), ..Default::default() };
    let open = SessionsFilter { active: Some(true), ..Default::default() };
    let window = SessionsFilter { from_time: Some(at(2)), to_time: Some(at(9)), ..Default::default() };
    for filter in [SessionsFilter::default(), u1, open, window] {
        for paging in [PagingParams::default(), PagingParams::new(1, 2, true), PagingParams::new(9, 5, true)] {
            let page = p.get_page_by_filter(None, &filter, &paging).await.unwrap();
            let text = p.get_page_json(None, &filter, &paging).await.unwrap();
            assert_eq!(text.as_str(), JsonText::write(&page).as_str(), "{filter:?} {paging:?}");
        }
    }
}

/// The session as `get_one_by_id` answers it, encoded: what every text answer must equal.
async fn encoded(p: &Store, id: &str) -> String {
    JsonText::write(&p.get_one_by_id(None, id).await.unwrap().unwrap()).into_string()
}

/// The texts a read and the writes answer (`get_one_json`, `update_json`, `create_json`), however
/// the backend writes them, are the encoding of `get_one_by_id`'s session: open, closed, expired,
/// without texts or payload, with own `ttl`; and the read hands the session itself, unchanged, to
/// a caller that must act on it (closing an expired one, a due `touch_on_read`), judged on its state.
pub(crate) async fn session_text_is_the_encoded_session(p: Store) {
    let mut bare = SessionV1::open("b0".into(), "u2".into(), at(5));
    bare.ttl = Some(60_000);
    bare.expire_time = Some(at(60_005));
    let mut quoted = session("q\"0", "u\u{e9}\n", 7);
    quoted.client = None;
    let (open, expired) = (expiring("o1", "u1", 10, 100_000), expiring("x1", "u1", 0, 50));
    seed(&p, vec![open, expired, bare, quoted, session("c1", "u1", 3)]).await;
    let close = update(WriteCondition::default(), SessionChange::Close, 20);
    assert!(matches!(p.update(None, "c1", close.clone()).await.unwrap(), UpdateOutcome::Updated(_)));
    let ids = ["o1", "x1", "b0", "q\"0", "c1"];
    let never = |_: &SessionState| false;
    for id in ids {
        let Some(SessionAnswer::Text(text)) = p.get_one_json(None, id, &never).await.unwrap() else {
            panic!("{id}: nothing to do is answered as text")
        };
        assert_eq!(text.as_str(), encoded(&p, id).await, "{id}");
        let seen = std::sync::Mutex::new(None);
        let always = |s: &SessionState| {
            *seen.lock().unwrap() = Some(*s);
            true
        };
        let Some(SessionAnswer::Session(s)) = p.get_one_json(None, id, &always).await.unwrap() else {
            panic!("{id}: a session to act on is answered as itself")
        };
        assert_eq!(*seen.lock().unwrap(), Some(SessionState::of(&s)), "{id}: judged on its own state");
        assert_eq!(Some(*s), p.get_one_by_id(None, id).await.unwrap(), "{id}");
    }
    // The controller's tests: expired at t=1000 (close it); at t=12, a touch due 5 ms after the last
    // request (touch it).
    let expired_at = |s: &SessionState| s.active && !s.is_alive(Some(at(1000)), None);
    let touch_due = |s: &SessionState| s.active && at(12) - s.request_time >= Duration::milliseconds(5);
    for (id, acts_expired, acts_touch) in
        [("o1", false, false), ("x1", true, true), ("b0", false, true), ("q\"0", false, true), ("c1", false, false)]
    {
        let acted = |a: Option<SessionAnswer>| matches!(a, Some(SessionAnswer::Session(_)));
        assert_eq!(acted(p.get_one_json(None, id, &expired_at).await.unwrap()), acts_expired, "{id} expiry");
        assert_eq!(acted(p.get_one_json(None, id, &touch_due).await.unwrap()), acts_touch, "{id} touch");
    }
    assert_eq!(p.get_one_json(None, "missing", &never).await.unwrap(), None);

    // Writes: the text of the session after the change.
    let alive = WriteCondition { require_active: true, alive_at: Some(at(30)), ..Default::default() };
    let changes = [
        ("o1", SessionChange::StoreData(json!({"n": 1, "s": "\u{1}"}).into())),
        ("o1", SessionChange::UpdateUser(json!(null).into())),
        ("b0", SessionChange::Touch),
        ("q\"0", SessionChange::Close),
    ];
    for (id, change) in changes {
        let mut u = update(alive, change.clone(), 30);
        u.policy = ExpiryPolicy { idle_timeout: Some(10_000), max_lifetime: Some(40_000) };
        let UpdateOutcome::Updated(text) = p.update_json(None, id, u.clone()).await.unwrap() else {
            panic!("{id} {change:?} applies")
        };
        assert_eq!(text.as_str(), encoded(&p, id).await, "{id} {change:?}");
    }
    let refused = p.update_json(None, "c1", update(alive, SessionChange::Touch, 40)).await.unwrap();
    assert_eq!(refused, UpdateOutcome::ConditionFailed(p.get_one_by_id(None, "c1").await.unwrap().unwrap()));
    let missing = p.update_json(None, "missing", update(alive, SessionChange::Touch, 40)).await.unwrap();
    assert_eq!(missing, UpdateOutcome::NotFound);

    // Opens, with and without limits.
    let per_user = Some(limit(5, LimitPolicy::Deny, 100));
    for (id, limits) in [
        ("n1", OpenLimits::default()),
        ("n2", OpenLimits { per_user, max_open: None }),
        ("n3", OpenLimits { per_user, max_open: Some(100) }),
        ("n4", OpenLimits { per_user: None, max_open: Some(100) }),
    ] {
        let mut s = session(id, "u9", 100);
        s.ttl = Some(5000);
        s.expire_time = Some(at(5100));
        let text = p.create_json(None, s, &limits).await.unwrap();
        assert_eq!(text.as_str(), encoded(&p, id).await, "{id} {limits:?}");
    }
    let taken = p.create_json(None, session("n1", "u9", 200), &OpenLimits::default()).await.unwrap_err();
    assert_eq!(taken.code, "SESSION_EXISTS");
}

pub(crate) async fn close_expired_respects_cutoff(p: Store) {
    let mut closed = session("c1", "u1", 0);
    closed.active = false;
    closed.close_time = Some(at(0));
    seed(&p, vec![session("old", "u1", 0), session("edge", "u2", 1000), session("new", "u1", 2000), closed.clone()])
        .await;
    assert_eq!(p.close_expired(None, at(1000), at(5000)).await.unwrap(), 1);
    let old = p.get_one_by_id(None, "old").await.unwrap().unwrap();
    assert!(!old.active);
    assert_eq!(
        (old.close_time, old.request_time, old.version, old.data),
        (Some(at(5000)), at(5000), 2, Some(Value::Null))
    );
    assert!(p.get_one_by_id(None, "edge").await.unwrap().unwrap().active, "request_time == cutoff is not expired");
    assert!(p.get_one_by_id(None, "new").await.unwrap().unwrap().active);
    assert_eq!(p.get_one_by_id(None, "c1").await.unwrap(), Some(closed), "closed sessions are untouched");
    assert_eq!(p.close_expired(None, at(1000), at(6000)).await.unwrap(), 0);
    assert_eq!(p.close_expired(None, at(10_000), at(10_000)).await.unwrap(), 2);
}

pub(crate) async fn delete_returns_record(p: Store) {
    let s = session("a1", "u1", 0);
    seed(&p, vec![s.clone(), session("a2", "u1", 1)]).await;
    assert_eq!(p.delete_by_id(None, "a1").await.unwrap(), Some(s));
    assert_eq!(p.get_one_by_id(None, "a1").await.unwrap(), None);
    assert_eq!(p.delete_by_id(None, "a1").await.unwrap(), None);
    let u1 = SessionsFilter { user_id: Some("u1".into()), ..Default::default() };
    assert_eq!(list(&p, u1).await, ["a2"]);
}

pub(crate) async fn concurrent_writes_lose_nothing(p: Store) {
    seed(&p, vec![session("a1", "u1", 0)]).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let cond = WriteCondition { require_active: true, ..Default::default() };
            p.update(None, "a1", update(cond, SessionChange::StoreData(json!(i).into()), 100 + i)).await.unwrap()
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            UpdateOutcome::Updated(s) => versions.push(s.version),
            other => panic!("write lost: {other:?}"),
        }
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=51).collect::<Vec<i64>>(), "every write got its own version");
    assert_eq!(p.get_one_by_id(None, "a1").await.unwrap().unwrap().version, 51);
    // Racing writers with one expected version: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let cond = WriteCondition { expected_version: Some(51), ..Default::default() };
            p.update(None, "a1", update(cond, SessionChange::StoreData(json!(i).into()), 500)).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), UpdateOutcome::Updated(_)) {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

pub(crate) async fn values_round_trip_exactly(p: Store) {
    let cases = [
        json!(false),
        json!(0),
        json!(""),
        json!(null),
        json!(1.5),
        json!(-7),
        json!(9007199254740993_i64),
        json!([1, "two", {"three": [3]}, null]),
        json!({"nested": {"deep": {"x": [true, false]}}, "empty": {}, "list": []}),
        json!("ünïcødé ✓"),
        json!({"$dollar": 1, "dot.key": 2}),
    ];
    for (i, v) in cases.iter().enumerate() {
        let mut s = session(&format!("v{i}"), "u", i as i64);
        s.data = Some(v.clone());
        s.user = Some(v.clone());
        s.user_name = None;
        p.create(None, s.clone()).await.unwrap();
        assert_eq!(p.get_one_by_id(None, &s.id).await.unwrap(), Some(s.clone()), "value {v}");
        let out = p
            .update(None, &s.id, update(WriteCondition::default(), SessionChange::StoreData(v.clone().into()), 100))
            .await
            .unwrap();
        let UpdateOutcome::Updated(after) = out else { panic!() };
        assert_eq!(after.data, Some(v.clone()));
    }
}

pub(crate) async fn scan_walks_whole_sessions_in_list_order(p: Store) {
    seed_mixed(&p).await;
    let mut tied = session("t0", "u9", 700);
    tied.data = Some(json!({"big": 9007199254740993_i64, "$k": {"a.b": [false, 0, ""]}}));
    let tied2 = session("t1", "u9", 700);
    seed(&p, vec![tied2.clone(), tied.clone()]).await;
    let listed = list(&p, SessionsFilter::default()).await;
    let mut walked = Vec::new();
    let mut after: Option<(DateTime<Utc>, String)> = None;
    loop {
        let step = p.scan(None, after.as_ref().map(|(t, id)| (*t, id.as_str())), 2).await.unwrap();
        assert!(step.len() <= 2);
        let Some(last) = step.last() else { break };
        after = Some((last.request_time, last.id.clone()));
        walked.extend(step);
    }
    assert_eq!(walked.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), listed);
    for s in &walked {
        assert_eq!(Some(s), p.get_one_by_id(None, &s.id).await.unwrap().as_ref(), "scan returns whole sessions");
    }
    assert_eq!(walked.iter().find(|s| s.id == "t0"), Some(&tied));
    assert_eq!(p.scan(None, None, 0).await.unwrap(), Vec::<SessionV1>::new());
}

pub(crate) async fn clear_empties(p: Store) {
    seed_mixed(&p).await;
    p.clear(None).await.unwrap();
    assert_eq!(list(&p, SessionsFilter::default()).await, Vec::<String>::new());
    assert_eq!(p.get_one_by_id(None, "a1").await.unwrap(), None);
    p.create(None, session("a1", "u1", 0)).await.unwrap();
}

/// A session that expires at `t0 + expire_ms` (an `expire_time` computed by the controller).
fn expiring(id: &str, user: &str, ms: i64, expire_ms: i64) -> SessionV1 {
    let mut s = session(id, user, ms);
    s.expire_time = Some(at(expire_ms));
    s
}

pub(crate) async fn expire_time_decides_liveness(p: Store) {
    seed(&p, vec![expiring("a", "u1", 0, 1000), expiring("b", "u1", 500, 5000), session("legacy", "u1", 0)]).await;
    let alive = |t: i64| WriteCondition {
        require_active: true,
        alive_at: Some(at(t)),
        idle_cutoff: Some(at(t - 2000)),
        ..Default::default()
    };
    let touch = |t: i64| update(alive(t), SessionChange::Touch, t);
    let policy = ExpiryPolicy { idle_timeout: Some(3000), max_lifetime: Some(4500) };
    let mut u = touch(1000);
    u.policy = policy;
    let UpdateOutcome::Updated(a) = p.update(None, "a", u.clone()).await.unwrap() else {
        panic!("alive at its expire_time")
    };
    assert_eq!((a.request_time, a.version, a.expire_time), (at(1000), 2, Some(at(4000))), "idle 3000 from now");
    let mut u = touch(2000);
    u.policy = policy;
    let UpdateOutcome::Updated(a) = p.update(None, "a", u.clone()).await.unwrap() else { panic!() };
    assert_eq!(a.expire_time, Some(at(4500)), "capped by the absolute lifetime");
    assert!(
        matches!(p.update(None, "a", touch(4501)).await.unwrap(), UpdateOutcome::ConditionFailed(_)),
        "expired after expire_time"
    );
    assert!(
        matches!(p.update(None, "legacy", touch(2000)).await.unwrap(), UpdateOutcome::Updated(_)),
        "legacy: request_time >= cutoff"
    );
    assert!(matches!(p.update(None, "legacy", touch(4001)).await.unwrap(), UpdateOutcome::ConditionFailed(_)));
    let mut ttl = session("own", "u2", 0);
    ttl.ttl = Some(100);
    p.create(None, ttl).await.unwrap();
    let mut u = update(WriteCondition::default(), SessionChange::Touch, 50);
    u.policy = policy;
    let UpdateOutcome::Updated(own) = p.update(None, "own", u.clone()).await.unwrap() else { panic!() };
    assert_eq!(own.expire_time, Some(at(150)), "a session's own ttl replaces the idle timeout");
    // The sweep closes exactly the sessions not alive now.
    assert_eq!(
        p.close_expired(None, at(0), at(4600)).await.unwrap(),
        2,
        "a (4500) and own (150); b (5000) and legacy live"
    );
    assert!(!p.get_one_by_id(None, "a").await.unwrap().unwrap().active);
    let b = p.get_one_by_id(None, "b").await.unwrap().unwrap();
    assert!(b.active && b.expire_time == Some(at(5000)));
    let closed = p.get_one_by_id(None, "own").await.unwrap().unwrap();
    assert_eq!((closed.active, closed.expire_time, closed.close_time), (false, None, Some(at(4600))));
}

pub(crate) async fn conditional_delete(p: Store) {
    let s = session("a1", "u1", 0);
    seed(&p, vec![s.clone()]).await;
    let stale = WriteCondition { expected_version: Some(7), ..Default::default() };
    assert_eq!(p.delete_if(None, "a1", &stale).await.unwrap(), UpdateOutcome::ConditionFailed(s.clone()));
    let ok = WriteCondition { expected_version: Some(1), ..Default::default() };
    assert_eq!(p.delete_if(None, "a1", &ok).await.unwrap(), UpdateOutcome::Updated(s));
    assert_eq!(p.delete_if(None, "a1", &ok).await.unwrap(), UpdateOutcome::NotFound);
}

fn limit(max: u64, policy: LimitPolicy, ms: i64) -> SessionLimit {
    SessionLimit { max, policy, now: at(ms), idle_cutoff: None }
}

pub(crate) async fn per_user_limit_deny_and_close_oldest(p: Store) {
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        p.create_limited(None, session(id, "u1", i as i64 * 10), &limit(3, LimitPolicy::Deny, 100)).await.unwrap();
    }
    let e = p.create_limited(None, session("d", "u1", 40), &limit(3, LimitPolicy::Deny, 100)).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.status), ("SESSION_LIMIT", 409));
    assert_eq!(p.get_one_by_id(None, "d").await.unwrap(), None);
    p.create_limited(None, session("x", "u2", 0), &limit(3, LimitPolicy::Deny, 100)).await.unwrap();
    p.create_limited(None, session("d", "u1", 50), &limit(3, LimitPolicy::CloseOldest, 200)).await.unwrap();
    let a = p.get_one_by_id(None, "a").await.unwrap().unwrap();
    assert_eq!((a.active, a.close_time), (false, Some(at(200))), "the oldest was closed");
    assert!(p.get_one_by_id(None, "b").await.unwrap().unwrap().active);
    p.create_limited(None, session("e", "u1", 60), &limit(2, LimitPolicy::CloseOldest, 300)).await.unwrap();
    let open: Vec<String> =
        list(&p, SessionsFilter { user_id: Some("u1".into()), active: Some(true), ..Default::default() }).await;
    assert_eq!(open, ["e", "d"], "closed down to the new limit");
    // Expired open sessions do not count (and are closed).
    seed(&p, vec![expiring("old", "u3", 0, 10)]).await;
    p.create_limited(None, session("new", "u3", 20), &limit(1, LimitPolicy::Deny, 20)).await.unwrap();
    assert!(!p.get_one_by_id(None, "old").await.unwrap().unwrap().active);
}

pub(crate) async fn concurrent_opens_respect_the_limit(p: Store) {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.create_limited(None, session(&format!("s{i:02}"), "u1", i), &limit(5, LimitPolicy::Deny, 100)).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code, "SESSION_LIMIT"),
        }
    }
    assert_eq!(ok, 5);
    let page = p
        .get_page_by_filter(
            None,
            &SessionsFilter { user_id: Some("u1".into()), ..Default::default() },
            &PagingParams::new(0, 100, true),
        )
        .await
        .unwrap();
    assert_eq!(page.total, Some(5));
}

async fn open_count(p: &Store) -> u64 {
    let open = SessionsFilter { active: Some(true), ..Default::default() };
    p.get_page_by_filter(None, &open, &PagingParams::new(0, 1, true)).await.unwrap().total.unwrap()
}

/// The cap on the store's open sessions: 20 concurrent opens one below the cap leave at most the
/// cap open (an atomic backend admits exactly one; the generic insert-count-undo may refuse all);
/// closed sessions do not count; a per-user `CloseOldest` that closes one to make room is
/// admitted at the cap; every refusal is 503 `MAX_SESSIONS` and leaves nothing behind.
pub(crate) async fn concurrent_opens_respect_the_total_cap(p: Store) {
    seed(&p, (0..4).map(|i| session(&format!("o{i}"), &format!("u{i}"), i)).collect()).await;
    let mut closed = session("closed", "u0", 5);
    closed.active = false;
    seed(&p, vec![closed]).await;
    let cap = OpenLimits { per_user: None, max_open: Some(5) };
    let mut tasks = Vec::new();
    for i in 0..20 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.create_within(None, session(&format!("n{i:02}"), &format!("v{i}"), 10 + i), &cap).await
        }));
    }
    let mut admitted = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(s) => admitted.push(s.id),
            Err(e) => assert_eq!((e.code.as_str(), e.status), ("MAX_SESSIONS", 503)),
        }
    }
    assert!(admitted.len() <= 1, "admitted past the cap: {admitted:?}");
    assert_eq!(open_count(&p).await, 4 + admitted.len() as u64);
    let all = p.get_page_by_filter(None, &SessionsFilter::default(), &PagingParams::new(0, 100, true)).await.unwrap();
    assert_eq!(all.total, Some(5 + admitted.len() as u64), "a refused insert left a session behind");
    if admitted.is_empty() {
        p.create_within(None, session("late", "v99", 50), &cap).await.unwrap();
    }
    assert_eq!(open_count(&p).await, 5);
    let e = p.create_within(None, session("over", "v98", 60), &cap).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.status), ("MAX_SESSIONS", 503));
    assert_eq!(p.get_one_by_id(None, "over").await.unwrap(), None);
    // At the cap, a per-user CloseOldest that closes the user's oldest makes room for the new one.
    let room = OpenLimits { per_user: Some(limit(1, LimitPolicy::CloseOldest, 100)), max_open: Some(5) };
    p.create_within(None, session("again", "u1", 70), &room).await.unwrap();
    assert!(!p.get_one_by_id(None, "o1").await.unwrap().unwrap().active);
    assert_eq!(open_count(&p).await, 5);
}

pub(crate) async fn close_user_sessions_except_one(p: Store) {
    let mut closed = session("c", "u1", 5);
    closed.active = false;
    closed.close_time = Some(at(5));
    seed(&p, vec![session("a", "u1", 0), session("b", "u1", 10), closed.clone(), session("x", "u2", 0)]).await;
    assert_eq!(p.close_user_sessions(None, "u1", Some("b"), at(100)).await.unwrap(), 1);
    assert!(!p.get_one_by_id(None, "a").await.unwrap().unwrap().active);
    assert!(p.get_one_by_id(None, "b").await.unwrap().unwrap().active);
    assert_eq!(p.get_one_by_id(None, "c").await.unwrap(), Some(closed), "already closed: untouched");
    assert!(p.get_one_by_id(None, "x").await.unwrap().unwrap().active);
    assert_eq!(p.close_user_sessions(None, "u1", None, at(200)).await.unwrap(), 1);
    assert_eq!(p.close_user_sessions(None, "nobody", None, at(200)).await.unwrap(), 0);
}

pub(crate) async fn purge_deletes_oldest_closed_in_batches(p: Store) {
    let mut all = Vec::new();
    for i in 0..7 {
        let mut s = session(&format!("c{i}"), "u1", i * 100);
        s.active = false;
        s.close_time = Some(at(i * 100));
        all.push(s);
    }
    all.push(session("open", "u1", 0));
    seed(&p, all).await;
    assert_eq!(p.purge_closed(None, at(450), 3).await.unwrap(), 3);
    assert_eq!(p.get_one_by_id(None, "c0").await.unwrap(), None, "oldest first");
    assert!(p.get_one_by_id(None, "c3").await.unwrap().is_some());
    assert_eq!(p.purge_closed(None, at(450), 3).await.unwrap(), 2, "c3, c4");
    assert_eq!(p.purge_closed(None, at(450), 3).await.unwrap(), 0);
    assert!(p.get_one_by_id(None, "c5").await.unwrap().is_some());
    assert!(p.get_one_by_id(None, "open").await.unwrap().is_some(), "open sessions are never purged");
}

pub(crate) async fn rotate_moves_the_session(p: Store) {
    seed(&p, vec![session("old", "u1", 0), session("taken", "u1", 0)]).await;
    let cond = WriteCondition { require_active: true, expected_version: Some(1), ..Default::default() };
    let out = p.rotate_id(None, "old", "new", &update(cond, SessionChange::Touch, 50)).await.unwrap();
    let mut expected = session("new", "u1", 0);
    expected.request_time = at(50);
    expected.version = 2;
    assert_eq!(out, UpdateOutcome::Updated(expected.clone()));
    assert_eq!(p.get_one_by_id(None, "old").await.unwrap(), None);
    assert_eq!(p.get_one_by_id(None, "new").await.unwrap(), Some(expected));
    let e = p
        .rotate_id(None, "new", "taken", &update(WriteCondition::default(), SessionChange::Touch, 60))
        .await
        .unwrap_err();
    assert_eq!(e.code, "SESSION_EXISTS");
    let stale = p.rotate_id(None, "new", "newer", &update(cond, SessionChange::Touch, 70)).await.unwrap();
    assert!(matches!(stale, UpdateOutcome::ConditionFailed(s) if s.id == "new" && s.version == 2));
    assert_eq!(
        p.rotate_id(None, "gone", "x", &update(cond, SessionChange::Touch, 70)).await.unwrap(),
        UpdateOutcome::NotFound
    );
    let u1 = SessionsFilter { user_id: Some("u1".into()), ..Default::default() };
    assert_eq!(list(&p, u1).await, ["new", "taken"]);
}
