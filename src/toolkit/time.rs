//! Time: the injectable [`Clock`], and the one date format of the wire (RFC 3339, UTC,
//! milliseconds, `Z`).
//!
//! Every timestamp the product stores is truncated to milliseconds, so all backends agree with
//! MongoDB, which keeps milliseconds. Tests use a [`ManualClock`] — registered in a container as
//! `pip-services:clock:manual:default:1.0` — and move time forward instead of sleeping.

use crate::toolkit::component::Component;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use parking_lot::Mutex;

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
        // The milliseconds since the epoch made a time once, where `Utc::now` and then the
        // truncation made a date twice (every command reads this clock).
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok();
        match since_epoch.and_then(|d| i64::try_from(d.as_millis()).ok()).and_then(DateTime::from_timestamp_millis) {
            Some(t) => t,
            None => truncate_millis(Utc::now()),
        }
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
/// the allocation. Only for years 0–9999 (anything else goes through chrono). Kept between
/// JSON quotes, so that a writer copies the quoted string in one piece.
#[derive(Debug)]
pub struct TimeText([u8; 26]);

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
    /// from the number, without building a chrono time and without a per-thread cache (the times
    /// of one session fall on different days — an `expire_time` is often tomorrow — so a cache of
    /// the last day missed on most items of a page): the date comes from the day number by Neri
    /// and Schneider's Euclidean affine functions (a few multiplications and shifts, 32-bit), the
    /// time of day by division, every two digits from a table.
    #[inline]
    pub fn from_millis(ms: i64) -> Option<Self> {
        if !(FIRST_MS..END_MS).contains(&ms) {
            return None;
        }
        // Milliseconds since 0000-01-01 (non-negative and below 10 000 years by the check above).
        let since_first = u64::try_from(ms - FIRST_MS).ok()?;
        let (day, in_day) = (since_first / DAY_MS as u64, (since_first % DAY_MS as u64) as u32);
        let (year, month, day) = civil_from_days(day as u32);
        let (secs, milli) = (in_day / 1000, in_day % 1000);
        let mut b = *b"\"0000-00-00T00:00:00.000Z\"";
        two(&mut b, 1, year / 100);
        two(&mut b, 3, year % 100);
        two(&mut b, 6, month);
        two(&mut b, 9, day);
        two(&mut b, 12, secs / 3600);
        two(&mut b, 15, secs / 60 % 60);
        two(&mut b, 18, secs % 60);
        two(&mut b, 21, milli / 10); // the first two of the three digits
        b[23] = b'0' + (milli % 10) as u8;
        Some(Self(b))
    }

    /// The text as bytes (ASCII), without `as_str`'s UTF-8 check.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.get(1..25).unwrap_or_default()
    }

    /// The text between JSON quotes (`"2026-11-21T09:15:30.123Z"`, a JSON string: nothing in it
    /// needs escaping).
    pub fn quoted(&self) -> &[u8; 26] {
        &self.0
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// The year, month (1–12) and day (1–31) of the day `day` days after 0000-01-01 (proleptic
/// Gregorian), for days of the years 0–9999.
///
/// Neri and Schneider, "Euclidean affine functions and their application to calendar
/// algorithms" (2022): the day is counted from a 1st of March (so that the leap day ends the
/// computational year), shifted by one 400-year era to keep it positive; the century and the
/// day of the century come from one division, the year of the century and the day of the year
/// from one 64-bit product, the month and day of the month from one multiplication.
fn civil_from_days(day: u32) -> (u32, u32, u32) {
    // Days since -0400-03-01: 0000-01-01 is 60 days before 0000-03-01 (0000 is a leap year).
    let n = day + 146_097 - 60;
    let n1 = 4 * n + 3;
    let (century, n_c) = (n1 / 146_097, n1 % 146_097 / 4);
    let p2 = 2_939_745 * u64::from(4 * n_c + 3);
    let (year_of_century, day_of_year) = ((p2 >> 32) as u32, (p2 as u32) / 2_939_745 / 4);
    let n3 = 2141 * day_of_year + 197_913;
    let (month, day_of_month) = (n3 >> 16, (n3 & 0xffff) / 2141);
    // January and February belong to the next civil year.
    let january = u32::from(day_of_year >= 306);
    (100 * century + year_of_century + january - 400, month - 12 * january, day_of_month + 1)
}

/// `00`, `01`, … `99`: two digits at a time.
static DIGITS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// Writes `v` (in 0..100) as two digits at `at`.
#[inline]
fn two(b: &mut [u8; 26], at: usize, v: u32) {
    let [hi, lo] = DIGITS.get(v as usize).copied().unwrap_or([b'0'; 2]);
    b[at] = hi;
    b[at + 1] = lo;
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
    fn the_system_clock_reads_whole_milliseconds_of_now() {
        let before = truncate_millis(Utc::now());
        let now = SystemClock.now();
        let after = Utc::now();
        assert_eq!(now.timestamp_subsec_nanos() % 1_000_000, 0);
        assert!(before <= now && now <= after, "{before} {now} {after}");
        assert_eq!(truncate_millis(now), now);
    }

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
    fn dates_follow_the_day() {
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
    fn every_day_of_the_years_0_to_9999_has_chronos_date() {
        use chrono::Datelike;
        let days = (END_MS - FIRST_MS) / DAY_MS;
        for day in 0..days {
            let date = chrono::NaiveDate::from_num_days_from_ce_opt(i32::try_from(day).unwrap() - 365).unwrap();
            let expected = (u32::try_from(date.year()).unwrap(), date.month(), date.day());
            assert_eq!(civil_from_days(u32::try_from(day).unwrap()), expected, "{date}");
        }
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
