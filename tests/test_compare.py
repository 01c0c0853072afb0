"""`cmh compare` and `cmh leaderboard`: exact tables from records, versions never mixed, significance,
bad records skipped, byte-for-byte regeneration and --check."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from cmh.cli import main
from cmh.compare import build_table, compare, load_reported, to_csv, to_json, to_markdown
from cmh.errors import CMHError
from cmh.leaderboard import check_leaderboard, generate, write_leaderboard
from cmh.results import load_records, write_record

REPO = Path(__file__).resolve().parents[1]


def fake_record(
    method: str,
    bits: int,
    seed: int,
    ap_i2t: np.ndarray,
    ap_t2i: np.ndarray,
    dataset: str = "toy",
    content_hash: str = "abc123",
    protocol: str = "random",
) -> dict:
    """A schema-1 record whose metrics are derived from the given per-query APs (curves kept tiny)."""

    def task(ap: np.ndarray) -> dict:
        return {
            "map": float(ap.mean()),
            "map_tie_avg": float(ap.mean()) - 0.01,
            "ap_per_query": ap.tolist(),
            "p_r2": 0.5,
            "pr_radius": {
                "radius": list(range(bits + 1)),
                "precision": np.linspace(0.9, 0.3, bits + 1).tolist(),
                "recall": np.linspace(0.0, 1.0, bits + 1).tolist(),
            },
            "p_at_n": {"n": [1, 10, 100], "precision": [0.9, 0.7, 0.5]},
        }

    return {
        "schema": 1,
        "method": method,
        "bits": bits,
        "seed": seed,
        "dataset": {
            "name": dataset,
            "protocol": protocol,
            "split_seed": 0,
            "content_hash": content_hash,
            "sizes": {"query": len(ap_i2t), "database": 100, "train": 100},
            "image_dim": 8,
            "text_dim": 4,
            "classes": 3,
        },
        "tasks": {"i2t": task(ap_i2t), "t2i": task(ap_t2i)},
        "timings": {"fit_s": 1.0 + seed, "encode_s": 0.1, "evaluate_s": 0.1},
        "peak_rss_mb": 100.0 + seed,
    }


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    """Two methods × 2 bit lengths × 3 seeds; 'good' is better than 'base' on every query."""
    root = tmp_path / "results"
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, size=60)
    for seed in range(3):
        for bits in (16, 32):
            noise = rng.normal(0, 0.01, size=60)
            write_record(fake_record("base", bits, seed, base + noise, base + noise), root)
            write_record(fake_record("good", bits, seed, base + 0.1 + noise, base + noise), root)
    return root


def test_table_mean_std_best_and_seeds(results: Path) -> None:
    records, skipped = load_records(results)
    assert not skipped
    t = build_table(records, "toy")
    assert t.methods == ["base", "good"] and t.bits == [16, 32]
    for m in t.methods:
        for task in ("i2t", "t2i"):
            for b in t.bits:
                vals = [r["tasks"][task]["map"] for r in records if r["method"] == m and r["bits"] == b]
                cell = t.cells[m, task, b]
                assert cell.n == 3 and cell.seeds == [0, 1, 2]
                assert cell.mean == pytest.approx(np.mean(vals), abs=1e-12)
                assert cell.std == pytest.approx(np.std(vals, ddof=1), abs=1e-12)
    assert t.best("i2t", 16) == "good"
    md = to_markdown(t)
    assert "**" + f"{t.cells['good', 'i2t', 16].mean:.4f}" in md and "| base | 3 |" in md


def test_metric_choice_and_unknown_metric(results: Path) -> None:
    records, _ = load_records(results)
    t = build_table(records, "toy", metric="map_tie_avg", methods=["good"], bits=[32])
    assert t.columns == [("i2t", 32), ("t2i", 32)]
    assert t.cells["good", "i2t", 32].mean == pytest.approx(
        np.mean(
            [r["tasks"]["i2t"]["map_tie_avg"] for r in records if r["method"] == "good" and r["bits"] == 32]
        )
    )
    with pytest.raises(CMHError, match="did you mean 'map_tie_avg'"):
        build_table(records, "toy", metric="map_tie_avgg")


def test_versions_are_never_mixed(results: Path) -> None:
    write_record(
        fake_record("other", 16, 0, np.full(60, 0.9), np.full(60, 0.9), content_hash="zzz999"), results
    )
    records, _ = load_records(results)
    t = build_table(records, "toy")
    assert "other" not in t.methods
    assert any("another dataset version" in n and "--dataset-version zzz999" in n for n in t.left_out)
    t2 = build_table(records, "toy", version="zzz")
    assert t2.methods == ["other"]


def test_seeds_with_other_settings_are_not_averaged(results: Path) -> None:
    """A re-run with other settings beside older records: the larger group is shown, the rest listed."""
    for seed in (0, 1):
        rec = fake_record("cvh", 16, seed, np.full(60, 0.3), np.full(60, 0.3))
        write_record({**rec, "config": {"reg": 0.5, "verbose": True}}, results)
    rec = fake_record("cvh", 16, 2, np.full(60, 0.9), np.full(60, 0.9))
    write_record({**rec, "config": {"reg": 1e-4, "verbose": False}}, results)  # verbose: neutral
    records, _ = load_records(results)
    t = build_table(records, "toy")
    cell = t.cells["cvh", "i2t", 16]
    assert cell.seeds == [0, 1] and cell.mean == pytest.approx(0.3)
    assert any("cvh/16/seed2.json: left out, made with other settings (reg=0.0001)" in n for n in t.left_out)
    # reg=0.5 is not CVH's default (1e-4): the footnote names it; the fake methods have no defaults
    assert t.settings == {"cvh": "reg=0.5"}
    assert "Settings other than the method's defaults: cvh: reg=0.5." in to_markdown(t)
    assert json.loads(to_json(t))["settings"] == {"cvh": "reg=0.5"}


def test_significance_against_a_method(results: Path) -> None:
    records, _ = load_records(results)
    t = build_table(records, "toy", against="base")
    sig = t.significance["good", "i2t", 16]
    assert sig.p_value < 1e-6 and sig.mark == "▲" and sig.n_queries == 60
    assert t.significance["good", "t2i", 16].p_value == 1.0  # identical per-query AP on T→I
    with pytest.raises(CMHError, match="per-query"):
        build_table(records, "toy", metric="p_r2", against="base")
    with pytest.raises(CMHError, match="did you mean 'base'"):
        build_table(records, "toy", against="bas")


def test_corrupt_and_foreign_records_are_skipped(results: Path) -> None:
    (results / "toy" / "good" / "16" / "seed9.json").write_text('{"method": "good", "bi')
    (results / "notes.json").write_text('{"hello": 1}')
    tables, skipped = compare(results, "toy")
    assert {p.name for p, _ in skipped} == {"seed9.json", "notes.json"}
    assert any("corrupt or half-written" in why for _, why in skipped)
    assert tables[0].cells["good", "i2t", 16].n == 3


def test_formats_round_trip(results: Path) -> None:
    records, _ = load_records(results)
    t = build_table(records, "toy", against="base")
    rows = list(csv.DictReader(io.StringIO(to_csv(t))))
    assert len(rows) == 2 * 2 * 2
    good = next(r for r in rows if r["method"] == "good" and r["task"] == "i2t" and r["bits"] == "16")
    assert float(good["mean"]) == pytest.approx(t.cells["good", "i2t", 16].mean, abs=1e-6)
    doc = json.loads(to_json(t))
    assert doc["version"]["content_hash"] == "abc123" and len(doc["rows"]) == 8


def test_reported_numbers_match_dataset_aliases() -> None:
    rows = load_reported("mirflickr25k", methods=["ssah", "scm-seq"], bits=[16])
    labels = {(r.method, r.table) for r in rows}
    assert ("ssah", "table2") in labels and ("scm", "table3") in labels
    ssah = next(r for r in rows if r.method == "ssah" and r.table == "table2")
    assert ssah.values["i2t", 16] == 0.782
    assert load_reported("nus-wide") and load_reported("coco")  # catalog names map to the papers' names
    assert load_reported("wikipedia", metric="p_r2") == []


def test_compare_cli_after_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "res"
    for method in ("cvh", "scm-seq"):
        assert main(["run", method, "--bits", "16", "--seeds", "0,1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["compare", "--results", str(out), "--format", "md", "--against", "cvh"]) == 0
    text = capsys.readouterr().out
    assert "| cvh | 2 |" in text and "| scm-seq | 2 |" in text and "I→T 16" in text
    assert main(["compare", "--results", str(out), "--dataset", "wikipedia"]) == 2
    assert "no result records of dataset 'wikipedia'" in capsys.readouterr().err


def test_leaderboard_is_deterministic_and_checkable(results: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "lb"
    changed, _ = write_leaderboard(results, out)
    assert "README.md" in changed and "toy.md" in changed and "toy/pr_radius_16.png" in changed
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    files, _ = generate(results, out)
    assert {Path(k): v for k, v in files.items()} == first  # byte for byte
    assert check_leaderboard(results, out) == ([], [])
    page = (out / "toy.md").read_text()
    assert "[seed 2](../results/toy/good/32/seed2.json)" in page
    assert (out / "toy" / "p_at_n_16.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a new record, a hand edit and a stray file are all reported
    write_record(fake_record("base", 64, 0, np.full(60, 0.3), np.full(60, 0.3)), results)
    (out / "README.md").write_text("edited\n")
    (out / "old.md").write_text("stale\n")
    problems, _ = check_leaderboard(results, out)
    assert any("would change" in p and "toy.md" in p for p in problems)
    assert any("README.md" in p for p in problems) and any("stale" in p and "old.md" in p for p in problems)
    assert main(["leaderboard", "--results", str(results), "--out", str(out), "--check"]) == 1
    assert main(["leaderboard", "--results", str(results), "--out", str(out)]) == 0
    assert not (out / "old.md").exists()
    assert main(["leaderboard", "--results", str(results), "--out", str(out), "--check"]) == 0


def test_check_skips_png_bytes_from_another_matplotlib(results: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "lb"
    write_leaderboard(results, out)
    manifest = out / "plots.json"
    manifest.write_text(manifest.read_text().replace('"matplotlib": "', '"matplotlib": "0.0-'))
    (out / "toy" / "pr_radius_16.png").write_bytes(b"other renderer")
    problems, notes = check_leaderboard(results, out)
    assert problems == [] and any("PNG bytes not compared" in n for n in notes)


def test_committed_leaderboards_are_up_to_date(tmp_path: Path) -> None:
    """CI: the committed leaderboards/ are exactly what `cmh leaderboard` makes of the committed results/."""
    if not (REPO / "results").is_dir():
        pytest.skip("no committed results/ yet")
    problems, notes = check_leaderboard(REPO / "results", REPO / "leaderboards")
    assert problems == [], "leaderboards/ is out of date; run `cmh leaderboard` and commit:\n" + "\n".join(
        problems
    )
