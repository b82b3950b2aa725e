-- wrk script for bench/harness.py: POST the bytes of $BENCH_BODY_FILE (a multipart body with a
-- real JPEG in the `file` part, or a JSON analyze request) with $BENCH_CONTENT_TYPE.
-- wrk sets Content-Length from the body and reuses one prebuilt request per thread.
-- $BENCH_AUTHORIZATION, if set, is sent as the Authorization header (a logged-in user).
local path = assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set")
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = assert(os.getenv("BENCH_CONTENT_TYPE"), "BENCH_CONTENT_TYPE is not set")
local auth = os.getenv("BENCH_AUTHORIZATION")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
