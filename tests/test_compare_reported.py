"""The SSAH CVPR 2018 Tables 2-3 transcription loads and is complete."""

import csv
from pathlib import Path

import cmh

CSV = Path(cmh.__file__).parent / "reported" / "ssah_cvpr2018.csv"


def _rows() -> list[dict]:
    lines = [ln for ln in CSV.read_text().splitlines() if not ln.startswith("#")]
    return list(csv.DictReader(lines))


def test_reported_ssah_complete_and_cited() -> None:
    text = CSV.read_text()
    assert "CVPR 2018" in text and "Table 2" in text and "Table 3" in text
    rows = _rows()
    # 2 tables x 2 tasks x 7 methods x 3 datasets x 3 bit lengths
    assert len(rows) == 2 * 2 * 7 * 3 * 3
    keys = {(r["table"], r["dataset"], r["task"], r["method"], r["bits"]) for r in rows}
    assert len(keys) == len(rows)
    for r in rows:
        assert r["source"] == "li2018ssah"
        assert 0.3 < float(r["map"]) < 0.85


def test_reported_ssah_spot_values() -> None:
    rows = {(r["table"], r["dataset"], r["task"], r["method"], int(r["bits"])): float(r["map"]) for r in _rows()}
    assert rows[("table2", "mirflickr25k", "i2t", "ssah", 16)] == 0.782
    assert rows[("table2", "mscoco", "t2i", "dcmh", 64)] == 0.505
    assert rows[("table3", "nuswide", "t2i", "scm", 64)] == 0.597
