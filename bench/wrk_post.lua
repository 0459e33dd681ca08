-- wrk script for bench/serve.py: POST the JSON body in $WRK_BODY on every request.
-- $WRK_AUTH, when set, is sent as the Authorization header (e.g. "Bearer <token>").
--
--   WRK_BODY='{"records": [...]}' WRK_AUTH="Bearer $TOKEN" \
--     wrk -t1 -c1 -d10s --latency -s bench/wrk_post.lua http://127.0.0.1:8000/api/v1/predict

local body = os.getenv("WRK_BODY")
if body == nil or body == "" then
  error("WRK_BODY is not set: it must hold the JSON body to POST")
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

local auth = os.getenv("WRK_AUTH")
if auth ~= nil and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
