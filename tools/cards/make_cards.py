#!/usr/bin/env python3
"""Synthetic "phone photo of an ID card" generator for facegate measurements.

In real 1:1 checks the *reference* photo is often a phone photo of an ID card:
the card lies at an angle on a desk, with glare, a small halftone-printed
portrait, often a faint "ghost" portrait, holographic overlays and guilloche.
This tool turns plain face photos into such photos, deterministically, and
records the ground-truth geometry (source-photo pixels -> frame pixels).

The card design is our own (a made-up "Republic of Testland" specimen); it
copies no real state's document, emblem or name.

Usage
-----
Pairs mode (LFW pairs file; every reference photo becomes a card photo)::

    make_cards.py --pairs pairsDevTest.txt --images LFW_DIR --out OUT --seed 1 \
        [--frame 1600x1200|4000x3000|mixed|WxH] [--limit N] [--jobs N] [--ghost yes|no]

Single mode (one card photo with some conditions forced, for fixtures)::

    make_cards.py --photo FACE.png --out-image OUT.jpg --seed N [--rotation 0|90|180|270]
        [--ghost yes|no] [--glare none|off_portrait|on_portrait]
        [--blur none|defocus|motion] [--card-fraction F] [--tilt DEG]
        [--perspective DEG] [--frame WxH] [--jpeg-quality Q]

Selfie-with-card mode (a probe showing two faces)::

    make_cards.py --selfie FACE_B.png --card-photo FACE_A.png --out-image OUT.jpg --seed N

Geometry convention: every homography ``H`` maps pixel coordinates of the
source face photo (as read from disk, before any crop) to pixel coordinates of
the output frame, with the centre of the top-left pixel at (0, 0) (OpenCV's
convention).  ``[u, v, w] = H @ [x, y, 1]``, frame point = ``(u / w, v / w)``.
Quads list the corners top-left, top-right, bottom-right, bottom-left of the
upright portrait, in frame pixels (same convention).

The same arguments give byte-identical JPEGs: each card draws from its own
``numpy.random.default_rng`` seeded from (seed, image name), so the result does
not depend on order or on ``--jobs``.  Pure numpy + Pillow.
"""

from __future__ import annotations

import argparse
import colorsys
import functools
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

TOOL_VERSION = "2.1"

# ID-1 card: 85.6 x 54 mm rendered at ~11.8 px/mm.
CARD_W, CARD_H = 1012, 638
CARD_CORNER_RADIUS = 38  # 3.18 mm

ROTATIONS = (0, 90, 180, 270)
ROTATION_P = (0.55, 0.15, 0.15, 0.15)
GLARES = ("none", "off_portrait", "on_portrait")
GLARE_P = (0.5, 0.3, 0.2)
BLURS = ("none", "defocus", "motion")
BLUR_P = (0.60, 0.25, 0.15)

HERE = os.path.dirname(os.path.abspath(__file__))
# The repo's own copy first so every machine renders identical text.
FONT_PATHS = (
    os.path.normpath(os.path.join(HERE, "..", "..", "crates", "facegate-report", "fonts", "DejaVuSans.ttf")),
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


# --------------------------------------------------------------------------
# small helpers


def rng_for(seed: int, name: str) -> np.random.Generator:
    """A generator that depends only on (seed, name), never on call order."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([int(seed)] + words)


def choose(rng, options, p):
    return options[int(rng.choice(len(options), p=p))]


@functools.lru_cache(maxsize=None)
def load_font(size: int):
    for path in FONT_PATHS:
        if os.path.exists(path):
            return ImageFont.truetype(path, size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # old Pillow: fixed-size bitmap font
        return ImageFont.load_default()


def font_is_truetype() -> bool:
    return isinstance(load_font(12), ImageFont.FreeTypeFont)


def hsv(h, s, v):
    """Scalar HSV (0..1) -> RGB tuple in 0..255 floats."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def hsv_to_rgb_np(h, s, v):
    """Vectorised HSV -> RGB (0..1) for arrays of equal shape."""
    h = (h % 1.0) * 6.0
    i = np.floor(h).astype(np.int32) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


@functools.lru_cache(maxsize=8)
def grid(h, w):
    """Row and column index arrays (float32, read-only, cached: the card size repeats)."""
    yy = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w)).copy()
    xx = np.broadcast_to(np.arange(w, dtype=np.float32)[None, :], (h, w)).copy()
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def smooth_noise(rng, h, w, cells_x, cells_y=None):
    """Low-frequency noise in 0..1: a coarse random grid upsampled bicubically."""
    cells_y = cells_y or max(2, int(round(cells_x * h / w)))
    coarse = rng.random((cells_y, cells_x)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, "F").resize((w, h), Image.BICUBIC))


def to_image(arr):
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def homography(src, dst):
    """3x3 H with H @ src ~ dst for four point pairs (DLT, h33 = 1)."""
    a, b = [], []
    for (x, y), (u, v) in zip(src, dst):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        b.append(u)
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b.append(v)
    h = np.linalg.solve(np.array(a, float), np.array(b, float))
    return np.append(h, 1.0).reshape(3, 3)


def apply_h(h, pts):
    pts = np.asarray(pts, float)
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    return p[:, :2] / p[:, 2:3]


def translate(dx, dy):
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], float)


def scale(sx, sy):
    return np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], float)


def edge_to_centre(h):
    """Convert an H in pixel-edge coordinates (Pillow's: pixel i spans [i, i+1))
    to pixel-centre coordinates (pixel i centred at i)."""
    hc = translate(-0.5, -0.5) @ h @ translate(0.5, 0.5)
    return hc / hc[2, 2]


def rect_corners(x0, y0, w, h):
    return [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]


def quad_to_list(h_edge, corners_edge):
    """Corners given in edge coordinates of the card -> frame pixel-centre coords."""
    q = apply_h(h_edge, corners_edge) - 0.5
    return [[round(float(x), 3), round(float(y), 3)] for x, y in q]


def parse_frame(spec: str):
    if spec == "mixed":
        return "mixed"
    w, h = spec.lower().split("x")
    return int(w), int(h)


# --------------------------------------------------------------------------
# card design


SYLLABLES = ("ka", "lo", "mi", "ren", "tos", "va", "zu", "bel", "dri", "fan", "gor", "hel",
             "ito", "jan", "kel", "lum", "mar", "nor", "ol", "pra", "qui", "ros", "sel", "tam",
             "ur", "vin", "wes", "xa", "yor", "zel", "an", "bri", "cor", "del", "en", "fir")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def fake_word(rng, n_min=2, n_max=3):
    n = int(rng.integers(n_min, n_max + 1))
    return "".join(SYLLABLES[int(i)] for i in rng.integers(0, len(SYLLABLES), n))


def fake_identity(rng):
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    doc = "".join(letters[int(i)] for i in rng.integers(0, len(letters), 2)) + \
        "".join(str(int(d)) for d in rng.integers(0, 10, 7))

    def date(y0, y1):
        return "%02d %s %d" % (rng.integers(1, 29), MONTHS[int(rng.integers(0, 12))], rng.integers(y0, y1))

    return {
        "surname": fake_word(rng).upper(),
        "given": " ".join(fake_word(rng, 2, 2).capitalize() for _ in range(int(rng.integers(1, 3)))),
        "sex": str(rng.choice(["F", "M", "X"], p=[0.48, 0.48, 0.04])),
        "nationality": "TST",
        "birth": date(1940, 2006),
        "expiry": date(2026, 2036),
        "place": fake_word(rng).capitalize(),
        "number": doc,
    }


def pastel_gradient(rng, hue):
    """A soft two-colour gradient in a random direction: the card's base tint."""
    c1 = hsv(hue, rng.uniform(0.08, 0.22), rng.uniform(0.92, 0.99))
    c2 = hsv(hue + rng.uniform(-0.1, 0.1), rng.uniform(0.15, 0.35), rng.uniform(0.84, 0.95))
    yy, xx = grid(CARD_H, CARD_W)
    a = rng.uniform(0, 2 * math.pi)
    t = (xx - CARD_W / 2) * math.cos(a) + (yy - CARD_H / 2) * math.sin(a)
    t = ((t - t.min()) / (t.max() - t.min()))[..., None]
    c1, c2 = c1.astype(np.float32), c2.astype(np.float32)
    return c1 + t * (c2 - c1)


def _lines(v, spacing, half_width):
    """Anti-aliased line density where v crosses multiples of `spacing`.

    In-place float32 arithmetic: this runs several times over every card pixel.
    """
    d = v * np.float32(1.0 / spacing)
    d += np.float32(0.5)
    np.remainder(d, np.float32(1.0), out=d)
    d -= np.float32(0.5)
    np.abs(d, out=d)
    d *= np.float32(-spacing / half_width)
    d += np.float32(1.0)
    return np.maximum(d, np.float32(0.0), out=d)


def draw_guilloche(card, rng, hue):
    """Several families of thin sinusoidal / rosette line patterns (security print)."""
    yy, xx = grid(CARD_H, CARD_W)
    for _ in range(int(rng.integers(2, 5))):
        kind = rng.choice(["waves", "braid", "rosette"])
        spacing = rng.uniform(7, 16)
        width = rng.uniform(0.7, 1.2)
        if kind == "rosette":
            cx, cy = rng.uniform(0.3, 1.0) * CARD_W, rng.uniform(0.2, 0.9) * CARD_H
            r = np.hypot(xx - cx, yy - cy)
            th = np.arctan2(yy - cy, xx - cx)
            k, amp, ph = int(rng.integers(6, 20)), rng.uniform(4, 14), rng.uniform(0, 6.3)
            dens = np.maximum(_lines(r + amp * np.sin(k * th + ph), spacing, width),
                              _lines(r + amp * np.sin(k * th - ph), spacing, width))
            dens *= np.clip(1.4 - r / rng.uniform(180, 420), 0, 1)  # fade out at the rim
        else:
            a = rng.uniform(-0.5, 0.5)
            u = xx * math.cos(a) + yy * math.sin(a)
            v = -xx * math.sin(a) + yy * math.cos(a)
            lam, amp, ph = rng.uniform(60, 260), rng.uniform(5, 25), rng.uniform(0, 6.3)
            wave = amp * np.sin(2 * math.pi * u / lam + ph) + 0.4 * amp * np.sin(2 * math.pi * u / (lam * 0.37))
            dens = _lines(v + wave, spacing, width)
            if kind == "braid":  # the mirrored wave crosses the first: interlaced strands
                dens = np.maximum(dens, _lines(v - wave, spacing, width))
        colour = hsv(hue + rng.uniform(-0.25, 0.25), rng.uniform(0.3, 0.7), rng.uniform(0.45, 0.8))
        dens *= np.float32(rng.uniform(0.25, 0.55))
        alpha = dens[..., None]
        card += alpha * (colour.astype(np.float32) - card)  # = card*(1-a) + colour*a
    return card


def draw_emblem(draw, rng, cx, cy, r, colour):
    """A generic geometric seal (circle + star); deliberately no real emblem."""
    n = int(rng.integers(5, 9))
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=3)
    pts = []
    for i in range(2 * n):
        rad = r * (0.8 if i % 2 == 0 else 0.38)
        ang = math.pi * i / n - math.pi / 2
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    draw.polygon(pts, fill=colour)


def draw_header(draw, rng, hue, header_h):
    band = tuple(int(c) for c in hsv(hue + rng.uniform(-0.05, 0.05), rng.uniform(0.45, 0.7), rng.uniform(0.35, 0.55)))
    draw.rectangle([0, 0, CARD_W, header_h], fill=band)
    draw_emblem(draw, rng, 30 + header_h // 2, header_h // 2, header_h * 0.36, (245, 240, 225))
    x = 40 + header_h
    draw.text((x, 10), "REPUBLIC OF TESTLAND", font=load_font(int(rng.integers(28, 33))),
              fill=(255, 255, 255), stroke_width=1, stroke_fill=(255, 255, 255))
    draw.text((x, header_h - 30), "FACEGATE TEST CARD  ·  IDENTITY CARD" if font_is_truetype()
              else "FACEGATE TEST CARD - IDENTITY CARD", font=load_font(18), fill=(235, 235, 235))


def draw_fields(draw, rng, ident, x0, y0, x1, ink, label_ink):
    """Label/value text fields right of the portrait; returns the y below them."""
    lf, vf = load_font(13), load_font(int(rng.integers(20, 24)))
    step = int(rng.integers(48, 54))
    rows = [
        [("SURNAME", ident["surname"])],
        [("GIVEN NAMES", ident["given"])],
        [("SEX", ident["sex"]), ("NATIONALITY", ident["nationality"]), ("PLACE OF BIRTH", ident["place"])],
        [("DATE OF BIRTH", ident["birth"]), ("DATE OF EXPIRY", ident["expiry"])],
        [("DOCUMENT NO.", ident["number"])],
    ]
    y = y0
    for row in rows:
        col_w = (x1 - x0) / len(row)
        for i, (label, value) in enumerate(row):
            x = x0 + i * col_w
            draw.text((x, y), label, font=lf, fill=label_ink)
            draw.text((x, y + 15), value, font=vf, fill=ink)
        y += step
    return y


def draw_signature(draw, rng, x0, y0, w, h, ink):
    """A random smooth scribble: sum of a few sinusoids along x."""
    t = np.linspace(0, 1, 200)
    y = np.zeros_like(t)
    for _ in range(3):
        y += rng.uniform(0.1, 0.35) * np.sin(2 * math.pi * (rng.uniform(1, 6) * t + rng.uniform(0, 1)))
    xs = x0 + t * w + 0.06 * w * np.sin(2 * math.pi * rng.uniform(3, 9) * t)
    ys = y0 + h / 2 + y * h / 2
    draw.line(list(zip(xs.tolist(), ys.tolist())), fill=ink, width=2, joint="curve")


def draw_mrz(draw, ident, y, ink):
    """A machine-readable-zone-like line (made-up content, fixed pitch)."""
    text = ("IDTST" + ident["number"] + "<<" + ident["surname"] + "<<" +
            ident["given"].upper().replace(" ", "<"))
    text = (text + "<" * 40)[:40]
    font, pitch = load_font(19), 19.5
    x0 = (CARD_W - pitch * len(text)) / 2
    for i, ch in enumerate(text):
        draw.text((x0 + i * pitch, y), ch, font=font, fill=ink)


FRAMINGS = ("icao", "loose")
# Where the head (crown to chin) lies in an LFW deep-funneled photo, as fractions of its height:
# median height 0.60 (10th-90th percentile 0.55-0.72) and centre 0.45 from the top, measured
# by measure_heads.py (`facegate detect` on 200 DevTrain photos). The generator cannot find
# heads itself, so other sources pass their own (--head).
LFW_HEAD = (0.60, 0.45)
# ICAO 9303 part 3: the head is 70-80 % of a document portrait's height. Its centre sits a
# little above the portrait's middle, leaving room for the neck and shoulders.
ICAO_HEAD_SHARE = (0.70, 0.80)
ICAO_HEAD_CENTRE = 0.47


def portrait_crop_box(photo_size, rng, framing="icao", head=LFW_HEAD):
    """The 3:4 box of the photo printed as the portrait.

    `icao`: the head fills 70-80 % of the box's height (ICAO 9303), centred across. `loose`
    (versions 1.0-2.0): 75-100 % of the largest centred box, which left the head 60-80 %.
    Both draw one number, so the rest of a card is the same whichever is chosen.
    """
    w, h = photo_size
    u = rng.uniform(0.0, 1.0)
    if framing == "loose":
        ch = min(h, w * 4 / 3) * (0.75 + 0.25 * u)
        cw = ch * 3 / 4
        return ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    lo, hi = ICAO_HEAD_SHARE
    ch = min(h, w * 4 / 3, head[0] * h / (lo + (hi - lo) * u))
    cw = ch * 3 / 4
    top = min(max(head[1] * h - ICAO_HEAD_CENTRE * ch, 0.0), h - ch)
    return ((w - cw) / 2, top, (w + cw) / 2, top + ch)


SCREENS = ("fine", "coarse")
# Print resolution: the card raster is 300 dpi (CARD_W px over 85.6 mm); a fine
# screen is rendered at SUPERSAMPLE x that and averaged down, as a camera (or
# the eye) integrates dots far below its resolution.
SUPERSAMPLE = 4


def halftone(rgb, cell, base):
    """CMYK rotated dot screens (15/75/0/45 deg), like an offset-printed photo.
    `cell` is the screen period in pixels of `rgb`."""
    h, w, _ = rgb.shape
    k = 1.0 - rgb.max(axis=-1)
    denom = np.maximum(1.0 - k, 1e-4)
    cmyk = [(1 - rgb[..., i] - k) / denom for i in range(3)] + [k]
    yy, xx = grid(h, w)
    inks = []
    for plate, ang in zip(cmyk, (15, 75, 0, 45)):
        a = math.radians(base + ang)
        u = (xx * math.cos(a) + yy * math.sin(a)) / cell
        v = (-xx * math.sin(a) + yy * math.cos(a)) / cell
        # cosine spot function: round dots that merge into a checkerboard at 50 %
        thr = 0.5 - 0.25 * (np.cos(2 * math.pi * u) + np.cos(2 * math.pi * v))
        inks.append(np.clip((np.clip(plate, 0, 1) - thr) / 0.12 + 0.5, 0, 1))
    c, m, y, kk = inks
    out = np.stack([(1 - c), (1 - m), (1 - y)], axis=-1) * (1 - kk)[..., None]
    return out


def ordered_dither(rgb, cell, levels):
    """Bayer-matrix ordered dither to `levels` + 1 levels per channel, the 8x8
    matrix's cells `cell` pixels of `rgb` wide (card printers, laser engraving)."""
    b = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], float)
    b8 = np.block([[4 * b, 4 * b + 2], [4 * b + 3, 4 * b + 1]])
    thr = (np.kron(b8, np.ones((cell, cell))) + 0.5) / 64.0
    h, w, _ = rgb.shape
    reps = (h // thr.shape[0] + 1, w // thr.shape[1] + 1)
    thr = np.tile(thr, reps)[:h, :w, None]
    return np.floor(rgb * levels + thr) / levels


def print_params(rng):
    """Every print parameter, drawn in a fixed order whatever the method and
    screen, so forcing one changes nothing else about the card."""
    return {
        "fine_lpi": float(rng.uniform(106, 175)),  # laser printers to offset photo screens
        "coarse_cell": float(rng.uniform(3.5, 6.0)),  # 50-86 lpi at 300 dpi: newsprint
        "angle": float(rng.uniform(0, 90)),
        "fine_dither_cell": int(rng.integers(1, 3)),  # at 1200 dpi: 600-1200 dpi dots
        "coarse_dither_cell": int(rng.integers(1, 3)),  # at 300 dpi
        "levels": int(rng.integers(2, 5)) - 1,
        "desaturate": float(rng.uniform(0.15, 0.4)),
    }


def print_portrait(photo, box, size, pp, method, screen):
    """Crop + scale the face photo into the card's portrait window, printed."""
    ss = SUPERSAMPLE if screen == "fine" else 1
    w, h = size
    p = np.asarray(photo.resize((w * ss, h * ss), Image.LANCZOS, box=box), np.float32) / 255.0
    grey = p.mean(axis=-1, keepdims=True)
    p = p + (grey - p) * pp["desaturate"]  # printers lose saturation
    p = 0.05 + 0.9 * p ** 0.85  # lifted shadows; never paper white or full black
    if method == "halftone":
        cell = 300.0 * ss / pp["fine_lpi"] if screen == "fine" else pp["coarse_cell"]
        p = halftone(p, cell, pp["angle"])
    else:
        cell = pp["fine_dither_cell"] if screen == "fine" else pp["coarse_dither_cell"]
        p = ordered_dither(p, cell, pp["levels"])
    p = np.clip(p, 0, 1)
    if ss > 1:  # area average down to the card's raster
        p = p.reshape(h, ss, w, ss, 3).mean(axis=(1, 3))
    return p * 255.0


def ghost_portrait(photo, box, size, rng):
    """The small greyscale low-contrast second portrait; returns (grey, alpha)."""
    g = np.asarray(photo.convert("L").resize(size, Image.LANCZOS, box=box), np.float32)
    g = g.mean() + (g - g.mean()) * rng.uniform(0.6, 0.9)
    h, w = g.shape
    yy, xx = grid(h, w)
    # soft edges: ghost images fade into the background print
    edge = np.minimum(np.minimum(xx, w - 1 - xx), np.minimum(yy, h - 1 - yy))
    fade = np.clip(edge / (0.08 * min(w, h)), 0, 1)
    return g, rng.uniform(0.25, 0.40) * fade


def holographic_overlay(card, rng):
    """A semi-transparent iridescent wavy band of fine lines across the card."""
    yy, xx = grid(CARD_H, CARD_W)
    a = rng.uniform(-0.7, 0.7)
    u = xx * math.cos(a) + yy * math.sin(a)
    v = -xx * math.sin(a) + yy * math.cos(a)
    v0 = rng.uniform(0.1, 0.9) * CARD_H
    lam, amp = rng.uniform(200, 600), rng.uniform(20, 80)
    d = np.abs(v - (v0 + amp * np.sin(2 * math.pi * u / lam + rng.uniform(0, 6.3))))
    half = rng.uniform(50, 140)
    band = np.clip((half - d) / (0.4 * half), 0, 1)
    lines = 0.55 + 0.45 * np.sin(2 * math.pi * d / rng.uniform(5, 10))
    hue = u / rng.uniform(150, 400) + v / rng.uniform(200, 500) + 0.15 * np.sin(u / 37.0)
    rgb = hsv_to_rgb_np(hue, np.full_like(hue, 0.55), np.ones_like(hue)) * 255.0
    alpha = (rng.uniform(0.18, 0.35) * band * lines)[..., None]
    return card * (1 - alpha) + rgb * alpha


def compose_card(photo, rng, ghost: bool, holo: bool, print_method=None, screen="fine", framing="icao",
                 head=LFW_HEAD):
    """Render the flat card (RGBA) and the maps from the photo into it.

    Returns (card_image, info) where info has the portrait/ghost rectangles and
    the 3x3 maps photo -> card in pixel-edge coordinates.
    """
    hue = rng.uniform(0, 1)
    card = pastel_gradient(rng, hue)
    card = draw_guilloche(card, rng, hue)

    header_h = int(rng.integers(74, 88))
    frac = rng.uniform(0.22, 0.30)
    pw = int(round(frac * CARD_W))
    ph = int(round(pw * 4 / 3))
    px = int(rng.integers(34, 50))
    py = header_h + int(rng.integers(16, 30))
    box = portrait_crop_box(photo.size, rng, framing, head)
    drawn = "halftone" if rng.random() < 0.5 else "dither"  # drawn even when forced: same stream
    method = print_method or drawn
    pp = print_params(rng)
    card[py:py + ph, px:px + pw] = print_portrait(photo, box, (pw, ph), pp, method, screen)
    a_portrait = translate(px, py) @ scale(pw / (box[2] - box[0]), ph / (box[3] - box[1])) @ translate(-box[0], -box[1])

    ghost_info = None
    if ghost:
        gs = rng.uniform(0.35, 0.45)
        gw, gh = int(round(pw * gs)), int(round(ph * gs))
        gx = CARD_W - gw - int(rng.integers(28, 60))
        gy = int(rng.integers(header_h + 120, CARD_H - gh - 78))
        g, ga = ghost_portrait(photo, box, (gw, gh), rng)
        region = card[gy:gy + gh, gx:gx + gw]
        region *= 1 - ga[..., None]
        region += (ga * g)[..., None]
        a_ghost = translate(gx, gy) @ scale(gw / (box[2] - box[0]), gh / (box[3] - box[1])) @ translate(-box[0], -box[1])
        ghost_info = {"rect": (gx, gy, gw, gh), "map": a_ghost}

    if holo:  # over the print, as a laminate would be
        card = holographic_overlay(card, rng)

    img = to_image(card)
    draw = ImageDraw.Draw(img)
    draw_header(draw, rng, hue, header_h)
    ink = tuple(int(c) for c in hsv(hue + 0.5, 0.3, 0.18))
    label_ink = tuple(int(c) for c in hsv(hue, 0.5, 0.4))
    ident = fake_identity(rng)
    x0 = px + pw + int(rng.integers(24, 36))
    y = draw_fields(draw, rng, ident, x0, header_h + int(rng.integers(14, 24)), CARD_W - 190, ink, label_ink)
    draw.text((x0, y - 4), "SIGNATURE", font=load_font(12), fill=label_ink)
    draw_signature(draw, rng, x0 + 10, y + 8, 180, 34, (30, 40, 110))
    specimen = "SPECIMEN – NOT A REAL DOCUMENT" if font_is_truetype() else "SPECIMEN - NOT A REAL DOCUMENT"
    draw.text((px, py + ph + 6), specimen, font=load_font(16), fill=(190, 30, 30))
    draw_mrz(draw, ident, CARD_H - 40, ink)

    # rounded corners through alpha; drawn at 2x for smooth edges
    mask = Image.new("L", (CARD_W * 2, CARD_H * 2), 0)
    ImageDraw.Draw(mask).rounded_rectangle([0, 0, CARD_W * 2 - 1, CARD_H * 2 - 1], CARD_CORNER_RADIUS * 2, fill=255)
    img.putalpha(mask.resize((CARD_W, CARD_H), Image.LANCZOS))
    info = {
        "portrait_rect": (px, py, pw, ph),
        "portrait_map": a_portrait,
        "ghost": ghost_info,
        "print": method,
        "screen": screen,
        "lpi": round(pp["fine_lpi"] if screen == "fine" else 300.0 / pp["coarse_cell"], 1)
        if method == "halftone" else None,
        "holo": holo,
        "crop_box": [round(float(c), 3) for c in box],
        "framing": framing,
    }
    return img, info


# --------------------------------------------------------------------------
# capture (the phone photo)


def desk_background(rng, size):
    """Solid-with-noise, wood-like or cloth-like desk.

    Computed at <= 800 px wide and upscaled: it is out-of-focus background and
    the sensor noise added later restores fine grain.
    """
    w, h = size
    ws = min(w, 800)
    hs = int(round(h * ws / w))
    yy, xx = grid(hs, ws)
    kind = str(rng.choice(["solid", "wood", "cloth"]))
    if kind == "wood":
        base = hsv(rng.uniform(0.04, 0.11), rng.uniform(0.35, 0.7), rng.uniform(0.35, 0.8))
        a = rng.uniform(-0.3, 0.3) + (math.pi / 2 if rng.random() < 0.3 else 0)
        v = -xx * math.sin(a) + yy * math.cos(a)
        turb = smooth_noise(rng, hs, ws, 6) * rng.uniform(10, 30)
        period = rng.uniform(6, 20)
        grain = 0.5 + 0.5 * np.sin(2 * math.pi * (v + turb) / period)
        grain = grain ** 3 * 0.7 + 0.3 * (0.5 + 0.5 * np.sin(2 * math.pi * (v + 0.5 * turb) / (period * 0.23)))
        shade = 0.78 + 0.22 * grain + 0.08 * (smooth_noise(rng, hs, ws, 40) - 0.5)
        img = base * shade[..., None]
    elif kind == "cloth":
        base = hsv(rng.uniform(0, 1), rng.uniform(0.1, 0.6), rng.uniform(0.25, 0.85))
        p = rng.uniform(2, 4)
        weave = np.sin(2 * math.pi * xx / p) * np.sin(2 * math.pi * yy / p)
        folds = smooth_noise(rng, hs, ws, 5)
        fine = rng.standard_normal((hs, ws), dtype=np.float32)
        shade = 0.85 + 0.05 * weave + 0.25 * (folds - 0.5) + 0.04 * fine
        img = base * shade[..., None]
    else:
        base = hsv(rng.uniform(0, 1), rng.uniform(0.03, 0.5), rng.uniform(0.2, 0.9))
        blot = smooth_noise(rng, hs, ws, 8)
        fine = rng.standard_normal((hs, ws), dtype=np.float32)
        img = base * (0.92 + 0.16 * blot + 0.02 * fine)[..., None]
    img = np.clip(img, 0, 255).astype(np.float32)
    if ws != w:
        img = np.asarray(to_image(img).resize((w, h), Image.BICUBIC), np.float32)
    return img, kind


def card_pose(rng, frame_size, rotation, tilt_max, persp_max, fraction, region=None):
    """Card corners in the frame: in-plane rotation, 3-D tilt, pinhole projection.

    `fraction` is the wanted length of the card's long side over the frame width;
    if the card would not fit (e.g. rotated 90 deg) it is shrunk until it does.
    Returns (quad, details).  `region` = (x0, y0, x1, y1) limits the placement.
    """
    w, h = frame_size
    tilt = rng.uniform(-tilt_max, tilt_max)
    ax, ay = (math.radians(a) for a in rng.uniform(-persp_max, persp_max, 2))
    th = math.radians(rotation + tilt)
    ch = CARD_H / CARD_W
    pts = np.array([[-0.5, -ch / 2, 0], [0.5, -ch / 2, 0], [0.5, ch / 2, 0], [-0.5, ch / 2, 0]])
    rz = np.array([[math.cos(th), -math.sin(th), 0], [math.sin(th), math.cos(th), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    p = pts @ (ry @ rx @ rz).T
    # a phone's ~65 deg horizontal field of view fixes the distance for this size
    f = w / (2 * math.tan(math.radians(65) / 2))
    dist = f / (fraction * w)
    p[:, 2] += dist
    quad = f * p[:, :2] / p[:, 2:3]
    long_side = (np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3])) / 2
    quad *= fraction * w / long_side
    x0, y0, x1, y1 = region or (0, 0, w, h)
    margin = 0.02 * w
    room_w, room_h = (x1 - x0) - 2 * margin, (y1 - y0) - 2 * margin
    bw, bh = np.ptp(quad[:, 0]), np.ptp(quad[:, 1])
    shrink = min(1.0, room_w / bw, room_h / bh)
    quad *= shrink
    bmin = quad.min(axis=0)
    bw, bh = np.ptp(quad[:, 0]), np.ptp(quad[:, 1])
    # after the shrink the room can be short by a rounding error: never a negative range
    ox = rng.uniform(x0 + margin, max(x0 + margin, x1 - margin - bw)) - bmin[0]
    oy = rng.uniform(y0 + margin, max(y0 + margin, y1 - margin - bh)) - bmin[1]
    quad += (ox, oy)
    achieved = fraction * shrink
    return quad, {"tilt_deg": round(tilt, 3), "perspective_deg": [round(math.degrees(ax), 3), round(math.degrees(ay), 3)],
                  "card_fraction": round(float(achieved), 4)}


def warp_card(card, h_edge, frame_size, pad=6):
    """Warp the RGBA card into the frame; returns (rgb region, alpha region, x0, y0).

    Only the quad's bounding box is rendered.  The card is first downscaled
    with a proper filter to about its size in the frame (Pillow's transform does
    no area averaging, and halftone dots would alias).
    """
    w, h = frame_size
    corners = apply_h(h_edge, rect_corners(0, 0, CARD_W, CARD_H))
    x0 = max(0, int(math.floor(corners[:, 0].min())) - pad)
    y0 = max(0, int(math.floor(corners[:, 1].min())) - pad)
    x1 = min(w, int(math.ceil(corners[:, 0].max())) + pad)
    y1 = min(h, int(math.ceil(corners[:, 1].max())) + pad)
    # replicate the card's edge pixels outward (alpha 0) so bicubic edges stay clean
    arr = np.asarray(card)
    rgb = np.pad(arr[..., :3], ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    alpha = np.pad(arr[..., 3], pad)
    src = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    to_src = translate(pad, pad)  # card coords -> padded coords
    s = max(np.linalg.norm(corners[1] - corners[0]), np.linalg.norm(corners[2] - corners[3])) / CARD_W
    if s < 0.8:
        nw, nh = max(8, int(round(src.width * s * 1.15))), max(8, int(round(src.height * s * 1.15)))
        to_src = scale(nw / src.width, nh / src.height) @ to_src
        src = src.resize((nw, nh), Image.LANCZOS)
    m = to_src @ np.linalg.inv(h_edge) @ translate(x0, y0)  # region px -> source px
    m = m / m[2, 2]
    out = src.transform((x1 - x0, y1 - y0), Image.PERSPECTIVE, tuple(m.flatten()[:8]), Image.BICUBIC)
    out = np.asarray(out, np.float32)
    return out[..., :3], out[..., 3] / 255.0, x0, y0


def add_glare(frame, card_alpha, centre, axes, angle, intensity):
    """A bright elliptical specular spot, only on the (glossy) card."""
    h, w, _ = frame.shape
    r = max(axes) * 1.1
    x0, x1 = max(0, int(centre[0] - r)), min(w, int(centre[0] + r) + 1)
    y0, y1 = max(0, int(centre[1] - r)), min(h, int(centre[1] + r) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx - centre[0], yy - centre[1]
    c, s = math.cos(angle), math.sin(angle)
    d2 = ((dx * c + dy * s) / axes[0]) ** 2 + ((-dx * s + dy * c) / axes[1]) ** 2
    g = intensity * (np.clip(1.0 - d2, 0, 1) ** 1.5 * 0.85 + 0.15 * np.exp(-3 * d2))
    g *= card_alpha[y0:y1, x0:x1]
    region = frame[y0:y1, x0:x1]
    region += (255.0 - region) * g[..., None]


def motion_blur(img, length, angle):
    """Average of shifted copies along a line: a straight-line motion kernel."""
    n = max(2, int(round(length)))
    c, s = math.cos(angle), math.sin(angle)
    offs = [(int(round((k - (n - 1) / 2) * c)), int(round((k - (n - 1) / 2) * s))) for k in range(n)]
    p = max(max(abs(a), abs(b)) for a, b in offs)
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="edge")
    h, w, _ = img.shape
    acc = np.zeros_like(img)
    for ox, oy in offs:
        acc += padded[p + oy:p + oy + h, p + ox:p + ox + w]
    return acc / n


def lighting(frame, rng):
    """Uneven illumination and a slight white-balance cast."""
    h, w, _ = frame.shape
    y = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    a = rng.uniform(0, 2 * math.pi)
    cx, cy = (float(v) for v in rng.uniform(-0.3, 0.3, 2))  # Python floats keep float32 math
    light = 1.0 + rng.uniform(0, 0.25) * (x * math.cos(a) + y * math.sin(a)) \
        - rng.uniform(0.0, 0.35) * ((x - cx) ** 2 + (y - cy) ** 2) + rng.uniform(-0.05, 0.1)
    gains = rng.uniform(0.94, 1.06, 3).astype(np.float32)
    frame *= light[..., None] * gains


def draw_capture_params(rng, frame_spec, ghost_p=0.6):
    """All per-card random choices, drawn in a fixed order (forcing one later
    does not change the others)."""
    frame = frame_spec
    r_frame = rng.random()
    if frame_spec == "mixed":
        frame = (1600, 1200) if r_frame < 0.8 else (4000, 3000)
    return {
        "frame": frame,
        "rotation": choose(rng, ROTATIONS, ROTATION_P),
        "ghost": bool(rng.random() < ghost_p),
        "holo": bool(rng.random() < 0.5),
        "glare": choose(rng, GLARES, GLARE_P),
        "blur": choose(rng, BLURS, BLUR_P),
        "fraction": float(rng.uniform(0.30, 0.80)),
        "noise_sigma": float(rng.uniform(2, 8)),
        "jpeg_quality": int(rng.integers(60, 96)),
        "tilt_max": 10.0,
        "perspective_max": 20.0,
    }


def size_label(fraction):
    return "small" if fraction < 0.45 else ("medium" if fraction <= 0.65 else "large")


def finish_frame(frame, rng, blur, noise_sigma, quality):
    """Blur, sensor noise and JPEG encoding; returns (jpeg bytes, blur details)."""
    w = frame.shape[1]
    details = {}
    if blur == "defocus":
        radius = float(rng.uniform(1.0, 2.8) * w / 1600)
        frame = np.asarray(to_image(frame).filter(ImageFilter.GaussianBlur(radius)), np.float32)
        details["blur_sigma_px"] = round(radius, 3)
    elif blur == "motion":
        length, angle = rng.uniform(5, 14) * w / 1600, rng.uniform(0, math.pi)
        frame = motion_blur(frame, length, angle)
        details["motion_px"], details["motion_angle_deg"] = round(length, 3), round(math.degrees(angle), 3)
    noise = rng.standard_normal(frame.shape, dtype=np.float32)
    noise *= np.float32(noise_sigma)
    noise += np.float32(0.5)  # rounds in the uint8 cast below
    frame += noise
    np.clip(frame, 0, 255, out=frame)
    buf = io.BytesIO()
    Image.fromarray(frame.astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue(), details


def capture(card, info, rng, params, region=None, frame=None):
    """Photograph the card: place it (perspective), light it, glare, blur, noise, JPEG.

    `frame` may be a pre-filled background (selfie mode); returns (jpeg, truth).
    """
    size = params["frame"]
    labels_extra = {}
    if frame is None:
        frame, desk = desk_background(rng, size)
        labels_extra["desk"] = desk
    quad, pose = card_pose(rng, size, params["rotation"], params["tilt_max"], params["perspective_max"],
                           params["fraction"], region)
    h2 = homography(rect_corners(0, 0, CARD_W, CARD_H), quad)
    rgb, alpha, x0, y0 = warp_card(card, h2, size)
    rh, rw = alpha.shape
    # soft contact shadow below/right of the card
    card_len = float(np.linalg.norm(quad[1] - quad[0]))
    shadow_img = Image.fromarray((alpha * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.012 * card_len))
    shadow = np.asarray(shadow_img, np.float32) / 255.0
    sh = int(round(0.008 * card_len))
    shadow = np.pad(shadow, ((sh, 0), (sh, 0)))[:rh, :rw]
    region_px = frame[y0:y0 + rh, x0:x0 + rw]
    region_px *= (1 - rng.uniform(0.2, 0.45) * shadow)[..., None]
    region_px *= (1 - alpha)[..., None]
    region_px += rgb * alpha[..., None]
    lighting(frame, rng)

    px, py, pw, ph = info["portrait_rect"]
    glare_details = None
    g_angle, g_int = rng.uniform(0, math.pi), rng.uniform(0.6, 0.95)
    g_jitter = rng.uniform(-0.2, 0.2, 2)
    g_size = rng.uniform(0.5, 0.9)
    g_off = (rng.uniform(0.62, 0.9) * CARD_W, rng.uniform(0.25, 0.8) * CARD_H)
    g_aspect = rng.uniform(0.45, 0.9)
    scale_px = card_len / CARD_W  # frame px per card px (approx.)
    if params["glare"] == "on_portrait":
        c = apply_h(h2, [(px + pw * (0.5 + g_jitter[0]), py + ph * (0.45 + g_jitter[1]))])[0]
        a = g_size * pw * scale_px
        glare_details = {"centre": c, "axes": (a, a * g_aspect)}
    elif params["glare"] == "off_portrait":
        # centre well right of the portrait and small enough never to reach it
        c = apply_h(h2, [g_off])[0]
        a = min(0.16, g_off[0] / CARD_W - 0.45) * g_size * CARD_W * scale_px
        glare_details = {"centre": c, "axes": (a, a * g_aspect)}
    if glare_details:
        card_alpha = np.zeros(frame.shape[:2], np.float32)
        card_alpha[y0:y0 + rh, x0:x0 + rw] = alpha
        add_glare(frame, card_alpha, glare_details["centre"], glare_details["axes"], g_angle, g_int)

    jpeg, blur_details = finish_frame(frame, rng, params["blur"], params["noise_sigma"], params["jpeg_quality"])

    h_face = edge_to_centre(h2 @ info["portrait_map"])
    truth = {
        "H": [[float(v) for v in row] for row in h_face],
        "portrait_quad": quad_to_list(h2, rect_corners(px, py, pw, ph)),
        "ghost_quad": None,
        "ghost_H": None,
        "card_quad": quad_to_list(h2, rect_corners(0, 0, CARD_W, CARD_H)),
        "frame_size": list(size),
        "labels": {
            "rotation": params["rotation"],
            "glare": params["glare"],
            "blur": params["blur"],
            "size": size_label(pose["card_fraction"]),
            "ghost": "yes" if info["ghost"] else "no",
            "frame": "%dx%d" % tuple(size),
            "holo": "yes" if info["holo"] else "no",
            "print": info["print"],
            "screen": info["screen"],
            "framing": info["framing"],
            **labels_extra,
        },
        "params": {
            **pose,
            "portrait_crop_box": info["crop_box"],
            "lpi": info["lpi"],
            "noise_sigma": round(params["noise_sigma"], 3),
            "jpeg_quality": params["jpeg_quality"],
            **blur_details,
        },
    }
    if info["ghost"]:
        gx, gy, gw, gh = info["ghost"]["rect"]
        truth["ghost_quad"] = quad_to_list(h2, rect_corners(gx, gy, gw, gh))
        truth["ghost_H"] = [[float(v) for v in row] for row in edge_to_centre(h2 @ info["ghost"]["map"])]
    if glare_details:
        truth["params"]["glare_centre"] = [round(float(v) - 0.5, 2) for v in glare_details["centre"]]
        truth["params"]["glare_axes"] = [round(float(v), 2) for v in glare_details["axes"]]
    return jpeg, truth


def load_photo(path):
    with Image.open(path) as im:
        return im.convert("RGB")


def make_card_photo(photo_path, seed, frame_spec, overrides=None, name=None):
    """One card photo for `photo_path`; overrides force conditions. -> (jpeg, truth)."""
    rng = rng_for(seed, name or os.path.basename(photo_path))
    params = draw_capture_params(rng, frame_spec)
    params.update({k: v for k, v in (overrides or {}).items() if v is not None})
    photo = load_photo(photo_path)
    card, info = compose_card(photo, rng, params["ghost"], params["holo"], params.get("print"),
                              params.get("screen") or "fine", params.get("framing") or "icao",
                              params.get("head") or LFW_HEAD)
    jpeg, truth = capture(card, info, rng, params)
    truth["source"] = photo_path  # as given: absolute in pairs mode, repo-relative for fixtures
    truth["source_size"] = list(photo.size)
    return jpeg, truth


# --------------------------------------------------------------------------
# modes


def parse_head(text):
    try:
        height, centre = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected HEIGHT,CENTRE, e.g. 0.60,0.45")
    if not (0 < height <= 1 and 0 < centre < 1):
        raise argparse.ArgumentTypeError("fractions of the photo's height, in (0, 1]")
    return height, centre


def read_pairs(path):
    """LFW pairs: header line, then `name i j` or `name1 i name2 j`."""
    pairs = []
    with open(path) as fh:
        fh.readline()
        for line in fh:
            f = line.split()
            if len(f) == 3:
                pairs.append((f[0], int(f[1]), f[0], int(f[2]), 1))
            elif len(f) == 4:
                pairs.append((f[0], int(f[1]), f[2], int(f[3]), 0))
    return pairs


def lfw_path(images, name, i):
    return os.path.join(images, name, "%s_%04d.jpg" % (name, i))


def _pairs_worker(job):
    src, dst, seed, frame_spec, overrides = job
    jpeg, truth = make_card_photo(src, seed, frame_spec, overrides)
    with open(dst, "wb") as fh:
        fh.write(jpeg)
    return dst, truth


def run_pairs(args):
    t0 = time.time()
    images, out = os.path.abspath(args.images), os.path.abspath(args.out)
    pairs = read_pairs(args.pairs)
    if args.limit:
        pairs = pairs[:args.limit]
    os.makedirs(os.path.join(out, "cards"), exist_ok=True)
    frame_spec = parse_frame(args.frame)
    overrides = condition_overrides(args)
    jobs, card_of = [], {}
    for _, _, rname, j, _ in pairs:
        src = lfw_path(images, rname, j)
        if src not in card_of:  # each distinct reference once
            card_of[src] = os.path.join(out, "cards", os.path.basename(src))
            jobs.append((src, card_of[src], args.seed, frame_spec, overrides))
    print("%d pairs, %d distinct reference photos -> %s" % (len(pairs), len(jobs), out), flush=True)
    truths = {}
    n_jobs = max(1, args.jobs or os.cpu_count() or 1)
    with multiprocessing.Pool(n_jobs) as pool:
        for k, (dst, truth) in enumerate(pool.imap(_pairs_worker, jobs, chunksize=2), 1):
            truths[dst] = truth
            if k % 50 == 0 or k == len(jobs):
                print("  %d/%d cards, %.1f s" % (k, len(jobs), time.time() - t0), flush=True)

    head = "probe\treference\tsame\tprobe_person\treference_person\n"
    with open(os.path.join(out, "pairs.tsv"), "w") as pc, open(os.path.join(out, "plain-pairs.tsv"), "w") as pp:
        pc.write(head)
        pp.write(head)
        for pname, i, rname, j, same in pairs:
            probe, ref = lfw_path(images, pname, i), lfw_path(images, rname, j)
            pc.write("%s\t%s\t%d\t%s\t%s\n" % (probe, card_of[ref], same, pname, rname))
            pp.write("%s\t%s\t%d\t%s\t%s\n" % (probe, ref, same, pname, rname))
    with open(os.path.join(out, "conditions.tsv"), "w") as fh:
        cols = ("rotation", "glare", "blur", "size", "ghost", "frame", "print", "screen", "holo", "framing")
        fh.write("image\t%s\n" % "\t".join(cols))
        for _, dst, _, _, _ in jobs:
            lb = truths[dst]["labels"]
            fh.write("%s\t%s\n" % (dst, "\t".join(str(lb[c]) for c in cols)))
    write_json(os.path.join(out, "truth.json"),
               {"tool": "make_cards.py", "version": TOOL_VERSION, "seed": args.seed, "frame": args.frame,
                "pairs": os.path.abspath(args.pairs), "cards": {d: truths[d] for _, d, _, _, _ in jobs}})
    print("done: %d cards for %d pairs in %.1f s (%d jobs)" % (len(jobs), len(pairs), time.time() - t0, n_jobs))


_NUMBER_LIST = re.compile(r"\[\s+([-+0-9.eE,\s]+?)\s+\]")


def dump_json(obj):
    """Indented JSON with innermost number lists (points, matrix rows) on one line."""
    text = json.dumps(obj, indent=1)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def write_json(path, obj):
    with open(path, "w") as fh:
        fh.write(dump_json(obj) + "\n")


def json_path_for(out_image):
    return os.path.splitext(out_image)[0] + ".json"


def condition_overrides(args):
    """The conditions forced on the command line (None: drawn from the seed)."""
    return {
        "rotation": args.rotation,
        "ghost": None if args.ghost is None else args.ghost == "yes",
        "holo": None if args.holo is None else args.holo == "yes",
        "glare": args.glare,
        "blur": args.blur,
        "fraction": args.card_fraction,
        "tilt_max": args.tilt,
        "perspective_max": args.perspective,
        "jpeg_quality": args.jpeg_quality,
        "noise_sigma": args.noise_sigma,
        "print": args.print_method,
        "screen": args.screen,
        "framing": args.framing,
        "head": args.head,
    }


def run_single(args):
    t0 = time.time()
    frame = parse_frame(args.frame or "1600x1200")
    overrides = condition_overrides(args)
    jpeg, truth = make_card_photo(args.photo, args.seed, frame, overrides)
    with open(args.out_image, "wb") as fh:
        fh.write(jpeg)
    write_json(json_path_for(args.out_image), {"tool": "make_cards.py", "version": TOOL_VERSION, "seed": args.seed,
                                               "image": os.path.basename(args.out_image), **truth})
    print("wrote %s (%d bytes) in %.2f s" % (args.out_image, len(jpeg), time.time() - t0))


def run_selfie(args):
    """A frame with FACE_B's photo as the large subject and a card of FACE_A beside it."""
    t0 = time.time()
    size = parse_frame(args.frame or "1600x1200")
    w, h = size
    rng = rng_for(args.seed, "selfie:%s:%s" % (os.path.basename(args.selfie), os.path.basename(args.card_photo)))
    params = draw_capture_params(rng, size)
    params.update({"rotation": 0, "glare": "none", "blur": "none", "tilt_max": 8.0, "perspective_max": 10.0,
                   "fraction": float(rng.uniform(0.35, 0.45))})
    if args.ghost is not None:
        params["ghost"] = args.ghost == "yes"
    if args.jpeg_quality:
        params["jpeg_quality"] = args.jpeg_quality
    if args.noise_sigma is not None:
        params["noise_sigma"] = args.noise_sigma

    frame, desk = desk_background(rng, size)
    frame *= np.float32(rng.uniform(0.6, 0.9))  # a dimmer room behind the subject
    selfie = load_photo(args.selfie)
    sh = int(round(rng.uniform(0.55, 0.60) * h))
    sw = int(round(sh * selfie.width / selfie.height))
    sx = int(rng.integers(int(0.03 * w), max(int(0.03 * w) + 1, w // 2 - sw - int(0.01 * w))))
    sy = int(rng.integers(int(0.05 * h), h - sh - int(0.05 * h)))
    sel = np.asarray(selfie.resize((sw, sh), Image.LANCZOS), np.float32)
    yy, xx = grid(sh, sw)
    edge = np.minimum(np.minimum(xx, sw - 1 - xx), np.minimum(yy, sh - 1 - yy))
    feather = np.clip(edge / (0.03 * sw), 0, 1)[..., None]  # soften the pasted photo's border
    region = frame[sy:sy + sh, sx:sx + sw]
    region *= 1 - feather
    region += sel * feather
    h_selfie = translate(sx, sy) @ scale(sw / selfie.width, sh / selfie.height)

    card_face = load_photo(args.card_photo)
    card, info = compose_card(card_face, rng, params["ghost"], params["holo"])
    jpeg, truth = capture(card, info, rng, params, region=(w / 2, 0, w, h), frame=frame)
    truth["labels"]["desk"] = desk
    with open(args.out_image, "wb") as fh:
        fh.write(jpeg)
    write_json(json_path_for(args.out_image), {
        "tool": "make_cards.py", "version": TOOL_VERSION, "seed": args.seed,
        "image": os.path.basename(args.out_image), "frame_size": list(size),
        "selfie": {"source": args.selfie, "source_size": list(selfie.size),
                   "H": [[float(v) for v in row] for row in edge_to_centre(h_selfie)],
                   "photo_quad": quad_to_list(h_selfie, rect_corners(0, 0, selfie.width, selfie.height))},
        "card": {"source": args.card_photo, "source_size": list(card_face.size), **truth},
    })
    print("wrote %s (%d bytes) in %.2f s" % (args.out_image, len(jpeg), time.time() - t0))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--frame", help="WxH, e.g. 1600x1200 (default) or 4000x3000; pairs mode also 'mixed'")
    ap.add_argument("--ghost", choices=["yes", "no"], help="force the ghost portrait on/off")
    c = ap.add_argument_group("conditions (any mode; default: drawn from the seed)")
    c.add_argument("--jpeg-quality", type=int, help="force the JPEG quality (default 60-95)")
    c.add_argument("--noise-sigma", type=float, help="force the sensor noise sigma in levels (default 2-8)")
    c.add_argument("--rotation", type=int, choices=ROTATIONS)
    c.add_argument("--holo", choices=["yes", "no"], help="force the holographic band on/off")
    c.add_argument("--glare", choices=GLARES)
    c.add_argument("--blur", choices=BLURS)
    c.add_argument("--print", dest="print_method", choices=("halftone", "dither"),
                   help="how the portrait is printed (default: drawn, half each)")
    c.add_argument("--screen", choices=SCREENS,
                   help="print resolution: fine (default; 106-175 lpi halftone, dither dots at 600-1200 dpi) or "
                        "coarse (50-86 lpi, dither cells of 1-2 px at 300 dpi: newsprint, version 1.0's only one)")
    c.add_argument("--framing", choices=FRAMINGS,
                   help="how the photo is cropped for the portrait: icao (default since 2.1; the head 70-80 %% of "
                        "the portrait's height) or loose (2.0 and before: a centred crop of 75-100 %% of the photo)")
    c.add_argument("--head", type=parse_head, metavar="HEIGHT,CENTRE",
                   help="the source photo's head (crown to chin): its height and its centre's distance from the "
                        "top, as fractions of the photo's height (default 0.60,0.45, LFW deep-funneled)")
    c.add_argument("--card-fraction", type=float, help="card long side / frame width (default 0.30-0.80)")
    c.add_argument("--tilt", type=float, help="max in-plane tilt in degrees, drawn from +-DEG (default 10)")
    c.add_argument("--perspective", type=float, help="max out-of-plane angle per axis, +-DEG (default 20)")
    g = ap.add_argument_group("pairs mode")
    g.add_argument("--pairs", help="LFW pairs file")
    g.add_argument("--images", help="LFW image folder (NAME/NAME_0001.jpg)")
    g.add_argument("--out", help="output folder")
    g.add_argument("--limit", type=int, help="only the first N pairs")
    g.add_argument("--jobs", type=int, help="worker processes (default: all CPUs)")
    s = ap.add_argument_group("single / selfie mode")
    s.add_argument("--photo", help="face photo to put on the card (single mode)")
    s.add_argument("--selfie", help="face photo shown as the large subject (selfie mode)")
    s.add_argument("--card-photo", help="face photo on the held card (selfie mode)")
    s.add_argument("--out-image", help="output JPEG; truth goes to the same name with .json")
    args = ap.parse_args(argv)

    if args.pairs:
        if not (args.images and args.out):
            ap.error("--pairs needs --images and --out")
        args.frame = args.frame or "1600x1200"
        run_pairs(args)
    elif args.selfie:
        if not (args.card_photo and args.out_image):
            ap.error("--selfie needs --card-photo and --out-image")
        run_selfie(args)
    elif args.photo:
        if not args.out_image:
            ap.error("--photo needs --out-image")
        if args.frame == "mixed":
            ap.error("--frame mixed is for pairs mode")
        run_single(args)
    else:
        ap.error("give --pairs, --photo or --selfie")


if __name__ == "__main__":
    sys.exit(main())
