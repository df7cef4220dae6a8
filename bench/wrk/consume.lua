-- POST /consume on a random account, each request with a fresh Idempotency-Key.
local threads = {}
local counter = 0
local prefix
local naccounts = tonumber(os.getenv("NACCOUNTS") or "10000")

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  prefix = "wrk-" .. os.time() .. "-" .. tid .. "-"
  math.randomseed(os.time() * 100 + tid)
end

function request()
  counter = counter + 1
  local account = math.random(1, naccounts)
  return wrk.format("POST", "/v1/tenants/bench/accounts/" .. account .. "/consume",
    {["Content-Type"] = "application/json", ["Idempotency-Key"] = prefix .. counter},
    '{"amount":1}')
end
