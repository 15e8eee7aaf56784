//! Fuzzing with a fixed time budget (proptest; cargo-fuzz needs a nightly toolchain these
//! machines cannot install): arbitrary JSON and bytes through every command of the real command
//! set on the memory backend, and arbitrary text through the config template renderer. Nothing
//! may panic and no input may produce a server error.
//!
//! Each target generates fresh random cases until its budget is spent: `FUZZ_SECONDS` per target
//! (`test/run.sh`, and so CI, sets 60), 5 s when unset so a plain `cargo test` stays quick. A
//! failure is shrunk and printed; the minimal input then goes into `test/fuzz_corpus/` (bodies)
//! or becomes a test of its own, and the corpus runs on every test run.

use proptest::prelude::*;
use proptest::test_runner::{TestCaseResult, TestRunner};
use serde_json::{Map, Value};
use service_sessions::logic::{ControllerOptions, SessionsController};
use service_sessions::persistence::memory::SessionsMemoryPersistence;
use service_sessions::toolkit::commands::{Commandable, Parameters};
use service_sessions::toolkit::http::commandable::parse_body_parameters;
use service_sessions::toolkit::template::render;
use service_sessions::toolkit::time::{parse_time, ManualClock};
use std::fmt::Debug;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// The budget of each target: `FUZZ_SECONDS`, else 5 s.
fn budget() -> Duration {
    Duration::from_secs(std::env::var("FUZZ_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5))
}

/// Runs `test` on fresh cases of `strategy` (randomly seeded) in batches until the budget is
/// spent; a failing case is shrunk to a minimal one and reported.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S::Value: Debug,
{
    const BATCH: u32 = 64;
    let config = ProptestConfig { cases: BATCH, failure_persistence: None, ..ProptestConfig::default() };
    let started = Instant::now();
    // A runner counts its passes and stops at `cases`, so each batch gets a runner of its own,
    // seeded from one randomly seeded parent: every batch brings new cases.
    let mut seeds = TestRunner::new(config.clone());
    let mut cases = 0u64;
    while cases == 0 || started.elapsed() < budget() {
        let mut runner = TestRunner::new_with_rng(config.clone(), seeds.new_rng());
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} failed after {cases} passing cases: {e}");
        }
        cases += u64::from(BATCH);
    }
    eprintln!("fuzz target {name}: {cases} cases in {:.1} s", started.elapsed().as_secs_f64());
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap());

fn controller() -> Arc<SessionsController> {
    let clock = Arc::new(ManualClock::new(parse_time("2026-01-01T00:00:00Z").unwrap()));
    let options = ControllerOptions { cleanup_interval: 0, max_sessions_per_user: 3, ..Default::default() };
    SessionsController::with(options, Arc::new(SessionsMemoryPersistence::new()), clock)
}

const COMMANDS: &[&str] = &[
    "get_sessions",
    "get_session_by_id",
    "open_session",
    "store_session_data",
    "update_session_user",
    "close_session",
    "close_expired_sessions",
    "delete_session_by_id",
    "touch_session",
    "validate_session",
    "close_user_sessions",
    "rotate_session_id",
    "purge_sessions",
];

/// Runs one command; the only acceptable failures are client errors. The command runs on this
/// thread (`block_on`, no spawned task), so a panic in it unwinds into the runner, which reports
/// it as a failing case (see `a_panicking_case_fails_the_target`).
fn run(c: &SessionsController, command: &str, args: Parameters) {
    let set = c.command_set();
    let result = RUNTIME.block_on(set.execute(Some("fuzz"), command, args.clone()));
    if let Err(e) = result {
        assert!(e.status < 500, "{command} {args:?} gave a server error: {e:?}");
    }
}

#[test]
#[should_panic(expected = "fuzz target panics failed")]
fn a_panicking_case_fails_the_target() {
    fuzz("panics", any::<u8>(), |n| {
        assert!(n < 128, "a panic inside the target");
        Ok(())
    });
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z0-9_]{0,40}".prop_map(Value::String),
        "\\PC{0,20}".prop_map(Value::String),
        Just(Value::String("0123456789abcdef0123456789abcdef".into())),
        Just(Value::String("2026-01-01T00:00:00Z".into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects that use the real parameter names, so validation passes often and the logic runs.
fn arguments() -> impl Strategy<Value = Map<String, Value>> {
    let keys = prop::sample::select(vec![
        "session_id",
        "user_id",
        "user_name",
        "address",
        "client",
        "user",
        "data",
        "filter",
        "paging",
        "version",
        "ttl",
        "except_session_id",
        "skip",
        "take",
        "total",
        "active",
        "from_time",
        "to_time",
    ]);
    prop::collection::btree_map(keys, json_value(), 0..7)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

#[test]
fn commands_never_fail_on_the_server_side() {
    let steps = prop::collection::vec((prop::sample::select(COMMANDS), arguments()), 1..8);
    fuzz("commands", steps, |steps| {
        let c = controller();
        for (command, args) in steps {
            run(&c, command, Parameters::new(args));
        }
        Ok(())
    });
}

/// Filters fail closed, blank users are refused and integers beyond int64 are out of range: a
/// random filter either is refused (400) or lists only sessions that match every given text
/// field; a random `user_id` opens a session only when it is not blank; a `version` or `ttl`
/// beyond int64 never lets a write through.
#[test]
fn filters_users_and_integers_fail_closed() {
    let filter_keys = prop::sample::select(vec!["id", "user_id", "active", "from_time", "to_time", "other"]);
    let filters = prop::collection::btree_map(filter_keys, json_value(), 0..4);
    let users = prop_oneof!["[ \t\n]{0,3}".prop_map(Value::String), json_value()];
    let beyond = (i64::MAX as u64 + 1)..=u64::MAX;
    fuzz("fail closed", (filters, users, beyond), |(filter, user, beyond)| {
        let c = controller();
        let set = c.command_set();
        let exec = |command: &str, args: Value| {
            let Value::Object(args) = args else { unreachable!() };
            RUNTIME.block_on(set.execute(Some("fuzz"), command, Parameters::new(args)))
        };
        let opened = exec("open_session", serde_json::json!({"user_id": "a"})).unwrap().unwrap();
        let opened: Value = serde_json::from_str(opened.as_str()).unwrap();
        exec("open_session", serde_json::json!({"user_id": "b"})).unwrap();
        let filter = Value::Object(filter.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        match exec("get_sessions", serde_json::json!({"filter": filter})) {
            Err(e) => prop_assert_eq!(e.status, 400),
            Ok(page) => {
                let page: Value = serde_json::from_str(page.unwrap().as_str()).unwrap();
                for key in ["id", "user_id"] {
                    let want = &filter[key];
                    prop_assert!(want.is_null() || want.is_string(), "{} = {} was accepted", key, want);
                    for s in page["data"].as_array().unwrap() {
                        prop_assert!(want.is_null() || &s[key] == want, "{} listed for {} = {}", s, key, want);
                    }
                }
            }
        }
        let blank = user.as_str().is_some_and(|u| u.trim().is_empty());
        let open = exec("open_session", serde_json::json!({"user_id": user}));
        prop_assert!(!(blank && open.is_ok()), "a blank user_id opened a session");
        let id = opened["id"].clone();
        for (command, args) in [
            ("store_session_data", serde_json::json!({"session_id": id, "data": 1, "version": beyond})),
            ("close_session", serde_json::json!({"session_id": id, "version": beyond})),
            ("delete_session_by_id", serde_json::json!({"session_id": id, "version": beyond})),
            ("open_session", serde_json::json!({"user_id": "c", "ttl": beyond})),
        ] {
            let e = exec(command, args).err().map(|e| e.status);
            prop_assert_eq!(e, Some(400), "{} with {} went through", command, beyond);
        }
        Ok(())
    });
}

#[test]
fn request_bodies_never_fail_on_the_server_side() {
    let bodies = (prop::collection::vec(any::<u8>(), 0..200), prop::sample::select(COMMANDS));
    fuzz("request bodies", bodies, |(body, command)| {
        let c = controller();
        if let Ok(args) = parse_body_parameters(&body) {
            run(&c, command, args);
        }
        Ok(())
    });
}

#[test]
fn the_template_renderer_never_panics() {
    let pieces = prop::collection::vec(
        prop::sample::select(vec![
            "{{", "}}", "{{{", "}}}", "#if ", "#unless ", "/if", "/unless", "^", "#", "/", "!", ">", "X", "Y", " ",
            "\n", "é", "{", "}", "else",
        ]),
        0..40,
    );
    let texts = prop_oneof![pieces.prop_map(|p| p.concat()), any::<String>()];
    fuzz("template renderer", texts, |text| {
        let mut params = indexmap::IndexMap::new();
        params.insert("X".to_string(), "1".to_string());
        if let Err(e) = render(&text, &params) {
            prop_assert_eq!(e.status, 500);
            prop_assert!(e.details.contains_key("line") && e.details.contains_key("column"), "{:?}", e);
        }
        Ok(())
    });
}

#[test]
fn the_corpus_runs_through_every_command() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/test/fuzz_corpus");
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let body = std::fs::read(entry.unwrap().path()).unwrap();
        files += 1;
        let c = controller();
        for command in COMMANDS {
            if let Ok(args) = parse_body_parameters(&body) {
                run(&c, command, args);
            }
        }
    }
    assert!(files >= 5);
}
