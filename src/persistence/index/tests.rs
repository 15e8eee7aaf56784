//! The index's own tests: bulk builds equal one-by-one inserts, list order, and the cost model.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::persistence::{ExpiryPolicy, LimitPolicy, SessionChange, SessionUpdate, UpdateOutcome, WriteCondition};
use chrono::Duration;

fn session(i: i64) -> SessionV1 {
    let t = DateTime::<Utc>::UNIX_EPOCH + Duration::milliseconds(i % 7);
    let mut s = SessionV1::open(format!("s{i:03}"), format!("u{}", i % 4), t);
    s.active = i % 3 != 0;
    if s.active && i % 2 == 0 {
        s.expire_time = Some(t + Duration::milliseconds(1000 + i));
    }
    s
}

/// Everything an index holds, in a comparable form.
type Fingerprint = (
    Vec<SessionV1>,
    Vec<ListKey>,
    Vec<ListKey>,
    Vec<(Arc<str>, Vec<Key>)>,
    Vec<ExpiryKey>,
    Vec<(Arc<str>, Vec<ListKey>)>,
    Vec<ListKey>,
);

fn keys<K: Ord + Clone>(set: &CountedSet<K>) -> Vec<K> {
    set.iter().cloned().collect()
}

/// The index's contents, set by set (keys compare by time and id; every slot a user's key
/// carries is checked to hold that key's record).
fn fingerprint(index: &SessionsIndex) -> Fingerprint {
    for k in index.users.values().flat_map(|sets| sets.all.iter()) {
        assert!(index.records.at(k.slot).is_some_and(|r| r.id == k.id), "the slot of {} holds its record", k.id);
    }
    let mut sessions: Vec<SessionV1> = index.iter().collect();
    sessions.sort_by(|a, b| a.id.cmp(&b.id));
    let mut users: Vec<(Arc<str>, Vec<Key>)> =
        index.users.iter().map(|(u, sets)| (u.clone(), keys(&sets.all))).collect();
    users.sort();
    let mut open_users: Vec<(Arc<str>, Vec<ListKey>)> = index
        .users
        .iter()
        .filter(|(_, sets)| !sets.open.is_empty())
        .map(|(u, sets)| (u.clone(), keys(&sets.open)))
        .collect();
    open_users.sort();
    (sessions, keys(&index.open), keys(&index.closed), users, keys(&index.by_expiry), open_users, keys(&index.untimed))
}

#[test]
fn the_builder_builds_what_one_by_one_inserts_build() {
    let mut one_by_one = SessionsIndex::new();
    let mut builder = IndexBuilder::new();
    for i in 0..200 {
        one_by_one.put(session(i));
        builder.put(session(i));
    }
    for i in (0..200).step_by(5) {
        let mut s = session(i);
        s.request_time += Duration::milliseconds(100);
        one_by_one.put(s.clone());
        builder.put(s);
        one_by_one.remove(&format!("s{:03}", i + 1));
        builder.remove(&format!("s{:03}", i + 1));
    }
    assert_eq!(builder.len(), 160);
    let built = builder.build();
    assert_eq!(fingerprint(&built), fingerprint(&one_by_one));
    let mut cleared = IndexBuilder::new();
    cleared.put(session(1));
    cleared.clear();
    assert!(cleared.is_empty() && cleared.build().is_empty());
}

#[test]
fn the_scan_walks_open_and_closed_sessions_in_list_order() {
    let mut index = SessionsIndex::new();
    (0..20).for_each(|i| index.put(session(i)));
    let update = SessionUpdate {
        condition: WriteCondition::default(),
        change: SessionChange::Close,
        now: DateTime::<Utc>::UNIX_EPOCH + Duration::milliseconds(50),
        policy: ExpiryPolicy::default(),
    };
    assert!(matches!(index.update("s004", update), UpdateOutcome::Updated(_)));
    let mut rebuilt = IndexBuilder::new();
    index.iter().for_each(|s| rebuilt.put(s));
    assert_eq!(fingerprint(&rebuilt.build()), fingerprint(&index));
    let walked: Vec<String> = index.scan(None, 100).into_iter().map(|s| s.id).collect();
    let listed: Vec<String> = index
        .page(&SessionsFilter::default(), &PagingParams { skip: None, take: Some(100), total: false }, 100)
        .data
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(walked, listed);
    assert_eq!(walked[0], "s004");
    let after: Vec<String> =
        index.scan(Some((index.get("s004").unwrap().request_time, "s004")), 3).into_iter().map(|s| s.id).collect();
    assert_eq!(after, walked[1..4]);
    // The same walk in steps of views, each resumed from the position the step before gave;
    // every view writes the text of the session `scan` gives.
    let (mut texts, mut cursor) = (Vec::new(), None);
    loop {
        let after = cursor.as_ref().map(|(t, id): &ScanPosition| (*t, id.as_str()));
        let step = index.scan_each(after, 3, |s| {
            texts.push(JsonText::write(s).into_string());
            Ok::<_, ()>(())
        });
        let (count, last) = step.unwrap();
        cursor = last;
        if count < 3 {
            break;
        }
    }
    let scanned: Vec<String> = index.scan(None, 100).iter().map(|s| serde_json::to_string(s).unwrap()).collect();
    assert_eq!(texts, scanned);
    assert_eq!(index.scan_each(None, 100, |_| Err("stop")), Err("stop"));
}

/// The heavy operations cost O(answer), not O(store): counted in visited index entries, with
/// 20 000 open sessions of one user (their own ttl far longer than the idle timeout, idle
/// since long before the cutoff) and 5 000 closed ones beside a user with 10.
#[test]
fn heavy_operations_visit_only_their_answer() {
    let t0 = DateTime::<Utc>::UNIX_EPOCH + Duration::days(10_000);
    let mut builder = IndexBuilder::new();
    for i in 0..25_000i64 {
        let mut s = SessionV1::open(format!("b{i:06}"), "big".to_string(), t0 + Duration::milliseconds(i));
        s.expire_time = Some(t0 + Duration::days(365));
        if i >= 20_000 {
            s.active = false;
            s.close_time = Some(s.request_time);
            s.expire_time = None;
        }
        builder.put(s);
    }
    let mut index = builder.build();
    for i in 0..10i64 {
        let mut s = SessionV1::open(format!("s{i:02}"), "small".to_string(), t0 + Duration::milliseconds(i));
        s.expire_time = Some(t0 + Duration::days(365));
        index.put(s);
    }
    let page = |f: SessionsFilter| (f, PagingParams { skip: None, take: Some(10), total: true });
    let cost = |index: &SessionsIndex, f: &dyn Fn(&SessionsIndex)| {
        let before = index.visits();
        f(index);
        index.visits() - before
    };
    let cases = [
        (SessionsFilter { active: Some(true), ..Default::default() }, 20_010),
        (SessionsFilter { active: Some(false), ..Default::default() }, 5_000),
        (SessionsFilter::default(), 25_010),
        (SessionsFilter { user_id: Some("big".into()), ..Default::default() }, 25_000),
        (SessionsFilter { user_id: Some("big".into()), active: Some(true), ..Default::default() }, 20_000),
        (SessionsFilter { user_id: Some("big".into()), active: Some(false), ..Default::default() }, 5_000),
    ];
    for (filter, total) in cases {
        let (f, p) = page(filter);
        let before = index.visits();
        let answer = index.page(&f, &p, 100);
        let visits = index.visits() - before;
        assert_eq!((answer.total, answer.data.len()), (Some(total), 10), "{f:?}");
        assert!(visits <= 10 + 5_000 * u64::from(f.active == Some(false) && f.user_id.is_some()), "{f:?}: {visits}");
    }
    // Nothing is expired: the sweep visits nothing, though every session of "big" has been
    // idle since long before the cutoff (their own ttl keeps them alive).
    let now = t0 + Duration::days(30);
    let cutoff = now - Duration::days(1);
    assert_eq!(cost(&index, &|i| assert!(i.plan_close_expired(cutoff, now).is_empty())), 0);
    // The per-user limit and closing a user's sessions visit that user's open sessions only.
    let limit = SessionLimit { max: 50, policy: LimitPolicy::Deny, now, idle_cutoff: Some(cutoff) };
    let before = index.visits();
    index.create_limited(SessionV1::open("s99".into(), "small".into(), now), &limit).unwrap();
    assert_eq!(index.visits() - before, 10);
    let before = index.visits();
    assert_eq!(index.close_user_sessions("small", Some("s99"), now).len(), 10);
    assert_eq!(index.visits() - before, 10);
    // A mass expiry comes in bounded batches.
    let later = t0 + Duration::days(400);
    assert_eq!(index.plan_close_expired_limited(later, Some(later - Duration::days(1)), 1000).len(), 1000);
    let before = index.visits();
    let batch = index.close_user_sessions_limited("big", None, later, 1000);
    assert_eq!((batch.len(), index.visits() - before), (1000, 1000));
}

/// Totals with a time window are rank differences, and `skip` a rank: a page of 10 with its
/// total visits 10 index entries whatever the window holds (20 000 open and 5 000 closed sessions
/// of one user beside 10 of another), except where the walked set holds sessions the filter
/// leaves out (no user and no state: open and closed merged; a user's closed ones: their open
/// ones stepped over). Totals and pages equal a brute-force filter over every session.
#[test]
fn windowed_totals_and_skips_visit_only_the_page() {
    let t0 = DateTime::<Utc>::UNIX_EPOCH + Duration::days(10_000);
    let at = |ms: i64| t0 + Duration::milliseconds(ms);
    let mut index = SessionsIndex::new();
    for i in 0..25_000i64 {
        let mut s = SessionV1::open(format!("b{i:06}"), "big".to_string(), at(i / 2));
        if i >= 20_000 {
            s.active = false;
            s.close_time = Some(s.request_time);
        }
        index.put(s);
    }
    for i in 0..10i64 {
        index.put(SessionV1::open(format!("s{i:02}"), "small".to_string(), at(i * 1_000)));
    }
    let all: Vec<SessionV1> = {
        let mut v: Vec<SessionV1> = index.iter().collect();
        v.sort_by(|a, b| b.request_time.cmp(&a.request_time).then_with(|| a.id.cmp(&b.id)));
        v
    };
    let users = [None, Some("big"), Some("small")];
    let states = [None, Some(true), Some(false)];
    let windows =
        [(None, None), (Some(2_500), Some(7_500)), (Some(9_500), None), (None, Some(4_000)), (Some(7), Some(7))];
    for user in users {
        for active in states {
            for (from, to) in windows {
                for skip in [0u64, 3_000] {
                    let filter = SessionsFilter {
                        user_id: user.map(str::to_string),
                        active,
                        from_time: from.map(at),
                        to_time: to.map(at),
                        ..Default::default()
                    };
                    let matching: Vec<&SessionV1> = all
                        .iter()
                        .filter(|s| filter.matches_fields(&s.id, &s.user_id, s.active, s.request_time))
                        .collect();
                    let paging = PagingParams::new(skip, 10, true);
                    let before = index.visits();
                    let answer = index.page(&filter, &paging, 100);
                    let visits = index.visits() - before;
                    let expected: Vec<&str> =
                        matching.iter().skip(3_000 * usize::from(skip > 0)).take(10).map(|s| s.id.as_str()).collect();
                    let got: Vec<&str> = answer.data.iter().map(|s| s.id.as_str()).collect();
                    assert_eq!(answer.total, Some(matching.len() as u64), "{filter:?}");
                    assert_eq!(got, expected, "{filter:?} skip {skip}");
                    let stepped_over = match (user, active) {
                        (None, None) => skip,
                        (Some(_), Some(false)) => skip + 10_000,
                        _ => 0,
                    };
                    assert!(visits <= 10 + stepped_over, "{filter:?} skip {skip}: {visits} visits");
                }
            }
        }
    }
}

/// The compact keys sort exactly as the keys they replace: `(request_time, Reverse(id))` for the
/// list-order sets and `(expire_time, id)` for the expiry set — including ties on the time, ids
/// that are prefixes of others, and two keys sharing one id allocation.
#[test]
fn compact_keys_sort_as_the_time_and_id_pairs() {
    use std::cmp::Reverse;
    let ids: Vec<Arc<str>> = ["", "a", "ab", "b", "a0", "zz", "A"].into_iter().map(Arc::from).collect();
    let times = [-1_000i64, -1, 0, 1, 2, 1_700_000_000_000];
    let mut pairs = Vec::new();
    for &t in &times {
        for id in &ids {
            pairs.push((t, id.clone()));
        }
    }
    let at = |ms: i64| DateTime::<Utc>::UNIX_EPOCH + Duration::milliseconds(ms);
    for (ta, a) in &pairs {
        for (tb, b) in &pairs {
            let (ka, kb) = (Key::new(*ta, a.clone(), 0), Key::new(*tb, Arc::from(&**b), 1));
            let old = (at(*ta), Reverse(a.to_string())).cmp(&(at(*tb), Reverse(b.to_string())));
            assert_eq!(ka.cmp(&kb), old, "{ta} {a:?} / {tb} {b:?}");
            assert_eq!(ka == kb, old.is_eq());
            assert_eq!(ka.cmp(&Key::new(*tb, b.clone(), 1)), old, "shared allocation");
            let (ea, eb) = (ExpiryKey::new(*ta, a.clone(), ()), ExpiryKey::new(*tb, Arc::from(&**b), ()));
            assert_eq!(ea.cmp(&eb), (at(*ta), a.to_string()).cmp(&(at(*tb), b.to_string())));
        }
    }
    // Rounding a bound up to whole milliseconds keeps every comparison with stored times.
    for bound in [at(5), at(5) + Duration::microseconds(1), at(-5) - Duration::microseconds(999)] {
        for ms in -8..8 {
            assert_eq!(ms >= ceil_millis(bound), at(ms) >= bound, "{bound} {ms}");
            assert_eq!(ms < ceil_millis(bound), at(ms) < bound, "{bound} {ms}");
        }
    }
}

/// Refreshes move a record's keys set by set (in place where the order holds); the sets stay
/// what inserting every record afresh builds, through refreshes, closes, user changes and
/// expiry changes.
#[test]
fn refreshes_keep_the_sets_equal_to_a_fresh_build() {
    let mut index = SessionsIndex::new();
    (0..300).for_each(|i| index.put(session(i)));
    for step in 0..600i64 {
        let id = format!("s{:03}", (step * 37) % 300);
        let mut s = index.get(&id).unwrap();
        s.request_time += Duration::milliseconds(step % 5);
        s.version += 1;
        match step % 6 {
            0 => s.expire_time = s.active.then(|| s.request_time + Duration::milliseconds(500)),
            1 => s.expire_time = None,
            2 => s.user_id = format!("u{}", step % 3),
            3 if s.active => {
                s.active = false;
                s.close_time = Some(s.request_time);
                s.expire_time = None;
            }
            _ => {}
        }
        index.put(s);
        if step % 100 == 0 {
            assert_same_as_fresh(&index, step);
        }
    }
    assert_same_as_fresh(&index, -1);
}

/// The index holds what inserting its sessions one by one, and building them in bulk, holds.
fn assert_same_as_fresh(index: &SessionsIndex, step: i64) {
    let mut fresh = SessionsIndex::new();
    index.iter().for_each(|s| fresh.put(s));
    assert_eq!(fingerprint(index), fingerprint(&fresh), "step {step}");
    let mut built = IndexBuilder::new();
    index.iter().for_each(|s| built.put(s));
    assert_eq!(fingerprint(index), fingerprint(&built.build()), "step {step}");
}

/// Updates move a record's keys in one search per set: to the end of the sets when the record
/// becomes the newest (most writes), in place, or backwards in time; with and without an expiry
/// before and after, and closing. Over more sessions than one block holds, the sets stay what
/// inserting every record afresh builds, and each answer is the record as stored.
#[test]
fn updates_keep_the_sets_equal_to_a_fresh_build() {
    let mut index = SessionsIndex::new();
    let n = 700i64;
    (0..n).for_each(|i| index.put(session(i)));
    let t0 = DateTime::<Utc>::UNIX_EPOCH;
    for step in 0..3_000i64 {
        let id = format!("s{:03}", (step * 37) % n);
        // Mostly forwards (the newest), sometimes the same millisecond or backwards.
        let now = match step % 7 {
            5 => t0 + Duration::milliseconds(step % 11),
            6 => t0 + Duration::milliseconds(10 + step / 2),
            _ => t0 + Duration::milliseconds(100 + step),
        };
        let policy = match step % 4 {
            0 => ExpiryPolicy { idle_timeout: None, max_lifetime: None },
            1 => ExpiryPolicy { idle_timeout: Some(500), max_lifetime: None },
            2 => ExpiryPolicy { idle_timeout: Some(500), max_lifetime: Some(1_000) },
            _ => ExpiryPolicy { idle_timeout: Some(300 + step % 3), max_lifetime: None },
        };
        let change = match step % 13 {
            0 => SessionChange::Close,
            1 => SessionChange::Touch,
            2 => SessionChange::UpdateUser(serde_json::json!({ "n": step }).into()),
            _ => SessionChange::StoreData(serde_json::json!({ "n": step }).into()),
        };
        let update = SessionUpdate { condition: WriteCondition::default(), change, now, policy };
        match index.update(&id, update) {
            UpdateOutcome::Updated(s) => assert_eq!(Some(s), index.get(&id), "step {step}"),
            other => panic!("step {step}: {other:?}"),
        }
        if step % 500 == 0 {
            assert_same_as_fresh(&index, step);
        }
    }
    assert_same_as_fresh(&index, -1);
}

/// A record's condition check and its new `expire_time`, both worked out in milliseconds, agree
/// with the session's ([`WriteCondition::holds`], [`ExpiryPolicy::expire_at`]), also at
/// sub-millisecond condition times and at bounds past what a date holds.
#[test]
fn the_record_judges_conditions_and_expiry_as_the_session_does() {
    let t = DateTime::<Utc>::UNIX_EPOCH + Duration::milliseconds(1_000_000);
    let huge = [None, Some(0), Some(1), Some(-5), Some(500), Some(i64::MAX), Some(i64::MIN), Some(i64::MAX / 2)];
    let mut checked = 0;
    for (open_ms, request_ms) in
        [(0, 0), (1_000_000, 1_000_250), (-7, 3), (8_200_000_000_000_000, 8_200_000_000_000_000)]
    {
        let (open, request) = (record::time(open_ms), record::time(request_ms));
        for ttl in huge {
            for idle_timeout in huge {
                for max_lifetime in huge {
                    let policy = ExpiryPolicy { idle_timeout, max_lifetime };
                    let expected = policy.expire_at(ttl, open, request).map(millis);
                    assert_eq!(policy.expire_at_ms(ttl, open_ms, request_ms), expected, "{policy:?} {ttl:?}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 4 * 8 * 8 * 8);
    let near = |ns: i64| Some(t + Duration::nanoseconds(ns));
    for active in [false, true] {
        for expire_time in [None, Some(t)] {
            let mut s = SessionV1::open("s1".into(), "u1".into(), t);
            (s.active, s.expire_time, s.version) = (active, expire_time, 3);
            let record = Record::of(Arc::from("s1"), Arc::from("u1"), &s);
            for alive_at in [None, near(-1), near(0), near(1), near(-1_000_000), near(1_000_000)] {
                for idle_cutoff in [None, near(-1), near(0), near(1), near(999_999), near(-999_999)] {
                    for (require_active, expected_version) in [(false, None), (true, Some(3)), (true, Some(4))] {
                        let c = WriteCondition { require_active, alive_at, idle_cutoff, expected_version };
                        assert_eq!(record.satisfies(&c), c.holds(&s), "{c:?} on {s:?}");
                    }
                }
            }
        }
    }
}

mod page_text {
    use super::*;
    use crate::toolkit::json::JsonText;
    use proptest::prelude::*;
    use serde_json::Value;

    fn session() -> impl Strategy<Value = SessionV1> {
        (crate::data::version1::arbitrary_session(), "u[0-3]").prop_map(|(mut s, user_id)| {
            s.user_id = user_id;
            s
        })
    }

    proptest! {
        /// The page text written from the records equals the page of list items encoded, and
        /// serde's text of them; a stored session comes back as it was put.
        #[test]
        fn the_page_text_equals_the_sessions_encoding(
            sessions in proptest::collection::vec(session(), 0..12),
            user in proptest::option::of("u[0-3]"),
            active in proptest::option::of(any::<bool>()),
            total in any::<bool>(),
        ) {
            let mut index = SessionsIndex::new();
            sessions.iter().for_each(|s| index.put(s.clone()));
            for s in &sessions {
                let mut expected = s.clone();
                expected.user = Some(s.user.clone().unwrap_or(Value::Null));
                expected.data = Some(s.data.clone().unwrap_or(Value::Null));
                let last = sessions.iter().rev().find(|x| x.id == s.id).unwrap();
                if std::ptr::eq(last, s) {
                    prop_assert_eq!(index.get(&s.id), Some(expected));
                }
            }
            let filter = SessionsFilter { user_id: user, active, ..Default::default() };
            let paging = PagingParams { skip: None, take: Some(100), total };
            let page = index.page(&filter, &paging, 100);
            let text = index.page_json(&filter, &paging, 100).into_string();
            prop_assert_eq!(&text, &JsonText::write(&page).into_string());
            prop_assert_eq!(&text, &serde_json::to_string(&page).unwrap());
        }
    }
}
