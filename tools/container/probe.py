#!/usr/bin/env python3
"""build.sh's HTTP side, standard library only (the image has no curl; the host may not either).

probe.py wait URL T0 TIMEOUT [PIDFILE]  poll URL until it answers 200; print seconds since T0
    (epoch); give up early once the process in PIDFILE (the container's conmon) is gone
probe.py verify URL PROBE REF          POST both photos as multipart; print decision/score, fail without one
"""
import json
import os
import sys
import time
import urllib.request
import uuid


def alive(pidfile):
    try:
        os.kill(int(open(pidfile).read()), 0)
        return True
    except (OSError, ValueError):
        return False


def wait(url, t0, timeout, pidfile=None):
    deadline = time.time() + float(timeout)
    while time.time() < deadline:
        if pidfile and not alive(pidfile):
            print(f"{url}: the container exited", file=sys.stderr)
            return 1
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    print(f"{time.time() - float(t0):.2f}")
                    return 0
        except OSError:
            pass
        time.sleep(0.05)
    print(f"{url}: no 200 within {timeout} s", file=sys.stderr)
    return 1


def verify(url, probe, reference):
    b = uuid.uuid4().hex
    body = b""
    for name, path in (("probe", probe), ("reference", reference)):
        head = (f'--{b}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n")
        body += head.encode() + open(path, "rb").read() + b"\r\n"
    body += f"--{b}--\r\n".encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    with urllib.request.urlopen(req, timeout=120) as r:
        answer = json.load(r)
    print(json.dumps({k: answer.get(k) for k in ("decision", "score", "threshold")}))
    return 0 if answer.get("decision") in ("match", "no_match", "rejected") else 1


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"wait": wait, "verify": verify}[cmd](*args))
