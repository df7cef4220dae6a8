-- POST /consume on a random account with an API key (API_KEY), each request
-- with a fresh Idempotency-Key. Used by benchmarks/auth.py (auth on vs off).
local threads = {}
local counter = 0
local prefix
local naccounts = tonumber(os.getenv("NACCOUNTS") or "1000")
local auth = "Bearer " .. (os.getenv("API_KEY") or "")
local tenant = os.getenv("TENANT") or "bench"

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  prefix = "wrk-auth-" .. os.time() .. "-" .. tid .. "-" .. math.random(1, 1000000) .. "-"
  math.randomseed(os.time() * 100 + tid)
end

function request()
  counter = counter + 1
  local account = math.random(1, naccounts)
  return wrk.format("POST", "/v1/tenants/" .. tenant .. "/accounts/" .. account .. "/consume",
    {["Content-Type"] = "application/json", ["Idempotency-Key"] = prefix .. counter, ["Authorization"] = auth},
    '{"amount":1}')
end
