//! What the integration tests need from outside, all read here: the test servers and tools that
//! `test/run.sh` starts or installs and names in the environment.
//!
//! A test that needs one begins with `requires!("MONGODB_URI")`. When the variable is set the
//! test runs. When it is not, the test passes without running and one line per variable says so
//! on stderr (`skipped: MONGODB_URI not set (...); run `bash test/run.sh``), so plain `cargo test`
//! works on a fresh clone. `test/run.sh` (the README's test command, and CI) sets
//! `SESSIONS_TEST_REQUIRE_ALL=1`: then a missing variable fails the test instead.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Mutex;

/// Set (to anything but `0` or nothing) by `test/run.sh`: every variable is required.
pub(crate) const REQUIRE_ALL: &str = "SESSIONS_TEST_REQUIRE_ALL";

/// What a test does about one variable.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// It is set: run, with this value.
    Run(String),
    /// It is not set: skip, saying this.
    Skip(String),
    /// It is not set but required: fail, saying this.
    Fail(String),
}

/// What each variable names, and who provides it.
fn what(name: &str) -> &'static str {
    match name {
        "MONGODB_URI" => "a MongoDB deployment; test/run.sh starts a MongoDB-compatible test server",
        "SECANTUS_CMD" => {
            "the command of the MongoDB-compatible test server the outage tests start; test/run.sh installs it"
        }
        "REDIS_URI" => "a Redis server; test/run.sh starts one (and installs redis-server)",
        "REDIS_CLUSTER_NODES" => "a Redis Cluster's host:port list; test/run.sh starts one",
        "SESSIONS_NODE_DIR" => "the original service-sessions-node; test/run.sh installs it from npm",
        "SESSIONS_NODE_CLIENT_DIR" => "the original's Node client SDK; test/run.sh installs it from npm",
        _ => "a test server or tool",
    }
}

/// The decision for `name` whose value is `value`, when `require_all` says every variable is
/// required.
pub(crate) fn decide(name: &str, value: Option<&str>, require_all: bool) -> Decision {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => Decision::Run(v.to_string()),
        None if require_all => Decision::Fail(format!(
            "{name} is not set ({}) while {REQUIRE_ALL} requires every test server: run the suite with `bash test/run.sh`",
            what(name)
        )),
        None => Decision::Skip(format!("skipped: {name} not set ({}); run `bash test/run.sh`", what(name))),
    }
}

fn require_all() -> bool {
    std::env::var(REQUIRE_ALL).is_ok_and(|v| !v.trim().is_empty() && v.trim() != "0")
}

/// The value of `name`, or `None` when the test is to be skipped (said once per variable on the
/// process's stderr, which the test harness does not capture).
///
/// # Panics
/// When `name` is not set and [`REQUIRE_ALL`] is.
pub(crate) fn var(name: &str) -> Option<String> {
    match decide(name, std::env::var(name).ok().as_deref(), require_all()) {
        Decision::Run(v) => Some(v),
        Decision::Skip(line) => {
            static SAID: Mutex<Option<HashSet<String>>> = Mutex::new(None);
            let first = SAID.lock().unwrap().get_or_insert_with(HashSet::new).insert(name.to_string());
            if first {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            None
        }
        Decision::Fail(message) => panic!("{message}"),
    }
}

/// The value of `name`, for helpers that run only in tests that began with `requires!(name)`.
///
/// # Panics
/// When it is not set.
pub(crate) fn value(name: &str) -> String {
    var(name).unwrap_or_else(|| panic!("{name} is not set: a test that needs it must begin with requires!(\"{name}\")"))
}

/// Returns from the test (it passes, skipped) unless every named variable is set; fails it when
/// one is missing and [`REQUIRE_ALL`] is set.
#[macro_export]
macro_rules! requires {
    ($($name:literal),* $(,)?) => {
        $(
            if $crate::requires::var($name).is_none() {
                return;
            }
        )*
    };
}

#[test]
fn an_unset_variable_skips_unless_every_one_is_required() {
    assert_eq!(decide("MONGODB_URI", Some("mongodb://h:1"), false), Decision::Run("mongodb://h:1".into()));
    assert_eq!(decide("MONGODB_URI", Some("mongodb://h:1"), true), Decision::Run("mongodb://h:1".into()));
    for unset in [None, Some(""), Some("  ")] {
        match decide("MONGODB_URI", unset, false) {
            Decision::Skip(line) => {
                assert!(line.starts_with("skipped: MONGODB_URI not set"), "{line}");
                assert!(line.ends_with("run `bash test/run.sh`"), "{line}");
            }
            other => panic!("{other:?}"),
        }
        match decide("MONGODB_URI", unset, true) {
            Decision::Fail(message) => assert!(message.contains("MONGODB_URI is not set"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}

/// Run only by the test below, in a child process of this test binary.
#[test]
#[ignore = "run by requires::the_test_binary_skips_or_fails_on_a_missing_variable"]
fn needs_the_probe_variable() {
    requires!("SESSIONS_TEST_PROBE");
    panic!("ran with SESSIONS_TEST_PROBE set");
}

#[test]
fn the_test_binary_skips_or_fails_on_a_missing_variable() {
    let run = |require_all: Option<&str>| {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--ignored", "--exact", "requires::needs_the_probe_variable", "--test-threads", "1"])
            .env_remove("SESSIONS_TEST_PROBE")
            .env_remove(REQUIRE_ALL);
        if let Some(v) = require_all {
            cmd.env(REQUIRE_ALL, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (passed, output) = run(None);
    assert!(passed, "{output}");
    assert!(output.contains("skipped: SESSIONS_TEST_PROBE not set"), "{output}");
    assert!(output.contains("1 passed"), "{output}");
    let (passed, output) = run(Some("0"));
    assert!(passed, "{output}");
    let (passed, output) = run(Some("1"));
    assert!(!passed, "{output}");
    assert!(output.contains("SESSIONS_TEST_PROBE is not set") && output.contains(REQUIRE_ALL), "{output}");
    assert!(output.contains("1 failed"), "{output}");
}
