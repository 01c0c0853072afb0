"""mAP@50 as a first-class metric: `cmh compare --metric map@50`, reported CSVs with a map@50 column, and the
leaderboard pages' mAP@50 table."""

from __future__ import annotations

from cmh.cli import main
from cmh.compare import REPORTED_DIR, load_reported
from cmh.leaderboard import generate

CSV = """# Test-only published mAP@50 numbers.
source,table,features,dataset,task,method,bits,map@50
test2019,table1,test-features,wikipedia,i2t,djsrh,16,0.388
test2019,table1,test-features,wikipedia,t2i,djsrh,16,0.499
"""


def test_reported_map50_column(tmp_path):
    (tmp_path / "paper.csv").write_text(CSV)
    rows = load_reported("wikipedia", metric="map@50", directory=tmp_path)
    assert len(rows) == 1 and rows[0].values == {("i2t", 16): 0.388, ("t2i", 16): 0.499}
    assert load_reported("wikipedia", metric="map", directory=tmp_path) == []
    # the committed MAP tables have no map@50 column: nothing is invented for them
    assert load_reported("mirflickr25k", metric="map@50", directory=REPORTED_DIR) == []
    assert load_reported("mirflickr25k", metric="map", directory=REPORTED_DIR)


def test_compare_and_leaderboard_show_map50(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "cvh", "--bits", "16", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["compare", "--results", str(out), "--metric", "map@50", "--format", "md"]) == 0
    text = capsys.readouterr().out
    assert "synthetic: mAP@50" in text and "| cvh | 1 |" in text
    files, _ = generate(out, tmp_path / "lb", plots=False)
    page = files["synthetic.md"].decode()
    assert page.index("## MAP") < page.index("## mAP@50") and page.count("| cvh | 1 |") == 2
