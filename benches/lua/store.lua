-- store_session_data on the ids in IDS_FILE, in shuffled order.
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
local common = require("common")
init = function()
  local requests = {}
  for i, id in ipairs(common.load_ids(os.getenv("IDS_FILE"))) do
    requests[i] = common.post("/v1/sessions/store_session_data",
      string.format('{"session_id":"%s","data":{"n":%d,"cart":[1,2,3]}}', id, i))
  end
  request = common.cycle(requests)
end
done = common.report
