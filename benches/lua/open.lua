-- open_session for random users u0..u(USERS-1).
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
local common = require("common")
local users = tonumber(os.getenv("USERS") or "10000")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)

request = function()
  return common.post("/v1/sessions/open_session",
    string.format('{"user_id":"u%d","client":"bench"}', math.random(0, users - 1)))
end
done = common.report
