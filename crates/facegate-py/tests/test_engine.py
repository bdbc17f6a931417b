"""The package against the `facegate` command on the same photos: same decisions, scores,
descriptors, batch rows and evaluation report; bad input raises the documented exceptions and
leaves the engine working."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

import facegate
from conftest import BATCH_ROWS, DATA, cli_batch, cli_json_lines, run_cli, same_rows

# face-a.png and exif-rotated.jpg are one photo of one person (the JPEG turned by EXIF);
# face-a/-c and face-e/-b are different people.
PAIRS = [("face-a.png", "exif-rotated.jpg"), ("face-a.png", "face-c.png"), ("face-e.png", "face-b.png")]
PNG_PAIRS = [p for p in PAIRS if all(n.endswith(".png") for n in p)]


def pixels(name: str) -> np.ndarray:
    """A PNG's RGB pixels, decoded by Pillow (lossless: the same pixels the engine decodes)."""
    with Image.open(DATA / name) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("probe,reference", PAIRS)
def test_verify_gives_the_commands_decision_and_score_for_paths_and_bytes(engine, probe, reference):
    want = json.loads(run_cli("verify", "--json", "--device", "cpu", DATA / probe, DATA / reference))
    for got in (
        engine.verify(DATA / probe, DATA / reference),
        engine.verify(str(DATA / probe), str(DATA / reference)),
        engine.verify((DATA / probe).read_bytes(), (DATA / reference).read_bytes()),
    ):
        assert got.decision == want["decision"]
        assert abs(got.score - want["score"]) <= 1e-6
        assert got.threshold == want["threshold"]
        assert got.model == want["model"]
        assert got.to_dict()["probe_face"] == want["probe_face"]


@pytest.mark.parametrize("probe,reference", PNG_PAIRS)
def test_verify_of_numpy_pixels_matches_the_command_on_the_png(engine, probe, reference):
    want = json.loads(run_cli("verify", "--json", "--device", "cpu", DATA / probe, DATA / reference))
    got = engine.verify(pixels(probe), pixels(reference))
    assert got.decision == want["decision"]
    assert abs(got.score - want["score"]) <= 1e-6
    # A view that is not C-contiguous (every other column, flipped twice) is the same photo.
    flipped = pixels(probe)[:, ::-1][:, ::-1]
    assert abs(engine.verify(flipped, pixels(reference)).score - want["score"]) <= 1e-6


def test_the_same_face_matches_and_different_people_do_not(engine):
    assert engine.verify(DATA / "face-a.png", DATA / "exif-rotated.jpg").decision == "match"
    assert engine.verify(DATA / "face-a.png", DATA / "face-c.png").decision == "no_match"


def test_info_names_the_models_with_their_sha256(engine):
    info = engine.info
    assert info["model"] == engine.verify(DATA / "face-a.png", DATA / "face-c.png").model
    assert info["device"].startswith("cpu")
    assert all(len(m["sha256"]) == 64 for m in info["models"]), info["models"]
    assert {m["task"] for m in info["models"]} == {"detector", "embedder"}
    assert -1.0 <= info["threshold"] <= 1.0


def test_embed_matches_the_command(engine):
    names = ["face-a.png", "no-face.png", "face-c.png", "cards/card-a-ghost.jpg"]
    want = cli_json_lines("embed", "--json", "--device", "cpu", *(DATA / n for n in names))
    got = engine.embed([DATA / n for n in names])
    assert got.descriptors.dtype == np.float32
    assert got.descriptors.shape == (len(names), engine.info["embedding_dim"])
    for i, w in enumerate(want):
        if w["descriptor"] is None:
            assert np.isnan(got.descriptors[i]).all()
            assert got.refusals[i].code == w["error"]["code"] == "no_face"
            assert got.faces[i] is None
        else:
            assert got.refusals[i] is None
            assert np.abs(got.descriptors[i] - np.array(w["descriptor"], dtype=np.float32)).max() <= 1e-6
            assert got.faces[i]["face"] == w["face"]
            assert got.faces[i]["landmarks"] == w["landmarks"]
            assert got.faces[i]["rotation"] == w["rotation"]


def test_detect_finds_every_face_with_five_landmarks(engine):
    faces = engine.detect(DATA / "group-3.png")
    want = cli_json_lines("detect", "--device", "cpu", DATA / "group-3.png")[0]["faces"]
    assert len(faces) == len(want) == 3
    for f, w in zip(faces, want):
        # The same f32s (the command widens them to f64 before printing).
        got = np.float32([f.box.x, f.box.y, f.box.width, f.box.height, f.box.score])
        assert (got == np.float32([w["x"], w["y"], w["width"], w["height"], w["score"]])).all()
        assert len(f.landmarks) == 5
        # Eyes above the mouth (on average: a tilted head puts one eye below a mouth corner),
        # inside the box.
        (lx, ly), (rx, ry), _, (mlx, mly), (mrx, mry) = f.landmarks
        assert f.box.x <= lx < rx <= f.box.x + f.box.width
        assert (ly + ry) / 2 < (mly + mry) / 2
    assert engine.detect(DATA / "no-face.png") == []


def test_align_gives_the_networks_chip_with_the_eyes_on_the_template(engine):
    chip = engine.align(DATA / "face-a.png")
    assert chip.dtype == np.uint8 and chip.shape == (112, 112, 3)
    # The chip is the embedder's input: embedding it as a photo of its own finds the face
    # where ArcFace's template puts it (eyes at y≈51.6 of 112, centred).
    faces = engine.detect(chip)
    assert len(faces) == 1
    (lx, ly), (rx, ry) = faces[0].landmarks[:2]
    assert abs(ly - 51.6) < 6 and abs(ry - 51.6) < 6, faces[0].landmarks
    assert abs((lx + rx) / 2 - 56) < 6, faces[0].landmarks
    # The card's main portrait, as a reference.
    assert engine.align(DATA / "cards" / "card-a-ghost.jpg", role="reference").shape == (112, 112, 3)


# --- batches ------------------------------------------------------------------------------


def test_verify_batch_gives_the_rows_of_facegate_batch(engine, tmp_path):
    paths = pa.table(
        {
            "id": [r[0] for r in BATCH_ROWS],
            "probe": [r[1] for r in BATCH_ROWS],
            "reference": [r[2] for r in BATCH_ROWS],
        }
    )
    want = cli_batch(paths, tmp_path)
    decisions = dict(zip(want["id"].to_pylist(), want["decision"].to_pylist()))
    assert decisions["same"] == "match" and decisions["other"] == "no_match"
    assert decisions["missing"] == decisions["outside"] == "error"
    same_rows(engine.verify_batch(paths, images_root=DATA), want)

    # Image bytes instead of paths (the rows whose files exist), as a RecordBatch.
    readable = [r for r in BATCH_ROWS if (DATA / r[2]).is_file() and r[0] != "outside"]
    blobs = pa.record_batch(
        {
            "key": [r[0] for r in readable],
            "selfie": pa.array([(DATA / r[1]).read_bytes() for r in readable], pa.binary()),
            "card": pa.array([(DATA / r[2]).read_bytes() for r in readable], pa.large_binary()),
        }
    )
    got = engine.verify_batch(blobs, probe="selfie", reference="card", id="key")
    keep = pa.array([i in {r[0] for r in readable} for i in want["id"].to_pylist()])
    same_rows(got, want.filter(keep))


def test_verify_batch_takes_polars_and_pandas_frames(engine, tmp_path):
    pl = pytest.importorskip("polars")
    pd = pytest.importorskip("pandas")
    rows = BATCH_ROWS[:4]
    frame = {"id": [r[0] for r in rows], "probe": [r[1] for r in rows], "reference": [r[2] for r in rows]}
    want = cli_batch(pa.table(frame), tmp_path)
    # Polars hands strings over as views, through __arrow_c_stream__.
    same_rows(engine.verify_batch(pl.DataFrame(frame), images_root=DATA), want)
    same_rows(engine.verify_batch(pd.DataFrame(frame), images_root=DATA), want)


def test_a_table_in_several_chunks_keeps_its_order(engine):
    rows = BATCH_ROWS[:2] * 3
    ids = [f"{r[0]}-{i}" for i, r in enumerate(rows)]
    table = pa.concat_tables(
        [
            pa.table({"id": ids[i : i + 2], "probe": [r[1] for r in rows[i : i + 2]], "reference": [r[2] for r in rows[i : i + 2]]})
            for i in range(0, len(rows), 2)
        ]
    )
    assert table["id"].num_chunks == 3
    got = engine.verify_batch(table, images_root=DATA)
    assert got["id"].to_pylist() == ids
    assert got["decision"].to_pylist() == ["match", "no_match"] * 3


# --- evaluate -----------------------------------------------------------------------------


def test_evaluate_gives_the_report_of_facegate_eval(tmp_path):
    probes = ["face-a.png", "face-b.png", "face-d.png", "face-e.png"]
    cards = ["cards/card-a-ghost.jpg", "cards/card-a-halftone.jpg", "cards/card-a-rot90.jpg"]
    tsv = "probe\treference\tsame\n" + "".join(
        f"{DATA / p}\t{DATA / c}\t{int(p == 'face-a.png')}\n" for p, c in zip(probes, cards * 2)
    )
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(tsv)
    want = json.loads(
        run_cli("eval", "--pairs", pairs, "--device", "cpu", "--json", "--all-pairs", "--target-fmr", "1e-1,1e-2")
    )
    got = facegate.evaluate(pairs, target_fmr=(1e-1, 1e-2), device="cpu", all_pairs=True)
    for report in (got, want):
        report["context"].pop("seconds")
    assert got == want
    assert got["images"] == 7 and got["failed_images"] == want["failed_images"]
    assert [p["name"] for p in got["operating_points"]] == ["fmr_1e-1", "fmr_1e-2"]


def test_evaluate_refuses_a_list_whose_photos_are_not_there(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("probe\treference\tsame\nnope-1.png\tnope-2.png\t1\n")
    with pytest.raises(facegate.InputError) as e:
        facegate.evaluate(pairs, device="cpu")
    assert "none of the 2 photos" in e.value.message


# --- bad input ----------------------------------------------------------------------------


def still_works(engine) -> None:
    assert engine.verify(DATA / "face-a.png", DATA / "exif-rotated.jpg").decision == "match"


@pytest.mark.parametrize(
    "photo,code",
    [
        (b"", "empty_image"),
        (b"GIF89a not really", "unsupported_format"),
        ((DATA / "truncated.jpg").read_bytes(), "corrupt_image"),
        ((DATA / "not-an-image.jpg").read_bytes(), "unsupported_format"),
        # 60,000 × 60,000 in 69 bytes: refused from its header, never decoded.
        ((DATA / "huge.png").read_bytes(), "image_too_large"),
    ],
)
def test_a_file_that_is_not_a_usable_image_raises_image_rejected(engine, photo, code):
    with pytest.raises(facegate.ImageRejected) as e:
        engine.verify(DATA / "face-a.png", photo)
    assert e.value.code == code
    assert e.value.role == "reference"
    assert isinstance(e.value, facegate.FacegateError) and isinstance(e.value, ValueError)
    with pytest.raises(facegate.ImageRejected) as e:
        engine.detect(photo)
    assert e.value.code == code
    still_works(engine)


def test_a_photo_without_a_face_is_a_rejected_verification_and_an_align_error(engine):
    v = engine.verify(DATA / "no-face.png", DATA / "face-a.png")
    assert v.decision == "rejected" and v.score is None
    assert [(r.role, r.code) for r in v.reasons] == [("probe", "no_face")]
    with pytest.raises(facegate.ImageRejected) as e:
        engine.align(DATA / "no-face.png")
    assert e.value.code == "no_face"
    with pytest.raises(facegate.ImageRejected) as e:
        engine.align(DATA / "group-3.png")
    assert e.value.code == "multiple_faces"
    still_works(engine)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((64, 64, 3), dtype=np.float32),
        np.zeros((64, 64), dtype=np.uint8),
        np.zeros((64, 64, 4), dtype=np.uint8),
        np.zeros((0, 64, 3), dtype=np.uint8),
    ],
)
def test_an_array_of_the_wrong_dtype_or_shape_raises_bad_array(engine, array):
    with pytest.raises(facegate.ImageRejected) as e:
        engine.verify(array, DATA / "face-a.png")
    assert e.value.code == "bad_array"
    still_works(engine)


def test_an_array_larger_than_the_pixel_limit_is_refused_before_it_is_encoded():
    small = facegate.Engine(device="cpu", config={"max_pixels": 100 * 100})
    with pytest.raises(facegate.ImageRejected) as e:
        small.verify(np.zeros((101, 100, 3), dtype=np.uint8), DATA / "face-a.png")
    assert e.value.code == "image_too_large" and e.value.role == "probe"


def test_a_missing_file_raises_file_not_found(engine):
    with pytest.raises(FileNotFoundError):
        engine.verify(DATA / "missing.png", DATA / "face-a.png")
    still_works(engine)


def test_wrong_columns_raise_input_error(engine):
    ints = pa.table({"id": ["x"], "probe": [1], "reference": [2]})
    with pytest.raises(facegate.InputError) as e:
        engine.verify_batch(ints)
    assert "must be binary" in e.value.message
    with pytest.raises(facegate.InputError) as e:
        engine.verify_batch(pa.table({"id": ["x"], "probe": [b"a"]}))
    assert "no `reference` column" in e.value.message
    paths = pa.table({"id": ["x"], "probe": ["face-a.png"], "reference": ["face-c.png"]})
    with pytest.raises(facegate.InputError) as e:
        engine.verify_batch(paths)
    assert "images_root" in e.value.message
    with pytest.raises(facegate.InputError):
        engine.verify_batch([1, 2, 3])
    still_works(engine)


def test_bad_configuration_and_models_raise_their_errors():
    with pytest.raises(facegate.ConfigError):
        facegate.Engine(device="tpu")
    with pytest.raises(facegate.ConfigError):
        facegate.Engine(device="cpu", config={"threshold": 3.0})
    with pytest.raises(facegate.ConfigError):
        facegate.Engine(device="cpu", config={"no_such_key": 1})
    with pytest.raises(facegate.ModelError):
        facegate.Engine(device="cpu", model="no-such-model")


def test_descriptors_leave_only_through_embed(engine):
    v = engine.verify(DATA / "face-a.png", DATA / "face-c.png")
    text = json.dumps(v.to_dict())
    assert "descriptor" not in text
    assert all(not isinstance(x, list) or len(x) < 64 for x in v.to_dict().values())
    assert not math.isnan(v.score)
