#!/usr/bin/env python3
"""Times `opsloop forecast` on one Prometheus query_range answer of many series.

Builds a Prometheus-shaped answer (a daily sine with noise per series, 14 days at 5 minutes),
serves it from memory on a loopback port, runs the given opsloop binary against it under
/usr/bin/time and prints wall time, CPU time and peak RSS.

    python3 scripts/forecast_many_series.py target/release/opsloop [--series 1000]
"""
import http.server
import json
import math
import subprocess
import sys
import threading

binary = sys.argv[1]
series = int(sys.argv[sys.argv.index("--series") + 1]) if "--series" in sys.argv else 1000
step, points = 300, 14 * 288
end = 1_700_000_000 - 1_700_000_000 % step
result = []
for s in range(series):
    values = [
        [end - (points - 1 - i) * step,
         "%.6g" % (100 + 30 * math.sin(2 * math.pi * i / 288 + s) + (i * 7919 + s) % 11 * 0.5)]
        for i in range(points)
    ]
    result.append({"metric": {"__name__": "demand", "instance": "host-%04d" % s}, "values": values})
body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}},
                  separators=(",", ":")).encode()


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = "http://127.0.0.1:%d" % server.server_address[1]
run = subprocess.run(
    ["/usr/bin/time", "-f", "%e s wall, %U s user, %M KB peak RSS", binary, "forecast",
     "--prometheus", url, "--query", "demand", "--range", "14d", "--step", "5m",
     "--output", "json"],
    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
print("%d series x %d points, answer %.0f MB: %s (exit %d)"
      % (series, points, len(body) / 1e6, run.stderr.strip().splitlines()[-1], run.returncode))
server.shutdown()
