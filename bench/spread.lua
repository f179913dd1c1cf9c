-- wrk script: POST Flux events spread over N objects, each event about
-- Kustomization app-<i // 100> in namespace ns-<i % 100> (what
-- generate.py's Alert i watches), with a unique message so none is a
-- duplicate; the path is /hook/<i>, so a proxy in front of the sink spreads
-- its requests over the same N paths herald's Providers use.
-- Arguments: BODY_FILE N MODE TAG   (MODE miss: name app-none, so no Alert
-- matches; TAG makes messages unique across runs)
local body_template
local count = 10000
local miss = false
local tag = ""
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
  count = tonumber(args[2] or "10000")
  miss = args[3] == "miss"
  tag = args[4] or ""
  -- Threads start at different objects.
  counter = thread_id * 4999
end

function request()
  counter = counter + 1
  local i = counter % count
  local ns = string.format("ns-%03d", i % 100)
  local app = miss and "app-none" or ("app-" .. math.floor(i / 100))
  local body = body_template
    :gsub('"name": "app%-0"', '"name": "' .. app .. '"')
    :gsub('"namespace": "ns%-001"', '"namespace": "' .. ns .. '"')
    :gsub("BENCH_ID", tag .. "t" .. thread_id .. "-" .. counter)
  return wrk.format("POST", "/hook/" .. i, { ["Content-Type"] = "application/json" }, body)
end
