"""A record's identity is everything that changes its numbers (cmh.identity): settings, split, data version."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from cmh.cli import main
from cmh.identity import identity_tag, is_default_identity, record_identity, resolve_record_path
from cmh.results import load_record, load_records

RUN = ["run", "cvh", "--bits", "16"]


def _records(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json"))


def test_new_settings_train_and_get_their_own_record(tmp_path, capsys):
    assert main([*RUN, "--out", str(tmp_path)]) == 0
    default = _records(tmp_path)
    assert [p.name for p in default] == ["seed0.json"]
    capsys.readouterr()

    assert main([*RUN, "--out", str(tmp_path), "--set", "reg=10"]) == 0
    out = capsys.readouterr().out
    assert "exists; showing it" not in out
    paths = _records(tmp_path)
    assert len(paths) == 2
    tagged = next(p for p in paths if p.name != "seed0.json")
    assert tagged.name.startswith("seed0.") and len(tagged.name.split(".")) == 3
    assert load_record(tagged)["config"]["reg"] == 10.0
    assert load_record(default[0])["config"]["reg"] == 1e-4

    # the same non-default command again finds its own record
    assert main([*RUN, "--out", str(tmp_path), "--set", "reg=10"]) == 0
    assert f"{tagged} exists; showing it" in capsys.readouterr().out.replace("\n", "")


def test_another_split_never_replaces_the_default_split(tmp_path, capsys):
    assert main([*RUN, "--out", str(tmp_path)]) == 0
    default = tmp_path / "synthetic" / "cvh" / "16" / "seed0.json"
    before = default.read_bytes()
    assert main([*RUN, "--out", str(tmp_path), "--split-seed", "3", "--overwrite"]) == 0
    assert default.read_bytes() == before
    other = [p for p in _records(tmp_path) if p != default]
    assert len(other) == 1 and load_record(other[0])["dataset"]["split_seed"] == 3


def test_a_plain_name_of_other_data_is_neither_shown_nor_replaced(tmp_path, capsys):
    assert main([*RUN, "--out", str(tmp_path)]) == 0
    plain = tmp_path / "synthetic" / "cvh" / "16" / "seed0.json"
    record = json.loads(plain.read_text())
    record["dataset"]["content_hash"] = "0123456789abcdef"  # as if made from other files of the same name
    plain.write_text(json.dumps(record))
    capsys.readouterr()
    assert main([*RUN, "--out", str(tmp_path)]) == 0
    assert "exists; showing it" not in capsys.readouterr().out
    assert json.loads(plain.read_text())["dataset"]["content_hash"] == "0123456789abcdef"
    assert len(_records(tmp_path)) == 2


def test_identity_ignores_neutral_options_and_tags_are_stable():
    head = {
        "method": "cvh",
        "bits": 16,
        "seed": 0,
        "config": {"reg": 1e-4},
        "dataset": {
            "name": "x",
            "protocol": "random",
            "split_seed": 0,
            "sizes": {"query": 5},
            "content_hash": "a",
        },
    }
    ident = record_identity(head)
    assert is_default_identity(ident)
    other = {**head, "config": {"reg": 0.5}}
    assert not is_default_identity(record_identity(other))
    assert identity_tag(record_identity(other)) == identity_tag(
        record_identity(json.loads(json.dumps(other)))
    )
    assert identity_tag(record_identity(other)) != identity_tag(
        record_identity({**other, "dataset": {**head["dataset"], "content_hash": "b"}})
    )


def test_records_migrate_renames_non_default_records(tmp_path, capsys):
    assert main([*RUN, "--out", str(tmp_path), "--set", "reg=10"]) == 0
    tagged = _records(tmp_path)[0]
    old = tagged.with_name("seed0.json")  # where records with settings lived before identities
    tagged.rename(old)
    assert main(["records", "migrate", "--results", str(tmp_path), "--dry-run"]) == 0
    assert old.exists()
    assert main(["records", "migrate", "--results", str(tmp_path)]) == 0
    assert [p.name for p in _records(tmp_path)] == [tagged.name]
    assert resolve_record_path(tmp_path, load_record(tagged)) == tagged


def test_committed_records_carry_their_identity_name():
    """Every committed record sits at the file name of its identity (no settings hide behind a plain name)."""
    from cmh.cli.records import planned_moves

    root = Path(__file__).resolve().parents[1] / "results"
    assert planned_moves(root) == []


def test_records_state_how_to_reproduce_them(tmp_path):
    assert main([*RUN, "--out", str(tmp_path)]) == 0
    rec = load_record(_records(tmp_path)[0])
    assert rec["schema"] == 2
    assert rec["threads"]["torch"] >= 1 and rec["threads"]["blas"] >= 1
    assert rec["versions"]["blas"] and all(isinstance(b, str) for b in rec["versions"]["blas"])
    assert rec["cpu"] and rec["device"] == "cpu"


def test_compare_flags_seeds_on_other_threads_or_cpus_and_shows_warnings(tmp_path):
    from cmh.compare import build_table, notes

    for seed in (0, 1):
        assert main([*RUN, "--out", str(tmp_path), "--seeds", str(seed)]) == 0
    path = tmp_path / "synthetic" / "cvh" / "16" / "seed1.json"
    rec = json.loads(path.read_text())
    rec["threads"]["torch"] = 17
    rec["cpu"] = "Another CPU 9000"
    rec["warnings"] = ["UninformativeBitsWarning: cvh: only 9 of the 16 bits are informative"]
    path.write_text(json.dumps(rec))
    records, _ = load_records(tmp_path)
    text = "\n".join(notes(build_table(records, "synthetic")))
    assert "cvh at 16 bits: seeds ran with different torch threads" in text and "17" in text
    assert "; CPUs " in text and "Another CPU 9000" in text
    assert "cvh (16 bits) warned UninformativeBitsWarning: cvh: only 9 of the 16 bits" in text


def test_identical_seeds_are_said_not_shown_as_zero_spread():
    from cmh.compare import Cell, format_cell

    assert format_cell(Cell(values=[0.25, 0.25, 0.25])) == "0.2500 (=3)"
    assert "±" in format_cell(Cell(values=[0.25, 0.26]))


@pytest.mark.parametrize("method", ["cvh", "scm-orth"])
def test_extra_bits_none_leaves_constant_bits_and_says_so(wikipedia, method):
    from cmh.registry import create_method

    train = wikipedia.part("train")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = create_method(method, bits=32, extra_bits="none").fit(train)
    codes = m.encode_image(wikipedia.part("query").image)
    constant = np.all(codes == codes[:1], axis=0)
    r = m.n_informative
    assert r < 32 and constant[r:].all() and not constant[:r].all()
    assert any("extra_bits=none" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        filled = create_method(method, bits=32).fit(train).encode_image(wikipedia.part("query").image)
    assert not np.all(filled == filled[:1], axis=0)[r:].all()
