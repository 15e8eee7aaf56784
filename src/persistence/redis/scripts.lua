-- The shared part of every script of the Redis backend (see mod.rs for the key layout).
-- KEYS[1] is the bucket's key base, `<prefix>:{<n>}`; every key a script touches starts with it,
-- so each script works in one hash slot.
local base = KEYS[1]
local FIELDS = {'id', 'user_id', 'user_name', 'address', 'client', 'active', 'open_time', 'request_time',
  'close_time', 'expire_time', 'ttl', 'version', 'user', 'data'}
local LIST_FIELDS = 12
local K_ALL, K_OPEN, K_CLOSED = base .. ':all', base .. ':open', base .. ':closed'
local K_EXP, K_NOEXP, K_PURGE = base .. ':exp', base .. ':noexp', base .. ':purge'
local K_DROP, K_OWNER = base .. ':drop', base .. ':owner'

local function rk(id) return base .. ':s:' .. id end
local function uk(user) return base .. ':u:' .. user end
local function opt(v) if v == nil or v == '' then return false end return v end

-- The first n FIELDS of a record: nil when there is none, {} when the key is not a hash.
local function load(id, n)
  local t = redis.call('TYPE', rk(id))['ok']
  if t == 'none' then return nil end
  if t ~= 'hash' then return {} end
  return redis.call('HMGET', rk(id), unpack(FIELDS, 1, n))
end

-- Byte-wise a > b (the order of sorted-set members; Lua's own `<` follows the locale).
local function gt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

local function unindex(id, user)
  for _, k in ipairs({K_ALL, K_OPEN, K_CLOSED, K_EXP, K_NOEXP, K_PURGE, K_DROP}) do
    redis.call('ZREM', k, id)
  end
  if user then redis.call('ZREM', uk(user), id) end
  redis.call('HDEL', K_OWNER, id)
end

-- Puts a record into every index it belongs to and sets its PEXPIREAT (`drop`, false = none).
local function index(id, user, active, rt, et, ct, drop)
  local score = -tonumber(rt)
  redis.call('ZADD', K_ALL, score, id)
  redis.call('ZADD', uk(user), score, id)
  redis.call('HSET', K_OWNER, id, user)
  if active == '1' then
    redis.call('ZADD', K_OPEN, score, id)
    redis.call('ZREM', K_CLOSED, id)
    redis.call('ZREM', K_PURGE, id)
    if et then
      redis.call('ZADD', K_EXP, et, id)
      redis.call('ZREM', K_NOEXP, id)
    else
      redis.call('ZADD', K_NOEXP, rt, id)
      redis.call('ZREM', K_EXP, id)
    end
  else
    redis.call('ZADD', K_CLOSED, score, id)
    redis.call('ZREM', K_OPEN, id)
    redis.call('ZREM', K_EXP, id)
    redis.call('ZREM', K_NOEXP, id)
    redis.call('ZADD', K_PURGE, ct or 0, id)
  end
  if drop then
    redis.call('PEXPIREAT', rk(id), drop)
    redis.call('ZADD', K_DROP, drop, id)
  else
    redis.call('PERSIST', rk(id))
    redis.call('ZREM', K_DROP, id)
  end
end

-- Writes a whole record from ARGV[at + 1 ..]: a presence mask of the 14 FIELDS, then their values.
local function put(id, at, drop)
  local mask = ARGV[at + 1]
  local args, v = {}, {}
  for i, f in ipairs(FIELDS) do
    if mask:sub(i, i) == '1' then
      args[#args + 1] = f
      args[#args + 1] = ARGV[at + 1 + i]
      v[i] = ARGV[at + 1 + i]
    else
      v[i] = false
    end
  end
  redis.call('DEL', rk(id))
  redis.call('HSET', rk(id), unpack(args))
  index(id, v[2], v[6], v[8], v[10], v[9], drop)
end

-- Closes an open record at `now` (as SessionChange::Close does); 1 if it closed, 0 otherwise.
local function close(id, now, drop)
  if redis.call('TYPE', rk(id))['ok'] ~= 'hash' then return 0 end
  local r = redis.call('HMGET', rk(id), 'user_id', 'active', 'version', 'request_time')
  -- An unreadable record is left as it is (the calls on its id answer 500).
  if r[2] ~= '1' or not r[1] or not tonumber(r[3]) or not tonumber(r[4]) then return 0 end
  redis.call('HSET', rk(id), 'active', '0', 'close_time', now, 'request_time', now, 'user', 'null', 'data', 'null')
  redis.call('HDEL', rk(id), 'expire_time')
  redis.call('HINCRBY', rk(id), 'version', 1)
  index(id, r[1], '0', now, false, now, drop)
  return 1
end

-- Removes the index entries of records Redis has dropped (their PEXPIREAT passed); returns their ids.
local function reap()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local gone = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_DROP, '-inf', now, 'LIMIT', 0, 1000)) do
    if redis.call('EXISTS', rk(id)) == 0 then
      local user = redis.call('HGET', K_OWNER, id)
      unindex(id, user or nil)
      gone[#gone + 1] = id
    end
  end
  return gone
end

-- The write condition (WriteCondition::holds, with the record's `active` and liveness branch as
-- the caller read them) from ARGV[at + 1 .. at + 6].
local function holds(r, at)
  local active, rt, et, ver = r[6], r[8], r[10], r[12]
  if active ~= ARGV[at + 5] then return false end
  if (et and '1' or '0') ~= ARGV[at + 6] then return false end
  if ARGV[at + 1] == '1' and active ~= '1' then return false end
  if et then
    if ARGV[at + 2] ~= '' and tonumber(et) < tonumber(ARGV[at + 2]) then return false end
  else
    if ARGV[at + 3] ~= '' and tonumber(rt) < tonumber(ARGV[at + 3]) then return false end
  end
  if ARGV[at + 4] ~= '' and ver ~= ARGV[at + 4] then return false end
  return true
end
