-- open_session for users u0..u(USERS-1), shuffled.
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
local common = require("common")
init = function()
  local requests = {}
  for u = 0, tonumber(os.getenv("USERS") or "10000") - 1 do
    requests[u + 1] = common.post("/v1/sessions/open_session", string.format('{"user_id":"u%d","client":"bench"}', u))
  end
  request = common.cycle(requests)
end
done = common.report
