#!/usr/bin/env python3
"""opsloop benchmarks for the log inspection loop; run through scripts/bench.sh.

Measures, on the shared Loghub data (never copied into the repository):
  1. grouping accuracy (GA) and parsing accuracy (PA) of `opsloop inspect --parser raw
     --emit assignments` on every Loghub 2k set, default settings;
  2. throughput and peak memory of the same command on the 1M-line mix, with the built-in
     rules, with 100 more rules, and of Drain3 (with the masks of its example config) in the
     same run;
and prints a Markdown report for BENCHMARKS.md.
"""
import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

# Consecutive wildcards, however separated by spaces, count as one (the anchors' convention).
RUNS = re.compile(r"<\*>(?:\s*<\*>)+")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_measured(cmd, stdout=subprocess.DEVNULL):
    """Runs cmd; returns (seconds, peak RSS in MiB, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    return elapsed, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status)


def accuracy(opsloop, data_dir):
    rows = []
    for name in sorted(os.listdir(data_dir)):
        path = os.path.join(data_dir, name, f"{name}_2k.log_structured.csv")
        if not os.path.exists(path):
            continue
        with open(path, newline="", encoding="utf-8") as f:
            recs = list(csv.DictReader(f))
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False, encoding="utf-8") as tmp:
            for r in recs:
                tmp.write(r["Content"].replace("\n", " ") + "\n")
        try:
            out = subprocess.run(
                [opsloop, "inspect", "--parser", "raw", "--emit", "assignments", tmp.name],
                capture_output=True, check=False,
            ).stdout
        finally:
            os.unlink(tmp.name)
        assigned = {}
        for line in out.splitlines():
            a = json.loads(line)
            assigned[a["line"]] = (a["template_id"], a["template"])
        truth = defaultdict(set)
        pred = defaultdict(set)
        for i, r in enumerate(recs, start=1):
            truth[r["EventId"]].add(i)
            pred[assigned.get(i, ("missing", ""))[0]].add(i)
        ga = sum(1 for i, r in enumerate(recs, start=1)
                 if truth[r["EventId"]] == pred[assigned.get(i, ("missing", ""))[0]]) / len(recs)
        norm = lambda s: " ".join(s.split())
        runs = lambda s: RUNS.sub("<*>", norm(s))
        pa = sum(1 for i, r in enumerate(recs, start=1)
                 if norm(assigned.get(i, ("", ""))[1]) == norm(r["EventTemplate"])) / len(recs)
        pa_runs = sum(1 for i, r in enumerate(recs, start=1)
                      if runs(assigned.get(i, ("", ""))[1]) == runs(r["EventTemplate"])) / len(recs)
        rows.append((name, ga, pa, pa_runs, len(pred), len(truth)))
    return rows


def hundred_rules(path):
    """100 rules of the kinds users write, deterministic."""
    words = ["failed", "error", "exception", "denied", "timeout", "refused", "invalid", "closed",
             "warning", "lost", "unable", "cannot", "terminated", "killed", "corrupt", "retry",
             "disconnect", "unreachable", "rejected", "expired"]
    objects = ["connection", "session", "block", "disk", "user", "request", "socket", "node",
               "task", "file", "package", "channel", "memory", "interrupt", "packet"]
    rnd = random.Random(42)
    rules = []
    for i in range(40):
        a, b = rnd.choice(objects), rnd.choice(words)
        rules.append({"id": f"regex-{i}", "severity": "warning",
                      "match": {"regex": f"(?i)\\b{a}\\b.*\\b{b}\\b"}})
    for i in range(20):
        rules.append({"id": f"keywords-{i}", "severity": "info",
                      "match": {"keywords": rnd.sample(words, 3)}})
    for i in range(15):
        rules.append({"id": f"template-{i}", "severity": "info",
                      "match": {"template": f"<*> {rnd.choice(objects)} <*>"}})
    for i in range(10):
        rules.append({"id": f"level-{i}", "severity": "error",
                      "match": {"regex": f"(?i){rnd.choice(words)}", "level": "error"}})
    for i in range(10):
        rules.append({"id": f"window-{i}", "severity": "warning",
                      "match": {"regex": f"(?i){rnd.choice(objects)} {rnd.choice(words)}"},
                      "window": f"count >= {rnd.randint(5, 50)} within 1m"})
    for i in range(5):
        rules.append({"id": f"cel-{i}", "severity": "error",
                      "match": {"keywords": [rnd.choice(words)],
                                "condition": "message.size() > 40 && !message.contains('ok')"}})
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"rules": rules}, f, indent=1)  # JSON is YAML


DRAIN3_EXAMPLE_CONFIG = r"""
[MASKING]
masking = [
    {"regex_pattern":"((?<=[^A-Za-z0-9])|^)(([0-9a-f]{2,}:){3,}([0-9a-f]{2,}))((?=[^A-Za-z0-9])|$)", "mask_with": "ID"},
    {"regex_pattern":"((?<=[^A-Za-z0-9])|^)(\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3})((?=[^A-Za-z0-9])|$)", "mask_with": "IP"},
    {"regex_pattern":"((?<=[^A-Za-z0-9])|^)([0-9a-f]{6,} ?){3,}((?=[^A-Za-z0-9])|$)", "mask_with": "SEQ"},
    {"regex_pattern":"((?<=[^A-Za-z0-9])|^)([0-9A-F]{4} ?){4,}((?=[^A-Za-z0-9])|$)", "mask_with": "SEQ"},
    {"regex_pattern":"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "mask_with": "HEX"},
    {"regex_pattern":"((?<=[^A-Za-z0-9])|^)([\\-\\+]?\\d+)((?=[^A-Za-z0-9])|$)", "mask_with": "NUM"},
    {"regex_pattern":"(?<=executed cmd )(\".+?\")", "mask_with": "CMD"}
    ]
mask_prefix = <:
mask_suffix = :>

[DRAIN]
sim_th = 0.4
depth = 4
max_children = 100
max_clusters = 1024
extra_delimiters = ["_"]

[PROFILING]
enabled = False
"""

DRAIN3_DRIVER = r"""
import sys, time
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig
cfg = TemplateMinerConfig()
cfg.load(sys.argv[1])
miner = TemplateMiner(config=cfg)
n = 0
start = time.perf_counter()
with open(sys.argv[2], encoding="utf-8") as f:
    for line in f:
        miner.add_log_message(line.rstrip("\n"))
        n += 1
print(n / (time.perf_counter() - start))
"""


def drain3_python(work):
    """A Python with Drain3, in a venv of its own under target/ (never the system's)."""
    venv = os.path.join(work, "drain3-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    if subprocess.run([py, "-c", "import drain3"], capture_output=True).returncode != 0:
        subprocess.run([py, "-m", "pip", "install", "-q", "drain3==0.9.11"], check=False)
    return py


def drain3_throughput(mix, work):
    py = drain3_python(work)
    with tempfile.TemporaryDirectory() as d:
        ini = os.path.join(d, "drain3.ini")
        drv = os.path.join(d, "drive.py")
        open(ini, "w").write(DRAIN3_EXAMPLE_CONFIG)
        open(drv, "w").write(DRAIN3_DRIVER)
        out = subprocess.run([py, drv, ini, mix], capture_output=True, text=True)
        try:
            return float(out.stdout.strip())
        except ValueError:
            print(out.stderr, file=sys.stderr)
            return None


def adversarial(opsloop, work):
    """Inputs made to defeat the miner: nearly every line a new template (the template cap
    evicts all the time), very long lines of one-letter words, and one slot of thousands of
    names each seen twice."""
    rnd = random.Random(9)
    vocab = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9)))
             for _ in range(5000)]
    new_each_line = os.path.join(work, "adversarial-new-templates.log")
    with open(new_each_line, "w", encoding="utf-8") as f:
        for _ in range(100_000):
            f.write(" ".join(rnd.choice(vocab) for _ in range(5)) + "\n")
    long_lines = os.path.join(work, "adversarial-long-lines.log")
    with open(long_lines, "w", encoding="utf-8") as f:
        for _ in range(20_000):
            f.write(" ".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(1100)) + "\n")
    # Thousands of capitalised names in one slot, each seen twice: every new name is a
    # sibling of all earlier ones, the case that made the evidence gathering quadratic.
    names_twice = os.path.join(work, "adversarial-names-twice.log")
    with open(names_twice, "w", encoding="utf-8") as f:
        for i in range(6000):
            name = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8)).capitalize()
            line = f"Accepted password for {name} from 10.0.{i // 250}.{i % 250} port 22\n"
            f.write(line + line)
    # Every line a new short template behind one shared prefix: every template is a candidate
    # for every line, the case that made each line cost a pass over all of them.
    shared_prefix = os.path.join(work, "adversarial-shared-prefix.log")
    with open(shared_prefix, "w", encoding="utf-8") as f:
        for i in range(100_000):
            f.write(f"[task {i}] {rnd.choice(vocab)} {rnd.choice(vocab)}\n")
    print("## Adversarial input: `opsloop inspect --parser raw --emit assignments`\n")
    print("| input | s | peak RSS MiB |")
    print("|---|---|---|")
    for label, path in [
        ("100,000 lines of five random words from 5,000 (each line a new template)", new_each_line),
        ("20,000 lines of 1,100 random one-letter words (44 MB)", long_lines),
        ("12,000 sshd-like lines, 6,000 capitalised names each seen twice", names_twice),
        ("100,000 lines `[task N] w1 w2` of random words (each a new template, one prefix)",
         shared_prefix),
    ]:
        secs, rss, code = run_measured([opsloop, "inspect", "--parser", "raw", "--emit", "assignments", path])
        if code != 0:
            print(f"{label}: exit {code}", file=sys.stderr)
        print(f"| {label} | {secs:.2f} | {rss:.0f} |")
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "loghub-2k"))
    ap.add_argument("--opsloop", default=os.path.join(ROOT, "target", "release", "opsloop"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-drain3", action="store_true")
    ap.add_argument("--accuracy-only", action="store_true")
    args = ap.parse_args()
    work = os.path.join(ROOT, "target", "bench")
    os.makedirs(work, exist_ok=True)

    print("## Template mining accuracy (Loghub 2k, `--parser raw`, default settings)\n")
    print("| system | GA | PA | PA, `<*>` runs as one | templates | truth |")
    print("|---|---|---|---|---|---|")
    rows = accuracy(args.opsloop, args.data)
    for name, ga, pa, pa_runs, np_, nt in rows:
        print(f"| {name} | {ga:.3f} | {pa:.3f} | {pa_runs:.3f} | {np_} | {nt} |")
    avg = lambda k: sum(r[k] for r in rows) / len(rows)
    print(f"| **average** | **{avg(1):.3f}** | **{avg(2):.3f}** | **{avg(3):.3f}** | | |")
    print(f"\nminimum GA {min(r[1] for r in rows):.3f}\n")

    print("Leave-one-system-out selection of the miner's constants (prints its own table):")
    print("`cargo run --release -p opsloop-bench --bin loghub_accuracy -- "
          "--corpus crates/logs/tests/corpus/labelled.tsv --loo`\n")

    if args.accuracy_only:
        return
    adversarial(args.opsloop, work)
    mix = os.path.join(work, "mix1m.log")
    if not os.path.exists(mix):
        subprocess.run([sys.executable, os.path.join(args.data, "make_mix.py"), mix], check=True)
    rules = os.path.join(work, "rules-100.yaml")
    hundred_rules(rules)
    lines = sum(1 for _ in open(mix, "rb"))
    cases = [
        ("built-in rules (default)", []),
        ("no rules (`--no-builtin-rules`)", ["--no-builtin-rules"]),
        ("built-in + 100 rules", ["--rules", rules]),
    ]
    print(f"## Throughput: `opsloop inspect --parser raw --emit assignments` on the {lines:,}-line mix\n")
    print("| case | best of {} s | lines/s | peak RSS MiB |".format(args.runs))
    print("|---|---|---|---|")
    results = {}
    for label, extra in cases:
        best = None
        for _ in range(args.runs):
            cmd = [args.opsloop, "inspect", "--parser", "raw", "--emit", "assignments", *extra, mix]
            secs, rss, code = run_measured(cmd)
            if code != 0:
                print(f"{label}: exit {code}", file=sys.stderr)
            if best is None or secs < best[0]:
                best = (secs, rss)
        results[label] = best
        print(f"| {label} | {best[0]:.2f} | {lines / best[0]:,.0f} | {best[1]:.0f} |")
    if not args.skip_drain3:
        d3 = drain3_throughput(mix, work)
        if d3:
            ours = lines / results[cases[0][0]][0]
            print(f"| Drain3 0.9 with its example masks (same run) | {lines / d3:.1f} | {d3:,.0f} | |")
            print(f"\nopsloop (default) / Drain3 (example masks): **{ours / d3:.1f}x**")


if __name__ == "__main__":
    main()
