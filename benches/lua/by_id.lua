-- get_session_by_id for random ids from IDS_FILE.
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
local common = require("common")
local ids
init = function() ids = common.load_ids(os.getenv("IDS_FILE")); math.randomseed(os.time()) end
request = function()
  return common.post("/v1/sessions/get_session_by_id", string.format('{"session_id":"%s"}', ids[math.random(1, #ids)]))
end
done = common.report
