#!/usr/bin/env python3
"""Where the head lies in a set of face photos, for make_cards.py's ICAO framing (LFW_HEAD).

Runs `facegate detect` on a sample of a pair list's photos and, for the face nearest each
photo's centre, estimates the head (crown to chin) from the five points with adult
proportions: the chin 0.643 x the eye-to-mouth distance below the mouth, the eyes halfway down
the head, so the head is 3.3 x the eye-to-mouth distance, centred on the eye line. Prints its
height and its centre's distance from the top as fractions of the photo's height (10th, 50th
and 90th percentiles).

    python tools/cards/measure_heads.py --pairs ../shared/data/lfw-view1/pairsDevTrain.txt \
        --images ../shared/data/lfw-view1/lfw-deepfunneled --facegate target/debug/facegate
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess

from PIL import Image

from make_cards import lfw_path, read_pairs

# The chin's distance below the mouth, in eye-to-mouth distances.
CHIN_BELOW_MOUTH = 0.643


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--facegate", default="target/debug/facegate")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    photos = sorted({(n, i) for p in read_pairs(a.pairs) for n, i in ((p[0], p[1]), (p[2], p[3]))})
    random.Random(a.seed).shuffle(photos)
    paths = [lfw_path(a.images, n, i) for n, i in photos[: a.count]]
    out = subprocess.run([a.facegate, "detect", "--device", "cpu", *paths], capture_output=True,
                         text=True, check=True).stdout
    heights, centres = [], []
    for line in out.splitlines():
        d = json.loads(line)
        if not d["faces"]:
            continue
        w, h = Image.open(d["image"]).size
        f = min(d["faces"], key=lambda f: abs(f["x"] + f["width"] / 2 - w / 2) + abs(f["y"] + f["height"] / 2 - h / 2))
        p = f["points"]
        eyes = (p[0][1] + p[1][1]) / 2
        mouth = (p[3][1] + p[4][1]) / 2
        chin = mouth + CHIN_BELOW_MOUTH * (mouth - eyes)
        heights.append(2 * (chin - eyes) / h)  # crown as far above the eyes as the chin below
        centres.append(eyes / h)
    q = lambda v: ", ".join(f"{x:.3f}" for x in (statistics.quantiles(v, n=10)[i] for i in (0, 4, 8)))
    print(f"{len(heights)} photos with a face: head height {q(heights)}; head centre from the top {q(centres)} "
          "(10th, 50th, 90th percentile, fractions of the photo's height)")


if __name__ == "__main__":
    main()
