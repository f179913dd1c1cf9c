-- wrk script: POST a Flux event with a unique message per request, so the
-- duplicate filter accepts each one. The body file is read once per thread.
local body_template
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id or 0
  local file = io.open(args[1] or "bench/event.json", "r")
  body_template = file:read("*a")
  file:close()
end

function request()
  counter = counter + 1
  local body = body_template:gsub("BENCH_ID", "t" .. thread_id .. "-" .. counter)
  return wrk.format("POST", "/", { ["Content-Type"] = "application/json" }, body)
end
