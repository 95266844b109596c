"""Load generation: wrk with the Lua scripts the benchmarks need, alternating slices so
both sides of a ratio see the same machine, and a worker's resident memory."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

WRK_REPORT = """
done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format('{"requests": %d, "seconds": %f, "non2xx": %d, "socket_errors": %d, '
    .. '"p50_ms": %f, "p95_ms": %f, "p99_ms": %f}\\n', summary.requests,
    summary.duration / 1e6, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000))
end
"""

# wrk.format() drops the -H headers (the session cookie) when given its own
# table, so every script builds its headers from wrk.headers.
WRK_HEADERS = """
local function with_headers(extra)
  local headers = {}
  for k, v in pairs(wrk.headers) do headers[k] = v end
  for k, v in pairs(extra) do headers[k] = v end
  return headers
end
"""

# Each wrk thread takes every other pre-signed callback (thread ids 0 and 1),
# so the two threads never send the same one until the list wraps around. The
# second argument is where in the list this run starts (a later slice goes on
# from where the one before stopped).
WRK_CYCLE = WRK_HEADERS + """
local bodies, heads, i, step = {}, {}, 0, 2
local counter = 0
setup = function(thread)
  thread:set("offset", counter)
  counter = counter + 1
end
init = function(args)
  i = (offset or 0) + (tonumber(args[2]) or 0)
  for line in io.lines(args[1]) do
    local sep = line:find("\\t")
    heads[#heads + 1] = line:sub(1, sep - 1)
    bodies[#bodies + 1] = line:sub(sep + 1)
  end
end
request = function()
  local n = i % #bodies + 1
  i = i + step
  local headers = with_headers({["Content-Type"] = "application/x-www-form-urlencoded"})
  for k, v in heads[n]:gmatch("([^|:]+):([^|]*)") do headers[k] = v end
  return wrk.format("POST", wrk.path, headers, bodies[n])
end
"""

WRK_COMPOSE = WRK_HEADERS + """
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
request = function()
  local key = string.format("bench%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  local body = "csrf_token=" .. os.getenv("BENCH_CSRF") .. "&idempotency_key=" .. key
    .. "&sender=%2B14155550100&recipients=%2B14155550123&text=bench"
    .. "&media=https%3A%2F%2Fexample.com%2Fa.jpg"
  local headers = with_headers({["Content-Type"] = "application/x-www-form-urlencoded"})
  return wrk.format("POST", wrk.path, headers, body)
end
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pids: list[int], quiet_seconds: float = 3.0, limit: float = 120.0) -> None:
    """Until these processes have used almost no CPU for `quiet_seconds` (a queue worker's
    sweep counting an import, say), so that it does not share the machine with a run."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(quiet_seconds)
        if sum(cpu_seconds(pid) for pid in pids) - before < 0.1 * quiet_seconds:
            return


def wrk(url: str, seconds: float, connections: int, script: str, *args: str,
        headers: dict[str, str] | None = None, env: dict | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + WRK_REPORT)
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--timeout", "10s",
           "-s", handle.name]
    for key, value in (headers or {}).items():
        cmd += ["-H", f"{key}: {value}"]
    cmd += [url, *(["--", *args] if args else [])]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                            env={**os.environ, **(env or {})})
    os.unlink(handle.name)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no report: {result.stdout}\n{result.stderr}")
    report = json.loads(line)
    report["rps"] = report["requests"] / report["seconds"]
    return report


def alternate(runs: dict, seconds: float) -> dict[str, dict]:
    """Run each of `runs` (name -> fn(slice_seconds) -> wrk report) for `seconds` in all,
    as alternating slices of 2 s: figures compared as a ratio see the same machine,
    whose noisy neighbours come and go within seconds. Each first runs a second
    uncounted. Requests and errors are summed; each latency percentile is the slices'
    figures weighted by their requests."""
    slices = max(1, int(seconds) // 2)
    for run in runs.values():
        run(1)  # warm-up, not counted: each worker's first requests connect and compile
    parts: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(slices):
        for name, run in runs.items():
            parts[name].append(run(max(1.0, seconds / slices)))
    merged = {}
    for name, reports in parts.items():
        count = sum(r["requests"] for r in reports) or 1
        merged[name] = {
            "requests": sum(r["requests"] for r in reports),
            "seconds": sum(r["seconds"] for r in reports),
            "non2xx": sum(r["non2xx"] for r in reports),
            "socket_errors": sum(r["socket_errors"] for r in reports),
            **{key: sum(r[key] * r["requests"] for r in reports) / count
               for key in ("p50_ms", "p95_ms", "p99_ms")},
        }
        merged[name]["rps"] = merged[name]["requests"] / merged[name]["seconds"]
    return merged
