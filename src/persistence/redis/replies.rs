//! The arguments the scripts take and the replies they give, as Rust values.

use super::codec::{int, ms};
use super::connection::as_array;
use crate::data::version1::SessionV1;
use crate::persistence::WriteCondition;
use chrono::{DateTime, Utc};
use redis::Value;

/// `''` or the number.
pub(super) fn opt_arg(v: Option<i64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

/// The six condition arguments of the UPDATE / DELETE scripts ([`WriteCondition`] plus the
/// `active` flag and liveness branch of the record the decision was based on).
pub(super) fn condition_args(c: &WriteCondition, read: &SessionV1) -> [String; 6] {
    [
        if c.require_active { "1" } else { "0" }.to_string(),
        opt_arg(c.alive_at.map(ms)),
        opt_arg(c.idle_cutoff.map(ms)),
        opt_arg(c.expected_version),
        if read.active { "1" } else { "0" }.to_string(),
        if read.expire_time.is_some() { "1" } else { "0" }.to_string(),
    ]
}

/// The score range of a time window on `request_time` (scores are `-request_time`): `from`
/// inclusive, `to` exclusive.
pub(super) fn score_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> (String, String) {
    let min = to.map_or_else(|| "-inf".to_string(), |t| format!("({}", -ms(t)));
    let max = from.map_or_else(|| "+inf".to_string(), |t| (-ms(t)).to_string());
    (min, max)
}

/// What an UPDATE / DELETE / ROTATE script answered.
pub(super) enum Step {
    Done(Vec<Value>),
    NotFound,
    Changed,
    Unreadable,
    Taken,
}

pub(super) fn step(v: Value) -> Step {
    let items = match v {
        Value::Array(items) => items,
        _ => return Step::Unreadable,
    };
    let record = |i: &[Value]| i.get(1).map(|r| as_array(r).to_vec()).unwrap_or_default();
    match items.first().and_then(int) {
        Some(1) => Step::Done(record(&items)),
        Some(0) => Step::NotFound,
        Some(2) => Step::Changed,
        Some(4) => Step::Taken,
        _ => Step::Unreadable,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn time_windows_become_score_ranges() {
        let t = chrono::DateTime::<Utc>::from_timestamp_millis(1000).unwrap();
        assert_eq!(score_range(None, None), ("-inf".to_string(), "+inf".to_string()));
        assert_eq!(score_range(Some(t), Some(t)), ("(-1000".to_string(), "-1000".to_string()));
    }
}
