-- wrk script of the bench (test/bench/wrk.ts): an optional POST body, and one JSON line at
-- the end with the counts and latency percentiles (µs) that the bench reads.
--   wrk ... -s wrk-report.lua URL                  GET
--   wrk ... -s wrk-report.lua URL -- post BYTES    POST of BYTES bytes (application/octet-stream)
function init(args)
  if args[1] == "post" then
    wrk.method = "POST"
    wrk.body = string.rep("u", tonumber(args[2]) or 0)
    wrk.headers["Content-Type"] = "application/octet-stream"
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n{"wrk":1,"requests":%d,"durationUs":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50Us":%d,"p99Us":%d,"p999Us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
