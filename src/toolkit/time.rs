//! Time: the injectable [`Clock`], and the one date format of the wire (RFC 3339, UTC,
//! milliseconds, `Z`).
//!
//! Every timestamp the product stores is truncated to milliseconds, so all backends agree with
//! MongoDB, which keeps milliseconds. Tests use a [`ManualClock`] — registered in a container as
//! `pip-services:clock:manual:default:1.0` — and move time forward instead of sleeping.

use crate::toolkit::component::Component;
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, TimeZone, Utc};
use parking_lot::Mutex;
use std::cell::Cell;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time, truncated to milliseconds.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate_millis(Utc::now())
    }
}

impl Component for SystemClock {}

/// A clock that moves only when told to (for tests).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A manual clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self { now: Mutex::new(truncate_millis(start)) }
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        let mut now = self.now.lock();
        *now += chrono::Duration::milliseconds(ms);
    }

    /// Sets the clock.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.now.lock() = truncate_millis(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock()
    }
}

impl Component for ManualClock {}

/// Drops sub-millisecond precision.
pub fn truncate_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t.timestamp_millis()).single().unwrap_or(t)
}

/// Formats a time as `2026-11-21T10:15:30.123Z`.
pub fn format_time(t: DateTime<Utc>) -> String {
    match TimeText::new(&t) {
        Some(text) => text.as_str().to_string(),
        None => t.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

/// The wire form of a time (`2026-11-21T09:15:30.123Z`) written into a stack buffer: encoding a
/// page of sessions formats hundreds of times, and this skips chrono's formatter machinery and
/// the allocation. Only for years 0–9999 (anything else goes through chrono).
#[derive(Debug)]
pub struct TimeText([u8; 24]);

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;
/// The milliseconds of 0000-01-01T00:00:00Z and of 10000-01-01T00:00:00Z (the range of
/// [`TimeText`]).
const FIRST_MS: i64 = -62_167_219_200_000;
const END_MS: i64 = 253_402_300_800_000;

impl TimeText {
    /// The text of `t`, or `None` outside the years 0–9999 or inside a leap second.
    pub fn new(t: &DateTime<Utc>) -> Option<Self> {
        if t.timestamp_subsec_nanos() >= 1_000_000_000 {
            return None;
        }
        Self::from_millis(t.timestamp_millis())
    }

    /// The text of the time `ms` milliseconds after the Unix epoch (what every stored time is:
    /// the product keeps milliseconds), or `None` outside the years 0–9999. Formatted straight
    /// from the number, without building a chrono time: the time of day is arithmetic, and the
    /// date part is remembered per thread for the last day formatted, since the times of a page
    /// mostly share a day (otherwise it comes from the day number).
    pub fn from_millis(ms: i64) -> Option<Self> {
        if !(FIRST_MS..END_MS).contains(&ms) {
            return None;
        }
        let (day, in_day) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
        let mut b = *b"0000-00-00T00:00:00.000Z";
        b[..10].copy_from_slice(&date_text(day)?);
        // In 0..DAY_MS, so it fits.
        let in_day = u32::try_from(in_day).unwrap_or(0);
        let (secs, milli) = (in_day / 1000, in_day % 1000);
        two(&mut b, 11, secs / 3600);
        two(&mut b, 14, secs / 60 % 60);
        two(&mut b, 17, secs % 60);
        two(&mut b, 20, milli / 10); // the first two of the three digits
        b[22] = b'0' + u8::try_from(milli % 10).unwrap_or(0);
        Some(Self(b))
    }

    /// The text as bytes (ASCII), without `as_str`'s UTF-8 check.
    pub fn as_bytes(&self) -> &[u8; 24] {
        &self.0
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Writes `v` (in 0..100) as two digits at `at`.
fn two(b: &mut [u8], at: usize, v: u32) {
    let v = u8::try_from(v).unwrap_or(0);
    b[at] = b'0' + v / 10;
    b[at + 1] = b'0' + v % 10;
}

/// `YYYY-MM-DD` of the day `day` days after 1970-01-01 (in the years 0–9999), remembering the
/// last one per thread.
fn date_text(day: i64) -> Option<[u8; 10]> {
    thread_local! {
        static LAST: Cell<Option<(i64, [u8; 10])>> = const { Cell::new(None) };
    }
    LAST.with(|last| match last.get() {
        Some((d, text)) if d == day => Some(text),
        _ => {
            let date = NaiveDate::from_num_days_from_ce_opt(i32::try_from(day + 719_163).ok()?)?;
            let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
            let mut b = *b"0000-00-00";
            two(&mut b, 0, year / 100);
            two(&mut b, 2, year % 100);
            two(&mut b, 5, date.month());
            two(&mut b, 8, date.day());
            last.set(Some((day, b)));
            Some(b)
        }
    })
}

/// Parses an RFC 3339 / ISO 8601 date-time (a bare date means midnight UTC), truncated to ms.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(truncate_millis(t.with_timezone(&Utc)));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(truncate_millis(t.and_utc()));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// Serde helpers for times on the wire (millisecond RFC 3339).
///
/// Times are read through a visitor so the text is parsed where it lies, without a copy: sessions
/// carry two or three times each, and a store's start-up decodes millions of them.
pub mod serde_time {
    use super::{format_time, parse_time, TimeText};
    use chrono::{DateTime, Utc};
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    struct TimeVisitor;

    impl Visitor<'_> for TimeVisitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 date-time")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            parse_time(s).ok_or_else(|| E::custom(format!("invalid date-time {s:?}")))
        }
    }

    struct OptionVisitor;

    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<DateTime<Utc>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 date-time or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(TimeVisitor).map(Some)
        }
    }

    /// Serialises a time.
    ///
    /// # Errors
    /// Never fails for a valid serializer.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        match TimeText::new(t) {
            Some(text) => s.serialize_str(text.as_str()),
            None => s.serialize_str(&format_time(*t)),
        }
    }

    /// Deserialises a time.
    ///
    /// # Errors
    /// When the text is not a date-time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(TimeVisitor)
    }

    /// The same for optional times.
    pub mod option {
        use super::*;

        /// Serialises an optional time.
        ///
        /// # Errors
        /// Never fails for a valid serializer.
        pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        /// Deserialises an optional time.
        ///
        /// # Errors
        /// When the text is not a date-time.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
            d.deserialize_option(OptionVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_format_matches_chrono() {
        let mut t = Utc.timestamp_millis_opt(-62_167_219_200_000).unwrap(); // 0000-01-01
        let end = Utc.timestamp_millis_opt(253_402_300_799_999).unwrap(); // 9999-12-31T23:59:59.999
        let step = chrono::Duration::milliseconds(86_399_999_937); // ~1 day, every field moves
        while t <= end {
            assert_eq!(format_time(t), t.to_rfc3339_opts(SecondsFormat::Millis, true));
            t += step;
        }
        assert_eq!(format_time(end), "9999-12-31T23:59:59.999Z");
        let far = Utc.timestamp_millis_opt(253_402_300_800_000).unwrap();
        assert!(TimeText::new(&far).is_none());
        assert_eq!(format_time(far), far.to_rfc3339_opts(SecondsFormat::Millis, true));
    }

    #[test]
    fn remembered_date_follows_the_date() {
        let a = parse_time("2026-03-04T05:06:07.089Z").unwrap();
        let day = chrono::Duration::days(1);
        let ms = chrono::Duration::milliseconds(1);
        for t in [a, a + ms, a + day, a - day * 400, a - ms * 18_367_090, a] {
            assert_eq!(format_time(t), t.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31).unwrap().and_hms_milli_opt(23, 59, 59, 1_500).unwrap();
        assert!(TimeText::new(&leap.and_utc()).is_none());
    }

    #[test]
    fn text_from_millis_matches_chrono() {
        let chrono_text = |ms: i64| Utc.timestamp_millis_opt(ms).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true);
        let (first, last) = (-62_167_219_200_000i64, 253_402_300_799_999i64);
        // Every field moves from one step to the next; the edges of the range, the epoch and the
        // milliseconds around midnight (before and after 1970) are hit exactly.
        let steps = (first..=last).step_by(86_399_999_937).chain([first, first + 1, last - 1, last]);
        for ms in steps.chain([-86_400_001, -86_400_000, -1, 0, 1, 86_399_999, 86_400_000, 951_782_400_000]) {
            assert_eq!(TimeText::from_millis(ms).unwrap().as_str(), chrono_text(ms), "{ms}");
        }
        assert!(TimeText::from_millis(first - 1).is_none());
        assert!(TimeText::from_millis(last + 1).is_none());
        assert!(TimeText::from_millis(i64::MIN).is_none() && TimeText::from_millis(i64::MAX).is_none());
    }

    #[test]
    fn formats_and_parses_milliseconds() {
        let t = parse_time("2026-11-21T10:15:30.123456+01:00").unwrap();
        assert_eq!(format_time(t), "2026-11-21T09:15:30.123Z");
        assert_eq!(format_time(parse_time("2026-01-02").unwrap()), "2026-01-02T00:00:00.000Z");
        assert_eq!(format_time(parse_time("2026-01-02T03:04:05").unwrap()), "2026-01-02T03:04:05.000Z");
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("2026-13-01").is_none());
    }

    #[test]
    fn serde_times_read_in_place_and_null_is_none() {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            #[serde(with = "serde_time")]
            a: DateTime<Utc>,
            #[serde(default, with = "serde_time::option")]
            b: Option<DateTime<Utc>>,
        }
        let t: T = serde_json::from_str(r#"{"a": "2026-01-02T03:04:05.678Z", "b": null}"#).unwrap();
        assert_eq!((format_time(t.a), t.b), ("2026-01-02T03:04:05.678Z".to_string(), None));
        let t: T = serde_json::from_str(r#"{"a": "2026-01-02T03:04:05.678\u005a", "b": "2026-01-03"}"#).unwrap();
        assert_eq!(t.b.map(format_time).as_deref(), Some("2026-01-03T00:00:00.000Z"));
        assert!(serde_json::from_str::<T>(r#"{"a": "2026-01-02"}"#).unwrap().b.is_none());
        let e = serde_json::from_str::<T>(r#"{"a": "soon"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid date-time \"soon\""), "{e}");
        assert!(serde_json::from_str::<T>(r#"{"a": 5}"#).is_err());
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(parse_time("2026-01-01T00:00:00Z").unwrap());
        assert_eq!(format_time(c.now()), "2026-01-01T00:00:00.000Z");
        c.advance_ms(1500);
        assert_eq!(format_time(c.now()), "2026-01-01T00:00:01.500Z");
    }
}
