-- open_session for users u0..u(USERS-1), shuffled. With OPEN_LIMIT set (the preload of a small
-- store), each of wrk's threads stops after its share of OPEN_LIMIT answers (THREADS threads).
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
local common = require("common")
init = function()
  local requests = {}
  for u = 0, tonumber(os.getenv("USERS") or "10000") - 1 do
    requests[u + 1] = common.post("/v1/sessions/open_session", string.format('{"user_id":"u%d","client":"bench"}', u))
  end
  request = common.cycle(requests)
end
local limit = tonumber(os.getenv("OPEN_LIMIT") or "")
if limit then
  local share = math.ceil(limit / tonumber(os.getenv("THREADS") or "1"))
  local answered = 0
  response = function()
    answered = answered + 1
    if answered >= share then
      wrk.thread:stop()
    end
  end
end
done = common.report
