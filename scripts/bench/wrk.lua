-- wrk script for scripts/bench-api. Mode from BENCH_MODE:
--   get      GET the URL's path (with its query: wrk keeps it) with a bearer
--            token, rotating over BENCH_TOKENS (one line: always that user)
--   annual   POST /api/v1/predictions/annual with a new company each request
--   login    POST /api/v1/auth/login, rotating over BENCH_CREDENTIALS
-- BENCH_THINK_MS > 0 makes each connection wait between its requests (users
-- with think time) instead of sending back to back: uniformly 0.5x to 1.5x
-- that long, so connections do not stay in step and arrive as one burst.
-- done() prints one JSON line: requests/s, p50/p95/p99 (ms), error counts.

local mode = os.getenv("BENCH_MODE") or "get"
local think = tonumber(os.getenv("BENCH_THINK_MS") or "0")
local run = os.getenv("BENCH_RUN") or "0"
local threads = {}
local counter = 0
local tokens = {}
local credentials = {}

local function lines(path)
  local out = {}
  if path then
    for line in io.lines(path) do
      if line ~= "" then out[#out + 1] = line end
    end
  end
  return out
end

function setup(thread)
  thread:set("tid", #threads + 1)
  threads[#threads + 1] = thread
end

function init(args)
  math.randomseed(os.time() * 1000 + tid)
  tokens = lines(os.getenv("BENCH_TOKENS"))
  credentials = lines(os.getenv("BENCH_CREDENTIALS"))
end

if think > 0 then
  function delay()
    return math.random(math.floor(think / 2), math.floor(think * 3 / 2))
  end
end

function request()
  counter = counter + 1
  if mode == "login" then
    local line = credentials[(counter % #credentials) + 1]
    local email, password = line:match("^(%S+) (%S+)$")
    return wrk.format("POST", "/api/v1/auth/login", { ["Content-Type"] = "application/json" },
      string.format('{"email":"%s","password":"%s"}', email, password))
  end
  local headers = { ["Authorization"] = "Bearer " .. tokens[(counter % #tokens) + 1] }
  if mode == "annual" then
    headers["Content-Type"] = "application/json"
    local symbol = string.format("B%s%d%07d", run, tid, counter)
    local body = string.format(
      '{"company_symbol":"%s","company_name":"Bench %s","market_cap":1500000000,"sector":"Technology",' ..
      '"reporting_year":"2024","long_term_debt_to_total_capital":%d,"total_debt_to_ebitda":2.5,' ..
      '"net_income_margin":8.0,"ebit_to_interest_expense":6.0,"return_on_assets":5.0}',
      symbol, symbol, counter % 100)
    return wrk.format("POST", "/api/v1/predictions/annual", headers, body)
  end
  return wrk.format("GET", nil, headers)
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"requests":%d,"seconds":%.2f,"rps":%.1f,"p50_ms":%.2f,"p95_ms":%.2f,"p99_ms":%.2f,' ..
    '"status_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout))
end
