//! The Lua scripts of the Redis backend: every write (and every read that must see a consistent
//! record and its indexes) is one script, so one atomic step on the server. Each is the shared
//! prelude (`scripts.lua`: the key names of a bucket, indexing, closing, reaping dropped records,
//! the write condition) followed by its own body. Arguments are positional; `''` means "none".

use redis::Script;

const PRELUDE: &str = include_str!("scripts.lua");

/// `LEASE` (key: the lease) `owner hold_ms`: 1 when the lease was free or already `owner`'s (it
/// is then `owner`'s for `hold_ms`), 0 when another owner holds it.
const LEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// `GET id n`: the first `n` fields of a record; nil when absent, `{}` when not a hash.
const GET: &str = r"
local r = load(ARGV[1], tonumber(ARGV[2]))
if r == nil then return false end
return r
";

/// `CREATE id drop mask v1..v14`: 1 when stored, 0 when the id is taken.
const CREATE: &str = r"
if redis.call('EXISTS', rk(ARGV[1])) == 1 then return 0 end
put(ARGV[1], 2, opt(ARGV[2]))
return 1
";

/// `UPDATE id kind payload now expire_time drop | condition(6)`: `{1, record}` applied,
/// `{0}` no record, `{2, record}` the condition (or the read it was based on) no longer holds,
/// `{3}` not a hash.
const UPDATE: &str = r"
local id, kind, now = ARGV[1], ARGV[2], ARGV[4]
local r = load(id, 14)
if r == nil then return {0} end
if #r == 0 then return {3} end
if not holds(r, 6) then return {2, r} end
local key = rk(id)
local active, ct = r[6], r[9]
if kind == 'data' then
  redis.call('HSET', key, 'data', ARGV[3], 'request_time', now)
elseif kind == 'user' then
  redis.call('HSET', key, 'user', ARGV[3], 'request_time', now)
elseif kind == 'touch' then
  redis.call('HSET', key, 'request_time', now)
else
  redis.call('HSET', key, 'active', '0', 'close_time', now, 'request_time', now, 'user', 'null', 'data', 'null')
  active, ct = '0', now
end
if ARGV[5] ~= '' then redis.call('HSET', key, 'expire_time', ARGV[5]) else redis.call('HDEL', key, 'expire_time') end
redis.call('HINCRBY', key, 'version', 1)
index(id, r[2], active, now, opt(ARGV[5]), ct, opt(ARGV[6]))
return {1, redis.call('HMGET', key, unpack(FIELDS))}
";

/// `DELETE id | condition(6)`: like UPDATE, `{1, record as it was}` when deleted.
const DELETE: &str = r"
local id = ARGV[1]
local r = load(id, 14)
if r == nil then return {0} end
if #r == 0 then return {3} end
if not holds(r, 1) then return {2, r} end
redis.call('DEL', rk(id))
unindex(id, r[2])
return {1, r}
";

/// `ROTATE id new_id read_version read_active drop mask v1..v14`: `{1}` moved, `{0}` no
/// record, `{2, record}` changed since read, `{3}` not a hash, `{4}` new id taken.
const ROTATE: &str = r"
local id, new = ARGV[1], ARGV[2]
if redis.call('EXISTS', rk(new)) == 1 then return {4} end
local r = load(id, 14)
if r == nil then return {0} end
if #r == 0 then return {3} end
if r[12] ~= ARGV[3] or r[6] ~= ARGV[4] then return {2, r} end
redis.call('DEL', rk(id))
unindex(id, r[2])
put(new, 5, opt(ARGV[5]))
return {1}
";

/// `USER_OPEN user`: `{id, fields(12)}...` of the user's open records (the snapshot
/// `create_limited` decides on).
const USER_OPEN: &str = r"
local out = {}
for _, id in ipairs(redis.call('ZRANGE', uk(ARGV[1]), 0, -1)) do
  local r = load(id, LIST_FIELDS)
  if r and #r > 0 and r[6] == '1' then out[#out + 1] = r end
end
return out
";

/// `CREATE_LIMITED id drop mask v1..v14 now close_drop nsnap (id version)*nsnap nvict id*nvict`:
/// 1 stored, 0 id taken, -1 the user's open sessions changed since the snapshot.
const CREATE_LIMITED: &str = r"
local id = ARGV[1]
if redis.call('EXISTS', rk(id)) == 1 then return 0 end
local user = ARGV[5]
local at = 17
local now, close_drop = ARGV[at + 1], opt(ARGV[at + 2])
local nsnap = tonumber(ARGV[at + 3])
local snap = {}
for i = 1, nsnap do snap[ARGV[at + 2 + 2 * i]] = ARGV[at + 3 + 2 * i] end
local seen = 0
for _, m in ipairs(redis.call('ZRANGE', uk(user), 0, -1)) do
  local r = load(m, LIST_FIELDS)
  if r and #r > 0 and r[6] == '1' then
    if snap[m] ~= r[12] then return -1 end
    seen = seen + 1
  end
end
if seen ~= nsnap then return -1 end
local v = at + 4 + 2 * nsnap
for i = 1, tonumber(ARGV[v]) do close(ARGV[v + i], now, close_drop) end
put(id, 2, opt(ARGV[2]))
return 1
";

/// `SWEEP now idle_cutoff close_drop batch`: `{closed, more, reaped ids}`.
const SWEEP: &str = r"
local gone = reap()
local now, cutoff, drop, batch = ARGV[1], ARGV[2], opt(ARGV[3]), tonumber(ARGV[4])
local n, more = 0, 0
local ids = redis.call('ZRANGEBYSCORE', K_EXP, '-inf', '(' .. now, 'LIMIT', 0, batch)
if #ids == batch then more = 1 end
for _, id in ipairs(ids) do n = n + close(id, now, drop) end
if cutoff ~= '' then
  ids = redis.call('ZRANGEBYSCORE', K_NOEXP, '-inf', '(' .. cutoff, 'LIMIT', 0, batch)
  if #ids == batch then more = 1 end
  for _, id in ipairs(ids) do n = n + close(id, now, drop) end
end
return {n, more, gone}
";

/// `CLOSE_USER user except has_except now close_drop`: how many closed.
const CLOSE_USER: &str = r"
local n = 0
for _, id in ipairs(redis.call('ZRANGE', uk(ARGV[1]), 0, -1)) do
  if ARGV[3] ~= '1' or id ~= ARGV[2] then n = n + close(id, ARGV[4], opt(ARGV[5])) end
end
return n
";

/// `PURGE_FIND before limit`: `{id, close_time}...` of the oldest closed records.
const PURGE_FIND: &str = r"
return redis.call('ZRANGEBYSCORE', K_PURGE, '-inf', '(' .. ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
";

/// `PURGE_DELETE before id...`: deletes those still closed before `before`; returns the ids deleted.
const PURGE_DELETE: &str = r"
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local s = redis.call('ZSCORE', K_PURGE, id)
  if s and tonumber(s) < tonumber(ARGV[1]) then
    local r = redis.call('HMGET', rk(id), 'active')
    if r[1] == '0' or redis.call('EXISTS', rk(id)) == 0 then
      local user = redis.call('HGET', K_OWNER, id)
      redis.call('DEL', rk(id))
      unindex(id, user or nil)
      out[#out + 1] = id
    end
  end
end
return out
";

/// `LIST mode user min max offset count want_total active`: `{total or -1, {fields(12)}..., reaped}`.
/// `mode` is `all`, `open`, `closed` (one index, paged by Redis) or `user` (the user's index,
/// filtered by `active` here).
const LIST: &str = r"
local gone = reap()
local mode, user, min, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local offset, count, want_total, active = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1', ARGV[8]
local items, total = {}, -1
if mode == 'user' then
  local matched = 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', uk(user), min, max)) do
    local r = load(id, LIST_FIELDS)
    if r == nil then
      redis.call('ZREM', uk(user), id)
    elseif #r == 0 or active == '' or r[6] == active then
      matched = matched + 1
      if matched > offset and #items < count then items[#items + 1] = (#r == 0) and {id} or r end
    end
  end
  if want_total then total = matched end
else
  local key = (mode == 'open' and K_OPEN) or (mode == 'closed' and K_CLOSED) or K_ALL
  if count > 0 then
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', key, min, max, 'LIMIT', offset, count)) do
      local r = load(id, LIST_FIELDS)
      if r then items[#items + 1] = (#r == 0) and {id} or r end
    end
  end
  if want_total then total = redis.call('ZCOUNT', key, min, max) end
end
return {total, items, gone}
";

/// `SCAN after_score after_id limit`: up to `limit` whole records after the position, in list order.
const SCAN: &str = r"
reap()
local s, after, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
local function take(id)
  local r = load(id, 14)
  if r then out[#out + 1] = (#r == 0) and {id} or r end
end
local from = '-inf'
if s ~= '' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_ALL, s, s)) do
    if #out >= limit then return out end
    if gt(id, after) then take(id) end
  end
  from = '(' .. s
end
local offset = 0
while #out < limit do
  local ids = redis.call('ZRANGEBYSCORE', K_ALL, from, '+inf', 'LIMIT', offset, limit - #out)
  if #ids == 0 then break end
  offset = offset + #ids
  for _, id in ipairs(ids) do take(id) end
end
return out
";

/// `CLEAR`: deletes every record and index of the bucket; returns the ids deleted.
const CLEAR: &str = r"
local ids = redis.call('ZRANGE', K_ALL, 0, -1)
for _, id in ipairs(ids) do redis.call('DEL', rk(id)) end
for _, u in ipairs(redis.call('HVALS', K_OWNER)) do redis.call('DEL', uk(u)) end
redis.call('DEL', K_ALL, K_OPEN, K_CLOSED, K_EXP, K_NOEXP, K_PURGE, K_DROP, K_OWNER)
return ids
";

/// The compiled scripts (their SHA1s are computed once; `EVALSHA` falls back to loading), one
/// field per script above.
pub(super) struct Scripts {
    pub(super) get: Script,
    pub(super) create: Script,
    pub(super) update: Script,
    pub(super) delete: Script,
    pub(super) rotate: Script,
    pub(super) user_open: Script,
    pub(super) create_limited: Script,
    pub(super) sweep: Script,
    pub(super) close_user: Script,
    pub(super) purge_find: Script,
    pub(super) purge_delete: Script,
    pub(super) list: Script,
    pub(super) scan: Script,
    pub(super) clear: Script,
    pub(super) lease: Script,
}

impl Default for Scripts {
    /// Every script, each the prelude plus its body.
    fn default() -> Self {
        let s = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Self {
            get: s(GET),
            create: s(CREATE),
            update: s(UPDATE),
            delete: s(DELETE),
            rotate: s(ROTATE),
            user_open: s(USER_OPEN),
            create_limited: s(CREATE_LIMITED),
            sweep: s(SWEEP),
            close_user: s(CLOSE_USER),
            purge_find: s(PURGE_FIND),
            purge_delete: s(PURGE_DELETE),
            list: s(LIST),
            scan: s(SCAN),
            clear: s(CLEAR),
            lease: Script::new(LEASE),
        }
    }
}
