-- GET /heartbeat: the baseline of the same binary under the same load.
package.path = package.path .. ";" .. (os.getenv("LUA_DIR") or ".") .. "/?.lua"
local common = require("common")
init = function() request = common.cycle({wrk.format("GET", "/heartbeat")}) end
done = common.report
