-- invoke.lua - wrk script: POST /invoke with a ~100-byte JSON payload.
wrk.method = "POST"
wrk.path = "/invoke"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"botType":"python","payload":{"task":"data_analysis","dataset":"sales_2024","seq":12345,"pad":"abcdefghijklmnopqrstuvwxyz0123456"}}'
