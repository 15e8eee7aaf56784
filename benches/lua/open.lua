-- open_session for random users u0..u(USERS-1); stops each thread after LIMIT requests when set.
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
local common = require("common")
local users = tonumber(os.getenv("USERS") or "10000")
local limit = tonumber(os.getenv("LIMIT") or "0")
local sent = 0
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)

request = function()
  sent = sent + 1
  if limit > 0 and sent > limit then wrk.thread:stop() end
  return common.post("/v1/sessions/open_session",
    string.format('{"user_id":"u%d","client":"bench"}', math.random(0, users - 1)))
end
done = common.report
