//! Answers written straight from the records: the session a read finds or a write leaves, as its
//! JSON text, encoded from its record under the store's lock without building a [`SessionV1`]
//! (the text is the same as the built session's). A read answers the session itself only when the
//! caller must act on it first (close it, touch it).
//!
//! [`SessionV1`]: crate::data::version1::SessionV1

use super::record::{time, ListItem, Record};
use super::SessionsIndex;
use crate::data::version1::{session_size_hint, write_session, SessionView};
use crate::persistence::{MustAct, SessionAnswer, SessionState, SessionUpdate, UpdateOutcome};
use crate::toolkit::json::{JsonText, WriteJson};
use serde_json::Value;

/// A record as a whole session, `user` and `data` included (`null` when the record holds none):
/// the view of `Record::to_session`'s session.
struct Whole<'a>(&'a Record);

impl Whole<'_> {
    fn item(&self) -> ListItem<'_> {
        ListItem(self.0)
    }
}

impl SessionView for Whole<'_> {
    fn id(&self) -> &str {
        &self.0.id
    }
    fn user_id(&self) -> &str {
        &self.0.user_id
    }
    fn user_name(&self) -> Option<&str> {
        self.0.text(0)
    }
    fn address(&self) -> Option<&str> {
        self.0.text(1)
    }
    fn client(&self) -> Option<&str> {
        self.0.text(2)
    }
    fn active(&self) -> bool {
        self.0.is_active()
    }
    fn open_ms(&self) -> i64 {
        self.item().open_ms()
    }
    fn request_ms(&self) -> i64 {
        self.0.request_time
    }
    fn close_ms(&self) -> Option<i64> {
        self.0.close_ms()
    }
    fn user(&self) -> Option<&Value> {
        Some(self.0.user.as_deref().unwrap_or(&Value::Null))
    }
    fn data(&self) -> Option<&Value> {
        Some(self.0.data.as_deref().unwrap_or(&Value::Null))
    }
    fn version(&self) -> i64 {
        self.0.version
    }
    fn expire_ms(&self) -> Option<i64> {
        self.0.expire_ms()
    }
    fn ttl(&self) -> Option<i64> {
        self.item().ttl()
    }
}

impl WriteJson for Whole<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_session(self, out);
    }

    fn size_hint(&self) -> usize {
        session_size_hint(self)
    }
}

/// The state a read judges the record by.
fn state(r: &Record) -> SessionState {
    SessionState {
        active: r.is_active(),
        expire_time: r.expire_ms().map(time),
        request_time: time(r.request_time),
        version: r.version,
    }
}

/// The JSON text of the record's session.
fn text(r: &Record) -> JsonText {
    JsonText::write(&Whole(r))
}

impl SessionsIndex {
    /// A session by id, as its text, or itself when `must_act` holds for its state.
    pub(crate) fn get_json(&self, id: &str, must_act: MustAct<'_>) -> Option<SessionAnswer> {
        let r = self.records.get(id)?;
        Some(if must_act(&state(r)) {
            SessionAnswer::Session(Box::new(r.to_session()))
        } else {
            SessionAnswer::Text(text(r))
        })
    }

    /// [`SessionsIndex::update`] answering the record after the change as its text.
    pub(crate) fn update_json(&mut self, id: &str, update: &SessionUpdate) -> UpdateOutcome<JsonText> {
        self.update_answering(id, update, text)
    }
}
