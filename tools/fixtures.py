#!/usr/bin/env python3
"""Regenerate data/ test fixtures from the MIT-licensed @vladmandic/face-api 1.7.15 npm tarball.

    npm pack @vladmandic/face-api@1.7.15
    python3 tools/fixtures.py vladmandic-face-api-1.7.15.tgz data/

Every image in data/ is derived from the package's demo/sample*.jpg (MIT) or synthesised here,
so the project can ship it. Needs Pillow.
"""
import io, struct, sys, tarfile, zlib
from PIL import Image

# Face boxes (x, y, w, h) in the full-size samples, from face-api's TinyFaceDetector.
FACES = {
    "face-a.png": ("sample1.jpg", (776, 445, 313, 256)),
    "face-b.png": ("sample2.jpg", (1403, 174, 276, 263)),
    "face-c.png": ("sample3.jpg", (1005, 252, 324, 275)),
    "face-d.png": ("sample5.jpg", (314, 897, 315, 311)),
    "face-e.png": ("sample6.jpg", (616, 378, 295, 276)),
}


def crop_face(img, box, margin=0.45, size=300):
    x, y, w, h = box
    cx, cy, s = x + w / 2, y + h / 2, max(w, h) * (1 + 2 * margin)
    c = img.crop((int(cx - s / 2), int(cy - s / 2), int(cx + s / 2), int(cy + s / 2)))
    return c.resize((size, size), Image.LANCZOS)


def huge_png(w, h):
    """A valid PNG header claiming w x h pixels with almost no data: decoding it would need
    w*h*3 bytes, so a decoder must refuse it from the header alone."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def main(tgz, out):
    tar = tarfile.open(tgz)
    sample = lambda n: Image.open(io.BytesIO(tar.extractfile(f"package/demo/{n}").read())).convert("RGB")
    for name, (src, box) in FACES.items():
        crop_face(sample(src), box).save(f"{out}/{name}", optimize=True)
    # Multi-face scenes, downscaled (lossless PNG so parity references see identical pixels).
    s1 = sample("sample1.jpg")
    s1.resize((720, 480), Image.LANCZOS).save(f"{out}/group-3.png", optimize=True)
    s6 = sample("sample6.jpg")
    s6.resize((720, 576), Image.LANCZOS).save(f"{out}/group-5.png", optimize=True)
    # No face: a wall/background region of sample2 (top-left corner, above the sofa).
    sample("sample2.jpg").crop((0, 0, 400, 300)).save(f"{out}/no-face.png", optimize=True)
    face = Image.open(f"{out}/face-a.png")
    # A WebP file with a .jpg name: the format must come from the bytes.
    face.save(f"{out}/webp-named.jpg", format="WEBP", lossless=True)
    # Stored rotated 90 degrees clockwise with EXIF orientation 6 ("rotate 90 CW to display")...
    # i.e. the pixels are stored turned 90 degrees counter-clockwise.
    exif = Image.Exif()
    exif[0x0112] = 6
    face.transpose(Image.ROTATE_90).save(f"{out}/exif-rotated.jpg", quality=92, exif=exif)
    face.save(f"{out}/face-a.jpg", quality=92)
    jpg = open(f"{out}/face-a.jpg", "rb").read()
    open(f"{out}/truncated.jpg", "wb").write(jpg[: len(jpg) // 3])
    open(f"{out}/empty.jpg", "wb").write(b"")
    open(f"{out}/huge.png", "wb").write(huge_png(60000, 60000))
    open(f"{out}/not-an-image.jpg", "wb").write(b"%PDF-1.4 this is not an image\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
