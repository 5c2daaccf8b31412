-- wrk script for bench/predict.sh: POST the file named by $BENCH_BODY_FILE as
-- application/json, and print one machine-readable summary line at the end
-- (latencies in microseconds; wrk counts non-2xx/3xx answers in errors_status).
-- With $BENCH_TOKEN set, every request carries it as a bearer token.
-- With $BENCH_HIT_PERCENT set (bench/cache/cache_bench.py), the body is a
-- template whose "__V__" stands for one feature's value: in every 100
-- requests of a thread, the first BENCH_HIT_PERCENT use one fixed value (the
-- same record again: a cache hit once it is cached) and the rest a value no
-- request used before (a miss): made of $BENCH_RUN (0 to 999, a different
-- one for each wrk run, warmups included), the thread and a counter, below
-- 2^53 so that every value stays a distinct number.
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

local hit = tonumber(os.getenv("BENCH_HIT_PERCENT") or "")
if hit then
  local template = wrk.body
  local hot = (template:gsub('"__V__"', "12.5"))
  local threads = 0
  -- Runs in the main state once per thread: each thread gets its own id
  -- (its global `tid`), so no two threads make the same cold value.
  function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
  end
  local run = tonumber(os.getenv("BENCH_RUN") or "0")
  local n = 0
  function request()
    n = n + 1
    local body = hot
    if n % 100 >= hit then
      local cold = (run * 10 + tid) * 1000000000 + n
      body = (template:gsub('"__V__"', string.format("%d", cold)))
    end
    return wrk.format(nil, nil, nil, body)
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
