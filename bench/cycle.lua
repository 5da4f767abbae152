-- wrk script: cycle through a URL list (HOST<TAB>TARGET<TAB>... per line), Host header per URL.
-- Usage: wrk ... -s bench/cycle.lua URL -- urls.tsv
-- Requests are formatted once in init(); each thread starts at its own offset so that
-- the threads do not send the same URL at the same time. done() prints one JSON line.

local counter = 1
local requests = {}
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local host, target = line:match("^([^\t]*)\t([^\t]*)")
    if host and target ~= "" then
      requests[#requests + 1] = wrk.format("GET", target, { Host = host })
    end
  end
  counter = ((id or 0) * 7919) % #requests + 1
end

function request()
  local r = requests[counter]
  counter = counter % #requests + 1
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
