-- store_session_data on random ids from IDS_FILE.
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
local common = require("common")
local ids
local n = 0
init = function() ids = common.load_ids(os.getenv("IDS_FILE")); math.randomseed(os.time()) end
request = function()
  n = n + 1
  return common.post("/v1/sessions/store_session_data",
    string.format('{"session_id":"%s","data":{"n":%d,"cart":[1,2,3]}}', ids[math.random(1, #ids)], n))
end
done = common.report
