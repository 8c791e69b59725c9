#!/usr/bin/env python3
"""Benchmarks of the agent (`opsloop run`), driven from outside as a user would run it.

  file      file -> events end to end with the built-in rules, the agent pinned to one core
            (taskset), on the 1M-line Loghub mix: time until every line went through parsing,
            mining and rules, and the events they raised are stored;
  rss       the same on 10M lines (the mix ten times): resident memory at the end, templates;
  syslog    syslog over UDP on loopback at a fixed rate (the sender on the other core):
            messages received against sent, and the kernel drops the agent counts;
  bus       publish throughput of the embedded bus and of NATS JetStream (`bus_publish`).

Run through `scripts/bench.sh --agent` (or directly: bench_agent.py --opsloop BIN --mix FILE).
Prints Markdown for BENCHMARKS.md.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRIC = re.compile(r'^([a-z_]+)(\{[^}]*\})? ([0-9.e+]+)$')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port):
    """The agent's metrics as {name{labels}: value}; {} while it is not up."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        m = METRIC.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Agent:
    """`opsloop run --config` on a config written from `sources` YAML, stopped on exit."""

    def __init__(self, opsloop, sources, cpus=None):
        self.dir = tempfile.mkdtemp(prefix="opsloop-bench-")
        self.port = free_port()
        config = os.path.join(self.dir, "opsloop.yaml")
        with open(config, "w") as f:
            f.write(f"listen: 127.0.0.1:{self.port}\ndata_dir: {self.dir}/data\n")
            f.write("log:\n  level: warn\nsources:\n" + sources)
        cmd = [opsloop, "run", "--config", config]
        if cpus is not None:
            cmd = ["taskset", "-c", cpus] + cmd
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while not metrics(self.port):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the agent did not start")
            time.sleep(0.05)

    def wait_for(self, done, timeout=600, every=0.1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = metrics(self.port)
            if done(m):
                return m
            time.sleep(every)
        raise RuntimeError("timed out")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def file_source(path):
    return (f"  - type: file\n    name: bench\n    include: [\"{path}\"]\n"
            "    start_at: beginning\n")


def file_run(opsloop, path, lines):
    """(seconds until every line is processed, metrics then, RSS KiB, peak RSS KiB)."""
    agent = Agent(opsloop, file_source(path), cpus="0")
    try:
        key = 'opsloop_log_lines_processed_total{source="bench"}'
        m = agent.wait_for(lambda m: m.get(key, 0) >= lines, every=0.05)
        # Then until the events those lines raised are stored (the count stops moving).
        last = m.get("opsloop_events_published_total", 0)
        while True:
            time.sleep(0.05)
            m = metrics(agent.port)
            now = m.get("opsloop_events_published_total", 0)
            if now == last:
                break
            last = now
        secs = time.perf_counter() - agent.started
        rss = status_kib(agent.proc.pid, "VmRSS")
        hwm = status_kib(agent.proc.pid, "VmHWM")
        return secs, m, rss, hwm
    finally:
        agent.stop()


def bench_file(opsloop, mix, runs):
    lines = sum(1 for _ in open(mix, "rb"))
    best = None
    for _ in range(runs):
        r = file_run(opsloop, mix, lines)
        if best is None or r[0] < best[0]:
            best = r
    secs, m, _, hwm = best
    print(f"### File → events, built-in rules, one core — {time.strftime('%Y-%m-%d')}\n")
    print("| lines | best of {} s | lines/s | events stored | templates | peak RSS MiB |".format(runs))
    print("|---|---|---|---|---|---|")
    print(f"| {lines:,} | {secs:.2f} | {lines / secs:,.0f} | "
          f"{m.get('opsloop_events_published_total', 0):,.0f} | "
          f"{m.get('opsloop_log_templates', 0):,.0f} | {hwm / 1024:.0f} |\n")


def bench_rss(opsloop, mix, work, copies):
    big = os.path.join(work, f"mix{copies}x.log")
    if not os.path.exists(big):
        with open(big, "wb") as out:
            for _ in range(copies):
                with open(mix, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
    lines = sum(1 for _ in open(big, "rb"))
    secs, m, rss, hwm = file_run(opsloop, big, lines)
    print(f"### Memory after {lines:,} lines (the mix {copies} times) — {time.strftime('%Y-%m-%d')}\n")
    print("| lines | seconds | lines/s | RSS at the end MiB | peak RSS MiB | templates |")
    print("|---|---|---|---|---|---|")
    print(f"| {lines:,} | {secs:.1f} | {lines / secs:,.0f} | {rss / 1024:.0f} | {hwm / 1024:.0f} | "
          f"{m.get('opsloop_log_templates', 0):,.0f} |\n")


def bench_syslog(opsloop, flood, cases, seconds):
    """cases: (messages/s, rule hits per hundred messages)."""
    print(f"### Syslog over UDP on loopback, {seconds:.0f} s per rate — {time.strftime('%Y-%m-%d')}\n")
    print("| target msg/s | rule hits | sent | received | lost | kernel drops counted | sent msg/s |")
    print("|---|---|---|---|---|---|---|")
    for rate, errors in cases:
        port = free_port()
        agent = Agent(opsloop, f"  - type: syslog\n    name: udp\n    udp: 127.0.0.1:{port}\n",
                      cpus="0")
        try:
            out = subprocess.run(["taskset", "-c", "1", flood, f"127.0.0.1:{port}", str(rate),
                                  str(seconds), str(errors)], capture_output=True, text=True,
                                 check=True)
            sent = json.loads(out.stdout)
            key = 'opsloop_log_lines_read_total{source="udp"}'
            last, m = -1, {}
            while True:  # until the count stops moving
                time.sleep(0.5)
                m = metrics(agent.port)
                if m.get(key, 0) == last:
                    break
                last = m.get(key, 0)
            time.sleep(1.2)  # one more kernel drop check
            m = metrics(agent.port)
            received = int(m.get(key, 0))
            drops = int(m.get('opsloop_syslog_udp_drops_total{source="udp"}', 0))
            print(f"| {rate:,} | {errors}% | {sent['sent']:,} | {received:,} | {sent['sent'] - received:,} | "
                  f"{drops:,} | {sent['rate']:,.0f} |")
        finally:
            agent.stop()
    print()


def bench_bus(bus_publish, runs):
    print(f"### Event bus publish, 200,000 events in batches of 1,000 — {time.strftime('%Y-%m-%d')}\n")
    print("| bus | best of {} events/s |".format(runs))
    print("|---|---|")
    for bus in ["embedded", "jetstream"]:
        best = 0.0
        for _ in range(runs):
            out = subprocess.run([bus_publish, "200000", "1000", bus], capture_output=True,
                                 text=True, check=True)
            best = max(best, json.loads(out.stdout.strip().splitlines()[-1])["events_per_s"])
        print(f"| {bus} | {best:,.0f} |")
    print()


def main():
    ap = argparse.ArgumentParser()
    release = os.path.join(ROOT, "target", "release")
    ap.add_argument("--opsloop", default=os.path.join(release, "opsloop"))
    ap.add_argument("--mix", default=os.path.join(ROOT, "target", "bench", "mix1m.log"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=["file", "rss", "syslog", "bus"], action="append")
    ap.add_argument("--copies", type=int, default=10, help="mix copies for the memory run")
    args = ap.parse_args()
    only = set(args.only or ["file", "rss", "syslog", "bus"])
    work = os.path.dirname(args.mix)
    print("## The agent (`opsloop run`)\n")
    if "file" in only:
        bench_file(args.opsloop, args.mix, args.runs)
    if "rss" in only:
        bench_rss(args.opsloop, args.mix, work, args.copies)
    if "syslog" in only:
        bench_syslog(args.opsloop, os.path.join(release, "syslog_flood"), [(100_000, 1), (150_000, 1), (200_000, 1), (100_000, 100)], 10.0)
    if "bus" in only:
        bench_bus(os.path.join(release, "bus_publish"), args.runs)


if __name__ == "__main__":
    sys.exit(main())
