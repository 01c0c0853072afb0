"""cmh search: a saved coco_mini model answers captions and photos; bad inputs are one-line errors (exit 2).

The small coco_mini of conftest.py (28 real photos, 6 queries, real EfficientNet-Lite0 features) is the data.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cmh.cli import main
from cmh.errors import CMHError
from cmh.search import rank_hamming


@pytest.fixture(scope="module")
def mini(coco_mini_small):
    return coco_mini_small


@pytest.fixture(scope="module")
def model(mini, tmp_path_factory):
    out, _, _ = mini
    path = tmp_path_factory.mktemp("model") / "cvh.pt"
    assert (
        main(
            [
                "run",
                "cvh",
                "--dataset",
                "coco_mini",
                "--data",
                str(out),
                "--no-save",
                "--save-model",
                str(path),
            ]
        )
        == 0
    )
    return path


def _search(capsys, *args):
    code = main(["search", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _ranked(table: str) -> list[tuple[int, int, int]]:
    """(rank, distance, id) of every result row of a printed table (wrapped continuation lines skipped)."""
    cells = [line.split("│")[1:4] for line in table.splitlines() if line.startswith("│")]
    return [(int(r[0]), int(r[1]), int(r[2])) for r in cells if r[0].strip()]


def test_rank_follows_the_harness_ties_by_index():
    db = np.array([[1, 1, 1, 1], [-1, 1, 1, 1], [1, -1, 1, 1], [1, 1, 1, 1], [-1, -1, -1, -1]], np.int8)
    order, dist = rank_hamming(np.array([1, 1, 1, 1]), db, 5)
    assert order.tolist() == [0, 3, 1, 2, 4] and dist.tolist() == [0, 0, 1, 1, 4]
    with pytest.raises(CMHError, match="bits"):
        rank_hamming(np.ones(3), db, 2)


def test_text_search_ranks_like_the_harness(mini, model, capsys):
    from cmh.data.catalog import load_dataset
    from cmh.extract.query import pipeline_of, text_query
    from cmh.models import load_model

    out, _, _ = mini
    saved = load_model(model)
    assert saved.pipeline["image"]["backbone"] == "efficientnet-lite0"
    ds = load_dataset("coco_mini", out)
    assert saved.pipeline == pipeline_of(ds)
    code, text, err = _search(capsys, "--model", model, "--text", "a man on a beach", "--top", "5")
    assert code == 0, err
    # the same top 5 computed by hand: query code from the vocabulary, database image codes, stable sort
    q = saved.method.encode_text(text_query("a man on a beach", saved.pipeline))[0].astype(int)
    db = saved.method.encode_image(ds.part("database").image).astype(int)
    dist = (saved.method.bits - db @ q) // 2
    top = np.argsort(dist, kind="stable")[:5]
    got = _ranked(text)
    assert got == [(i + 1, int(dist[t]), int(ds.split.database[t])) for i, t in enumerate(top)]


def test_image_search_finds_the_photo_own_caption(mini, model, capsys, tmp_path):
    from cmh.baselines._common import centred_project
    from cmh.data.catalog import load_dataset
    from cmh.extract.query import image_query
    from cmh.models import load_model
    from cmh.search import database_from_dataset, image_query_codes, search

    out, root, rows = mini
    ds = load_dataset("coco_mini", out)
    saved = load_model(model)
    row = int(ds.split.database[0])
    photo = ds.image_paths[row]
    q = image_query_codes(saved, photo)
    # the photo's features made now equal the extracted ones to float32 round-off (bit for bit only where the CPU
    # picks the same kernels for one photo as for a batch), so its code is its database image code in every bit
    # whose projection is farther from 0 than that round-off can move it (|Δ(x·w_k)| <= ‖Δx‖·‖w_k‖). CVH fitted on
    # 22 photos has bits in the null space of the training features, whose projections of a training photo are
    # ~1e-5, inside the bound: those may flip
    feats = image_query(photo, saved.pipeline).astype(np.float64)[0]
    extracted = ds.image[row].astype(np.float64)
    np.testing.assert_allclose(feats, extracted, rtol=0, atol=1e-5 * np.abs(extracted).max())
    m = saved.method
    proj = centred_project(extracted[None], m.w_image, m.mean_image)[0]
    bound = (np.linalg.norm(feats - extracted) + 1e-6 * np.linalg.norm(extracted)) * np.linalg.norm(
        m.w_image, axis=0
    )
    sure = np.abs(proj) > bound
    assert sure.sum() >= 16, "most bits must be clear of round-off"
    np.testing.assert_array_equal(q[sure], m.encode_image(ds.image[row : row + 1])[0][sure])
    db = database_from_dataset(saved, ds, "text")
    hits = search(db, q, k=len(db.codes))
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    caption = next(r["captions"][0] for r in rows if photo.endswith(r["image"]))
    assert db.texts[0] == caption.strip()
    code, text, err = _search(
        capsys,
        "--model",
        model,
        "--image",
        photo,
        "--top",
        "3",
        "--show",
        tmp_path / "q.png",
        "--query-labels",
        "person",
    )
    assert code == 0, err
    assert "caption" in text and "relevant" in text
    from PIL import Image

    with Image.open(tmp_path / "q.png") as im:
        assert im.size[0] > 400 and im.size[1] > 100


def test_show_draws_photos_with_frames(model, capsys, tmp_path):
    code, _, err = _search(
        capsys, "--model", model, "--text", "a man on a beach", "--top", "4", "--show", tmp_path / "t.png"
    )
    assert code == 0, err
    from PIL import Image

    with Image.open(tmp_path / "t.png") as im:
        arr = np.asarray(im.convert("RGB"))
    assert arr.std() > 20  # photos, not an empty canvas


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "a purple zebrafish"], "not in the model's"),
        (["--text", "the of and a"], "has no word of the model's vocabulary"),
        (["--text", "zebrafish", "--drop-unknown"], "has no word of the model's vocabulary"),
        (["--text", "a man", "--top", "0"], "--top must be positive"),
        (["--text", "a man", "--query-labels", "unicorn"], "unknown label 'unicorn'"),
    ],
)
def test_bad_text_queries_are_one_line_errors(model, capsys, args, message):
    code, out, err = _search(capsys, "--model", model, *args)
    assert code == 2 and message in err and err.strip().count("\n") == 0 and "Traceback" not in err


def test_unreadable_image_is_an_error(model, capsys, tmp_path):
    (tmp_path / "fake.jpg").write_text("not a photo")
    code, _, err = _search(capsys, "--model", model, "--image", tmp_path / "fake.jpg")
    assert code == 2 and "cannot read image" in err and err.strip().count("\n") == 0
    code, _, err = _search(capsys, "--model", model, "--image", tmp_path / "none.jpg")
    assert code == 2 and "not found" in err


def test_pipeline_mismatch_is_an_error(mini, model, capsys, tmp_path):
    from cmh.extract.text import load_text_features, save_text_features

    out, _, _ = mini
    other = tmp_path / "other"
    shutil.copytree(out, other)
    feats = load_text_features(other / "coco_mini.text.npz")
    feats.vocabulary[0], feats.vocabulary[1] = feats.vocabulary[1], feats.vocabulary[0]
    save_text_features(feats, other / "coco_mini.text.npz")
    code, _, err = _search(
        capsys, "--model", model, "--text", "a man", "--dataset", "coco_mini", "--data", other
    )
    assert code == 2 and "feature pipeline differs" in err and "text.vocab_sha256" in err
    code, _, err = _search(capsys, "--model", model, "--text", "a man", "--dataset", "synthetic")
    assert code == 2 and "the model records a pipeline but the database 'synthetic' has none" in err


def test_model_without_pipeline_cannot_take_text(capsys, tmp_path):
    assert main(["run", "cvh", "--bits", "16", "--no-save", "--save-model", str(tmp_path / "s.pt")]) == 0
    capsys.readouterr()
    code, _, err = _search(capsys, "--model", tmp_path / "s.pt", "--text", "a man")
    assert code == 2 and "not made by `cmh extract`" in err


def test_search_over_shards(mini, model, capsys, tmp_path):
    from cmh.data.catalog import load_dataset

    out, _, _ = mini
    ds = load_dataset("coco_mini", out)
    np.save(tmp_path / "img.npy", ds.part("database").image)
    assert (
        main(
            [
                "encode",
                "--model",
                str(model),
                "--features",
                str(tmp_path / "img.npy"),
                "--out",
                str(tmp_path / "s"),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    code, shard_out, err = _search(
        capsys,
        "--model",
        model,
        "--text",
        "a man on a beach",
        "--codes-dir",
        tmp_path / "s",
        "--top",
        "5",
    )
    assert code == 0, err
    code, ds_out, _ = _search(capsys, "--model", model, "--text", "a man on a beach", "--top", "5")
    # shard ids are positions in the encoded database; the dataset's are its row numbers
    shard_rows = [(r, d, int(ds.split.database[i])) for r, d, i in _ranked(shard_out)]
    assert shard_rows == _ranked(ds_out) and len(shard_rows) == 5
    code, _, err = _search(
        capsys, "--model", model, "--image", ds.image_paths[0], "--codes-dir", tmp_path / "s"
    )
    assert code == 2 and "holds image codes but this query searches text codes" in err
