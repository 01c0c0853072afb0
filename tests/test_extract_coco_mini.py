"""Real photos: EfficientNet-Lite0's ImageNet predictions agree with the COCO labels, and its features carry
label signal in the coco_mini dataset built by ``cmh extract coco-mini``.

One extraction of the 159 photos (module fixture) serves every test here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


def _r(a: int, b: int) -> list[int]:
    return list(range(a, b + 1))


#: COCO category -> ImageNet-1k class indices that depict it.
#: Source: the standard ILSVRC-2012 class index (classes sorted by WordNet id; e.g. the list in the pytorch/hub
#: repository, imagenet_classes.txt, or Keras' imagenet_class_index.json). Reasoning per entry: 151-268 are
#: the dog breeds (Chihuahua .. Mexican hairless); 281-285 the domestic cats (tabby .. Egyptian cat); 7-24,
#: 80-100 and 127-146 the birds; 294-297 the bears; 339 sorrel (horse), 603 horse cart; 345-347 ox, water
#: buffalo, bison; 348-349 ram, bighorn; 101 tusker, 385-386 elephants; 340 zebra; vehicles by name (e.g.
#: 436 beach wagon, 468 cab, 511 convertible, 609 jeep, 656 minivan, 717 pickup, 817 sports car, 479 car
#: wheel, 581 grille; 779 school bus, 874 trolleybus, 654 minibus; 466 bullet train, 547 electric
#: locomotive, 565 freight car, 705 passenger car, 820 steam locomotive, 829 streetcar; 555 fire engine, 569
#: garbage truck, 675 moving van, 864 tow truck, 867 trailer truck); boats (canoe, catamaran, container ship,
#: fireboat, gondola, lifeboat, liner, paddle, pirate, schooner, speedboat, submarine, trimaran, yawl);
#: household objects whose ImageNet class is the same object (920 traffic light, 704 parking meter, 703 park
#: bench, 919 street sign, 879 umbrella, 414 backpack, 457/906 bow tie/Windsor tie, 795 ski, balls, 752
#: racket, bottles 440/720/737/898/901/907, glasses 441/572/966, cups 504/967/968, bowls 659/809, fruit and
#: dishes 954/950/937/963/934/948, chairs 423/559/765/857, 831 studio couch, 520/564 crib/four-poster, 532
#: dining table, 861 toilet seat, 664/782/851 monitor/screen/television, 620/681 laptop/notebook, 673 mouse,
#: 761 remote control, 508/878 keyboards, 487 cellular telephone, 651 microwave, 827 stove (oven), 859
#: toaster, 896 washbasin (sink), 760 refrigerator, 453/454/921 bookcase/bookshop/book jacket, 409/530/892
#: clocks, 883 vase, 850 teddy, 738 pot (flowerpot; potted plant), 589 hand blower (hair drier)).
#: COCO categories with no ImageNet counterpart (person, giraffe, surfboard, ...) are left out.
COCO_TO_IMAGENET: dict[str, list[int]] = {
    "bird": _r(7, 24) + _r(80, 100) + _r(127, 146),
    "cat": _r(281, 285),
    "dog": _r(151, 268),
    "horse": [339, 603],
    "sheep": [348, 349],
    "cow": [345, 346, 347],
    "elephant": [101, 385, 386],
    "bear": _r(294, 297),
    "zebra": [340],
    "airplane": [404, 895, 908],
    "bicycle": [444, 671, 870],
    "motorcycle": [665, 670],
    "car": [407, 436, 468, 475, 479, 511, 581, 609, 627, 656, 661, 717, 751, 817],
    "bus": [654, 779, 874],
    "train": [466, 547, 565, 705, 820, 829],
    "truck": [555, 569, 675, 717, 864, 867],
    "boat": [472, 484, 510, 554, 576, 625, 628, 693, 724, 780, 814, 833, 871, 914],
    "traffic light": [920],
    "parking meter": [704],
    "bench": [703],
    "stop sign": [919],
    "umbrella": [879],
    "backpack": [414],
    "tie": [457, 906],
    "skis": [795],
    "sports ball": [429, 430, 522, 574, 722, 768, 805, 852, 890],
    "tennis racket": [752],
    "bottle": [440, 720, 737, 898, 901, 907],
    "wine glass": [441, 572, 966],
    "cup": [504, 967, 968],
    "bowl": [659, 809],
    "banana": [954],
    "orange": [950],
    "broccoli": [937],
    "pizza": [963],
    "hot dog": [934],
    "apple": [948],
    "chair": [423, 559, 765, 857],
    "couch": [831],
    "bed": [520, 564],
    "dining table": [532],
    "toilet": [861],
    "tv": [664, 782, 851],
    "laptop": [620, 681],
    "mouse": [673],
    "remote": [761],
    "keyboard": [508, 878],
    "cell phone": [487],
    "microwave": [651],
    "oven": [827],
    "toaster": [859],
    "sink": [896],
    "refrigerator": [760],
    "book": [453, 454, 921],
    "clock": [409, 530, 892],
    "vase": [883],
    "teddy bear": [850],
    "potted plant": [738],
    "hair drier": [589],
}


@pytest.fixture(scope="module")
def coco_mini(shared_data, tmp_path_factory):
    """Build the dataset once: (dataset npz dict, annotation records, class names, out folder)."""
    from cmh.extract.coco_mini import build_coco_mini, read_annotations

    root = shared_data / "coco_mini"
    out = tmp_path_factory.mktemp("coco_mini") / "coco_mini.npz"
    build_coco_mini(root, out, progress=False, workers=1)
    records, classes = read_annotations(root)
    with np.load(out) as z:
        data = {k: z[k] for k in z.files}
    return data, records, classes, out


def test_dataset_file_has_the_native_layout(coco_mini):
    from cmh.data.catalog import load_dataset

    data, records, classes, out = coco_mini
    assert set(data) == {"name", "image", "text", "labels", "train", "query", "database"}
    n = len(records)
    assert data["image"].shape == (n, 1280) and data["image"].dtype == np.float32
    assert data["text"].shape[0] == n and data["text"].dtype == np.float32 and data["text"].sum(1).min() > 0
    assert data["labels"].shape == (n, len(classes)) and data["labels"].dtype == np.uint8
    assert len(data["query"]) == 30 and np.intersect1d(data["query"], data["database"]).size == 0
    np.testing.assert_array_equal(data["train"], data["database"])
    ds = load_dataset(path=out)
    spec = load_dataset("coco_mini", out.parent)  # the YAML spec written beside it
    assert ds.content_hash() == spec.content_hash()
    assert spec.image_paths is not None and spec.image_paths[0].endswith(records[0]["image"])


def test_imagenet_top5_agrees_with_coco_labels(coco_mini):
    """The pretrained classifier on the extracted features names an object of the photo far above chance."""
    from cmh.extract import build_backbone

    data, records, classes, _ = coco_mini
    net = build_backbone("efficientnet-lite0").net
    with torch.inference_mode():
        top5 = net._fc(torch.from_numpy(data["image"])).topk(5).indices.numpy()  # (n, 5)
    labels = data["labels"].astype(bool)
    mapped = np.array([classes.index(c) for c in COCO_TO_IMAGENET])
    predicted = np.zeros_like(labels)
    for name, ids in COCO_TO_IMAGENET.items():
        predicted[:, classes.index(name)] = np.isin(top5, ids).any(axis=1)
    eligible = labels[:, mapped].any(axis=1)  # photos with at least one mappable label
    hit_rate = (predicted & labels).any(axis=1)[eligible].mean()
    # Chance: the same predictions against the labels of other photos (random permutations).
    rng = np.random.default_rng(0)
    chance = []
    for _ in range(100):
        perm_labels = labels[rng.permutation(len(labels))]
        ok = perm_labels[:, mapped].any(axis=1)
        chance.append((predicted & perm_labels).any(axis=1)[ok].mean())
    print(f"top-5 agreement {hit_rate:.3f} on {eligible.sum()} photos; chance {np.mean(chance):.3f}")
    assert eligible.sum() > 100
    assert hit_rate > 0.5 and hit_rate > 4 * np.mean(chance)
    # Dogs: a dog breed in the top 5 far more often for photos labelled dog than for the others.
    dog = labels[:, classes.index("dog")]
    dog_pred = np.isin(top5, COCO_TO_IMAGENET["dog"]).any(axis=1)
    assert dog_pred[dog].mean() >= 0.3 and dog_pred[dog].mean() > 4 * dog_pred[~dog].mean()


def test_image_neighbours_share_labels(coco_mini):
    """Nearest neighbours by cosine similarity of image features share a label far more often than random pairs."""
    data, _, classes, _ = coco_mini
    labels = data["labels"].astype(np.float64)
    labels[:, classes.index("person")] = 0  # the most common label would make any pair look related
    keep = labels.sum(1) > 0
    x, lab = data["image"][keep].astype(np.float64), labels[keep]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    share_nn = ((lab * lab[sim.argmax(1)]).sum(1) > 0).mean()
    related = (lab @ lab.T) > 0
    np.fill_diagonal(related, False)
    share_random = related.sum() / (len(lab) * (len(lab) - 1))
    print(f"nearest neighbour shares a non-person label: {share_nn:.3f}; random pair: {share_random:.3f}")
    assert share_nn > 0.4 and share_nn > 3 * share_random


def test_build_json_describes_the_run(coco_mini):
    _, records, _, out = coco_mini
    info = json.loads(out.with_name("coco_mini.json").read_text())
    assert info["n"] == len(records) and info["image"]["backbone"] == "efficientnet-lite0"
    assert info["rows"] == [r["image"] for r in records]
    vocab = out.with_name("coco_mini.text.npz.vocab.txt").read_text().split()
    assert len(vocab) == info["text"]["vocab_size"] and "dog" in vocab and "the" not in vocab
