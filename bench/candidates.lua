-- wrk script for bench/vs_flux.py: POST Flux events about Kustomization
-- `app` in one namespace, each message starting `team-<i>: ` with i spread
-- over 0..N-1, so that each event reaches exactly one of the N Alerts (Alert
-- i includes only `^team-<i>: `). The thread and a counter make every
-- message unique, and TAG unique across runs: both controllers answer 429
-- to a repeat within 5 minutes and deliver nothing.
-- Arguments: N NAMESPACE TAG
local count = 1000
local namespace = "bench"
local tag = ""
local counter = 0
local thread_id = 0
local threads = {}

local template = '{"involvedObject":{"apiVersion":"kustomize.toolkit.fluxcd.io/v1",'
  .. '"kind":"Kustomization","name":"app","namespace":"%s"},'
  .. '"severity":"info","timestamp":"2026-11-20T07:26:19Z","reason":"ReconciliationSucceeded",'
  .. '"message":"team-%05d: Applied revision main@sha1:731f7ead (%st%d-%d)",'
  .. '"metadata":{"kustomize.toolkit.fluxcd.io/revision":'
  .. '"main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"},'
  .. '"reportingController":"kustomize-controller"}'

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = id or 0
  count = tonumber(args[1] or "1000")
  namespace = args[2] or "bench"
  tag = args[3] or ""
  -- Threads start at different Alerts.
  counter = thread_id * 4999
end

function request()
  counter = counter + 1
  local body = string.format(template, namespace, counter % count, tag, thread_id, counter)
  return wrk.format("POST", "/", { ["Content-Type"] = "application/json" }, body)
end
