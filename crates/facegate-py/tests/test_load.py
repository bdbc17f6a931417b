"""One engine under load from Python: threads share it (every call answered once, batched
together, no deadlock), and thousands of calls leave memory flat."""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

import facegate
from conftest import DATA


def small(name: str, side: int) -> bytes:
    """A photo shrunk to `side` px (PNG): the same faces, less work per call."""
    import io

    with Image.open(DATA / name) as im:
        buf = io.BytesIO()
        im.convert("RGB").resize((side, side), Image.BILINEAR).save(buf, format="PNG")
        return buf.getvalue()


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
    ]


def heap_in_use_kib() -> int:
    """Bytes malloc has handed out and not had back, over every arena (glibc's mallinfo2):
    unlike RSS, not moved by freed memory the allocator keeps."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    m = libc.mallinfo2()
    return (m.uordblks + m.hblkhd) // 1024


def rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_eight_threads_share_one_engine(engine):
    same = (small("face-a.png", 160), small("face-a.png", 160))
    other = (small("face-a.png", 160), small("face-c.png", 160))
    want = {0: engine.verify(*same).decision, 1: engine.verify(*other).decision}
    assert want == {0: "match", 1: "no_match"}
    answers: list = []
    lock = threading.Lock()
    in_flight = 0
    most_in_flight = 0

    def work(t: int) -> None:
        nonlocal in_flight, most_in_flight
        for i in range(50):
            kind = (t + i) % 2
            with lock:
                in_flight += 1
                most_in_flight = max(most_in_flight, in_flight)
            v = engine.verify(*(same if kind == 0 else other))
            with lock:
                in_flight -= 1
                answers.append((t, i, kind, v.decision))

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(work, t) for t in range(8)]
        for f in futures:
            f.result(timeout=600)
    elapsed = time.monotonic() - start
    assert len(answers) == 400
    assert len({(t, i) for t, i, _, _ in answers}) == 400, "a call answered twice or not at all"
    assert all(d == want[k] for _, _, k, d in answers)
    # The GIL is released while the engine computes: the threads were waiting on it together.
    assert most_in_flight >= 4, most_in_flight
    print(f"8 threads x 50 verifications: {elapsed:.1f} s")


def test_memory_stays_flat_over_5000_verifications():
    # An engine of its own: the leak test must not see other tests' allocations.
    engine = facegate.Engine(device="cpu")
    faces = [small("face-a.png", 120), small("face-e.png", 120), small("face-b.png", 120)]
    raw = np.asarray(Image.open(DATA / "face-c.png").convert("RGB").resize((120, 120)))
    # Nine calls in ten are small photos without a face (refused after detection: what a leak
    # in the binding, the scheduler or the decoder would show, at a few ms a call); every
    # tenth is a real pair, through the networks and the comparison, half of them from NumPy.
    blank = np.full((64, 64, 3), 127, dtype=np.uint8)
    blank_png = small("no-face.png", 64)

    def one(i: int) -> None:
        if i % 20 == 0:
            v = engine.verify(raw, faces[i % 3])
        elif i % 10 == 0:
            v = engine.verify(faces[i % 3], faces[(i + 1) % 3])
        else:
            v = engine.verify(blank if i % 2 else blank_png, blank_png)
            assert v.decision == "rejected"
        assert v.decision in ("match", "no_match", "rejected")

    # Two threads, so the scheduler's batches and both device workers are exercised.
    def run(n: int, offset: int) -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(one, range(offset, offset + n)))

    run(500, 0)  # warm-up: allocator pools, lazily built buffers
    base, base_rss = heap_in_use_kib(), rss_kib()
    heap, rss = [], []
    for k in range(9):
        run(500, 500 * (k + 1))
        heap.append(heap_in_use_kib())
        rss.append(rss_kib())
    print(f"after warm-up: heap {base} KiB, RSS {base_rss} KiB; after each 500: heap {heap}, RSS {rss}")
    # The heap in use, sampled between rounds (nothing in flight), must not climb: a leak of
    # 1 KiB a call (less than any photo or answer crossing the boundary) adds 4.5 MB here.
    assert heap[-1] - base < 1024, f"heap in use grew {heap[-1] - base} KiB over 4,500 calls: {heap}"
    assert max(heap) - base < 2048, f"heap in use climbed: {heap}"
    # RSS moves by ~10 MB either way between samples (glibc keeps freed arenas of the device
    # threads and the prepare pool), so it is held to a looser bound: no runaway.
    assert max(rss) - base_rss < 32 * 1024, f"RSS ran away from {base_rss} KiB: {rss}"


def named_threads(prefix: str) -> set[int]:
    """The ids of this process's threads whose name starts with `prefix` (Linux keeps 15
    characters of a name).

    Ids, not a count: an engine from an earlier test that the garbage collector frees while
    this test runs takes its threads away, and a count would blame this engine for that."""
    tids = set()
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{task}/comm") as f:
                if f.read().strip().startswith(prefix):
                    tids.add(int(task))
        except FileNotFoundError:  # the thread ended while we looked
            pass
    return tids


def device_threads() -> set[int]:
    """The scheduler's device workers (`facegate-device-N`)."""
    return named_threads("facegate-device")


def compute_threads() -> set[int]:
    """The device workers' own compute pools (`facegate-compute-N.T`)."""
    return named_threads("facegate-comput")


def test_close_releases_the_engines_threads_and_refuses_later_calls():
    gc.collect()
    before, before_compute = device_threads(), compute_threads()
    with facegate.Engine(device="cpu") as engine:
        # A new thread names itself once it first runs (std sets the name from inside it), so
        # on a busy machine a device worker can still carry Python's name here: wait for it.
        deadline = time.monotonic() + 10
        while len(ours := device_threads() - before) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(ours) == 2, ours  # two device workers on the CPU
        assert engine.verify(DATA / "face-a.png", DATA / "exif-rotated.jpg").decision == "match"
        # Each worker computes on a pool of its own: at least one thread each.
        compute = compute_threads() - before_compute
        assert len(compute) >= 2, compute
    assert not ours & device_threads(), "close() left device threads running"
    # A dropped pool's threads end on their own, shortly after.
    deadline = time.monotonic() + 10
    while compute & compute_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not compute & compute_threads(), "close() left compute threads running"
    try:
        engine.verify(DATA / "face-a.png", DATA / "exif-rotated.jpg")
    except facegate.FacegateError as e:
        assert e.code == "closed"
    else:
        raise AssertionError("a closed engine verified")
