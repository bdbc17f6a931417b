"""facegate.ray on a real multi-node Ray cluster on this machine: a head and two worker nodes
(ray.cluster_utils.Cluster, all on 127.0.0.1), the actors on the workers through a custom
resource. A worker node's raylet is SIGKILLed mid-job, and a driver is SIGKILLed mid-job and the
job run again: each time the output holds every input id exactly once, with the rows
`facegate batch` gives (scores bit-identical on the CPU)."""

from __future__ import annotations

import contextlib
import faulthandler
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps

# Before Ray is imported: Ray's single-machine mode, where a process not told its address takes
# 127.0.0.1 rather than the machine's routable one (else the GCS is announced on the routable
# address although every node is told 127.0.0.1, and ray.init waits for it forever).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import facegate.ray as fray  # noqa: E402
import ray  # noqa: E402
from conftest import COMPARED, DATA, REPO, run_cli  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

LOOPBACK = "127.0.0.1"
WORKER = {"num_cpus": 1, "resources": {"facegate": 1}, "node_ip_address": LOOPBACK}
FACES = ["face-a.png", "face-b.png", "face-c.png", "face-d.png", "face-e.png", "exif-rotated.jpg"]


@contextlib.contextmanager
def deadline(seconds: int, what: str) -> Iterator[None]:
    """A hard limit on a step that can hang inside Ray's C++ (its start retries the GCS forever
    when the addresses disagree), where no Python signal handler runs: faulthandler's watchdog
    thread prints every thread's stack and ends the test process."""
    print(f"[deadline {seconds} s] {what}", flush=True)
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with deadline(120, "starting a Ray head and two worker nodes"):
        c = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,  # Ray Data's read and write tasks; the actors need "facegate"
                "node_ip_address": LOOPBACK,
                "include_dashboard": False,
                # A dead node declared after 3 missed checks 500 ms apart, rather than the
                # 10-20 s the defaults took here (the measurement).
                "_system_config": {
                    "health_check_period_ms": 500,
                    "health_check_timeout_ms": 500,
                    "health_check_failure_threshold": 3,
                },
            },
        )
        for _ in range(2):
            c.add_node(**WORKER)
        ray.init(address=c.address, _node_ip_address=LOOPBACK, log_to_driver=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shippable faces of data/ at 160x160 (CPU time: the job's rows cost ~0.15 s each),
    and photos that are refused or unreadable."""
    folder = tmp_path_factory.mktemp("photos")
    for name in FACES:
        img = ImageOps.exif_transpose(Image.open(DATA / name)).convert("RGB")
        img.resize((160, 160), Image.LANCZOS).save(folder / (Path(name).stem + ".png"))
    for name in ("no-face.png", "truncated.jpg"):
        (folder / name).write_bytes((DATA / name).read_bytes())
    return folder


def pairs(n_face_pairs: int, n_each_refusal: int) -> List[Tuple[str, str, str]]:
    faces = [Path(f).stem + ".png" for f in FACES]
    combos = itertools.cycle(itertools.product(faces, faces))
    rows = [(f"pair-{i:05}", *next(combos)) for i in range(n_face_pairs)]
    odd = [("no-face.png", "face-a.png"), ("truncated.jpg", "face-b.png"),
           ("face-c.png", "missing.png"), ("face-d.png", "../outside.png")]
    for k, (p, r) in enumerate(odd):
        rows += [(f"odd-{k}-{i:04}", p, r) for i in range(n_each_refusal)]
    return rows


def write_pairs(rows: List[Tuple[str, str, str]], folder: Path, files: int) -> Path:
    folder.mkdir()
    cols = list(zip(*rows))
    table = pa.table({"id": cols[0], "probe": cols[1], "reference": cols[2]})
    step = -(-len(rows) // files)
    for i in range(files):
        pq.write_table(table.slice(i * step, step), folder / f"pairs-{i}.parquet")
    return folder


def expected(rows: List[Tuple[str, str, str]], photos: Path, tmp: Path) -> Dict[str, dict]:
    """`facegate batch` on each distinct (probe, reference) of the job, once, keyed back to the
    job's ids (the job repeats 40 pairs; the CLI's CPU scores are deterministic)."""
    distinct = sorted({(p, r) for _, p, r in rows})
    src, out = tmp / "distinct.parquet", tmp / "distinct-out.parquet"
    pq.write_table(pa.table({"id": [f"{p}|{r}" for p, r in distinct],
                             "probe": [p for p, _ in distinct],
                             "reference": [r for _, r in distinct]}), src)
    run_cli("batch", "--device", "cpu", "--input", src, "--output", out, "--images", photos)
    by_pair = {row["id"]: row for row in pq.read_table(out).select(COMPARED).to_pylist()}
    return {i: {**by_pair[f"{p}|{r}"], "id": i} for i, p, r in rows}


def check_exactly_once(output: Path, rows: List[Tuple[str, str, str]], want: Dict[str, dict]) -> None:
    got = pq.read_table(output)
    assert got.schema == fray.OUTPUT_SCHEMA
    ids = got.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == len(rows), "an id is missing or repeated"
    assert ids == [i for i, _, _ in rows], "not in input order"
    for row in got.select(COMPARED).to_pylist():
        assert row == want[row["id"]], row  # scores bit-identical


def staged_files(output: Path) -> int:
    return len(list(output.with_name(output.name + ".staging").glob("runs/*/*.parquet")))


def raylet(node) -> subprocess.Popen:
    return node.all_processes[ray._private.ray_constants.PROCESS_TYPE_RAYLET][0].process


def verify_killing_a_worker(cluster, src: Path, photos: Path, output: Path, rows, want) -> None:
    """Run the job with two actors; once a few batches are staged, SIGKILL one worker node's
    raylet (its actor and the batches it held die with it), then add a node in its place, as an
    autoscaler would. The output must hold every row once, equal to `want`."""
    result: Dict[str, object] = {}

    def job() -> None:
        try:
            result["summary"] = fray.verify_parquet(
                src, output, images_root=photos, device="cpu", actors=2, cpus_per_actor=1,
                actor_resources={"facegate": 1}, batch_rows=16,
            )
        except BaseException as e:  # reported by the main thread
            result["error"] = e

    t0 = time.monotonic()
    driver = threading.Thread(target=job)
    driver.start()
    while staged_files(output) < 4 and driver.is_alive() and time.monotonic() - t0 < 600:
        time.sleep(0.2)
    assert driver.is_alive(), f"the job ended before the fault: {result}"
    victim = next(iter(cluster.worker_nodes))
    raylet(victim).kill()
    killed_at = staged_files(output)
    with deadline(120, "adding a replacement worker node"):
        cluster.add_node(**WORKER)
    driver.join(timeout=900)
    assert not driver.is_alive(), "the job did not finish within 15 minutes"
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    summary: fray.Summary = result["summary"]  # type: ignore[assignment]
    print(f"killed a worker's raylet after {killed_at} staged files; {summary}")
    assert summary.rows == len(rows) and summary.verified_rows == len(rows)
    assert summary.decisions == dict(Counter(w["decision"] for w in want.values()))
    check_exactly_once(output, rows, want)


def test_a_worker_node_killed_mid_job_loses_and_repeats_no_row(cluster, photos, tmp_path):
    rows = pairs(1008, 48)  # 1,200 rows
    src = write_pairs(rows, tmp_path / "pairs", files=4)
    want = expected(rows, photos, tmp_path)
    output = tmp_path / "decisions"
    verify_killing_a_worker(cluster, src, photos, output, rows, want)
    # The job is done: running it again returns the committed summary and runs nothing.
    again = fray.verify_parquet(src, output, images_root=photos, device="cpu", actors=2,
                                actor_resources={"facegate": 1}, batch_rows=16, verbose=False)
    assert again.already_committed and again.rows == len(rows)
    check_exactly_once(output, rows, want)


LFW = REPO.parent / "shared" / "data" / "lfw-view1"


@pytest.mark.skipif(not LFW.is_dir(), reason="needs ../shared/data")
def test_lfw_pairs_with_a_worker_node_killed(cluster, tmp_path):
    """The same fault on real photos: 400 LFW DevTest pairs (200 genuine, 200 impostor) from
    ../shared, compared with `facegate batch` on the same input."""
    lines = (LFW / "pairsDevTest.txt").read_text().splitlines()
    n = int(lines[0])
    photo = lambda name, i: f"{name}/{name}_{int(i):04}.jpg"  # noqa: E731
    genuine = [(photo(a, i), photo(a, j)) for a, i, j in (l.split() for l in lines[1:201])]
    impostor = [(photo(a, i), photo(b, j)) for a, i, b, j in (l.split() for l in lines[n + 1:n + 201])]
    rows = [(f"lfw-{k:04}", p, r) for k, (p, r) in enumerate(genuine + impostor)]
    images = LFW / "lfw-deepfunneled"
    src = write_pairs(rows, tmp_path / "pairs", files=2)
    whole, cli = tmp_path / "all.parquet", tmp_path / "cli.parquet"
    pq.write_table(pq.read_table(src), whole)
    run_cli("batch", "--device", "cpu", "--input", whole, "--output", cli, "--images", images)
    want = {r["id"]: r for r in pq.read_table(cli).select(COMPARED).to_pylist()}
    verify_killing_a_worker(cluster, src, images, tmp_path / "decisions", rows, want)


def test_a_killed_driver_rerun_resumes_and_gives_each_row_once(cluster, photos, tmp_path):
    rows = pairs(216, 6)  # 240 rows
    src = write_pairs(rows, tmp_path / "pairs", files=2)
    want = expected(rows, photos, tmp_path)
    output = tmp_path / "decisions"
    cmd = [sys.executable, "-m", "facegate.ray", "--input", str(src), "--output", str(output),
           "--images", str(photos), "--address", cluster.address, "--node-ip-address", LOOPBACK,
           "--device", "cpu", "--actors", "2", "--resource", "facegate=1", "--batch-rows", "8",
           "--json"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    t0 = time.monotonic()
    while staged_files(output) < 3 and first.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.2)
    assert first.poll() is None, "the first run ended before it was killed"
    first.kill()
    first.wait()
    assert not output.exists(), "a killed run published an output"
    staged = staged_files(output)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-4000:]
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    print(f"driver killed after {staged} staged files; rerun: {summary}")
    assert summary["rows"] == len(rows)
    assert summary["resumed_rows"] > 0 and summary["verified_rows"] == len(rows) - summary["resumed_rows"]
    check_exactly_once(output, rows, want)


def test_the_commit_keeps_one_row_per_id_skips_torn_files_and_refuses_gaps(tmp_path):
    """The commit step alone, on staged runs made by hand: a batch staged twice (as when Ray
    re-runs one) gives one row, a half-written file is ignored, a missing id refuses the commit
    and publishes nothing."""
    rows = lambda ids, score: pa.table(  # noqa: E731
        {"id": ids, "decision": ["match"] * len(ids), "score": [score] * len(ids),
         "threshold": [0.5] * len(ids), "reasons": [[] for _ in ids], "model": ["m"] * len(ids),
         "elapsed_ms": [1.0] * len(ids)}, schema=fray.OUTPUT_SCHEMA)
    staging = tmp_path / "out.staging"
    (staging / "runs" / "1").mkdir(parents=True)
    (staging / "runs" / "2").mkdir(parents=True)
    pq.write_table(rows(["a", "b"], 0.75), staging / "runs" / "1" / "x.parquet")
    pq.write_table(rows(["b", "c"], 0.25), staging / "runs" / "2" / "y.parquet")
    whole = (staging / "runs" / "1" / "x.parquet").read_bytes()
    (staging / "runs" / "2" / "torn.parquet").write_bytes(whole[: len(whole) // 2])
    staged = fray._staged(staging)
    assert len(staged) == 2  # the torn file is not among them
    ids = pa.array(["c", "a", "b"])
    with pytest.raises(RuntimeError, match="1 input ids have no result"):
        fray._commit(tmp_path / "out", staging, "f", pa.array(["c", "a", "b", "d"]), staged,
                     {"verified_rows": 0, "resumed_rows": 0, "actors": 1, "wall_s": 1.0, "pairs_per_s": 0.0})
    assert not (tmp_path / "out").exists()
    summary = fray._commit(tmp_path / "out", staging, "f", ids, staged,
                           {"verified_rows": 0, "resumed_rows": 0, "actors": 1, "wall_s": 1.0, "pairs_per_s": 0.0})
    got = pq.read_table(tmp_path / "out")
    assert got.column("id").to_pylist() == ["c", "a", "b"]  # input order
    assert got.column("score").to_pylist() == [0.25, 0.75, 0.75]  # b: the first run's row
    assert summary.recomputed_rows == 1 and summary.rows == 3
    assert not staging.exists()
