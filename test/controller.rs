//! The controller's background sweep, driven by tokio's paused clock and the manual clock:
//! nothing sleeps for real.

use serde_json::json;
use service_sessions::data::version1::OpenSessionRequest;
use service_sessions::logic::{ControllerOptions, SessionsController};
use service_sessions::persistence::memory::SessionsMemoryPersistence;
use service_sessions::persistence::SessionsPersistence;
use service_sessions::toolkit::component::Component;
use service_sessions::toolkit::time::{parse_time, ManualClock};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn the_sweep_closes_expired_sessions_on_its_period_and_stops_on_close() {
    let store = Arc::new(SessionsMemoryPersistence::new());
    let clock = Arc::new(ManualClock::new(parse_time("2026-01-01T00:00:00Z").unwrap()));
    let options = ControllerOptions { expire_timeout: 1_000, cleanup_interval: 60_000, ..Default::default() };
    let c = SessionsController::with(options, store.clone(), clock.clone());
    c.open(None).await.unwrap();
    let request = |user: &str| OpenSessionRequest { user_id: user.into(), data: json!({"k": 1}), ..Default::default() };
    let s = c.open_session(None, request("u1")).await.unwrap();
    clock.advance_ms(5_000);
    let fresh = c.open_session(None, request("u2")).await.unwrap();

    tokio::time::advance(Duration::from_millis(59_000)).await;
    tokio::task::yield_now().await;
    assert!(store.get_one_by_id(None, &s.id).await.unwrap().unwrap().active, "no sweep before the period");

    tokio::time::advance(Duration::from_millis(1_000)).await;
    let mut closed = None;
    for _ in 0..100 {
        tokio::task::yield_now().await;
        let now = store.get_one_by_id(None, &s.id).await.unwrap().unwrap();
        if !now.active {
            closed = Some(now);
            break;
        }
    }
    let closed = closed.expect("the sweep ran");
    assert_eq!(closed.close_time, Some(parse_time("2026-01-01T00:00:05Z").unwrap()));
    assert_eq!(closed.data, Some(serde_json::Value::Null));
    assert!(store.get_one_by_id(None, &fresh.id).await.unwrap().unwrap().active);

    c.close(None).await.unwrap();
    clock.advance_ms(5_000);
    tokio::time::advance(Duration::from_millis(600_000)).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        store.get_one_by_id(None, &fresh.id).await.unwrap().unwrap().active,
        "the sweep stopped with the controller"
    );
}

#[tokio::test]
async fn an_idle_timeout_of_zero_never_expires() {
    let store = Arc::new(SessionsMemoryPersistence::new());
    let clock = Arc::new(ManualClock::new(parse_time("2026-01-01T00:00:00Z").unwrap()));
    let c = SessionsController::with(
        ControllerOptions { expire_timeout: 0, cleanup_interval: 0, ..Default::default() },
        store,
        clock.clone(),
    );
    let s = c.open_session(None, OpenSessionRequest { user_id: "u".into(), ..Default::default() }).await.unwrap();
    clock.advance_ms(10_000_000_000);
    assert_eq!(c.close_expired_sessions(None).await.unwrap(), 0);
    assert!(c.get_session_by_id(None, &s.id).await.unwrap().unwrap().active);
}
