-- get_sessions: one page of 100 of a user's sessions, users u0..u(USERS-1) shuffled.
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
local common = require("common")
init = function()
  local requests = {}
  for u = 0, tonumber(os.getenv("USERS") or "10000") - 1 do
    requests[u + 1] = common.post("/v1/sessions/get_sessions",
      string.format('{"filter":{"user_id":"u%d"},"paging":{"take":100}}', u))
  end
  request = common.cycle(requests)
end
done = common.report
