-- get_sessions: one page of 100 of a random user's sessions.
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
local common = require("common")
local users = tonumber(os.getenv("USERS") or "10000")
init = function() math.randomseed(os.time()) end
request = function()
  return common.post("/v1/sessions/get_sessions",
    string.format('{"filter":{"user_id":"u%d"},"paging":{"take":100}}', math.random(0, users - 1)))
end
done = common.report
