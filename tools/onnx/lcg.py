"""The fixtures' input generator (data/onnx/README.md), reproduced in Rust by the parity tests."""
import numpy as np

SEED = 0x853C49E6748FEA9B
MUL = 6364136223846793005
INC = 1442695040888963407
MASK = (1 << 64) - 1


def lcg(n, seed=SEED):
    """n float32 values in [-1, 1) (pure Python integers, so no overflow surprises)."""
    s = seed
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        s = (s * MUL + INC) & MASK
        out[i] = np.float32(s >> 40) / np.float32(1 << 24) * np.float32(2) - np.float32(1)
    return out
