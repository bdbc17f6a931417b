#!/usr/bin/env python3
"""Replica failover under load: three `facegate serve` behind HAProxy on loopback
(deploy/haproxy/haproxy.cfg), `facegate loadgen` through the balancer at 80 % of the measured
capacity, one replica SIGKILLed and another drained (SIGTERM) mid-run. Every request is
accounted for:

- unanswered (timed out, connection or transport error at the client): must be 0;
- every status is 2xx, 429 (overloaded: retry later), or 502/503 (the balancer or a draining
  replica: safe to retry); anything else fails the run;
- answered twice: each 2xx answer carries the request id one replica issued, and that id must
  appear in exactly one replica's decision log, once;
- decided but not delivered: decisions a replica logged whose answer never reached a client
  (a replica SIGKILLed after deciding; the balancer ran the request again elsewhere, or the
  client got a 502), reported.

Prints a Markdown table (all, before, during and after the faults) and writes JSON with
--json-out. Exit status 1 when a check fails.

    benches/failover/run.py --facegate target/release/facegate
"""

from __future__ import annotations

import argparse
import csv
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
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "haproxy" / "haproxy.cfg"
RETRYABLE = {"429", "502", "503"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready within {seconds} s")


def in_flight(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return int(json.load(r).get("in_flight", 0))
    except (OSError, ValueError):
        return 0


def when_busy(port: int, seconds: float = 10.0) -> int:
    """Wait (at most `seconds`) until the replica holds a request, so the fault lands on work
    in flight rather than on an idle process; returns what it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        n = in_flight(port)
        if n:
            return n
        time.sleep(0.005)
    return 0


def loadgen(facegate: str, url: str, *args: str, timeout: float) -> Dict:
    out = subprocess.run([facegate, "loadgen", "--url", url, "--json", *args],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def p99(latencies: List[float]) -> Optional[float]:
    if not latencies:
        return None
    s = sorted(latencies)
    return s[min(len(s) - 1, int(0.99 * len(s)))]


def phase_row(name: str, rows: List[Dict[str, str]]) -> Dict:
    status = Counter(r["status"] for r in rows)
    ok = [float(r["latency_ms"]) for r in rows if r["status"].startswith("2")]
    return {
        "phase": name,
        "sent": len(rows),
        "2xx": sum(v for k, v in status.items() if k.startswith("2")),
        "429": status.get("429", 0),
        "502/503": status.get("502", 0) + status.get("503", 0),
        "other": sum(v for k, v in status.items() if not k.startswith("2") and k not in RETRYABLE),
        "p99_ms": p99(ok),
    }


def decisions(log: Path) -> List[str]:
    """The request ids a replica logged a decision for (`"verification"` lines)."""
    ids = []
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            fields = rec.get("fields", {})
            if fields.get("message") == "verification":
                ids.append(fields["request_id"])
    return ids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--facegate", default=str(REPO / "target" / "release" / "facegate"))
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "haproxy")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--kill-at", type=float, default=20.0, help="SIGKILL replica 1 at this second")
    ap.add_argument("--drain-at", type=float, default=35.0, help="SIGTERM replica 2 at this second")
    ap.add_argument("--load", type=float, default=0.8, help="fraction of the measured capacity")
    ap.add_argument("--capacity-seconds", type=float, default=20.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--keep", type=Path, help="keep the logs in this folder")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="facegate-failover-"))
    procs: List[subprocess.Popen] = []
    try:
        ports = [free_port() for _ in range(4)]
        replicas = []
        for i, port in enumerate(ports[1:], 1):
            log = work / f"replica-{i}.jsonl"
            p = subprocess.Popen(
                [a.facegate, "serve", "--device", a.device, "--bind", f"127.0.0.1:{port}", "--log-file", str(log)],
                stdout=subprocess.DEVNULL, stderr=open(work / f"replica-{i}.stderr", "w"),
            )
            procs.append(p)
            replicas.append((p, port, log))
        for _, port, _ in replicas:
            wait_ready(f"http://127.0.0.1:{port}/readyz", 120)
        env = dict(os.environ, FACEGATE_LB_BIND=f"127.0.0.1:{ports[0]}",
                   **{f"FACEGATE_REPLICA_{i}": f"127.0.0.1:{port}" for i, (_, port, _) in enumerate(replicas, 1)})
        lb = subprocess.Popen([a.haproxy, "-db", "-f", str(CONFIG)], env=env,
                              stdout=open(work / "haproxy.log", "w"), stderr=subprocess.STDOUT)
        procs.append(lb)
        url = f"http://127.0.0.1:{ports[0]}"
        wait_ready(f"{url}/readyz", 30)
        time.sleep(1.5)  # every replica passes `rise 2` health checks

        # Capacity: closed loop through the balancer, enough clients to keep every replica's
        # batches full.
        cap = loadgen(a.facegate, url, "--concurrency", "24", "--requests", "100000",
                      "--duration", str(a.capacity_seconds), timeout=a.capacity_seconds + 120)
        capacity = cap["throughput"]
        rate = a.load * capacity
        print(f"capacity through the balancer: {capacity:.2f} verifications/s; offering {rate:.2f}/s "
              f"for {a.duration:.0f} s", flush=True)

        # The run: open loop, so the faults show in what clients get rather than in a slower
        # offered rate. Only the decisions the replicas log from here on count (marks).
        marks = {i: len(decisions(log)) for i, (_, _, log) in enumerate(replicas, 1)}
        requests_log = work / "requests.csv"
        n = int(rate * a.duration) + 1
        run = subprocess.Popen(
            [a.facegate, "loadgen", "--url", url, "--json", "--rate", f"{rate:.4f}", "--requests", str(n),
             "--duration", str(a.duration), "--concurrency", "256", "--timeout", "30", "--log", str(requests_log)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        t0 = time.monotonic()
        time.sleep(max(0.0, a.kill_at - (time.monotonic() - t0)))
        held_at_kill = when_busy(replicas[0][1])
        replicas[0][0].send_signal(signal.SIGKILL)
        killed_s = time.monotonic() - t0
        time.sleep(max(0.0, a.drain_at - (time.monotonic() - t0)))
        held_at_drain = when_busy(replicas[1][1])
        replicas[1][0].send_signal(signal.SIGTERM)
        drained_s = time.monotonic() - t0
        out, err = run.communicate(timeout=a.duration + 120)
        if run.returncode != 0:
            raise RuntimeError(f"loadgen failed: {err[-2000:]}")
        drained = replicas[1][0].wait(timeout=60)

        with open(requests_log) as f:
            rows = list(csv.DictReader(f))
        end_of_faults = a.drain_at + 10
        table = [
            phase_row("all", rows),
            phase_row(f"before (0-{a.kill_at:.0f} s)", [r for r in rows if float(r["scheduled_s"]) < a.kill_at]),
            phase_row(f"during ({a.kill_at:.0f}-{end_of_faults:.0f} s)",
                      [r for r in rows if a.kill_at <= float(r["scheduled_s"]) < end_of_faults]),
            phase_row(f"after ({end_of_faults:.0f}-{a.duration:.0f} s)",
                      [r for r in rows if float(r["scheduled_s"]) >= end_of_faults]),
        ]
        status = Counter(r["status"] for r in rows)
        unanswered = sum(v for k, v in status.items() if k in ("timeout", "connect_error", "transport_error"))
        answered_ids = [r["request_id"] for r in rows if r["status"].startswith("2")]
        decided: Counter = Counter()
        for i, (_, _, log) in enumerate(replicas, 1):
            decided.update(decisions(log)[marks[i]:])
        answered = set(answered_ids)
        twice = sum(1 for i in answered_ids if decided[i] != 1) + (len(answered_ids) - len(answered))
        lost_answers = sum(1 for i in decided if i not in answered)
        # HAProxy's log: requests it sent to a second replica (the "+N" retries field).
        retried = sum(1 for line in (work / "haproxy.log").read_text(errors="replace").splitlines()
                      if re.search(r'/\+\d+ \d+/\d+ "POST /v1/verify', line))
        result = {
            "retried_by_balancer": retried,
            "capacity_per_s": capacity,
            "offered_per_s": rate,
            "duration_s": a.duration,
            "kill_at_s": a.kill_at,
            "drain_at_s": a.drain_at,
            "killed_at_s_actual": killed_s,
            "in_flight_at_kill": held_at_kill,
            "drained_at_s_actual": drained_s,
            "in_flight_at_drain": held_at_drain,
            "drained_exit_status": drained,
            "status": dict(status),
            "unanswered": unanswered,
            "answered_twice": twice,
            "decided_not_delivered": lost_answers,
            "phases": table,
        }
        print("\n| phase | sent | 2xx | 429 | 502/503 | other | unanswered | p99 of 2xx (ms) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for row in table:
            un = unanswered if row["phase"] == "all" else "-"
            p = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.0f}"
            print(f"| {row['phase']} | {row['sent']} | {row['2xx']} | {row['429']} | {row['502/503']} | "
                  f"{row['other']} | {un} | {p} |")
        print(f"\nreplica 1 SIGKILLed at {killed_s:.1f} s holding {held_at_kill} requests; replica 2 "
              f"SIGTERMed at {drained_s:.1f} s holding {held_at_drain}, exited with {drained}")
        print(f"answered twice: {twice}; decided by a replica but never delivered: {lost_answers}; "
              f"sent to a second replica by the balancer: {retried} (whole run, capacity step included)")
        if a.json_out:
            a.json_out.write_text(json.dumps(result, indent=1))
        failures = []
        if unanswered:
            failures.append(f"{unanswered} requests unanswered")
        if table[0]["other"]:
            failures.append(f"statuses other than 2xx/429/502/503: {dict(status)}")
        if twice:
            failures.append(f"{twice} answers not matched to exactly one replica decision")
        if drained != 0:
            failures.append(f"the drained replica exited with {drained}")
        if table[-1]["2xx"] == 0:
            failures.append("nothing answered after the faults")
        for f in failures:
            print(f"FAIL: {f}", file=sys.stderr)
        return 1 if failures else 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if a.keep:
            shutil.copytree(work, a.keep, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
