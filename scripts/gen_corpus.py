#!/usr/bin/env python3
"""Writes the miner's own labelled corpus (crates/logs/tests/corpus/labelled.tsv).

Realistic lines of common software, written for this project (not taken from any benchmark
set), each with the id of the event it belongs to: `EVENT<TAB>message`. Every event exercises
one of the patterns template mining must get right on systems it has never seen: closed
vocabularies (states, methods) that must stay apart, parameters
that must merge (also when each value repeats several times in a row), one name numbered
differently (`eth0`, `eth1`), values of varying length (sizes with an optional unit in
parentheses, durations in several spellings, lists), quoted values, and short messages behind a
shared prefix or a label. Deterministic (seeded).
"""
import random
import sys

rnd = random.Random(7)
H = "0123456789abcdef"


def hexid(n, r=rnd):
    return "".join(r.choice(H) for _ in range(n))


def ip(r=rnd):
    return f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"


def uuid():
    return f"{hexid(8)}-{hexid(4)}-{hexid(4)}-{hexid(4)}-{hexid(12)}"


def size():
    b = rnd.choice([0, 12, 512, 1170, 8218, 65536, 1048576, 734003])
    if b >= 1024 and rnd.random() < 0.7:
        unit = "KB" if b < 1048576 else "MB"
        div = 1024 if unit == "KB" else 1048576
        return f"{b} bytes ({b / div:.2f} {unit})"
    return f"{b} bytes"


def duration():
    return rnd.choice([
        "<1 sec", f"00:{rnd.randint(0, 59):02d}", f"{rnd.randint(0, 3):02d}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}",
        f"{rnd.randint(1, 59)} sec", f"{rnd.randint(1, 9)}m {rnd.randint(1, 59)}s", f"{rnd.uniform(0.1, 9):.1f}s",
    ])


USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter"]
PATHS = ["/v1/orders", "/v1/users", "/healthz", "/api/v2/items", "/metrics", "/login"]
JOB_STATES = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
PODS = ["web", "api", "worker", "cache", "ingest"]
CI_FINAL = ["success", "failed", "canceled", "skipped"]
TABLES = ["orders", "users", "sessions", "payments", "events", "audit_log"]
UNITS = ["nginx.service", "sshd.service", "docker.service", "cron.service", "postgresql.service"]


def pod():
    return f"{rnd.choice(PODS)}-{''.join(rnd.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(9))}-{''.join(rnd.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(5))}"


def events():
    """(weight, event id, generator) for every event of the corpus."""
    ev = []
    # Web server access lines: the method names the event.
    for m in ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]:
        ev.append((6 if m in ("GET", "POST") else 2, f"http-{m}",
                   lambda m=m: f'{ip()} - - "{m} {rnd.choice(PATHS)}/{rnd.randint(1, 999)} HTTP/1.1" {rnd.choice([200, 201, 204, 404, 500])} {rnd.randint(0, 9000)} {rnd.uniform(0, 2):.3f}'))
    # A job scheduler: the state names the event (one word, all capitals).
    for s in JOB_STATES:
        ev.append((3, f"job-{s}", lambda s=s: f"job {rnd.randint(1, 99999)} entered {s}"))
    # State transitions in a JVM service: two co-varying state words.
    for a, b in [("NEW", "SCHEDULED"), ("SCHEDULED", "RUNNING"), ("RUNNING", "SUCCEEDED"), ("RUNNING", "FAILED"), ("RUNNING", "KILLED")]:
        ev.append((3, f"transition-{a}-{b}", lambda a=a, b=b: f"task_{rnd.randint(1000, 9999)}_{rnd.randint(0, 99):04d} Task Transitioned from {a} to {b}"))
    # Lifecycle events behind a bracketed instance prefix: capitalised verbs stay apart.
    for v in ["Started", "Stopped", "Paused", "Resumed"]:
        ev.append((2, f"vm-{v}", lambda v=v: f"[instance: {uuid()}] VM {v} (Lifecycle Event)"))
    # Short messages behind a shared prefix: all differing words, different events.
    for i, msg in enumerate(["Upload finished", "Cache warmed", "Retrying later", "Lease renewed", "checkpoint written", "queue drained"]):
        ev.append((2, f"task-{i}", lambda msg=msg: f"[task {rnd.randint(1, 500)}] {msg}"))
    # A proxy: sizes with an optional unit in parentheses and durations in many spellings.
    ev.append((8, "proxy-close", lambda: f"{rnd.choice(['chrome.exe', 'firefox.exe', 'curl', 'Teams.exe', 'git-remote-https'])} - {rnd.choice(['api.example.com', 'cdn.example.net', ip()])}:{rnd.choice([443, 80, 8443])} close, {size()} sent, {size()} received, lifetime {duration()}"))
    ev.append((3, "proxy-open", lambda: f"{rnd.choice(['chrome.exe', 'firefox.exe', 'curl', 'Teams.exe', 'svchost.exe', 'java'])} - {rnd.choice(['api.example.com', 'cdn.example.net'])}:{rnd.choice([443, 80])} open through proxy proxy.corp.example.com:3128 HTTPS"))
    ev.append((3, "copy", lambda: f"copied {size()} in {rnd.randint(1, 900)} ms"))
    ev.append((3, "took", lambda: f"backup of {rnd.choice(TABLES)} took {duration()}"))
    # Quoted values: the quoted part is a parameter.
    ev.append((3, "rename", lambda: f'node renamed to "{rnd.choice(["build-7f3a.local", "ci-runner", "edge", "db-primary", "gw"])}"'))
    ev.append((3, "label", lambda: f"applying label '{rnd.choice(['tier', 'team', 'env', 'zone'])}' to {pod()}"))
    # Lists of values of varying length.
    ev.append((3, "ports", lambda: "listening on ports [" + ", ".join(str(rnd.randint(1024, 65535)) for _ in range(rnd.randint(1, 4))) + "]"))
    # Parameters that are plain words: many distinct, each rare.
    ev.append((5, "ssh-accepted", lambda: f"Accepted publickey for {rnd.choice(USERS)} from {ip()} port {rnd.randint(1024, 65535)} ssh2"))
    ev.append((4, "ssh-invalid", lambda: f"Invalid user {rnd.choice(USERS)} from {ip()} port {rnd.randint(1024, 65535)}"))
    ev.append((4, "pam-open", lambda: f"pam_unix(sshd:session): session opened for user {rnd.choice(USERS)} by (uid=0)"))
    ev.append((3, "pg-table", lambda: f'automatic vacuum of table "app.public.{rnd.choice(TABLES)}": index scans: {rnd.randint(0, 3)}'))
    ev.append((3, "pg-slow", lambda: f"duration: {rnd.uniform(100, 5000):.3f} ms  statement: SELECT * FROM {rnd.choice(TABLES)} WHERE id = {rnd.randint(1, 10**6)}"))
    # A closed vocabulary of states in lower case: see ci_lifecycle (added in blocks).
    # Network interfaces: one name numbered differently is one parameter.
    ev.append((3, "nic-carrier", lambda: f"{rnd.choice(['eth0', 'eth1', 'eth2', 'eth3', 'bond0', 'bond1'])}: carrier lost, link down"))
    # Sentences after a label and a number: each sentence is its own event.
    for i, msg in enumerate(["upload finished", "cache warmed", "lease renewed", "retrying later"]):
        ev.append((2, f"worker-{i}", lambda msg=msg: f"worker {rnd.randint(1, 64)}: {msg}"))
    # systemd units: capitalised verbs name different events.
    for verb in ["Started", "Stopped", "Reloaded"]:
        ev.append((3, f"systemd-{verb}", lambda verb=verb: f"{verb} {rnd.choice(UNITS)}."))
    ev.append((3, "systemd-fail", lambda: f"{rnd.choice(UNITS)}: Main process exited, code=exited, status={rnd.randint(1, 3)}/FAILURE"))
    # Kubernetes components.
    # A `key=value` enumeration: readiness and liveness failures are different events.
    for probe in ["Readiness", "Liveness"]:
        ev.append((2, f"kubelet-probe-{probe}", lambda probe=probe: f'Probe failed probeType="{probe}" pod="default/{pod()}" output="HTTP probe failed with statuscode: {rnd.choice([500, 503])}"'))
    ev.append((3, "kubelet-sync", lambda: f'"SyncLoop (PLEG): event for pod" pod="default/{pod()}" event={{"ID":"{uuid()}","Type":"ContainerStarted"}}'))
    ev.append((3, "sched", lambda: f'"Successfully bound pod to node" pod="default/{pod()}" node="node-{rnd.randint(1, 40)}" evaluatedNodes={rnd.randint(1, 40)} feasibleNodes={rnd.randint(1, 40)}'))
    # JVM service lines with camelCase method names: each method is its own event.
    for meth in ["onStandStepChanged", "onScreenOff", "flushSensorData", "getTodayTotalSteps"]:
        ev.append((3, f"jvm-{meth}", lambda meth=meth: f"{meth} {rnd.randint(0, 100000)}"))
    ev.append((3, "gc", lambda: f"[GC (Allocation Failure) {rnd.randint(1000, 90000)}K->{rnd.randint(100, 9000)}K({rnd.randint(90000, 500000)}K), {rnd.uniform(0, 1):.7f} secs]"))
    ev.append((3, "hikari", lambda: f"HikariPool-{rnd.randint(1, 3)} - Connection is not available, request timed out after {rnd.randint(1000, 60000)}ms."))
    return ev


def ci_lifecycle(lines):
    """A CI runner's job lifecycle in lower case, inserted in blocks (one pipeline each) into
    `lines`: the jobs of a pipeline walk through the states interleaved, so every state first
    appears in one burst, once, as rarely as a parameter would; the state names the event.
    Drawn from a generator of its own, so the lines written before it was added stay as they
    were."""
    ci = random.Random(11)
    lines = list(lines)
    for _ in range(14):
        pipeline = ci.randint(1000, 99999)
        walks = []
        for _ in range(ci.randint(1, 4)):
            job, final = ci.randint(100000, 999999), ci.choice(CI_FINAL)
            # A skipped job never runs.
            states = ["created", "skipped"] if final == "skipped" else ["created", "pending", "running", final]
            walks.append([(job, s) for s in states])
        block = []
        while walks:
            walk = ci.choice(walks)
            job, state = walk.pop(0)
            block.append((f"ci-{state}", f"job {job} of pipeline {pipeline} is now {state}"))
            if not walk:
                walks.remove(walk)
        at = ci.randint(0, len(lines))
        lines[at:at] = block
    return lines


AGENTS = ["curl/8.4.0", "kube-probe/1.28", "Go-http-client/1.1", "python-requests/2.31.0",
          "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
          "Prometheus/2.45.0", "Wget/1.21.3"]


def small_vocabularies(lines):
    """Closed vocabularies of two or three lower-case words (probe kinds and results, quoted;
    replication states; health states, the usual one far more often; a circuit breaker's
    states beside its name), quoted values of any characters (user agents, branch names),
    lists of words, short journald lines after a unit name, and service names that end in
    -ing, spread at random through `lines`. Drawn from a generator of its own, so the lines
    written before it was added stay as they were."""
    r = random.Random(23)

    def hx(n):
        return hexid(n, r)

    def addr():
        return ip(r)

    def podn():
        return f"{r.choice(['web', 'api', 'worker'])}-{hx(9)}-{hx(5)}"

    ev = []
    for probe in ["readiness", "liveness"]:
        for st in ["ready", "unhealthy"]:
            ev.append((2, f"probe-{probe}-{st}", lambda probe=probe, st=st: f'Probe result probe="{probe}" pod="default/{podn()}" status="{st}"'))
    for st in ["startup", "catchup", "streaming"]:
        ev.append((2, f"repl-{st}", lambda st=st: f'standby "replica-{r.randint(1, 9)}" at {addr()} is now in state {st}'))
    for st in ["healthy", "degraded", "unhealthy"]:
        ev.append((3 if st == "healthy" else 1, f"health-{st}", lambda st=st: f"backend {addr()}:8080 marked {st} after {r.randint(1, 5)} checks"))
    for st in ["open", "half-open", "closed"]:
        ev.append((2, f"breaker-{st}", lambda st=st: f"circuit breaker {r.choice(['payments', 'inventory', 'search', 'recommendations', 'pricing', 'accounts'])} changed state to {st}"))
    for m in ["GET", "POST"]:
        ev.append((4, f"nginx-{m}", lambda m=m: f'{addr()} - - "{m} /v1/{r.choice(["orders", "users", "cart"])}/{r.randint(1, 999)} HTTP/1.1" {r.choice([200, 201, 404])} {r.randint(0, 9000)} "-" "{r.choice(AGENTS)}"'))
    ev.append((3, "branch", lambda: f"checked out branch '{r.choice(['main', 'feature/new login', 'release-1.4', 'fix/typo in docs', 'develop', 'hotfix/cve-2026-1234'])}' at {hx(7)}"))
    ev.append((3, "features", lambda: "enabled features [" + ", ".join(r.sample(['alpha', 'beta', 'gamma', 'canary', 'darkmode', 'search'], r.randint(1, 4))) + "]"))
    ev.append((3, "unit-deactivated", lambda: f"{r.choice(UNITS + ['session-4.scope', 'user@1000.service', 'kubelet.service'])}: Deactivated successfully."))
    ev.append((2, "unit-consumed", lambda: f"{r.choice(UNITS + ['kubelet.service', 'containerd.service'])}: Consumed {r.uniform(0.1, 90):.3f}s CPU time."))
    ev.append((3, "deploy-scaled", lambda: f"deployment {r.choice(['billing', 'shipping', 'checkout', 'catalog', 'pricing', 'search', 'ranking'])} scaled to {r.randint(1, 12)} replicas"))
    weights = [w for w, _, _ in ev]
    block = [(eid, gen()) for _, eid, gen in ev]
    for _ in range(500):
        _, eid, gen = r.choices(ev, weights)[0]
        block.append((eid, gen()))
    lines = list(lines)
    for item in block:
        lines.insert(r.randint(0, len(lines)), item)
    return lines


def vocabularies_over_time(lines):
    """Vocabularies whose members repeat or first appear in one burst, spread through
    `lines`: pod phases (names, each pod walking through them), eight HTTP methods in capitals
    (the first round in one burst), lower-case methods in `key=word` fields that repeat
    before new ones appear, and four numbered interfaces (a parameter). Drawn from a generator
    of its own, so the lines written before it was added stay as they were."""
    r = random.Random(31)

    def addr():
        return ip(r)

    def name():
        return f"{r.choice(['web', 'api', 'worker'])}-{''.join(r.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(5))}"

    lines = list(lines)

    def spread(block):
        at = r.randint(0, len(lines))
        lines[at:at] = block

    # Pods walk through their phases, a few at a time; in the first group one pod ends in
    # each final phase (a node was lost), so all five phases first appear in one burst.
    for group in range(14):
        walks = []
        ends = ["Succeeded", "Failed", "Unknown"] if group == 0 else [
            r.choice(["Succeeded", "Succeeded", "Failed", "Unknown"]) for _ in range(r.randint(2, 4))]
        for end in ends:
            pod = name()
            walks.append([(pod, p) for p in ["Pending", "Running", end]])
        block = []
        while walks:
            walk = r.choice(walks)
            pod, phase = walk.pop(0)
            block.append((f"phase-{phase}", f"pod default/{pod} phase changed to {phase}"))
            if not walk:
                walks.remove(walk)
        spread(block)
    # A gateway's routes by method: every method in the first burst, then spread.
    methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "TRACE"]
    for round in range(6):
        order = r.sample(methods, len(methods))
        block = [(f"route-{m}", f"route /v1/{r.choice(['cart', 'orders', 'users'])} matched for {m} from {addr()}") for m in order]
        if round == 0:
            spread(block)
        else:
            for item in block:
                spread([item])
    # Lower-case methods in fields: four repeat, then two more join (spread in this order).
    served = []
    for i in range(60):
        m = r.choice(["get", "post", "put", "delete"] + (["patch", "head"] if i >= 30 else []))
        served.append((f"served-{m}", f"request served method={m} path=/v1/items/{r.randint(1, 999)} status={r.choice([200, 204, 404])}"))
    at = sorted(r.randint(0, len(lines)) for _ in served)
    for offset, (pos, item) in enumerate(zip(at, served)):
        lines.insert(pos + offset, item)
    # Four interfaces of one host: one parameter.
    for nic in ["eth0", "eth1", "eth2", "eth3", "eth1", "eth3"]:
        spread([("nic-up", f"{nic}: link up at {r.choice([1000, 10000])} Mbps full duplex")])
    return lines


def values_by_shape(lines):
    """Parameters told by their shape rather than their counts, spread through `lines`: a
    Go service's logfmt lines (quoted values with spaces after a key; the quoted messages are
    the events), queue names made of two words (three queues, each repeating), quoted cache
    names (three, each repeating) and dotted package names holding locks (three, each
    repeating); against them, two events each: a storage scrub's findings (phrases of two
    lower-case words first seen in one burst) and two mount modes spelled as compounds,
    alternating from the start. Drawn from a generator of its own, so the lines written
    before it was added stay as they were."""
    r = random.Random(43)

    def spread(item):
        lines.insert(r.randint(0, len(lines)), item)

    lines = list(lines)
    errors = ["dial tcp 10.0.4.2:5432: connect: connection refused", "context canceled", "i/o timeout",
              "unexpected EOF", "TLS handshake timeout"]
    people = ["Ana Maria de Souza", "Li Wei", "Jean-Luc Martin", "Priya", "O'Brien"]
    for _ in range(90):
        kind = r.choice(["login", "logout", "upstream"])
        if kind == "upstream":
            item = ("logfmt-upstream", f'level=warn msg="upstream request failed" upstream={r.choice(["payments", "ledger", "search", "catalog", "pricing", "accounts", "inventory", "shipping"])} err="{r.choice(errors)}" took={r.randint(1, 900)}ms')
        else:
            verb = "logged in" if kind == "login" else "logged out"
            item = (f"logfmt-{kind}", f'level=info msg="user {verb}" user="{r.choice(people)}" ip={r.randint(10, 99)}.0.{r.randint(0, 9)}.{r.randint(1, 200)}')
        spread(item)
    for _ in range(40):
        spread(("queue-depth", f"queue {r.choice(['billing-events', 'email-outbox', 'audit_trail'])}: {r.randint(0, 9)} consumers, {r.randint(0, 5000)} messages ready"))
    for _ in range(30):
        spread(("cache-full", f"cache '{r.choice(['sessions', 'carts', 'tokens'])}' reached its size limit, evicting {r.randint(1, 500)} entries"))
    # A storage scrub reports what it found: each finding a phrase of two lower-case words,
    # all of them first seen in one burst (the first pass over a bad disk).
    findings = ["bad sector", "checksum mismatch", "unreadable block", "stale mapping", "media error"]
    burst = [(f"scrub-{f.replace(' ', '-')}", f"scrub of disk {r.randint(0, 23)}: {f} found at offset {r.randint(0, 10**9)}") for f in findings]
    at = r.randint(0, len(lines))
    lines[at:at] = burst
    for _ in range(25):
        f = r.choice(findings)
        spread((f"scrub-{f.replace(' ', '-')}", f"scrub of disk {r.randint(0, 23)}: {f} found at offset {r.randint(0, 10**9)}"))
    for _ in range(40):
        spread(("wakelock", f"wake lock held by {r.choice(['com.example.mail', 'com.example.maps', 'org.example.sync'])} for {r.randint(1, 9000)} ms"))
    # Two states spelled as compounds, alternating from the start: two events.
    for i in range(30):
        mode = ["read-only", "read-write"][i % 2]
        spread((f"mount-{mode}", f"volume vol-{r.randint(100, 999)} mounted {mode} on node {r.randint(1, 40)}"))
    return lines


def notes(lines):
    """Events some of whose messages carry a note the others lack, spread through `lines`: a
    desktop proxy client's connection log (64-bit processes are marked `*64` after the
    program, which leads the message): the proxy's open and close events above and its
    errors. Against them, words in brackets that say how things went, each another event: a
    backup job's `(partial)`, sshd's `[preauth]`, a file system check's `[OK]` / `[FAILED]`.
    Drawn last, so the lines written before it was added stay as they were."""
    r = random.Random(59)
    lines = list(lines)
    programs = ["chrome.exe", "Teams.exe", "OneDrive.exe *64", "svchost.exe *64", "git-remote-https.exe *64",
                "slack.exe", "outlook.exe *64"]
    hosts = ["login.example.com", "api.example.net", "update.example.org", "10.20.30.40", "cdn.example.io"]
    for _ in range(60):
        prog, host = r.choice(programs), f"{r.choice(hosts)}:{r.choice([443, 80, 8443])}"
        kind = r.choice(["open", "open", "close", "error"])
        if kind == "open":
            msg = f"{prog} - {host} open through proxy proxy.corp.example.com:3128 HTTPS"
        elif kind == "close":
            msg = f"{prog} - {host} close, {r.randint(0, 90000)} bytes sent, {r.randint(0, 90000)} bytes received, lifetime {duration()}"
        else:
            msg = f"{prog} - {host} error : Could not connect to proxy proxy.corp.example.com:3128 - connection refused"
        lines.insert(r.randint(0, len(lines)), (f"proxy-{kind}", msg))
    for _ in range(20):
        # A word in brackets says how it went: another event.
        partial = r.random() < 0.3
        note = " (partial)" if partial else ""
        msg = f"backup job {r.choice(['nightly', 'weekly', 'hourly'])}-{r.randint(1, 99)} finished{note} after {r.randint(1, 90)} min"
        lines.insert(r.randint(0, len(lines)), ("backup-partial" if partial else "backup-finished", msg))
    for _ in range(24):
        # sshd marks a connection that never authenticated: another event.
        preauth = r.random() < 0.5
        msg = f"Connection closed by {ip(r)} port {r.randint(1024, 65535)}" + (" [preauth]" if preauth else "")
        lines.insert(r.randint(0, len(lines)), ("ssh-closed-preauth" if preauth else "ssh-closed", msg))
    for _ in range(16):
        result = r.choice([" [OK]", " [OK]", " [FAILED]", ""])
        msg = f"Checking filesystem /dev/sd{r.choice('abcd')}{r.randint(1, 4)}{result}"
        lines.insert(r.randint(0, len(lines)), (f"fsck{result.strip(' []').lower() or '-start'}", msg))
    return lines


def cron_users(lines):
    """A cron daemon's lines, the user in parentheses leading the message: mostly root, a few
    system users now and then (one event), spread through `lines`. Drawn last, with a
    generator of its own, so the lines written before it was added stay as they were."""
    r = random.Random(61)
    lines = list(lines)
    jobs = ["run-parts /etc/cron.hourly", "/usr/lib/sa/sa1 1 1", "/usr/local/bin/backup.sh --quick",
            "run-parts /etc/cron.daily"]
    for _ in range(30):
        user = "root" if r.random() < 0.7 else r.choice(["nobody", "www-data", "postgres", "backup"])
        lines.insert(r.randint(0, len(lines)), ("cron-cmd", f"({user}) CMD ({r.choice(jobs)})"))
    return lines


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "crates/logs/tests/corpus/labelled.tsv"
    ev = events()
    weights = [w for w, _, _ in ev]
    lines = []
    # Every event appears early at least once, then the mix follows the weights.
    for _, eid, gen in ev:
        lines.append((eid, gen()))
    for _ in range(900):
        _, eid, gen = rnd.choices(ev, weights)[0]
        lines.append((eid, gen()))
    rnd.shuffle(lines)
    # Parameters that repeat: each user runs sudo several times in a row, in blocks spread
    # through the file (no value is rare, but new ones keep coming).
    users = USERS + ["quentin", "xavier", "yvonne", "zeke", "uma", "oscar"]
    rnd.shuffle(users)
    for user in users:
        block = [("sudo", f"sudo: {user} : TTY=pts/{rnd.randint(0, 9)} ; PWD=/home/{user} ; USER=root ; COMMAND=/usr/bin/systemctl restart {rnd.choice(UNITS)}")
                 for _ in range(rnd.randint(3, 6))]
        at = rnd.randint(0, len(lines))
        lines[at:at] = block
    lines = ci_lifecycle(lines)
    lines = small_vocabularies(lines)
    lines = vocabularies_over_time(lines)
    lines = values_by_shape(lines)
    lines = notes(lines)
    lines = cron_users(lines)
    with open(out, "w", encoding="utf-8") as f:
        f.write("# event\tmessage (generated by scripts/gen_corpus.py)\n")
        for eid, msg in lines:
            f.write(f"{eid}\t{msg}\n")


if __name__ == "__main__":
    main()
