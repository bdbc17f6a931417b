"""PyTorch side of benches/gpu/run.sh: the card's copy bandwidth, and torch.matmul + topk on the
same probes and gallery as facegate-matcher-bench (--dump), as JSON lines like the Rust binary.

    python3 benches/gpu/torch_reference.py DATA_DIR
"""
import json
import sys
import time

import numpy as np
import torch

DIM, K = 128, 10


def timed(fn):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    calls, start = 0, time.perf_counter()
    while calls < 5 or time.perf_counter() - start < 1.0:
        fn()
        calls += 1
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls


def line(kernel, storage, shape, secs, elements, nbytes):
    print(json.dumps({
        "kernel": kernel, "storage": storage, "shape": shape, "device": torch.cuda.get_device_name(),
        "seconds": secs, "elements_per_s": elements / secs, "gb_per_s": nbytes / secs / 1e9,
    }))


def main(data):
    dev = torch.device("cuda")
    # Bandwidth: a device-to-device copy of 1 GiB reads and writes every byte once.
    src = torch.empty(1 << 28, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    secs = timed(lambda: dst.copy_(src))
    line("copy", "F32", "1GiB", secs, src.numel(), 2 * src.numel() * 4)
    del src, dst
    gallery = torch.from_numpy(np.fromfile(f"{data}/gallery.f32", dtype=np.float32).reshape(-1, DIM)).to(dev)
    probes = torch.from_numpy(np.fromfile(f"{data}/probes.f32", dtype=np.float32).reshape(-1, DIM)).to(dev)
    g = gallery.shape[0]
    for storage, dtype in (("F32", torch.float32), ("F16", torch.float16)):
        # torch gets a pre-normalised gallery (the usual setup); facegate normalises on the fly.
        gal = torch.nn.functional.normalize(gallery, dim=1).to(dtype)
        for m in (1, 64, 1024):
            if m > probes.shape[0]:
                continue
            p = probes[:m]

            def scan():
                scores = torch.nn.functional.normalize(p, dim=1).to(dtype) @ gal.T
                return torch.topk(scores.float(), K, dim=1)

            secs = timed(scan)
            line("torch_matmul_topk", storage, f"m{m}_g{g}_k{K}", secs, m * g, gal.numel() * gal.element_size())


if __name__ == "__main__":
    main(sys.argv[1])
