"""Feature extraction: image decoding, the resumable pipeline, the three backbones' weight loading, BoW text."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from PIL import Image

from cmh.errors import CMHError, DataError
from cmh.extract import build_backbone, extract_images, list_images, load_features
from cmh.extract.cnnf import read_vgg_f_mat
from cmh.extract.efficientnet_lite import SameConv2d
from cmh.extract.images import ImageTransform, load_image, to_rgb
from cmh.extract.text import bag_of_words, extract_text, load_text_features
from cmh.extract.vgg import conv_indices

# ----------------------------------------------------------------------------------------------- images


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture()
def image_dir(tmp_path):
    """Eight small images of mixed modes and sizes, one corrupt file, one truncated JPEG, one non-image."""
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(_rgb(300, 200, 0)).save(d / "a_rgb.jpg", quality=90)
    Image.fromarray(_rgb(64, 96, 1)).convert("L").save(d / "b_gray.png")
    Image.fromarray(_rgb(80, 80, 2)).convert("CMYK").save(d / "c_cmyk.jpg")
    Image.fromarray(np.dstack([_rgb(50, 70, 3), np.full((50, 70), 128, np.uint8)]), "RGBA").save(
        d / "d_rgba.png"
    )
    Image.fromarray(_rgb(40, 60, 4)).convert("P").save(d / "sub" / "e_palette.gif")
    Image.fromarray(_rgb(700, 500, 5)).save(d / "sub" / "f_big.JPG", quality=85)
    (d / "g_corrupt.jpg").write_bytes(b"this is not an image at all")
    full = d / "h_full.jpg"
    Image.fromarray(_rgb(120, 160, 6)).save(full, quality=90)
    (d / "i_truncated.jpg").write_bytes(full.read_bytes()[:400])
    (d / "notes.txt").write_text("not an image")
    return d


def test_list_images_folder_and_list_file(image_dir, tmp_path):
    root, names = list_images(image_dir)
    assert root == image_dir
    assert names == sorted(names) and "notes.txt" not in names and "sub/f_big.JPG" in names
    assert len(names) == 9
    lst = tmp_path / "list.txt"
    lst.write_text("# two images\nimgs/a_rgb.jpg\n\nimgs/sub/e_palette.gif\n")
    root2, names2 = list_images(lst)
    assert root2 == tmp_path and names2 == ["imgs/a_rgb.jpg", "imgs/sub/e_palette.gif"]


def test_empty_folder_and_missing_path_raise(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(CMHError, match="no image files"):
        list_images(tmp_path / "empty")
    with pytest.raises(CMHError, match="does not exist"):
        list_images(tmp_path / "nope")
    with pytest.raises(CMHError, match="no image files"):
        extract_images(tmp_path / "empty", tmp_path / "o.npz", progress=False, workers=0)


def test_transform_modes_sizes_and_alpha(image_dir):
    t = ImageTransform()
    for name in ("a_rgb.jpg", "b_gray.png", "c_cmyk.jpg", "d_rgba.png", "sub/e_palette.gif", "sub/f_big.JPG"):
        x = load_image(image_dir / name, t)
        assert x.shape == (3, 224, 224) and x.dtype == torch.uint8
    # Fully transparent pixels become white, opaque ones keep their colour.
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:5, :, :3] = (10, 20, 30)
    rgba[:5, :, 3] = 255
    out = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    assert (out[5:] == 255).all() and (out[:5] == (10, 20, 30)).all()
    # Gray stays gray; 16-bit is rescaled, not clipped.
    assert np.ptp(np.asarray(to_rgb(Image.fromarray(np.full((4, 4), 77, np.uint8)))), axis=2).max() == 0
    i16 = to_rgb(Image.fromarray(np.full((4, 4), 65535, np.uint16)))
    assert np.asarray(i16).min() == 255
    # Centre crop of a resized image: a left/right split image keeps the split in the middle.
    half = np.zeros((100, 300, 3), np.uint8)
    half[:, 150:] = 255
    x = t(Image.fromarray(half)).numpy()
    assert x[:, :, :100].max() == 0 and x[:, :, 124:].min() == 255


# -------------------------------------------------------------------------------------------- pipeline


@pytest.fixture()
def tiny_cnnf(tmp_path):
    """A CNN-F-shaped network with tiny widths (cheap forward passes for pipeline tests)."""
    path = tmp_path / "tiny-vgg-f.mat"
    _write_cnnf(path, "new")
    return build_backbone("cnn-f", path)


def test_extract_skips_unreadable_and_matches_direct_forward(image_dir, tmp_path, tiny_cnnf, capsys):
    out = tmp_path / "feats.npz"
    r = extract_images(image_dir, out, tiny_cnnf, batch_size=3, workers=0, progress=False)
    assert r.n_images == 9 and r.n_written == 7 and len(r.skipped) == 2
    err = capsys.readouterr().err
    assert "2 of 9 images could not be read" in err and "skipped.txt" in err
    skipped = (tmp_path / "feats.npz.skipped.txt").read_text().splitlines()
    assert sorted(s.split("\t")[0] for s in skipped) == ["g_corrupt.jpg", "i_truncated.jpg"]
    feats, paths, meta = load_features(out)
    assert feats.shape == (7, 12) and feats.dtype == np.float32
    assert "g_corrupt.jpg" not in paths and paths[0] == "a_rgb.jpg"
    assert meta["backbone"] == "cnn-f" and meta["n_skipped"] == 2
    assert not (tmp_path / "feats.npz.partial").exists()
    x = torch.stack([load_image(image_dir / p, tiny_cnnf.transform) for p in paths])
    with torch.inference_mode():
        direct = tiny_cnnf(x).numpy()
    np.testing.assert_allclose(feats, direct, rtol=1e-4, atol=1e-5)


def test_workers_give_the_same_features(image_dir, tmp_path, tiny_cnnf):
    a = extract_images(image_dir, tmp_path / "a.npz", tiny_cnnf, batch_size=4, workers=0, progress=False)
    b = extract_images(image_dir, tmp_path / "b.npz", tiny_cnnf, batch_size=4, workers=2, progress=False)
    assert a.n_written == b.n_written == 7 and len(b.skipped) == 2
    np.testing.assert_array_equal(load_features(a.out)[0], load_features(b.out)[0])


def test_interrupted_run_resumes_from_chunks(image_dir, tmp_path, tiny_cnnf):
    out = tmp_path / "r.npz"
    seen = []

    def stop_after_two(k: int) -> None:
        seen.append(k)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_images(
            image_dir,
            out,
            tiny_cnnf,
            batch_size=2,
            chunk_size=3,
            workers=0,
            progress=False,
            on_chunk=stop_after_two,
        )
    partial = tmp_path / "r.npz.partial"
    assert not out.exists() and len(list(partial.glob("chunk_*.npz"))) == 2
    assert json.loads((partial / "manifest.json").read_text())["backbone"] == "cnn-f"
    # Other settings: refuse to mix, name the difference.
    with pytest.raises(CMHError, match="chunk_size"):
        extract_images(image_dir, out, tiny_cnnf, chunk_size=4, workers=0, progress=False)
    done = []
    r = extract_images(
        image_dir, out, tiny_cnnf, batch_size=2, chunk_size=3, workers=0, progress=False, on_chunk=done.append
    )
    assert r.resumed_chunks == 2 and done == [2]  # only the last of the three chunks was computed
    full = extract_images(image_dir, tmp_path / "full.npz", tiny_cnnf, workers=0, progress=False)
    np.testing.assert_allclose(load_features(out)[0], load_features(full.out)[0], rtol=1e-5, atol=1e-6)
    assert not partial.exists()


def test_weights_errors(tmp_path):
    with pytest.raises(CMHError, match="--weights"):
        build_backbone("cnn-f")
    with pytest.raises(CMHError, match="--weights"):
        build_backbone("vgg19")
    with pytest.raises(CMHError, match="not found"):
        build_backbone("efficientnet-lite0", tmp_path / "missing.pth")
    with pytest.raises(CMHError, match="not found"):
        build_backbone("cnn-f", tmp_path / "imagenet-vgg-f.mat")
    with pytest.raises(CMHError, match="did you mean 'vgg19'"):
        build_backbone("vgg91")
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(CMHError, match="does not match the efficientnet-lite0"):
        build_backbone("efficientnet-lite0", bad)


# ------------------------------------------------------------------------------------- EfficientNet


def test_efficientnet_lite0_package_weights_load_strict():
    b = build_backbone("efficientnet-lite0")  # strict=True inside; would raise on any key/shape mismatch
    assert b.feature_dim == 1280 and b.net._fc.weight.shape == (1000, 1280)
    n_params = sum(p.numel() for p in b.net.parameters())
    assert 4_600_000 < n_params < 4_700_000  # EfficientNet-Lite0: 4.65M parameters
    assert len(b.net._blocks) == 16 and not hasattr(b.net._blocks[0], "_se_reduce")


@pytest.mark.parametrize("size", [224, 225, 15])
def test_same_padding_matches_tensorflow(size):
    conv = SameConv2d(1, 1, 3, stride=2)
    torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, size, size)
    y = conv(x)
    assert y.shape[-1] == -(-size // 2)  # ceil(size / stride)
    # TF SAME puts the extra pad pixel at the end: for even sizes the first output sees no padding.
    pad_total = max((y.shape[-1] - 1) * 2 + 3 - size, 0)
    assert y[0, 0, 0, 0].item() == (9.0 if pad_total // 2 == 0 else 4.0)


# --------------------------------------------------------------------------------------------- CNN-F

TINY_CNNF = (4, 8, 8, 8, 6, 16, 12, 10)  # conv1..conv5, fc6, fc7, fc8 widths


def _cnnf_layers(rng, layout: str, dagnn: bool = False, conv1=(11, 4)):
    kernels = (conv1[0], 5, 3, 3, 3, 6, 1, 1)
    strides = (conv1[1], 1, 1, 1, 1, 1, 1, 1)
    pads = (0, 2, 1, 1, 1, 0, 0, 0)
    c_in = 3
    params = []
    for k, c_out in zip(kernels, TINY_CNNF, strict=True):
        params.append(
            (
                rng.standard_normal((k, k, c_in, c_out)).astype(np.float32) * 0.1,
                rng.standard_normal((1, c_out)).astype(np.float32) * 0.1,
            )
        )
        c_in = c_out
    names = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
    lrn_type = "normalize" if layout == "old" else "lrn"
    seq = []
    for i, (f, b) in enumerate(params):
        w = np.empty((1, 2), dtype=object)
        w[0, 0], w[0, 1] = f, b
        seq.append(
            {
                "name": names[i],
                "type": "conv",
                "weights": w,
                "stride": np.array([[strides[i]] * 2], float),
                "pad": np.array([[pads[i]] * 4], float),
            }
        )
        if i < 7:
            seq.append({"name": f"relu{i + 1}", "type": "relu"})
        if i in (0, 1):
            seq.append({"name": f"norm{i + 1}", "type": lrn_type, "param": np.array([[5, 1, 2e-5, 0.75]])})
        if i in (0, 1, 4):
            seq.append(
                {
                    "name": f"pool{i + 1}",
                    "type": "pool",
                    "method": "max",
                    "pool": np.array([[3, 3]], float),
                    "stride": np.array([[2, 2]], float),
                    "pad": np.array([[0, 1, 0, 1]], float),
                }
            )
    seq.append({"name": "prob", "type": "softmax"})
    cell = np.empty((1, len(seq)), dtype=object)
    for i, layer in enumerate(seq):
        cell[0, i] = layer
    return cell, params


def _write_cnnf(path, layout: str, seed: int = 0, **kw):
    rng = np.random.default_rng(seed)
    layers, params = _cnnf_layers(rng, layout, **kw)
    avg = np.random.default_rng(99).uniform(90, 130, size=(224, 224, 3)).astype(np.float32)
    if layout == "old":
        scipy.io.savemat(
            path,
            {
                "layers": layers,
                "normalization": {"averageImage": avg, "imageSize": [224, 224, 3], "keepAspect": 1},
                "classes": {"name": np.array(["a", "b"], dtype=object)},
            },
        )
    else:
        scipy.io.savemat(
            path,
            {
                "layers": layers,
                "meta": {
                    "normalization": {"averageImage": avg, "imageSize": [224, 224, 3]},
                    "inputs": {"name": "input"},
                },
            },
        )
    return params, avg


def _cnnf_reference(x: torch.Tensor, params, avg: np.ndarray) -> torch.Tensor:
    """Straight from MatConvNet's definitions: correlation with HxWxCinxCout filters, LRN
    x / (kappa + alpha * sum_window x^2)^beta with the window k-2..k+2, fc layers as convolutions."""

    def conv(h, i, stride=1, pad=0):
        f, b = params[i]
        return F.conv2d(h, torch.from_numpy(f).permute(3, 2, 0, 1), torch.from_numpy(b).ravel(), stride, pad)

    def lrn(h):
        sq = F.pad(h.pow(2), (0, 0, 0, 0, 2, 2))
        s = sum(sq[:, j : j + h.shape[1]] for j in range(5))
        return h / (1 + 2e-5 * s) ** 0.75

    def pool(h):
        return F.max_pool2d(F.pad(h, (0, 1, 0, 1), value=float("-inf")), 3, 2)

    h = x.float() - torch.from_numpy(avg).permute(2, 0, 1)
    h = pool(lrn(F.relu(conv(h, 0, 4))))
    h = pool(lrn(F.relu(conv(h, 1, 1, 2))))
    h = pool(F.relu(conv(F.relu(conv(F.relu(conv(h, 2, 1, 1)), 3, 1, 1)), 4, 1, 1)))
    h = F.relu(conv(F.relu(conv(h, 5)), 6))
    return h.flatten(1)


def test_cnnf_both_matconvnet_layouts_give_identical_features(tmp_path):
    old, new = tmp_path / "old.mat", tmp_path / "new.mat"
    params, avg = _write_cnnf(old, "old")
    _write_cnnf(new, "new")
    assert read_vgg_f_mat(old)[3] == "old" and read_vgg_f_mat(new)[3] == "new"
    b_old, b_new = build_backbone("cnn-f", old), build_backbone("cnn-f", new)
    assert b_old.feature_dim == 12 and "old MatConvNet layout" in b_old.weights
    x = torch.randint(0, 256, (3, 3, 224, 224), dtype=torch.uint8)
    with torch.inference_mode():
        f_old, f_new = b_old(x), b_new(x)
        ref = _cnnf_reference(x, params, avg)
    torch.testing.assert_close(f_old, f_new, rtol=0, atol=0)
    torch.testing.assert_close(f_old, ref, rtol=1e-4, atol=1e-5)
    assert f_old.abs().sum() > 0


def test_cnnf_rejects_other_networks(tmp_path):
    vggm = tmp_path / "imagenet-vgg-m.mat"
    _write_cnnf(vggm, "new", conv1=(7, 2))
    with pytest.raises(CMHError, match="not CNN-F"):
        build_backbone("cnn-f", vggm)
    dag = tmp_path / "dag.mat"
    scipy.io.savemat(
        dag, {"layers": np.zeros(1), "vars": np.zeros(1), "params": np.zeros(1), "meta": {"a": 1}}
    )
    with pytest.raises(CMHError, match="DagNN"):
        build_backbone("cnn-f", dag)
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a mat file")
    with pytest.raises(CMHError, match="cannot read"):
        build_backbone("cnn-f", junk)
    other = tmp_path / "other.mat"
    scipy.io.savemat(other, {"x": np.zeros(3)})
    with pytest.raises(CMHError, match="no 'layers'"):
        build_backbone("cnn-f", other)


# --------------------------------------------------------------------------------------------- VGG19

TINY_VGG = (4, 4, 8, 8, 8)


def _tiny_vgg_state(seed: int = 0, blocks=(2, 2, 4, 4, 4)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state, c = {}, 3
    for idx, width in zip(
        conv_indices(blocks),
        [w for w, n in zip(TINY_VGG, blocks, strict=True) for _ in range(n)],
        strict=True,
    ):
        state[f"features.{idx}.weight"] = torch.randn(width, c, 3, 3, generator=g) * 0.3
        state[f"features.{idx}.bias"] = torch.randn(width, generator=g) * 0.1
        c = width
    for i, (o, n_in) in zip((0, 3, 6), ((16, c * 49), (16, 16), (10, 16)), strict=True):
        state[f"classifier.{i}.weight"] = torch.randn(o, n_in, generator=g) * 0.1
        state[f"classifier.{i}.bias"] = torch.randn(o, generator=g) * 0.1
    return state


def test_vgg19_loads_torchvision_state_dict(tmp_path):
    state = _tiny_vgg_state()
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    b = build_backbone("vgg19", path)
    assert b.feature_dim == 16
    x = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    with torch.inference_mode():
        got = b(x)
    # Reference: torchvision's forward written out from the state_dict keys.
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    h = (x.float() - mean) / std
    convs = conv_indices()
    for i, idx in enumerate(convs):
        h = F.relu(F.conv2d(h, state[f"features.{idx}.weight"], state[f"features.{idx}.bias"], padding=1))
        if i + 1 < len(convs) and convs[i + 1] != idx + 2 or i == len(convs) - 1:
            h = F.max_pool2d(h, 2)
    h = F.adaptive_avg_pool2d(h, 7).flatten(1)
    h = F.relu(F.linear(h, state["classifier.0.weight"], state["classifier.0.bias"]))
    h = F.relu(F.linear(h, state["classifier.3.weight"], state["classifier.3.bias"]))
    torch.testing.assert_close(got, h, rtol=1e-4, atol=1e-5)
    # A wrapped, DataParallel-prefixed copy loads the same.
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    with torch.inference_mode():
        torch.testing.assert_close(build_backbone("vgg19", wrapped)(x), got)


def test_vgg19_rejects_vgg16_and_bn(tmp_path):
    v16 = tmp_path / "vgg16.pth"
    torch.save(_tiny_vgg_state(blocks=(2, 2, 3, 3, 3)), v16)
    with pytest.raises(CMHError, match="not a torchvision VGG19"):
        build_backbone("vgg19", v16)
    bn = _tiny_vgg_state()
    bn["features.1.running_mean"] = torch.zeros(4)
    torch.save(bn, tmp_path / "bn.pth")
    with pytest.raises(CMHError, match="vgg19_bn"):
        build_backbone("vgg19", tmp_path / "bn.pth")


def test_extract_with_cnnf_file(image_dir, tmp_path):
    path = tmp_path / "imagenet-vgg-f.mat"
    _write_cnnf(path, "old")
    r = extract_images(image_dir, tmp_path / "f.npz", "cnn-f", weights=path, workers=0, progress=False)
    feats, _paths, meta = load_features(r.out)
    assert (
        feats.shape == (7, 12) and meta["backbone"] == "cnn-f" and meta["feature_layer"] == "fc7 after ReLU"
    )


# ---------------------------------------------------------------------------------------------- text


def test_bag_of_words_tags_binary_top_n_with_tie_break():
    texts = [["sky, sea"], ["Sky beach"], ["dog sky"], ["sea dog"], ["zebra"]]
    m, vocab = bag_of_words(texts, mode="tags", vocab_size=3)
    # document frequency: sky 3, sea 2, dog 2, beach 1, zebra 1 -> sky, then dog/sea alphabetically
    assert vocab == ["sky", "dog", "sea"]
    assert sp.isspmatrix_csr(m) and m.dtype == np.float32
    np.testing.assert_array_equal(m.toarray(), [[1, 0, 1], [1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 0]])


def test_bag_of_words_captions_drop_stop_words_and_join():
    texts = [["A dog on the beach.", "The dog runs"], ["a cat"]]
    m, vocab = bag_of_words(texts, mode="captions", vocab_size=50)
    assert "the" not in vocab and "on" not in vocab and "a" not in vocab
    assert set(vocab) == {"dog", "beach", "runs", "cat"} and vocab[0] == "beach"  # all df 1: alphabetical
    row = dict(zip(vocab, m.toarray()[0], strict=True))
    assert row["dog"] == 1 and row["cat"] == 0  # binary: dog twice -> 1
    counts, vocab_c = bag_of_words(texts, mode="captions", vocab_size=50, binary=False)
    assert dict(zip(vocab_c, counts.toarray()[0], strict=True))["dog"] == 2


def test_extract_text_formats_and_storage(tmp_path):
    jl = tmp_path / "caps.jsonl"
    jl.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"image": "images/1.jpg", "captions": ["red bus on street", "a bus"]},
                {"image": "images/2.jpg", "captions": ["a dog"]},
            ]
        )
        + "\n"
    )
    out = tmp_path / "t.npz"
    t = extract_text(jl, out, field="captions", vocab_size=10)
    assert t.keys == ["images/1.jpg", "images/2.jpg"] and t.vocabulary[0] == "bus"
    assert (tmp_path / "t.npz.vocab.txt").read_text().split() == t.vocabulary
    back = load_text_features(out)
    assert (back.matrix != t.matrix).nnz == 0 and back.vocabulary == t.vocabulary
    assert (sp.load_npz(out) != t.matrix).nnz == 0  # scipy can read it too
    # csv: one caption per row, rows with the same key are merged
    csv_file = tmp_path / "caps.csv"
    csv_file.write_text("id,caption\nx,red bus\ny,a dog\nx,on street\n")
    tc = extract_text(csv_file, None, field="caption", vocab_size=10)
    assert tc.keys == ["x", "y"] and tc.matrix.shape == (2, 4)
    assert tc.matrix.toarray()[0].sum() == 3  # red, bus, street
    # txt: one item per line, tags mode
    txt = tmp_path / "tags.txt"
    txt.write_text("sun sea\nsea\n")
    tt = extract_text(txt, None, field="tags", vocab_size=1)
    assert tt.vocabulary == ["sea"] and tt.keys == ["0", "1"]
    # alignment to images: reordering works, a missing row is a clear error
    assert (t.aligned_to(["images/2.jpg", "images/1.jpg"]) != t.matrix[[1, 0]]).nnz == 0
    with pytest.raises(DataError, match="1 of 2 items have no text row"):
        t.aligned_to(["images/2.jpg", "images/3.jpg"])
    with pytest.raises(CMHError, match="no field 'tags'"):
        extract_text(jl, None, field="tags")


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_extract(image_dir, tmp_path, capsys):
    from cmh.cli import main

    assert (
        main(
            [
                "extract",
                "image",
                "--backbone",
                "cnn-f",
                "--images",
                str(image_dir),
                "--out",
                str(tmp_path / "x.npz"),
            ]
        )
        == 2
    )
    assert "needs weights" in capsys.readouterr().err
    jl = tmp_path / "c.jsonl"
    jl.write_text(json.dumps({"image": "1.jpg", "tags": ["a1", "b2"]}) + "\n")
    assert (
        main(
            [
                "extract",
                "text",
                "--input",
                str(jl),
                "--field",
                "tags",
                "--vocab-size",
                "5",
                "--out",
                str(tmp_path / "t.npz"),
            ]
        )
        == 0
    )
    assert "1 items x 2 terms" in capsys.readouterr().out
    small = tmp_path / "small"
    small.mkdir()
    for i in range(3):
        Image.fromarray(_rgb(60, 80, i)).save(small / f"{i}.png")
    assert (
        main(
            [
                "extract",
                "image",
                "--images",
                str(small),
                "--out",
                str(tmp_path / "e.npz"),
                "--quiet",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    assert "3 x 1280 features" in capsys.readouterr().out


def test_bench_extract_smoke(image_dir, tmp_path, capsys, monkeypatch):
    """`cmh bench extract` runs end to end on a few images (no speed assertions); each forward pass is
    slowed by 50 ms on purpose, and the reported rate must show it."""
    import math
    import time

    import cmh.extract.backbones as backbones
    from cmh.cli import main

    real_build = backbones.build_backbone

    def slow_build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        forward = model.forward

        def slow_forward(x):
            time.sleep(0.05)
            return forward(x)

        model.forward = slow_forward
        return model

    monkeypatch.setattr(backbones, "build_backbone", slow_build)

    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "extract",
                "--images",
                str(image_dir / "sub"),
                "-n",
                "2",
                "--batch-size",
                "2",
                "--repeat",
                "1",
                "--backbones",
                "efficientnet-lite0",
                "--workers",
                "0",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert [b["backbone"] for b in res["backbones"]] == ["efficientnet-lite0"]
    row = res["backbones"][0]
    assert row["feature_dim"] == 1280 and res["pipeline"]["images"] == 2
    # 2 images in one timed batch of at least 50 ms: at most 40 images/s
    assert math.isfinite(row["forward_images_per_s"]) and 0 < row["forward_images_per_s"] <= 2 / 0.05, row
    assert math.isfinite(res["decode_images_per_s"]) and res["decode_images_per_s"] > 0
    assert "forward images/s" in capsys.readouterr().out


def test_build_coco_mini_aligns_rows_and_drops_unreadable(tmp_path, capsys):
    """A fake coco_mini folder: rows stay aligned (image, captions, labels) and a corrupt photo's row is dropped."""
    from cmh.extract.coco_mini import build_coco_mini

    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("person\ndog\ncat\n")
    recs = []
    for i in range(6):
        name = f"images/{i:03d}.jpg"
        if i == 4:
            (root / name).write_bytes(b"broken")
        else:
            Image.fromarray(_rgb(50, 60, i)).save(root / name)
        recs.append({"image": name, "captions": [f"word{i} common", f"extra{i}"], "labels": [i % 3]})
    (root / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[::-1]))
    out = tmp_path / "out" / "coco_mini.npz"
    info = build_coco_mini(root, out, n_query=2, workers=0, progress=False)
    assert "1 annotated images have no features" in capsys.readouterr().err
    z = np.load(out)
    kept = [r for r in recs[::-1] if r["image"] != "images/004.jpg"]
    assert info["rows"] == [r["image"] for r in kept] and z["image"].shape == (5, 1280)
    np.testing.assert_array_equal(z["labels"].argmax(1), [r["labels"][0] for r in kept])
    vocab = out.with_name("coco_mini.text.npz.vocab.txt").read_text().split()
    for row, r in zip(z["text"], kept, strict=True):  # each row holds exactly its own caption words
        assert {vocab[j] for j in np.flatnonzero(row)} == {
            "common",
            f"word{r['image'][9]}",
            f"extra{r['image'][9]}",
        }
    feats, paths, _ = load_features(out.with_name("coco_mini.image.npz"))
    np.testing.assert_array_equal(z["image"][0], feats[paths.index(kept[0]["image"][7:])])
    assert len(z["query"]) == 2 and (out.parent / "cmh.yaml").exists()
