-- POST /batches: BATCH consumes of 1 credit on random accounts, each item with a
-- fresh idempotency key, as a non-atomic batch, with an API key (API_KEY).
-- Used by bench/shieldx_bench/batch.py.
local threads = {}
local counter = 0
local prefix
local naccounts = tonumber(os.getenv("NACCOUNTS") or "1000")
local batch = tonumber(os.getenv("BATCH") or "100")
local auth = "Bearer " .. (os.getenv("API_KEY") or "")
local tenant = os.getenv("TENANT") or "bench"

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  prefix = "wrk-batch-" .. os.time() .. "-" .. tid .. "-" .. math.random(1, 1000000) .. "-"
  math.randomseed(os.time() * 100 + tid)
end

function request()
  counter = counter + 1
  local items = {}
  for i = 1, batch do
    items[i] = '{"op":"consume","account_id":' .. math.random(1, naccounts) .. ',"amount":1,"idempotency_key":"'
      .. prefix .. counter .. "-" .. i .. '"}'
  end
  return wrk.format("POST", "/v1/tenants/" .. tenant .. "/batches",
    {["Content-Type"] = "application/json", ["Authorization"] = auth},
    '{"atomic":false,"items":[' .. table.concat(items, ",") .. ']}')
end
