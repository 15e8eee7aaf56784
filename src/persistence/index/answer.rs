//! Answers written straight from the records: the session a read finds or a write leaves, as its
//! JSON text, encoded from its record under the store's lock without building a [`SessionV1`]
//! (the text is the same as the built session's). A read answers the session itself only when the
//! caller must act on it first (close it, touch it).
//!
//! [`SessionV1`]: crate::data::version1::SessionV1

use super::record::{time, Record, Whole};
use super::SessionsIndex;
use crate::data::version1::SessionView;
use crate::persistence::{MustAct, SessionAnswer, SessionState, SessionUpdate, UpdateOutcome};
use crate::toolkit::json::JsonText;

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
    JsonText::write(&Whole::new(r))
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
    pub(crate) fn update_json(&mut self, id: &str, update: SessionUpdate) -> UpdateOutcome<JsonText> {
        self.update_answering(id, update, text)
    }

    /// [`SessionsIndex::update_json`] that also hands the record after the change, as a whole
    /// session's view, to `log` (the file backend encodes its log record from it).
    pub(crate) fn update_json_logged<L>(
        &mut self,
        id: &str,
        update: SessionUpdate,
        log: impl FnOnce(&dyn SessionView) -> L,
    ) -> UpdateOutcome<(JsonText, L)> {
        self.update_answering(id, update, |r| (text(r), log(&Whole::new(r))))
    }
}
