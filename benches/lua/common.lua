-- Shared helpers for the wrk scripts: a JSON POST builder, an id sample, and a one-line report.
local common = {}

function common.post(path, body)
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end

-- A request function that cycles through requests built in advance (shuffled), so every
-- scenario costs the load generator the same per request and only the server's work differs.
function common.cycle(requests)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  for i = #requests, 2, -1 do
    local j = math.random(1, i)
    requests[i], requests[j] = requests[j], requests[i]
  end
  local i = 0
  return function()
    i = i % #requests + 1
    return requests[i]
  end
end

function common.load_ids(path)
  local ids = {}
  local f = io.open(path, "r")
  if f then
    for line in f:lines() do ids[#ids + 1] = line end
    f:close()
  end
  return ids
end

function common.report(summary, latency)
  local secs = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT requests=%d seconds=%.2f rps=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%d\n",
    summary.requests, secs, summary.requests / secs, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, errors))
end

return common
