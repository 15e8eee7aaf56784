-- get_session_by_id for the ids in IDS_FILE, in shuffled order.
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
local common = require("common")
init = function()
  local requests = {}
  for i, id in ipairs(common.load_ids(os.getenv("IDS_FILE"))) do
    requests[i] = common.post("/v1/sessions/get_session_by_id", string.format('{"session_id":"%s"}', id))
  end
  request = common.cycle(requests)
end
done = common.report
