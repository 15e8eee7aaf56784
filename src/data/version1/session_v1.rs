//! `SessionV1`: the session record exactly as it travels on the wire (contract §1).

use crate::toolkit::errors::ApplicationError;
use crate::toolkit::json::{write_i64, write_opt_utf8, write_str, write_time_ms, JsonRef, WriteJson};
use crate::toolkit::time::serde_time;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A user session.
///
/// `user` and `data` are `Some(value)` on a full session (`Some(Value::Null)` is JSON `null`) and
/// `None` in list items, where the keys are left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionV1 {
    /// 32 lowercase hex characters: a version-4 UUID without dashes (see [`new_session_id`]).
    pub id: String,
    /// The user the session belongs to.
    pub user_id: String,
    /// The user's display name.
    #[serde(default)]
    pub user_name: Option<String>,
    /// The client's address.
    #[serde(default)]
    pub address: Option<String>,
    /// The client's description.
    #[serde(default)]
    pub client: Option<String>,
    /// True while open.
    pub active: bool,
    /// When the session was opened.
    #[serde(with = "serde_time")]
    pub open_time: DateTime<Utc>,
    /// Last activity.
    #[serde(with = "serde_time")]
    pub request_time: DateTime<Utc>,
    /// When the session was closed; absent while open.
    #[serde(default, with = "serde_time::option", skip_serializing_if = "Option::is_none")]
    pub close_time: Option<DateTime<Utc>>,
    /// Cached user object.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub user: Option<Value>,
    /// Session data.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// 1 on open, +1 on every change (extension).
    #[serde(default = "first_version")]
    pub version: i64,
    /// When the session expires unless it is used again (extension; open sessions only).
    #[serde(default, with = "serde_time::option", skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<DateTime<Utc>>,
    /// The session's own idle timeout in ms, set by `open_session`'s `ttl` (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

/// The fields of a session as its JSON text needs them: implemented by [`SessionV1`] and by the
/// compact records of the in-memory index, so that one writer ([`write_session`]) holds the key
/// order and formatting of the session layout.
pub trait SessionView {
    /// `id`.
    fn id(&self) -> &str;
    /// `user_id`.
    fn user_id(&self) -> &str;
    /// `user_name`.
    fn user_name(&self) -> Option<&str>;
    /// `address`.
    fn address(&self) -> Option<&str>;
    /// `client`.
    fn client(&self) -> Option<&str>;
    /// `active`.
    fn active(&self) -> bool;
    /// `open_time`, in milliseconds since the Unix epoch (every stored time is whole
    /// milliseconds; the writer formats straight from the number).
    fn open_ms(&self) -> i64;
    /// `request_time`, in milliseconds.
    fn request_ms(&self) -> i64;
    /// `close_time`, in milliseconds; the key is left out when `None`.
    fn close_ms(&self) -> Option<i64>;
    /// `user`, as a value or as its canonical text; the key is left out when `None` (list items).
    fn user(&self) -> Option<JsonRef<'_>>;
    /// `data`, as a value or as its canonical text; the key is left out when `None` (list items).
    fn data(&self) -> Option<JsonRef<'_>>;
    /// `version`.
    fn version(&self) -> i64;
    /// `expire_time`, in milliseconds; the key is left out when `None`.
    fn expire_ms(&self) -> Option<i64>;
    /// `ttl`; the key is left out when `None`.
    fn ttl(&self) -> Option<i64>;

    /// Writes the id as a JSON string where [`write_session`] puts it: by default from
    /// [`SessionView::id`]. A view that holds the id in another form writes it from that.
    fn write_id(&self, out: &mut Vec<u8>) {
        write_str(out, self.id());
    }

    /// Writes `,"user_name":…,"address":…,"client":…` where [`write_session`] puts them: by
    /// default from the accessors. A view that holds them as bytes writes them from those.
    fn write_texts(&self, out: &mut Vec<u8>) {
        write_texts(
            out,
            [self.user_name().map(str::as_bytes), self.address().map(str::as_bytes), self.client().map(str::as_bytes)],
        );
    }

    /// Writes `,"user":…` and `,"data":…` where [`write_session`] puts them (before `version`):
    /// by default from [`SessionView::user`] and [`SessionView::data`], each key left out when
    /// `None`. A view that holds the payloads in another form (raw BSON) writes them itself.
    fn write_payloads(&self, out: &mut Vec<u8>) {
        if let Some(v) = self.user() {
            out.extend_from_slice(b",\"user\":");
            v.write(out);
        }
        if let Some(v) = self.data() {
            out.extend_from_slice(b",\"data\":");
            v.write(out);
        }
    }
}

/// The accessors of [`SessionView`] for a session's flag, times, version and ttl, on a struct
/// that has them as [`SessionV1`] does (`active`, `version`, `ttl`; `open_time` and
/// `request_time` as `DateTime<Utc>`, `close_time` and `expire_time` as `Option<DateTime<Utc>>`)
/// — the struct itself, or the one at the field path given (`session_view_times!(session)`).
macro_rules! session_view_times {
    ($($field:ident).*) => {
        fn active(&self) -> bool {
            self$(.$field)*.active
        }
        fn open_ms(&self) -> i64 {
            self$(.$field)*.open_time.timestamp_millis()
        }
        fn request_ms(&self) -> i64 {
            self$(.$field)*.request_time.timestamp_millis()
        }
        fn close_ms(&self) -> Option<i64> {
            self$(.$field)*.close_time.map(|t| t.timestamp_millis())
        }
        fn version(&self) -> i64 {
            self$(.$field)*.version
        }
        fn expire_ms(&self) -> Option<i64> {
            self$(.$field)*.expire_time.map(|t| t.timestamp_millis())
        }
        fn ttl(&self) -> Option<i64> {
            self$(.$field)*.ttl
        }
    };
}

/// A stored session read in place: its fields borrowed from the bytes a store keeps (a file
/// store's frame, a raw BSON document), `user` and `data` in the form `P` that store reads them
/// in. [`borrowed_session_accessors`] writes its [`SessionView`] accessors but `user` and
/// `data`.
#[cfg(feature = "server")]
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BorrowedSession<'a, P> {
    pub(crate) id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) user_name: Option<&'a str>,
    pub(crate) address: Option<&'a str>,
    pub(crate) client: Option<&'a str>,
    pub(crate) active: bool,
    pub(crate) open_time: DateTime<Utc>,
    pub(crate) request_time: DateTime<Utc>,
    pub(crate) close_time: Option<DateTime<Utc>>,
    pub(crate) version: i64,
    pub(crate) user: Option<P>,
    pub(crate) data: Option<P>,
    pub(crate) expire_time: Option<DateTime<Utc>>,
    pub(crate) ttl: Option<i64>,
}

/// The accessors of [`SessionView`] but `user` and `data` of a [`BorrowedSession`]: the struct
/// itself, or the one at the field path given (`borrowed_session_accessors!(session)`).
#[cfg(feature = "server")]
macro_rules! borrowed_session_accessors {
    ($($field:ident).*) => {
        fn id(&self) -> &str {
            self$(.$field)*.id
        }
        fn user_id(&self) -> &str {
            self$(.$field)*.user_id
        }
        fn user_name(&self) -> Option<&str> {
            self$(.$field)*.user_name
        }
        fn address(&self) -> Option<&str> {
            self$(.$field)*.address
        }
        fn client(&self) -> Option<&str> {
            self$(.$field)*.client
        }
        $crate::data::version1::session_view_times!($($field).*);
    };
}
#[cfg(feature = "server")]
pub(crate) use {borrowed_session_accessors, session_view_times};

impl SessionView for SessionV1 {
    fn id(&self) -> &str {
        &self.id
    }
    fn user_id(&self) -> &str {
        &self.user_id
    }
    fn user_name(&self) -> Option<&str> {
        self.user_name.as_deref()
    }
    fn address(&self) -> Option<&str> {
        self.address.as_deref()
    }
    fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }
    fn user(&self) -> Option<JsonRef<'_>> {
        self.user.as_ref().map(JsonRef::Value)
    }
    fn data(&self) -> Option<JsonRef<'_>> {
        self.data.as_ref().map(JsonRef::Value)
    }
    session_view_times!();
}

/// Writes `,"user_name":…,"address":…,"client":…` from the texts' bytes (each UTF-8; `None`
/// is `null`): see [`SessionView::write_texts`].
pub fn write_texts(out: &mut Vec<u8>, texts: [Option<&[u8]>; 3]) {
    let [user_name, address, client] = texts;
    out.extend_from_slice(b",\"user_name\":");
    write_opt_utf8(out, user_name);
    out.extend_from_slice(b",\"address\":");
    write_opt_utf8(out, address);
    out.extend_from_slice(b",\"client\":");
    write_opt_utf8(out, client);
}

/// Appends the JSON text of a session: the same text as [`SessionV1`]'s derived `Serialize`
/// (field order, `null`s and omitted keys), written directly — sessions and pages of them are
/// the service's hot results. The fixed text between two fields is one constant copy (the key,
/// its punctuation and the next key where nothing optional lies between), times are written in
/// one copy each and `user`/`data` without serde. The caller reserves the room
/// ([`session_size_hint`]; a page reserves it for all its items at once).
pub fn write_session<S: SessionView + ?Sized>(s: &S, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":");
    s.write_id(out);
    out.extend_from_slice(b",\"user_id\":");
    write_str(out, s.user_id());
    s.write_texts(out);
    out.extend_from_slice(if s.active() {
        b",\"active\":true,\"open_time\":"
    } else {
        b",\"active\":false,\"open_time\":"
    });
    write_time_ms(out, s.open_ms());
    out.extend_from_slice(b",\"request_time\":");
    write_time_ms(out, s.request_ms());
    if let Some(t) = s.close_ms() {
        out.extend_from_slice(b",\"close_time\":");
        write_time_ms(out, t);
    }
    s.write_payloads(out);
    out.extend_from_slice(b",\"version\":");
    write_i64(out, s.version());
    if let Some(t) = s.expire_ms() {
        out.extend_from_slice(b",\"expire_time\":");
        write_time_ms(out, t);
    }
    if let Some(ttl) = s.ttl() {
        out.extend_from_slice(b",\"ttl\":");
        write_i64(out, ttl);
    }
    out.push(b'}');
}

/// A guess of the text's length for [`WriteJson::size_hint`]: keys, id, times and version take
/// up to ~290 bytes; the rest is the strings themselves (an estimate too small would copy the
/// whole page text once more when it grows).
pub fn session_size_hint<S: SessionView + ?Sized>(s: &S) -> usize {
    session_size_hint_of(
        s.user_id().len()
            + s.user_name().map_or(0, str::len)
            + s.address().map_or(0, str::len)
            + s.client().map_or(0, str::len),
    )
}

/// [`session_size_hint`] of a session whose `user_id`, `user_name`, `address` and `client` take
/// `text_bytes` bytes in all.
pub fn session_size_hint_of(text_bytes: usize) -> usize {
    320 + text_bytes
}

impl WriteJson for SessionV1 {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_session(self, out);
    }

    fn size_hint(&self) -> usize {
        session_size_hint(self)
    }
}

fn first_version() -> i64 {
    1
}

/// A key that is present deserialises to `Some`, even when its value is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl SessionV1 {
    /// A new open session.
    pub fn open(id: String, user_id: String, now: DateTime<Utc>) -> Self {
        Self {
            id,
            user_id,
            user_name: None,
            address: None,
            client: None,
            active: true,
            open_time: now,
            request_time: now,
            close_time: None,
            user: Some(Value::Null),
            data: Some(Value::Null),
            version: 1,
            expire_time: None,
            ttl: None,
        }
    }

    /// The list projection: the same session without `user` and `data`.
    #[must_use]
    pub fn without_payload(&self) -> Self {
        Self { user: None, data: None, ..self.clone() }
    }
}

/// Longest id a session can have (ids are generated: 32 hex characters; the cap leaves room for
/// ids imported from elsewhere).
pub const MAX_SESSION_ID_LENGTH: usize = 64;

/// Whether `id` has a shape a session id can have: 1 to [`MAX_SESSION_ID_LENGTH`] characters of
/// `[A-Za-z0-9_-]`. Any other id is simply unknown: it never reaches a store (a guard against
/// odd keys and oversized lookups), and the caller gets the answer of an unknown id.
pub fn is_session_id_shape(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SESSION_ID_LENGTH
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Random bytes from the OS CSPRNG, fetched [`RANDOM_POOL`] at a time by each thread: one system
/// call serves 32 ids (a call per id cost about 370 ns of CPU, the pool about 50 ns an id). Each
/// byte is handed out once and wiped from the pool as it is taken.
struct RandomPool {
    bytes: [u8; RANDOM_POOL],
    used: usize,
}

/// Bytes a thread's [`RandomPool`] fetches at once.
const RANDOM_POOL: usize = 512;

thread_local! {
    static RANDOM: std::cell::RefCell<RandomPool> =
        const { std::cell::RefCell::new(RandomPool { bytes: [0; RANDOM_POOL], used: RANDOM_POOL }) };
}

/// 16 bytes from the OS CSPRNG, through this thread's pool.
fn random_16() -> Result<[u8; 16], getrandom::Error> {
    RANDOM.with_borrow_mut(|pool| {
        if pool.used + 16 > RANDOM_POOL {
            getrandom::fill(&mut pool.bytes)?;
            pool.used = 0;
        }
        let mut out = [0u8; 16];
        let taken = &mut pool.bytes[pool.used..pool.used + 16];
        out.copy_from_slice(taken);
        taken.fill(0);
        pool.used += 16;
        Ok(out)
    })
}

/// A new session id, as the original's `IdGenerator.nextLong()` makes them: a version-4 UUID
/// (122 random bits from the OS CSPRNG) written as 32 lowercase hex characters without dashes.
///
/// # Errors
/// When the OS random source fails (never expected; reported as an internal error).
pub fn new_session_id() -> Result<String, ApplicationError> {
    let bytes = random_16()
        .map_err(|e| ApplicationError::internal("RANDOM_FAILED", "Cannot generate a session id").with_cause(e))?;
    // Encoded straight into its buffer, without the formatting machinery of `to_string`.
    let mut text = [0u8; uuid::fmt::Simple::LENGTH];
    Ok(uuid::Builder::from_random_bytes(bytes).into_uuid().simple().encode_lower(&mut text).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::time::parse_time;
    use serde_json::json;

    #[test]
    fn serialises_exactly_as_the_contract() {
        let t = parse_time("2026-11-21T10:15:30.123Z").unwrap();
        let mut s = SessionV1::open("ab".into(), "u1".into(), t);
        s.data = Some(json!(false));
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"id": "ab", "user_id": "u1", "user_name": null, "address": null, "client": null,
                "active": true, "open_time": "2026-11-21T10:15:30.123Z", "request_time": "2026-11-21T10:15:30.123Z",
                "user": null, "data": false, "version": 1})
        );
        let list = serde_json::to_value(s.without_payload()).unwrap();
        assert!(list.get("user").is_none() && list.get("data").is_none());
        let back: SessionV1 = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn ids_are_v4_uuids_in_the_originals_shape() {
        // More than one pool's worth, so that ids from a refilled pool are checked too.
        let ids: Vec<String> = (0..100).map(|_| new_session_id().unwrap()).collect();
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version(), Some(uuid::Version::Random), "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert!(is_session_id_shape(id));
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    /// The pool hands out each byte once: what it handed out is wiped, and no two draws over
    /// several refills are alike.
    #[test]
    fn the_random_pool_hands_each_byte_out_once() {
        let draws: Vec<[u8; 16]> = (0..100).map(|_| random_16().unwrap()).collect();
        RANDOM.with_borrow(|pool| assert!(pool.used > 0 && pool.bytes[..pool.used].iter().all(|&b| b == 0)));
        let distinct: std::collections::HashSet<&[u8; 16]> = draws.iter().collect();
        assert_eq!(distinct.len(), draws.len());
        assert!(draws.iter().all(|d| d.iter().any(|&b| b != 0)));
    }

    #[test]
    fn id_shapes() {
        assert!(is_session_id_shape("a"));
        assert!(is_session_id_shape("Ab_9-"));
        assert!(is_session_id_shape(&"x".repeat(MAX_SESSION_ID_LENGTH)));
        assert!(!is_session_id_shape(""));
        assert!(!is_session_id_shape(&"x".repeat(MAX_SESSION_ID_LENGTH + 1)));
        for odd in ["a b", "a/b", "a.b", "é", "a\0"] {
            assert!(!is_session_id_shape(odd), "{odd}");
        }
    }
}

#[cfg(test)]
pub(crate) mod written_json {
    use super::*;
    use crate::toolkit::data::DataPage;
    use crate::toolkit::json::JsonText;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    fn time() -> impl Strategy<Value = DateTime<Utc>> {
        // Years 0000 to 9999 and beyond, so the chrono fallback is covered too.
        (-62_167_219_200_000i64..300_000_000_000_000).prop_map(|ms| Utc.timestamp_millis_opt(ms).unwrap())
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]{0,12}",
            any::<String>(),
            Just("quote \" backslash \\ tab \t nl \n del \u{7f} ctl \u{1} ls \u{2028} /".to_string()),
        ]
    }

    fn payload() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            (text(), any::<i64>(), any::<f64>(), any::<bool>())
                .prop_map(|(s, i, f, b)| Some(json!({"s": s, "i": i, "f": f, "b": b, "a": [1, null, {"k": s}]}))),
        ]
    }

    prop_compose! {
        /// Random sessions: any texts and payloads, times in whole milliseconds.
        pub(crate) fn session()(
            id in text(), user_id in text(), user_name in proptest::option::of(text()),
            address in proptest::option::of(text()), client in proptest::option::of(text()),
            active in any::<bool>(), open_time in time(), request_time in time(),
            close_time in proptest::option::of(time()), user in payload(), data in payload(),
            version in any::<i64>(), expire_time in proptest::option::of(time()), ttl in proptest::option::of(any::<i64>()),
        ) -> SessionV1 {
            SessionV1 { id, user_id, user_name, address, client, active, open_time, request_time, close_time, user, data, version, expire_time, ttl }
        }
    }

    proptest! {
        #[test]
        fn writer_matches_serde(s in session()) {
            prop_assert_eq!(JsonText::write(&s).into_string(), serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn page_writer_matches_serde(data in proptest::collection::vec(session(), 0..4), total in proptest::option::of(any::<u64>())) {
            let page = DataPage { total, data };
            prop_assert_eq!(JsonText::write(&page).into_string(), serde_json::to_string(&page).unwrap());
        }
    }
}
