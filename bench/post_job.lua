-- wrk: POST /jobs with a read job, the same body on every request (building a
-- body per request would load wrk more than the GET /healthz ceiling does).
wrk.method = "POST"
wrk.body = '{"type":"read","params":{"item_id":4242}}'
wrk.headers["Content-Type"] = "application/json"
