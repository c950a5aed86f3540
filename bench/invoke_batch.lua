-- invoke_batch.lua - wrk script: POST /invoke/batch, an array of BENCH_BATCH (default 1000)
-- /invoke bodies, each the ~100-byte payload of invoke.lua.  Jobs/s = requests/s x BENCH_BATCH.
local n = tonumber(os.getenv("BENCH_BATCH") or "1000")
local item = '{"botType":"python","payload":{"task":"data_analysis","dataset":"sales_2024","seq":12345,"pad":"abcdefghijklmnopqrstuvwxyz0123456"}}'
local items = {}
for i = 1, n do items[i] = item end
wrk.method = "POST"
wrk.path = "/invoke/batch"
wrk.headers["Content-Type"] = "application/json"
wrk.body = "[" .. table.concat(items, ",") .. "]"
