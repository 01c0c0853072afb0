"""Leaderboard retrieval galleries (cmh/gallery.py): seeded queries, best seeds, harness ranking, deterministic
pictures, and --check without the photos."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from cmh.cli import main
from cmh.errors import CMHError
from cmh.gallery import BITS, best_seeds, build_gallery, pick_queries, rankings
from cmh.leaderboard import check_leaderboard, generate, write_leaderboard

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def built(coco_mini_small, tmp_path_factory):
    """A results folder with cvh (seeds 0, 1) and cmfh (seeds 0, 1) at 32 bits on the small coco_mini, and its
    gallery.yaml."""
    from cmh.data.catalog import load_dataset

    out, _, _ = coco_mini_small
    results = tmp_path_factory.mktemp("results")
    for m in ("cvh", "cmfh"):
        args = ["run", m, "--dataset", "coco_mini", "--data", str(out), "--bits", str(BITS), "--seeds", "0,1"]
        assert main([*args, "--out", str(results), "--device", "cpu"]) == 0
    ds = load_dataset("coco_mini", out)
    path = build_gallery(results, ds)
    return results, ds, path


def test_queries_are_seeded_captions_of_query_items(coco_mini_small):
    from cmh.data.catalog import load_dataset

    out, _, rows = coco_mini_small
    ds = load_dataset("coco_mini", out)
    a, b = pick_queries(ds), pick_queries(ds)
    assert a == b and len(a) == 4
    assert all(q["row"] in set(ds.split.query.tolist()) for q in a)
    captions = {r["image"]: r["captions"] for r in rows}
    for q in a:
        assert q["caption"] in [
            c.strip() for c in captions[f"images/{ds.image_paths[q['row']].split('/')[-1]}"]
        ]
        assert q["labels"] == np.flatnonzero(ds.labels[q["row"]]).tolist()
    assert pick_queries(ds, seed=1) != a


def test_gallery_file_holds_best_seeds_that_reproduce(built):
    from cmh.results import load_records

    results, ds, path = built
    g = yaml.safe_load(path.read_text())
    records, _ = load_records(results)
    best = best_seeds(records, "coco_mini")
    assert set(g["methods"]) == {"cvh", "cmfh"}
    for m, entry in g["methods"].items():
        assert entry["seed"] == best[m]["seed"]
        assert entry["t2i_map"] == pytest.approx(best[m]["tasks"]["t2i"]["map"], abs=1e-6)
        assert entry["reproduced"] is True  # retraining from the record gives the record's mAP
        assert len(entry["database_codes"]) == len(ds.split.database) and len(entry["query_codes"]) == 4


def test_rankings_follow_the_harness(built):
    results, ds, path = built
    from cmh.extract.query import pipeline_of, text_query
    from cmh.registry import create_method

    g = yaml.safe_load(path.read_text())
    ranked = rankings(g)
    assert len(ranked) == 2 * 4 * 8
    # recompute cvh's (deterministic) ranking from scratch: stable sort of Hamming distances
    m = create_method("cvh", bits=BITS, seed=g["methods"]["cvh"]["seed"]).fit(ds.part("train"))
    db = m.encode_image(ds.part("database").image).astype(int)
    for qi, q in enumerate(g["queries"], 1):
        code = m.encode_text(text_query(q["caption"], pipeline_of(ds), drop_unknown=True))[0].astype(int)
        dist = (BITS - db @ code) // 2
        top = np.argsort(dist, kind="stable")[:8]
        got = [(r["position"], r["distance"]) for r in ranked if r["method"] == "cvh" and r["query"] == qi]
        assert got == [(int(t), int(dist[t])) for t in top]
        for r in (r for r in ranked if r["method"] == "cvh" and r["query"] == qi):
            assert r["relevant"] == bool(ds.labels[r["row"]][q["labels"]].any())


def test_leaderboard_page_shows_the_gallery_deterministically(built, tmp_path):
    results, _, _ = built
    files, notes = generate(results, tmp_path / "lb")
    again, _ = generate(results, tmp_path / "lb")
    pngs = sorted(k for k in files if "gallery_q" in k)
    assert pngs == [f"coco_mini/gallery_q{i}.png" for i in range(1, 5)]
    assert all(files[k] == again[k] for k in files)  # byte-identical
    page = files["coco_mini.md"].decode()
    assert "## What it retrieves" in page and "![gallery query 1](coco_mini/gallery_q1.png)" in page
    assert "gallery.csv" in page and "gallery.yaml" in page
    csv_rows = files["coco_mini/gallery.csv"].decode().splitlines()
    assert csv_rows[0].startswith("query,caption,method,seed,rank") and len(csv_rows) == 1 + 2 * 4 * 8
    import io

    from PIL import Image

    with Image.open(io.BytesIO(files[pngs[0]])) as im:
        assert im.size[0] > 800 and np.asarray(im.convert("RGB")).std() > 20


def test_check_without_photos_skips_gallery_pngs(built, tmp_path, monkeypatch):
    import shutil

    results = tmp_path / "results"
    shutil.copytree(built[0], results)
    out = tmp_path / "lb"
    changed, _ = write_leaderboard(results, out)
    assert "coco_mini/gallery_q1.png" in changed
    problems, _ = check_leaderboard(results, out)
    assert problems == []
    monkeypatch.setenv("CMH_DATA", str(tmp_path / "elsewhere"))
    problems, notes = check_leaderboard(results, out)
    assert problems == [] and any("gallery PNGs not drawn" in n for n in notes)
    with pytest.raises(CMHError, match="set CMH_DATA"):
        write_leaderboard(results, out)
    assert (out / "coco_mini" / "gallery_q1.png").is_file()
    # a changed ranking is caught through the CSV even without photos
    g = yaml.safe_load((results / "coco_mini" / "gallery.yaml").read_text())
    g["methods"]["cvh"]["query_codes"] = g["methods"]["cvh"]["query_codes"][::-1]
    (results / "coco_mini" / "gallery.yaml").write_text(yaml.safe_dump(g, sort_keys=False))
    problems, _ = check_leaderboard(results, out)
    assert any("gallery.csv" in p for p in problems)
