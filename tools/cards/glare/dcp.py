"""Dark-channel-prior dehazing of the face region of an ID-card photo (prototype).

Glare on the portrait is synthesised (make_cards.py `add_glare`) as
    I = J * t + A * (1 - t),   A = 255,  t = 1 - g
which is the haze image model, so He, Sun & Tang's dark-channel prior applies:
    dark(x)  = min over a window around x of min over RGB of I / A
    t(x)     = (1 - omega * dark(x)) / (1 - omega * d0)   [d0: the dark level
               assumed for a glare-free face; d0 = 0 is the paper's estimate]
    t        <- wide Gaussian smoothing of t (the glare is smooth)
    J        = (I - A) / max(t, t0) + A
All sizes are relative to the detected face box (so the same rule works on any
frame size).  Only numpy and Pillow are needed.
"""
import math

import numpy as np

A = 255.0


def min_filter(a, k):
    """Separable k x k minimum filter with edge replication (k odd)."""
    r = k // 2
    p = np.pad(a, ((r, r), (0, 0)), mode="edge")
    a = np.lib.stride_tricks.sliding_window_view(p, k, axis=0).min(axis=-1)
    p = np.pad(a, ((0, 0), (r, r)), mode="edge")
    return np.lib.stride_tricks.sliding_window_view(p, k, axis=1).min(axis=-1)


def gaussian(a, sigma):
    """Separable Gaussian blur (edge replication), float32."""
    if sigma <= 0:
        return a
    r = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    p = np.pad(a, ((r, r), (0, 0)), mode="edge")
    a = np.lib.stride_tricks.sliding_window_view(p, 2 * r + 1, axis=0) @ k
    p = np.pad(a, ((0, 0), (r, r)), mode="edge")
    return (np.lib.stride_tricks.sliding_window_view(p, 2 * r + 1, axis=1) @ k).astype(np.float32)


DEFAULTS = {
    "win": 0.25,      # dark-channel window, fraction of the face size sqrt(w*h)
    "sigma": 0.25,    # Gaussian smoothing of t, fraction of the face size
    "omega": 0.95,
    "d0": 0.0,        # dark level of a glare-free face (t = 1 there)
    "t0": 0.15,       # floor of t
    "region": 2.0,    # processed square: face size * region, centred on the box
    "context": 2.6,   # t is estimated on this larger square (window context)
    "gate": 1.0,      # apply only if the median t over the central face is below this
}


def face_square(box, scale, w, h):
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    s = math.sqrt(box["width"] * box["height"])
    half = s * scale / 2
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(w, int(math.ceil(cx + half))), min(h, int(math.ceil(cy + half)))
    return x0, y0, x1, y1


def transmission(img, box, p):
    """t over the context square; returns (t, (x0,y0,x1,y1), size)."""
    h, w, _ = img.shape
    s = math.sqrt(box["width"] * box["height"])
    x0, y0, x1, y1 = face_square(box, p["context"], w, h)
    crop = img[y0:y1, x0:x1]
    k = max(3, int(round(p["win"] * s)) | 1)
    dark = min_filter(crop.min(axis=2) / A, k)
    t = (1.0 - p["omega"] * dark) / (1.0 - p["omega"] * p["d0"])
    t = np.clip(t, 0.0, 1.0)
    t = gaussian(t.astype(np.float32), p["sigma"] * s)
    return np.clip(t, 0.0, 1.0), (x0, y0, x1, y1), s


def central_t(t, ctx, box):
    """Median t over the central half of the face box."""
    x0, y0 = ctx[0], ctx[1]
    cx, cy = box["x"] + box["width"] / 2 - x0, box["y"] + box["height"] / 2 - y0
    hw, hh = box["width"] / 4, box["height"] / 4
    sub = t[max(0, int(cy - hh)):int(cy + hh) + 1, max(0, int(cx - hw)):int(cx + hw) + 1]
    return float(np.median(sub)) if sub.size else 1.0


def dehaze(img, box, params=None):
    """Dehaze the face region of img (HxWx3 float32 0..255) in place of a copy.

    Returns (new image, info dict)."""
    p = dict(DEFAULTS, **(params or {}))
    img = img.astype(np.float32)
    h, w, _ = img.shape
    t, ctx, s = transmission(img, box, p)
    tc = central_t(t, ctx, box)
    info = {"t_centre": tc, "t_min": float(t.min()), "applied": tc < p["gate"]}
    if not info["applied"]:
        return img, info
    # processed square and its feathered blend weight
    x0, y0, x1, y1 = face_square(box, p["region"], w, h)
    cx0, cy0 = ctx[0], ctx[1]
    tt = t[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]
    reg = img[y0:y1, x0:x1]
    j = (reg - A) / np.maximum(tt, p["t0"])[..., None] + A
    # feather: weight 1 inside, ramps to 0 over the outer 20 % of the square
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    half = s * p["region"] / 2
    d = np.maximum(np.abs(xx - cx), np.abs(yy - cy)) / half
    wgt = np.clip((1.0 - d) / 0.2, 0.0, 1.0)[..., None]
    out = img.copy()
    out[y0:y1, x0:x1] = np.clip(reg + (j - reg) * wgt, 0, 255)
    return out, info
