-- wrk script for bench/collect_bench.py: POSTs realistic hits from a prepared list.
-- The list (one request per line: ip \t ua \t body) comes from the file named in CG_HITS.
-- With CG_FLOOD=1 every request gets a User-Agent never seen before (no cache can help).
local hits = {}
local flood = os.getenv("CG_FLOOD") == "1"
for line in io.lines(os.getenv("CG_HITS")) do
  local ip, ua, body = line:match("([^\t]*)\t([^\t]*)\t(.*)")
  hits[#hits + 1] = {ip = ip, ua = ua, body = body}
end
local threads = {}
local counter = 0
stored = 0  -- a global: done() reads it from each thread

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = id * 100000000
end

function request()
  counter = counter + 1
  local h = hits[(counter % #hits) + 1]
  local ua = h.ua
  if flood then
    ua = string.format("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%d.0.%d.%d Safari/537.36", 100 + counter % 30, counter, id)
  end
  return wrk.format("POST", "/s/bench/collect", {
    ["Content-Type"] = "text/plain;charset=UTF-8",
    ["Origin"] = "https://www.example.com",
    ["User-Agent"] = ua,
    ["X-Forwarded-For"] = h.ip,
  }, h.body)
end

function response(status, headers, body)
  local result = headers["x-consentgate-result"] or headers["X-Consentgate-Result"]
  if status == 202 and result == "stored" then
    stored = stored + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + t:get("stored")
  end
  io.write(string.format("CG_STORED %d\n", total))
end
