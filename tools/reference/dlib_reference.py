#!/usr/bin/env python3
"""Reference dlib alignment and descriptors, for the Rust dlib-chip path's tests.

Writes data/reference-dlib.json and data/dlib-chips/<stem>-<ext>.png (150x150 RGB chips).
For each fixture (face-a..e.png, face-a.jpg; PIL, exif_transpose, RGB): HOG frontal detector
(upsample 1), largest face, 5-point shape, chip = dlib.get_face_chip(img, shape, 150, 0.25),
descriptor = compute_face_descriptor(chip) (the aligned-chip overload) and, for comparison,
compute_face_descriptor(img, shape). Also the chip->image affine map
    image_x = a*col + b*row + tx,  image_y = c*col + d*row + ty      ([a, b, tx, c, d, ty])
derived from get_face_chip_details(shape, 150, 0.25) as dlib's extract_image_chips()
(dlib/image_transforms/interpolation.h) does it: chip corners (0,0), (cols-1,0), (0,rows-1) go
to the rect's tl, tr, bl corners rotated by `angle` about the rect centre. It is checked by
extracting chips from float64 images whose pixels hold their own x (and y) coordinate, and dlib's
uint8 chip is compared with a numpy bilinear warp by that matrix (dlib truncates, see below).

Regenerate (from the repository root; versions in tools/reference/README.md):
    python3 tools/reference/dlib_reference.py
"""
import json, math, os

import numpy as np
import dlib
import face_recognition_models as frm
from PIL import Image, ImageOps

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGES = ["face-a.png", "face-b.png", "face-c.png", "face-d.png", "face-e.png", "face-a.jpg"]
SIZE, PADDING = 150, 0.25


def chip_to_image(det):
    """[a, b, tx, c, d, ty] from chip_details, as extract_image_chips() builds it."""
    r, ang = det.rect, det.angle
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2  # center(drectangle)
    cos, sin = math.cos(ang), math.sin(ang)
    rot = lambda x, y: (cos * (x - cx) - sin * (y - cy) + cx, sin * (x - cx) + cos * (y - cy) + cy)
    tl, tr, bl = rot(r.left(), r.top()), rot(r.right(), r.top()), rot(r.left(), r.bottom())
    a, c = (tr[0] - tl[0]) / (det.cols - 1), (tr[1] - tl[1]) / (det.cols - 1)
    b, d = (bl[0] - tl[0]) / (det.rows - 1), (bl[1] - tl[1]) / (det.rows - 1)
    return [a, b, tl[0], c, d, tl[1]]


def pyramid_level(det):
    """-1 = plain bilinear from the image; >= 0: dlib samples a pyramid_down<2> level instead."""
    l, t, r, b = det.rect.left(), det.rect.top(), det.rect.right(), det.rect.bottom()
    level = -1
    while True:  # rect_down: p/2 - (1.25, 0.75); drectangle area = (r-l+1)*(b-t+1)
        l, t, r, b = l / 2 - 1.25, t / 2 - 0.75, r / 2 - 1.25, b / 2 - 0.75
        if (r - l + 1) * (b - t + 1) <= det.rows * det.cols:
            return level
        level += 1


def warp_coords(m, rows, cols):
    row, col = np.mgrid[0:rows, 0:cols].astype(np.float64)
    return m[0] * col + m[1] * row + m[2], m[3] * col + m[4] * row + m[5]


def naive_bilinear(img, m, rows, cols):
    """dlib's interpolate_bilinear by hand, before the final cast: (value, inside mask)."""
    x, y = warp_coords(m, rows, cols)
    H, W = img.shape[:2]
    l, t = np.floor(x).astype(int), np.floor(y).astype(int)
    inside = (l >= 0) & (t >= 0) & (l + 1 < W) & (t + 1 < H)
    l, t = np.where(inside, l, 0), np.where(inside, t, 0)
    fx, fy = (x - l)[..., None], (y - t)[..., None]
    im = img.astype(np.float64)
    v = (1 - fy) * ((1 - fx) * im[t, l] + fx * im[t, l + 1]) + fy * ((1 - fx) * im[t + 1, l] + fx * im[t + 1, l + 1])
    return np.where(inside[..., None], v, 0.0), inside


def input_layer_means(path):
    """avg_red/green/blue of the net's input_rgb_image_sized layer, read from the .dat
    (dlib serialises a float as int64 mantissa, int16 exponent; an int as a length byte, high bit
    = negative, then little-endian bytes)."""
    data = open(path, "rb").read()
    pos = data.index(b"input_rgb_image_sized") + len("input_rgb_image_sized")
    def integer():
        nonlocal pos
        n, neg = data[pos] & 0x7F, data[pos] & 0x80
        v = int.from_bytes(data[pos + 1:pos + 1 + n], "little")
        pos += 1 + n
        return -v if neg else v
    return [float(np.float32(m * 2.0 ** e)) for m, e in ((integer(), integer()) for _ in range(3))]


def main():
    detector = dlib.get_frontal_face_detector()
    sp5 = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    os.makedirs(os.path.join(ROOT, "data", "dlib-chips"), exist_ok=True)
    faces = []
    for name in IMAGES:
        img = np.ascontiguousarray(ImageOps.exif_transpose(Image.open(os.path.join(ROOT, "data", name))).convert("RGB"))
        H, W = img.shape[:2]
        rects = list(detector(img, 1))
        rect = max(rects, key=lambda r: r.area())
        shape = sp5(img, rect)
        chip = dlib.get_face_chip(img, shape, size=SIZE, padding=PADDING)
        chip_file = "dlib-chips/" + name.replace(".", "-") + ".png"
        Image.fromarray(chip).save(os.path.join(ROOT, "data", chip_file))
        from_chip = np.array(rec.compute_face_descriptor(chip))
        from_img = np.array(rec.compute_face_descriptor(img, shape))

        det = dlib.get_face_chip_details(shape, SIZE, PADDING)
        m = chip_to_image(det)
        # coordinate images: dlib's bilinear chip of x (resp. y) is the sampled x (resp. y)
        gx, gy = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
        cx, cy = dlib.extract_image_chip(gx, det), dlib.extract_image_chip(gy, det)
        px, py = warp_coords(m, det.rows, det.cols)
        inside = (px >= 0) & (py >= 0) & (px < W - 1) & (py < H - 1)
        dev = float(max(np.abs(cx - px)[inside].max(), np.abs(cy - py)[inside].max()))
        assert np.all(cx[~inside] == 0) and np.all(cy[~inside] == 0)
        naive, ins = naive_bilinear(img, m, det.rows, det.cols)
        trunc, rnd = naive.astype(np.uint8), np.clip(np.round(naive), 0, 255).astype(np.uint8)
        diff = lambda a: np.abs(chip.astype(int) - a.astype(int))

        faces.append({
            "file": name, "width": W, "height": H,
            "detections": len(rects),
            "rect": [rect.left(), rect.top(), rect.right(), rect.bottom()],
            "shape5": [[shape.part(i).x, shape.part(i).y] for i in range(5)],
            "chip_details": {"rect": [det.rect.left(), det.rect.top(), det.rect.right(), det.rect.bottom()],
                             "angle": det.angle, "rows": det.rows, "cols": det.cols,
                             "pyramid_level": pyramid_level(det)},
            "chip_to_image": m,
            "chip_to_image_max_deviation_px": dev,
            "chip_pixels_sampled_outside_image": int((~ins).sum()),
            "chip_vs_naive_bilinear": {
                "truncate_mean_abs": float(diff(trunc).mean()), "truncate_max_abs": int(diff(trunc).max()),
                "truncate_exact_fraction": float((diff(trunc) == 0).mean()),
                "round_mean_abs": float(diff(rnd).mean()), "round_max_abs": int(diff(rnd).max())},
            "chip_png": chip_file,
            "descriptor": [float(v) for v in from_chip],
            "descriptor_from_image_and_shape": [float(v) for v in from_img],
            "descriptor_max_abs_difference": float(np.abs(from_chip - from_img).max()),
            "descriptor_norm": float(np.linalg.norm(from_chip)),
        })
        print(name, "dev", dev, "naive trunc mean", faces[-1]["chip_vs_naive_bilinear"]["truncate_mean_abs"],
              "desc diff", faces[-1]["descriptor_max_abs_difference"])

    means = input_layer_means(frm.face_recognition_model_location())
    out = {
        "generator": "tools/reference/dlib_reference.py",
        "versions": {"dlib": dlib.__version__, "face_recognition_models": "0.3.0", "numpy": np.__version__,
                     "pillow": Image.__version__},
        "models": ["shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"],
        "pipeline": {
            "image_load": "PIL open, ImageOps.exif_transpose, convert('RGB'), numpy HxWx3 uint8",
            "detector": "dlib.get_frontal_face_detector()(img, 1); the largest rect by area",
            "shape": "shape_predictor_5_face_landmarks(img, rect); parts are integer pixel points",
            "chip": "dlib.get_face_chip(img, shape, size=150, padding=0.25) == extract_image_chip(img, "
                    "get_face_chip_details(shape, 150, 0.25)), interpolate_bilinear, RGB cast to uint8 by "
                    "static_cast (truncation), samples whose 2x2 neighbourhood leaves the image are 0",
            "descriptor": "face_recognition_model_v1.compute_face_descriptor(chip) (aligned 150x150 chip, "
                          "num_jitters 0); not L2-normalised here",
            "input_normalisation": {"formula": "(pixel - mean[channel]) / 256.0, channels R,G,B, planar",
                                    "mean_rgb": means},
        },
        "chip_to_image_convention": "image_x = a*col + b*row + tx, image_y = c*col + d*row + ty; "
                                    "[a, b, tx, c, d, ty]; (col, row) integer chip pixel coordinates; image "
                                    "coordinates in pixels with (0,0) the centre of the top-left pixel. "
                                    "Chip corners (0,0), (cols-1,0), (0,rows-1) map to the rect corners "
                                    "(left,top), (right,top), (left,bottom) rotated by angle about "
                                    "((left+right)/2, (top+bottom)/2): a = cos(angle)*(right-left)/(cols-1), "
                                    "c = sin(angle)*(right-left)/(cols-1), b = -sin(angle)*(bottom-top)/(rows-1), "
                                    "d = cos(angle)*(bottom-top)/(rows-1)",
        "pyramid_note": "pyramid_level -1 (all faces here): plain bilinear from the image. For level L >= 0 "
                        "dlib samples a blurred pyramid_down<2> level and the sample lands at "
                        "x - (2^(L+1)-1)/2, y + (2^(L+1)-1)/2 relative to this matrix (measured)",
        "chip_to_image_check": "extract_image_chip on float64 images holding each pixel's x (resp. y); "
                               "max |dlib - matrix| over chip pixels sampled inside the image",
        "faces": faces,
    }
    with open(os.path.join(ROOT, "data", "reference-dlib.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
