"""Retrieval galleries for the leaderboard pages: what each method's codes retrieve for a few captions.

Two steps, so that ``cmh leaderboard --check`` stays a pure function of committed files:

1. ``cmh gallery`` (:func:`build_gallery`) picks, for a dataset with photos and captions (coco_mini), a
   seeded set of :data:`N_QUERIES` query captions (one caption of each of 4 query items), and for every
   method with :data:`BITS`-bit records its best seed (highest T→I mAP; ties: the lowest seed). It trains
   that run again with the record's options and seed, checks that the retrained model reproduces the
   record's mAP, and writes the codes it needs — the 4 caption codes and the database's image codes — with
   the query captions, labels and photo names to ``results/<dataset>/gallery.yaml`` (small, plain text).
2. ``cmh leaderboard`` (:func:`gallery_section`) ranks those codes exactly as the harness does (Hamming
   distance, ties by database index) and draws, per query, one PNG with a row per method showing its top
   :data:`TOP` photos, relevant ones (sharing a label with the query item) framed green, others red; a CSV
   lists every ranked item. The photos are read from ``$CMH_DATA/<dataset>``.
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from cmh.errors import CMHError

FORMAT = "cmh-gallery"
VERSION = 1
GALLERY_FILE = "gallery.yaml"
#: datasets that get a gallery (they have photos and captions)
GALLERY_DATASETS = ("coco_mini",)
BITS = 32
N_QUERIES = 4
TOP = 8
SEED = 0
#: how a note about missing photos starts (``cmh leaderboard`` refuses to write; ``--check`` skips those PNGs)
NO_PHOTOS = "gallery PNGs not drawn"


def is_gallery_png(rel: str) -> bool:
    """Whether a leaderboard file (relative path) is a gallery picture."""
    return Path(rel).name.startswith("gallery_q") and rel.endswith(".png")


def _hex(codes: np.ndarray) -> list[str]:
    return [bytes(row).hex() for row in np.packbits(np.asarray(codes) > 0, axis=1)]


def _unhex(rows: list[str], bits: int) -> np.ndarray:
    packed = np.array([list(bytes.fromhex(r)) for r in rows], dtype=np.uint8).reshape(len(rows), -1)
    return (np.unpackbits(packed, axis=1, count=bits).astype(np.int8) * 2 - 1).astype(np.int8)


def pick_queries(dataset: Any, seed: int = SEED, n: int = N_QUERIES) -> list[dict[str, Any]]:
    """``n`` seeded query items of ``dataset`` and one seeded caption of each: ``{"row", "caption", "labels"}``."""
    from cmh.extract.query import item_captions

    captions = item_captions(dataset)
    if captions is None:
        raise CMHError(f"{dataset.name} has no captions recorded (build it with `cmh extract coco-mini`)")
    rng = np.random.default_rng(seed)
    rows = sorted(int(r) for r in rng.choice(dataset.split.query, size=n, replace=False))
    out = []
    for r in rows:
        caps = captions[r]
        out.append(
            {
                "row": r,
                "caption": caps[int(rng.integers(len(caps)))],
                "labels": [int(c) for c in np.flatnonzero(dataset.labels[r])],
            }
        )
    return out


def best_seeds(records: list[dict[str, Any]], dataset: str, bits: int = BITS) -> dict[str, dict[str, Any]]:
    """Per method, the ``bits``-bit record of ``dataset`` with the highest T→I mAP (ties: lowest seed)."""
    best: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["dataset"]["name"] != dataset or r["bits"] != bits or r["dataset"].get("database_codes"):
            continue
        cur = best.get(r["method"])
        key = (r["tasks"]["t2i"]["map"], -r["seed"])
        if cur is None or key > (cur["tasks"]["t2i"]["map"], -cur["seed"]):
            best[r["method"]] = r
    return dict(sorted(best.items()))


@contextlib.contextmanager
def _threads(n: int | None):
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_gallery(
    results: str | Path,
    dataset: Any,
    methods: list[str] | None = None,
    console: Any = None,
) -> Path:
    """Retrain each method's best 32-bit run on ``dataset``, encode the gallery queries and the database
    photos, and write ``results/<dataset>/gallery.yaml`` (see module docstring). Returns its path."""
    import dataclasses

    import yaml

    from cmh._atomic import atomic_write_text
    from cmh.extract.query import text_query
    from cmh.models import dataset_info
    from cmh.registry import get_method_class
    from cmh.results import load_records
    from cmh.runner import run_once

    if dataset.image_paths is None:
        raise CMHError(f"{dataset.name} has no image paths; the gallery shows photos")
    from cmh.extract.query import pipeline_of

    pipeline = pipeline_of(dataset)
    if pipeline is None:
        raise CMHError(f"{dataset.name} has no recorded feature pipeline; build it with `cmh extract`")
    records, _ = load_records(Path(results) / dataset.name)
    best = best_seeds(records, dataset.name)
    if methods:
        best = {m: r for m, r in best.items() if m in methods}
    if not best:
        raise CMHError(
            f"no {BITS}-bit records of {dataset.name} under '{results}'; run `cmh sweep leaderboard` first"
        )
    info = dataset_info(dataset)
    queries = pick_queries(dataset)
    q_text = [text_query(q["caption"], pipeline, drop_unknown=True) for q in queries]
    root = Path(pipeline["source"]) if pipeline.get("source") else None
    db_rows = [int(i) for i in dataset.split.database]
    images = [_relative(dataset.image_paths[i], root) for i in db_rows]

    out_file = Path(results) / dataset.name / GALLERY_FILE
    old: dict[str, Any] = {}
    if out_file.is_file() and methods:
        old = (yaml.safe_load(out_file.read_text(encoding="utf-8")) or {}).get("methods", {})
    entries: dict[str, Any] = dict(old)
    for name, rec in best.items():
        if rec["dataset"]["content_hash"] != info["content_hash"]:
            raise CMHError(
                f"{rec['_path']} was made on other {dataset.name} data (content hash "
                f"{rec['dataset']['content_hash']}, here {info['content_hash']}); rebuild the dataset as the "
                "records were made (scripts/build_coco_mini.sh)"
            )
        known = {f.name for f in dataclasses.fields(get_method_class(name).Config)}
        config = {k: v for k, v in rec["config"].items() if k in known}
        if "verbose" in known:
            config["verbose"] = False
        if console is not None:
            console.print(
                f"[dim]{name} {BITS} bits, seed {rec['seed']}: training again for the gallery ...[/]"
            )
        with _threads(rec.get("torch_threads")):
            run = run_once(name, dataset, BITS, rec["seed"], config, "cpu", return_method=True)
        method = run.pop("_method")
        maps = {t: float(run["tasks"][t]["map"]) for t in ("i2t", "t2i")}
        recorded = {t: float(rec["tasks"][t]["map"]) for t in ("i2t", "t2i")}
        same = all(abs(maps[t] - recorded[t]) < 1e-9 for t in maps)
        if console is not None and not same:
            console.print(
                f"[yellow]{name}: the retrained run gives mAP {maps} but the record says {recorded}; "
                "the gallery shows the retrained codes[/]"
            )
        db_codes = method.encode_image(method.image_input(dataset.part("database")))
        qc = np.concatenate([np.asarray(method.encode_text(x)) for x in q_text])
        entries[name] = {
            "seed": int(rec["seed"]),
            "record": Path(rec["_path"]).relative_to(Path(results)).as_posix(),
            "t2i_map": round(recorded["t2i"], 6),
            "reproduced": bool(same),
            **({} if same else {"retrained_t2i_map": round(maps["t2i"], 6)}),
            "query_codes": _hex(qc),
            "database_codes": _hex(db_codes),
        }
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "generated_by": "cmh gallery",
        "dataset": dataset.name,
        "content_hash": info["content_hash"],
        "bits": BITS,
        "top": TOP,
        "seed": SEED,
        "photos": f"$CMH_DATA/{dataset.name}",
        "class_names": list((dataset.meta or {}).get("class_names") or []),
        "queries": queries,
        "database": {
            "rows": db_rows,
            "images": images,
            "labels": [[int(c) for c in np.flatnonzero(dataset.labels[i])] for i in db_rows],
        },
        "methods": dict(sorted(entries.items())),
    }
    atomic_write_text(out_file, yaml.safe_dump(payload, sort_keys=False, allow_unicode=True, width=100))
    return out_file


def _relative(path: str, root: Path | None) -> str:
    p = Path(path)
    if root is not None:
        for a, b in ((p.absolute(), root.absolute()), (p.resolve(), root.resolve())):
            with contextlib.suppress(ValueError):
                return a.relative_to(b).as_posix()
    return p.name


def read_gallery(path: str | Path) -> dict[str, Any]:
    """A checked ``gallery.yaml``."""
    import yaml

    try:
        g = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        raise CMHError(f"cannot read the gallery file '{path}'; regenerate it with `cmh gallery`") from None
    if not isinstance(g, dict) or g.get("format") != FORMAT or int(g.get("version", 0)) > VERSION:
        raise CMHError(f"'{path}' is not a {FORMAT} v{VERSION} file; regenerate it with `cmh gallery`")
    return g


def photo_root(gallery: dict[str, Any]) -> Path:
    """Where the gallery's photos are (``$CMH_DATA`` expanded; default ``../shared/data``)."""
    from cmh.sweep import default_data_root

    return Path(str(gallery["photos"]).replace("$CMH_DATA", default_data_root())).expanduser()


def rankings(gallery: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (query, method, rank) of the gallery: ``{"query", "method", "rank", "position", "row", "image",
    "distance", "relevant"}``, ranked as the harness ranks (:func:`cmh.search.rank_hamming`)."""
    from cmh.search import rank_hamming

    bits, top = int(gallery["bits"]), int(gallery["top"])
    db = gallery["database"]
    db_labels = [set(x) for x in db["labels"]]
    out = []
    for name, entry in gallery["methods"].items():
        codes = _unhex(entry["database_codes"], bits)
        queries = _unhex(entry["query_codes"], bits)
        for qi, q in enumerate(gallery["queries"]):
            order, dist = rank_hamming(queries[qi], codes, top)
            for rank, (pos, d) in enumerate(zip(order.tolist(), dist.tolist(), strict=True), 1):
                out.append(
                    {
                        "query": qi + 1,
                        "method": name,
                        "rank": rank,
                        "position": pos,
                        "row": db["rows"][pos],
                        "image": db["images"][pos],
                        "distance": d,
                        "relevant": bool(db_labels[pos] & set(q["labels"])),
                    }
                )
    return out


def gallery_section(
    results: str | Path, dataset: str, out_dir: str | Path, plots: bool = True
) -> tuple[list[str], dict[str, bytes], list[str]]:
    """The leaderboard page's gallery: ``(markdown lines, {relative path: bytes}, notes)``; nothing when the
    dataset has no ``gallery.yaml``. PNGs are left out (with a note) when ``plots`` is off or the photos are
    not on this machine; the CSV of the rankings is always written."""
    from cmh.compare import relative_paths

    path = Path(results) / dataset / GALLERY_FILE
    if dataset not in GALLERY_DATASETS or not path.is_file():
        return [], {}, []
    g = read_gallery(path)
    ranked = rankings(g)
    files: dict[str, bytes] = {}
    notes: list[str] = []
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["query", "caption", "method", "seed", "rank", "row", "image", "distance", "relevant"])
    for r in ranked:
        q = g["queries"][r["query"] - 1]
        seed = g["methods"][r["method"]]["seed"]
        w.writerow(
            [
                r["query"],
                q["caption"],
                r["method"],
                seed,
                r["rank"],
                r["row"],
                r["image"],
                r["distance"],
                int(r["relevant"]),
            ]
        )
    files[f"{dataset}/gallery.csv"] = buf.getvalue().encode()

    root = photo_root(g)
    have_photos = all((root / img).is_file() for img in {r["image"] for r in ranked})
    if plots and not have_photos:
        notes.append(
            f"{NO_PHOTOS} for {dataset}: its photos are not under {root}; set CMH_DATA to the data folder"
        )
    names = g.get("class_names") or []
    # rows ordered by T→I mAP (best first), as in the table
    order = sorted(g["methods"], key=lambda m: (-float(g["methods"][m]["t2i_map"]), m))
    lines = [
        "## What it retrieves",
        "",
        f"Top {g['top']} database photos for {len(g['queries'])} query captions (seeded pick from the query "
        f"items), one row per method: its best seed at {g['bits']} bits by T→I mAP, ranked by Hamming distance "
        "(ties by database index, as in the evaluation). Green frame: the photo shares a label with the "
        "caption's item; red: it does not. Codes from "
        f"[{GALLERY_FILE}]({relative_paths([str(path)], Path(out_dir))[0]}) (`cmh gallery`); every ranked item "
        f"in [gallery.csv]({dataset}/gallery.csv).",
        "",
    ]
    for qi, q in enumerate(g["queries"], 1):
        labels = ", ".join(names[c] if c < len(names) else str(c) for c in q["labels"])
        lines += [f"**Query {qi}**: “{q['caption']}” (item {q['row']}; labels: {labels})", ""]
        rel = f"{dataset}/gallery_q{qi}.png"
        if plots and have_photos:
            files[rel] = _draw_query(g, ranked, qi, order)
        lines += [f"![gallery query {qi}]({rel})", ""]
    return lines, files, notes


def _draw_query(g: dict[str, Any], ranked: list[dict[str, Any]], qi: int, order: list[str]) -> bytes:
    from cmh.figures import Cell, Row, draw_rows

    root = photo_root(g)
    rows = []
    for m in order:
        entry = g["methods"][m]
        hits = [r for r in ranked if r["query"] == qi and r["method"] == m]
        cells = [
            Cell(
                image=str(root / h["image"]),
                caption=f"#{h['rank']}  d={h['distance']}",
                relevant=h["relevant"],
            )
            for h in hits
        ]
        rows.append(Row(f"{m} (seed {entry['seed']}, T→I mAP {float(entry['t2i_map']):.3f})", cells))
    q = g["queries"][qi - 1]
    return draw_rows(
        rows,
        title=f"“{q['caption']}” — top {g['top']} of {len(g['database']['rows'])} photos, {g['bits']} bits",
    )
