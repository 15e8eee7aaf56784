//! The persistence conformance fixture and the backends that run it.
//!
//! `conformance_tests!(module, factory)` expands to one `#[tokio::test]` per fixture case;
//! `factory` is an async function returning a fresh, opened [`Subject`]. The macro holds the one
//! list of cases; `every_fixture_case_is_listed` fails when a public case of the fixture is
//! missing from it.
//! `conformance_tests!(module, factory, requires ["VAR", ...])` skips the cases when a variable
//! is not set (see `requires.rs`).

mod file;
pub(crate) mod fixture;
mod memory;
pub(crate) mod mongodb;
pub(crate) mod redis;

use service_sessions::persistence::SessionsPersistence;
use std::any::Any;
use std::sync::Arc;

/// A fresh store under test, plus whatever must live as long as it (a temp folder, a server).
pub(crate) struct Subject {
    pub persistence: Arc<dyn SessionsPersistence>,
    pub _guard: Box<dyn Any + Send + Sync>,
}

/// Expands to one `#[tokio::test]` per fixture case for a backend (see the module doc).
#[macro_export]
macro_rules! conformance_tests {
    ($name:ident, $factory:path) => {
        $crate::conformance_tests!($name, $factory, requires []);
    };
    ($name:ident, $factory:path, requires $vars:tt) => {
        mod $name {
            use $crate::persistence::fixture;
            $crate::conformance_tests!(@each [@cases $factory; $vars]);
        }
    };
    // The names of the listed cases (`every_fixture_case_is_listed` checks them).
    (@names) => {
        $crate::conformance_tests!(@each [@names_of])
    };
    // The one list of fixture cases, handed to the arm named in brackets.
    (@each [$($how:tt)*]) => {
        $crate::conformance_tests! {
            $($how)*;
            create_and_get, create_rejects_taken_ids, store_data_replaces_and_bumps, update_user_replaces,
            close_clears_payload, conditions_fail_with_current_record, filter_by_each_field,
            time_window_bounds, order_is_time_desc_then_id, paging_and_totals, list_leaves_out_payload,
            page_text_is_the_encoded_page, session_text_is_the_encoded_session,
            close_expired_respects_cutoff, delete_returns_record, concurrent_writes_lose_nothing,
            values_round_trip_exactly, clear_empties, expire_time_decides_liveness, conditional_delete,
            per_user_limit_deny_and_close_oldest, concurrent_opens_respect_the_limit, concurrent_opens_respect_the_total_cap,
            close_user_sessions_except_one,
            purge_deletes_oldest_closed_in_batches, rotate_moves_the_session,
            scan_walks_whole_sessions_in_list_order
        }
    };
    (@names_of; $($case:ident),*) => {
        [$(stringify!($case)),*]
    };
    (@cases $factory:path; $vars:tt; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::requires!$vars;
                let subject = $factory().await;
                fixture::$case(subject.persistence.clone()).await;
            }
        )*
    };
}

/// A case written in the fixture but missing from the macro's list would run on no backend:
/// the list must name every `pub`/`pub(crate)` `async fn` of `fixture.rs`, once.
#[test]
fn every_fixture_case_is_listed() {
    let listed: Vec<&str> = crate::conformance_tests!(@names).to_vec();
    let mut defined: Vec<&str> = include_str!("fixture.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("pub async fn ").or_else(|| line.strip_prefix("pub(crate) async fn ")))
        .filter_map(|rest| rest.split_once('(').map(|(name, _)| name))
        .collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    defined.sort_unstable();
    assert_eq!(sorted, defined, "the conformance list and the fixture's cases differ");
}
