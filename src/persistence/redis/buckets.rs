//! Where a session lives: the bucket of an id (through its pointer when there are several),
//! claiming an id, reading a record, listing a bucket, committing a limited open.

use super::codec::{int, ms, record_args, text};
use super::connection::as_array;
use super::replies::opt_arg;
use super::settings::Settings;
use super::SessionsRedisPersistence;
use crate::data::version1::SessionV1;
use crate::toolkit::errors::ApplicationError;
use chrono::{DateTime, Utc};
use redis::Value;

impl SessionsRedisPersistence {
    pub(super) fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    pub(super) fn multi(&self) -> bool {
        self.settings().buckets > 1
    }

    pub(super) fn buckets(&self) -> std::ops::Range<u32> {
        0..self.settings().buckets
    }

    /// The bucket holding `id`: the only one, or the one its pointer names (`None`: no session).
    pub(super) async fn locate(&self, cid: Option<&str>, id: &str) -> Result<Option<u32>, ApplicationError> {
        if !self.multi() {
            return Ok(Some(0));
        }
        let v = self.shared.command(cid, "GET", redis::cmd("GET").arg(self.settings().pointer(id))).await?;
        Ok(int(&v).and_then(|n| u32::try_from(n).ok()).filter(|n| *n < self.settings().buckets))
    }

    /// Deletes the pointers of sessions that are gone (best effort; stale pointers are harmless:
    /// a pointer only says where to look).
    pub(super) async fn drop_pointers(&self, cid: Option<&str>, ids: &[String]) {
        if !self.multi() {
            return;
        }
        for id in ids {
            let _ = self.shared.command(cid, "DEL", redis::cmd("DEL").arg(self.settings().pointer(id))).await;
        }
    }

    /// Claims `id` for bucket `n` (with more than one bucket): `false` when a session has it.
    pub(super) async fn claim(&self, cid: Option<&str>, id: &str, n: u32) -> Result<bool, ApplicationError> {
        if !self.multi() {
            return Ok(true);
        }
        let key = self.settings().pointer(id);
        let set = self.shared.command(cid, "SET", redis::cmd("SET").arg(&key).arg(n).arg("NX")).await?;
        if !matches!(set, Value::Nil) {
            return Ok(true);
        }
        // Taken, or stale (its session is gone): a stale pointer is taken over.
        if self.read(cid, id).await?.is_some() {
            return Ok(false);
        }
        self.shared.command(cid, "SET", redis::cmd("SET").arg(&key).arg(n)).await?;
        Ok(true)
    }

    /// The record under `id` as read (whole), or `None`; an unreadable record is a 500.
    pub(super) async fn read(&self, cid: Option<&str>, id: &str) -> Result<Option<(u32, SessionV1)>, ApplicationError> {
        let Some(n) = self.locate(cid, id).await? else { return Ok(None) };
        let sh = &self.shared;
        let v = sh.eval(cid, "get", n, sh.scripts.get.arg(id).arg(14)).await?;
        match v {
            Value::Nil => Ok(None),
            Value::Array(fields) => {
                let s = sh.decode_one(cid, id, &fields, true)?;
                Ok(Some((n, s)))
            }
            _ => Err(sh.unreadable(cid, id)),
        }
    }

    /// Runs one `LIST` script on bucket `n`: the total (when asked) and the items.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn list_bucket(
        &self,
        cid: Option<&str>,
        n: u32,
        mode: &str,
        user: &str,
        range: &(String, String),
        offset: u64,
        count: u64,
        want_total: bool,
        active: Option<bool>,
    ) -> Result<(Option<u64>, Vec<SessionV1>), ApplicationError> {
        let sh = &self.shared;
        let active = active.map_or("", |a| if a { "1" } else { "0" });
        let mut inv = sh.scripts.list.prepare_invoke();
        inv.arg(mode)
            .arg(user)
            .arg(&range.0)
            .arg(&range.1)
            .arg(offset)
            .arg(count)
            .arg(u8::from(want_total))
            .arg(active);
        let v = sh.eval(cid, "list", n, &mut inv).await?;
        let parts = as_array(&v);
        let total = parts.first().and_then(int).and_then(|t| u64::try_from(t).ok());
        let items = parts.get(1).map(|i| sh.decode_all(as_array(i), false)).unwrap_or_default();
        let gone: Vec<String> = parts.get(2).map(|g| as_array(g).iter().filter_map(text).collect()).unwrap_or_default();
        self.drop_pointers(cid, &gone).await;
        Ok((total, items))
    }

    /// Closes the sessions `victims` and stores `session`, unless the user's open sessions are no
    /// longer `snapshot`: `Ok(None)` asks for another try.
    pub(super) async fn commit_limited(
        &self,
        cid: Option<&str>,
        n: u32,
        session: &SessionV1,
        snapshot: &[SessionV1],
        victims: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<bool>, ApplicationError> {
        let s = self.settings();
        let sh = &self.shared;
        let mut inv = sh.scripts.create_limited.prepare_invoke();
        inv.arg(&session.id).arg(opt_arg(s.drop_time(session)));
        for a in record_args(session) {
            inv.arg(a);
        }
        inv.arg(ms(now)).arg(opt_arg(s.close_drop(now))).arg(snapshot.len());
        for o in snapshot {
            inv.arg(&o.id).arg(o.version);
        }
        inv.arg(victims.len());
        for v in victims {
            inv.arg(v);
        }
        let v = sh.eval(cid, "create_limited", n, &mut inv).await?;
        Ok(match int(&v) {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        })
    }
}
