"""Regenerate ``leaderboards/`` from result records and the published numbers (``cmh leaderboard``).

The folder is a pure function of ``results/`` and ``cmh/reported/``: an index (``README.md``), one page per
dataset (``<dataset>.md``: MAP table with reported numbers, training cost, precision–recall by Hamming radius
and P@n plots, and the result records behind every number), and per plot a CSV of the plotted values.
Nothing time- or machine-dependent is written, so a second run produces identical bytes and
:func:`check_leaderboard` can tell whether the committed folder is up to date (CI runs ``--check``).

PNG bytes depend on the matplotlib version that drew them (recorded in ``plots.json``): when the installed
version differs, ``--check`` compares the plots' CSV data exactly and skips the PNG bytes, saying so.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmh._atomic import atomic_write_bytes
from cmh.compare import (
    REPORTED_DIR,
    ComparisonTable,
    build_table,
    relative_paths,
    scalar_metrics,
    to_markdown,
)
from cmh.errors import CMHError
from cmh.gallery import NO_PHOTOS, gallery_section, is_gallery_png
from cmh.results import TASK_TITLES, TASKS, load_records

INDEX = "README.md"
PLOTS_MANIFEST = "plots.json"
#: code length of the PR and P@n figures (SSAH Fig. 3-4 use 16 bits); the smallest recorded one otherwise
FIGURE_BITS = 16
#: file types this command owns inside the output folder (others are never touched)
_OWNED_SUFFIXES = {".md", ".png", ".csv", ".json"}
_REGENERATE = "scripts/build_coco_mini.sh && cmh sweep leaderboard && cmh gallery && cmh leaderboard"


def _mean_curve(
    table: ComparisonTable,
    records_by_path: dict[str, dict[str, Any]],
    method: str,
    task: str,
    bits: int,
    key: str,
    fields: Sequence[str],
) -> dict[str, np.ndarray] | None:
    """Seed-averaged curve ``fields`` of ``tasks[task][key]`` over a cell's records (None when absent)."""
    cell = table.cells.get((method, task, bits))
    if cell is None:
        return None
    curves = [records_by_path[p]["tasks"][task].get(key) for p in cell.paths]
    if any(c is None for c in curves):
        return None
    lengths = {len(c[fields[0]]) for c in curves}
    if len(lengths) != 1:
        return None
    return {f: np.mean([np.asarray(c[f], dtype=float) for c in curves], axis=0) for f in fields}


def _curves(
    table: ComparisonTable,
    records_by_path: dict[str, dict[str, Any]],
    bits: int,
    key: str,
    x: str,
    y: Sequence[str],
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{task: {method: {field: values}}}`` for every method with the curve at ``bits``."""
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for task in TASKS:
        for m in table.methods:
            c = _mean_curve(table, records_by_path, m, task, bits, key, [x, *y])
            if c is not None:
                out.setdefault(task, {})[m] = c
    return out


def _curve_csv(curves: dict[str, dict[str, dict[str, np.ndarray]]], fields: Sequence[str]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task", "method", *fields])
    for task, by_method in curves.items():
        for m, c in by_method.items():
            for i in range(len(c[fields[0]])):
                w.writerow([task, m, *(_fmt_num(c[f][i]) for f in fields)])
    return buf.getvalue().encode()


def _fmt_num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.6f}"


def _plot(
    curves: dict[str, dict[str, dict[str, np.ndarray]]],
    x: str,
    y: str,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
) -> bytes:
    """One PNG with a panel per task (I→T, T→I), a line per method; deterministic bytes for a matplotlib version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = "osD^v<>phX*"
    with matplotlib.rc_context({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "savefig.dpi": 100}):
        fig, axes = plt.subplots(1, len(TASKS), figsize=(10, 4.2), squeeze=False)
        methods = sorted({m for by in curves.values() for m in by})
        for ax, task in zip(axes[0], TASKS, strict=True):
            for i, m in enumerate(methods):
                c = curves.get(task, {}).get(m)
                if c is None:
                    continue
                ax.plot(
                    c[x],
                    c[y],
                    marker=markers[i % len(markers)],
                    markersize=3.5,
                    linewidth=1.2,
                    label=m,
                    color=f"C{i % 10}",
                    linestyle="-" if i < 10 else "--",
                )
            ax.set_title(TASK_TITLES[task])
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if logx:
                ax.set_xscale("log")
            ax.set_ylim(0, 1.02)
        axes[0][-1].legend(loc="upper right", fontsize=8, frameon=True)
        fig.suptitle(title)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        plt.close(fig)
    return buf.getvalue()


def _figure_bits(table: ComparisonTable) -> int | None:
    return FIGURE_BITS if FIGURE_BITS in table.bits else (min(table.bits) if table.bits else None)


def _cost_table(table: ComparisonTable, records_by_path: dict[str, dict[str, Any]]) -> str:
    """Mean fit time (s) per code length and peak memory, from the records (machine named in each record)."""
    head = ["Method"] + [f"fit s ({b} bits)" for b in table.bits] + ["peak RSS MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
    for m in table.methods:
        row, peaks = [m], []
        for b in table.bits:
            cell = table.cells.get((m, "i2t", b))
            recs = [records_by_path[p] for p in (cell.paths if cell else [])]
            fits = [r.get("timings", {}).get("fit_s") for r in recs]
            fits = [f for f in fits if isinstance(f, (int, float))]
            peaks += [r["peak_rss_mb"] for r in recs if isinstance(r.get("peak_rss_mb"), (int, float))]
            row.append(f"{np.mean(fits):.1f}" if fits else "–")
        row.append(f"{max(peaks):,.0f}" if peaks else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _sources(table: ComparisonTable, out_dir: Path) -> str:
    lines = ["| Method | Bits | Result records |", "|:---|---:|:---|"]
    for m in table.methods:
        for b in table.bits:
            cell = table.cells.get((m, "i2t", b))
            if cell is None:
                continue
            links = [
                f"[seed {s}]({p})"
                for s, p in zip(cell.seeds, relative_paths(cell.paths, out_dir), strict=True)
            ]
            lines.append(f"| {m} | {b} | {' '.join(links)} |")
    return "\n".join(lines) + "\n"


def _dataset_page(
    table: ComparisonTable,
    records_by_path: dict[str, dict[str, Any]],
    results: Path,
    out_dir: Path,
    plots: bool,
    sections: Sequence[str] = (),
) -> tuple[str, dict[str, bytes]]:
    """The markdown page of one dataset and its figure files (relative path -> bytes); ``sections`` are
    extra markdown lines placed before the training cost (the retrieval gallery)."""
    from cmh.data.catalog import CATALOG

    ds = table.dataset
    files: dict[str, bytes] = {}
    v = table.version
    any_rec = records_by_path[next(iter(table.cells.values())).paths[0]]["dataset"] if table.cells else {}
    dims = (
        (
            f"image {any_rec.get('image_dim')}-d, text {any_rec.get('text_dim')}-d, "
            f"{any_rec.get('classes')} classes"
        )
        if any_rec
        else ""
    )
    parts = [f"# {ds}", ""]
    if ds in CATALOG:
        parts += [CATALOG[ds] + ".", ""]
    if v is not None:
        parts += [f"Dataset version: {v.label()}; {dims}.", ""]
    src = relative_paths([str(results / ds)], out_dir)[0]
    parts += [
        f"Generated by `cmh leaderboard` from the records in [{src}]({src}); regenerate all with "
        f"`{_REGENERATE}`.",
        "",
        "## MAP (mAP@all, Hamming ranking)",
        "",
        to_markdown(table),
    ]
    parts += _map50_section(table, records_by_path)
    fb = _figure_bits(table)
    if fb is not None:
        pr = _curves(table, records_by_path, fb, "pr_radius", "radius", ["precision", "recall"])
        pn = _curves(table, records_by_path, fb, "p_at_n", "n", ["precision"])
        for name, curves, fields, heading, args in (
            (
                f"pr_radius_{fb}",
                pr,
                ["radius", "precision", "recall"],
                f"Precision–recall by Hamming radius ({fb} bits)",
                (
                    "recall",
                    "precision",
                    f"{ds}: precision–recall by Hamming radius 0..{fb}, {fb} bits",
                    "recall",
                    "precision",
                    False,
                ),
            ),
            (
                f"p_at_n_{fb}",
                pn,
                ["n", "precision"],
                f"Precision at n ({fb} bits)",
                (
                    "n",
                    "precision",
                    f"{ds}: precision of the top n retrieved, {fb} bits",
                    "n (top retrieved items)",
                    "precision",
                    True,
                ),
            ),
        ):
            if not curves:
                continue
            files[f"{ds}/{name}.csv"] = _curve_csv(curves, fields)
            parts += [f"## {heading}", ""]
            if plots:
                files[f"{ds}/{name}.png"] = _plot(curves, *args)
            parts += [f"![{heading}]({ds}/{name}.png)", ""]
            parts += [f"Plotted values (mean over seeds): [{name}.csv]({ds}/{name}.csv)", ""]
    parts += list(sections)
    parts += [
        "## Training cost",
        "",
        "Mean over seeds, on the machine named in each record.",
        "",
        _cost_table(table, records_by_path),
        "## Result records behind these numbers",
        "",
        _sources(table, out_dir),
    ]
    return "\n".join(parts).rstrip("\n") + "\n", files


def _map50_section(table: ComparisonTable, records_by_path: dict[str, dict[str, Any]]) -> list[str]:
    """The mAP@50 table (the metric the unsupervised papers, DJSRH and DSAH, report), same records."""
    recs = [r for r in records_by_path.values() if r["dataset"]["name"] == table.dataset]
    if "map@50" not in scalar_metrics(recs):  # records made before mAP@50 was computed
        return []
    v = table.version
    t50 = build_table(
        recs,
        table.dataset,
        metric="map@50",
        reported=True,
        version=v.content_hash if v else None,
        database=v.database_codes if v else None,
    )
    if not t50.cells:
        return []
    return ["## mAP@50 (mean AP over the top 50 retrieved)", "", to_markdown(t50)]


def _reported_sources(directory: Path) -> list[str]:
    out = []
    for path in sorted(directory.glob("*.csv")):
        head = [
            ln.lstrip("# ").strip()
            for ln in path.read_text(encoding="utf-8").splitlines()[:2]
            if ln.startswith("#")
        ]
        out.append(f"- `cmh/reported/{path.name}`: {' '.join(head)}")
    return out


def _index(tables: list[ComparisonTable], n_records: dict[str, int], reported_dir: Path) -> str:
    lines = [
        "# cmh leaderboards",
        "",
        "Generated by `cmh leaderboard` from the result records in `results/` and the published numbers "
        "in `cmh/reported/`; do not edit by hand. CI runs `cmh leaderboard --check`, which fails when this "
        f"folder is out of date. Re-run every experiment with `{_REGENERATE}` (the grid is "
        "`cmh/configs/leaderboard.yaml`).",
        "",
        "| Dataset | Methods | Records | Bits | Best I→T (32 bits) | Best T→I (32 bits) |",
        "|:---|---:|---:|:---|:---|:---|",
    ]
    for t in tables:
        best = []
        for task in TASKS:
            b = 32 if 32 in t.bits else (max(t.bits) if t.bits else None)
            m = t.best(task, b) if b is not None else None
            best.append(
                f"{m} {t.cells[m, task, b].mean:.4f}" + ("" if b == 32 else f" ({b} bits)") if m else "–"
            )
        lines.append(
            f"| [{t.dataset}]({t.dataset}.md) | {len(t.methods)} | {n_records[t.dataset]} | "
            f"{', '.join(map(str, t.bits))} | {best[0]} | {best[1]} |"
        )
    lines += [
        "",
        "Metric definitions and the protocol: `docs/metrics.md`. Published numbers shown beside cmh's:",
        "",
    ]
    lines += _reported_sources(reported_dir)
    return "\n".join(lines) + "\n"


def generate(
    results: str | Path,
    out_dir: str | Path = "leaderboards",
    plots: bool = True,
    reported_dir: str | Path = REPORTED_DIR,
) -> tuple[dict[str, bytes], list[str]]:
    """Every leaderboard file as ``{relative path: bytes}``, plus notes (skipped records)."""
    out_dir = Path(out_dir)
    if not Path(results).is_dir():
        raise CMHError(
            f"results folder '{results}' not found; run `cmh sweep leaderboard` or pass --results DIR"
        )
    records, skipped = load_records(results)
    notes = [f"skipped {p}: {why}" for p, why in skipped]
    by_path = {r["_path"]: r for r in records}
    names = sorted({r["dataset"]["name"] for r in records})
    tables = [build_table(records, n, reported=True) for n in names]
    files: dict[str, bytes] = {}
    for t in tables:
        gallery, gallery_files, gallery_notes = gallery_section(results, t.dataset, out_dir, plots)
        page, extra = _dataset_page(t, by_path, Path(results), out_dir, plots, sections=gallery)
        files[f"{t.dataset}.md"] = page.encode()
        files.update(extra)
        files.update(gallery_files)
        notes += gallery_notes
    n_records = {n: sum(1 for r in records if r["dataset"]["name"] == n) for n in names}
    files[INDEX] = _index(tables, n_records, Path(reported_dir)).encode()
    if plots:
        import matplotlib
        import PIL

        pngs = sorted(k for k in files if k.endswith(".png"))
        drawn = {"matplotlib": matplotlib.__version__, "pillow": PIL.__version__, "plots": pngs}
        files[PLOTS_MANIFEST] = (json.dumps(drawn, indent=1) + "\n").encode()
    return files, notes


def _existing(out_dir: Path) -> dict[str, Path]:
    if not out_dir.is_dir():
        return {}
    return {
        p.relative_to(out_dir).as_posix(): p
        for p in sorted(out_dir.rglob("*"))
        if p.is_file() and p.suffix in _OWNED_SUFFIXES
    }


def write_leaderboard(
    results: str | Path, out_dir: str | Path = "leaderboards"
) -> tuple[list[str], list[str]]:
    """Regenerate ``out_dir``; returns (changed relative paths, notes). Stale owned files are removed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CMHError(
            "cmh leaderboard draws plots with matplotlib; install it: pip install 'cmh[plot]'"
        ) from None
    out_dir = Path(out_dir)
    files, notes = generate(results, out_dir)
    missing = [n for n in notes if n.startswith(NO_PHOTOS)]
    if missing:  # never replace committed gallery pictures by nothing
        raise CMHError(missing[0])
    old = _existing(out_dir)
    changed = []
    for rel, data in sorted(files.items()):
        path = out_dir / rel
        if rel in old and old[rel].read_bytes() == data:
            continue
        atomic_write_bytes(path, data)
        changed.append(rel)
    for rel in sorted(set(old) - set(files)):
        old[rel].unlink()
        changed.append(f"{rel} (removed)")
    return changed, notes


def _pillow_version() -> str:
    import PIL

    return PIL.__version__


def check_leaderboard(
    results: str | Path, out_dir: str | Path = "leaderboards"
) -> tuple[list[str], list[str]]:
    """What regeneration would change, without writing: (problems, notes). Empty problems = up to date."""
    out_dir = Path(out_dir)
    try:
        import matplotlib

        installed: str | None = matplotlib.__version__
    except ImportError:
        installed = None
    old = _existing(out_dir)
    committed = None
    if PLOTS_MANIFEST in old:
        drawn = json.loads(old[PLOTS_MANIFEST].read_text(encoding="utf-8"))
        committed = drawn.get("matplotlib")
        if installed is not None and drawn.get("pillow") not in (None, _pillow_version()):
            installed = f"{installed} with Pillow {_pillow_version()}"  # gallery thumbnails depend on Pillow
            committed = f"{committed} with Pillow {drawn.get('pillow')}"
    compare_pngs = installed is not None and committed in (None, installed)
    files, notes = generate(results, out_dir, plots=installed is not None)
    if not compare_pngs:
        why = (
            "matplotlib is not installed"
            if installed is None
            else (f"the plots were drawn with matplotlib {committed}, this is {installed}")
        )
        notes.append(f"PNG bytes not compared ({why}); their plotted values (CSV) were compared exactly")
        files = {k: v for k, v in files.items() if not k.endswith(".png") and k != PLOTS_MANIFEST}
        old = {k: v for k, v in old.items() if not k.endswith(".png") and k != PLOTS_MANIFEST}
    if any(n.startswith(NO_PHOTOS) for n in notes):  # the photos are elsewhere: their PNGs cannot be drawn
        old = {
            k: v for k, v in old.items() if not (is_gallery_png(k) and k not in files) and k != PLOTS_MANIFEST
        }
        files.pop(PLOTS_MANIFEST, None)
    problems = []
    for rel, data in sorted(files.items()):
        if rel not in old:
            problems.append(f"missing: {out_dir / rel}")
        elif old[rel].read_bytes() != data:
            problems.append(f"would change: {out_dir / rel}")
    problems += [f"stale (would be removed): {out_dir / rel}" for rel in sorted(set(old) - set(files))]
    return problems, notes
