"""Comparison tables from result records (``cmh compare``), in the layout of SSAH (CVPR 2018) Table 2.

Rows are methods; columns are the two tasks (I→T, T→I) at each code length; a cell is the mean ± sample
standard deviation over the seeds recorded for it. Only records of one *dataset version* (same protocol, split
seed and content hash, see :class:`DatasetVersion`) share a table: records of other versions are left out and
the table says so. Published numbers (``cmh/reported/*.csv``) can be shown beside cmh's, marked as reported.

With ``against``, every method is compared with one reference method by a paired Wilcoxon signed-rank test
over the queries (per-query AP, averaged over the seeds both methods share), the test a reader needs to tell
a real gain from seed noise on small query sets.

Seeds are averaged only over records made with the same settings: when the records of one (method, bits)
cell differ in their configuration (say a re-run with ``--set epochs=150`` beside older 40-epoch records),
the largest group is shown (ties: the newest) and the others are listed as left out. Settings that differ
from the method's defaults are named in the footnotes (e.g. ``ssah: epochs=150``).

The functional core is :func:`build_table`; :func:`render_rich`, :func:`to_markdown`, :func:`to_csv` and
:func:`to_json` only format a :class:`ComparisonTable`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cmh import identity
from cmh.errors import CMHError, did_you_mean
from cmh.results import TASK_TITLES, TASKS, database_codes, load_records

#: metrics that carry per-query values in the records, as (metric, per-query key)
PER_QUERY_KEYS = {"map": "ap_per_query", "map_tie_avg": "ap_tie_avg_per_query"}
#: significance level of the paired test
ALPHA = 0.05
REPORTED_DIR = Path(__file__).parent / "reported"
#: reported-data dataset names that differ from cmh's catalog names
_REPORTED_ALIASES = {"nuswide": "nus-wide", "mscoco": "coco"}


@dataclass(frozen=True)
class DatasetVersion:
    """What makes results comparable: the same data (content hash) under the same split."""

    name: str
    protocol: str
    split_seed: int | None
    content_hash: str
    sizes: tuple[tuple[str, int], ...] = ()
    database_codes: str = "per-view"

    @classmethod
    def of(cls, record: dict[str, Any]) -> DatasetVersion:
        ds = record["dataset"]
        return cls(
            str(ds["name"]),
            str(ds.get("protocol")),
            ds.get("split_seed"),
            str(ds.get("content_hash")),
            tuple(sorted((ds.get("sizes") or {}).items())),
            database_codes(record),
        )

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.name, self.protocol, str(self.split_seed), self.content_hash, self.database_codes)

    def label(self) -> str:
        sizes = ", ".join(f"{k} {v:,}" for k, v in self.sizes)
        split = "fixed split" if self.split_seed is None else f"split seed {self.split_seed}"
        codes = ", unified database codes" if self.database_codes == "unified" else ""
        return f"protocol {self.protocol}, {split}, content {self.content_hash[:12]}{codes}" + (
            f" ({sizes})" if sizes else ""
        )


@dataclass
class Cell:
    """One (method, task, bits) entry: the metric of each seed and the records it came from."""

    values: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    per_query: list[list[float] | None] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof = 1); 0 for a single seed."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0


@dataclass(frozen=True)
class ReportedRow:
    """Published numbers of one method in one paper table: ``values[(task, bits)]``."""

    source: str
    table: str
    features: str
    method: str
    values: dict[tuple[str, int], float]

    @property
    def label(self) -> str:
        return f"{self.method} [{self.source} {self.table}, {self.features}]"


@dataclass(frozen=True)
class Significance:
    """Paired Wilcoxon signed-rank test of a method against the reference, over ``n_queries`` queries."""

    p_value: float
    mean_difference: float
    n_queries: int

    @property
    def mark(self) -> str:
        if not self.p_value < ALPHA:
            return ""
        return "▲" if self.mean_difference > 0 else "▼"


@dataclass
class ComparisonTable:
    """Everything one comparison shows; the formatters read only this."""

    dataset: str
    version: DatasetVersion | None
    metric: str
    bits: list[int]
    methods: list[str]
    cells: dict[tuple[str, str, int], Cell]
    reported: list[ReportedRow] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    provenance: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    against: str | None = None
    significance: dict[tuple[str, str, int], Significance] = field(default_factory=dict)

    @property
    def columns(self) -> list[tuple[str, int]]:
        return [(task, b) for task in TASKS for b in self.bits]

    def best(self, task: str, bits: int) -> str | None:
        """The method with the highest mean in a column (ties: the first in row order)."""
        scored = [
            (self.cells[m, task, bits].mean, -i, m)
            for i, m in enumerate(self.methods)
            if (m, task, bits) in self.cells
        ]
        return max(scored)[2] if scored else None

    def seeds_label(self, method: str) -> str:
        ns = sorted({c.n for (m, _, _), c in self.cells.items() if m == method})
        return "" if not ns else str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"


def scalar_metrics(records: Iterable[dict[str, Any]]) -> list[str]:
    """The scalar metric names present in the records' tasks (e.g. map, map@1000, map_tie_avg, p_r2)."""
    names: set[str] = set()
    for rec in records:
        for task in TASKS:
            for k, v in (rec["tasks"].get(task) or {}).items():
                if isinstance(v, (int, float)) and not k.startswith("n_") and k != "bits":
                    names.add(k)
    return sorted(names)


def _pick_version(
    records: list[dict[str, Any]],
    dataset: str,
    version: str | None,
    left_out: list[str],
    database: str | None = None,
) -> tuple[DatasetVersion | None, list[dict[str, Any]]]:
    """Keep the records of one version of ``dataset``: the one matching ``version`` (a content-hash prefix)
    and ``database`` codes when given; by default per-view codes and the version with the most records."""
    by_version: dict[DatasetVersion, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_version[DatasetVersion.of(rec)].append(rec)
    if not by_version:
        return None, []
    candidates = list(by_version)
    if database:
        candidates = [v for v in candidates if v.database_codes == database]
        if not candidates:
            raise CMHError(
                f"no records of {dataset} with {database} database codes; make them with "
                f"`cmh run METHOD --database {database}`"
            )
    if version:
        candidates = [v for v in candidates if v.content_hash.startswith(version)]
        if not candidates:
            hashes = ", ".join(sorted({v.content_hash[:12] for v in by_version}))
            raise CMHError(
                f"no records of {dataset} with content hash {version}; recorded versions: {hashes}"
            )
    # per-view codes (cmh's protocol) first, then the version with the most records
    pick = sorted(candidates, key=lambda v: (v.database_codes != "per-view", -len(by_version[v]), v.key))[0]
    for v in sorted(by_version, key=lambda v: v.key):
        if v != pick:
            diff = [
                what
                for what, a, b in (
                    ("protocol", v.protocol, pick.protocol),
                    ("split seed", v.split_seed, pick.split_seed),
                    ("data", v.content_hash, pick.content_hash),
                    ("database codes", v.database_codes, pick.database_codes),
                )
                if a != b
            ]
            show = f"--dataset-version {v.content_hash[:12]}"
            if v.database_codes != "per-view":
                show += f" --database {v.database_codes}"
            left_out.append(
                f"{len(by_version[v])} record(s) of {dataset} left out: another dataset version "
                f"(different {', '.join(diff)}: {v.label()}); show them with {show}"
            )
    return pick, by_version[pick]


def _settings(record: dict[str, Any]) -> dict[str, Any]:
    """The record's settings that differ from its method's defaults (its whole configuration, neutral keys
    aside, when the method is not installed): what tells records of one cell apart."""
    return identity.non_default_settings(record["method"], int(record["bits"]), record.get("config"))


def _format_settings(settings: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    return " ".join(f"{k}={value(v)}" for k, v in sorted(settings.items())) or "defaults"


def _config_value(record: dict[str, Any], key: str) -> Any:
    """One option of a record: its stored value, else the method's default."""
    config = record.get("config") or {}
    if key in config:
        return config[key]
    return (identity.default_settings(record["method"], int(record["bits"])) or {}).get(key)


def non_default_settings(record: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``record`` that differ from its method's defaults (empty when unknown)."""
    if identity.default_settings(record["method"], int(record["bits"])) is None:
        return {}
    return _settings(record)


def _one_setting_per_cell(records: list[dict[str, Any]], left_out: list[str]) -> list[dict[str, Any]]:
    """Per (method, bits), keep the records of the most common configuration (ties: the newest)."""
    groups: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        key = json.dumps(_settings(rec), sort_keys=True, default=str)
        groups[rec["method"], int(rec["bits"])][key].append(rec)
    kept: list[dict[str, Any]] = []
    for (method, bits), by_setting in sorted(groups.items()):
        ranked = sorted(
            by_setting.values(), key=lambda g: (len(g), max(str(r.get("date", "")) for r in g)), reverse=True
        )
        kept.extend(ranked[0])
        chosen = _settings(ranked[0][0])
        for group in ranked[1:]:
            other = _settings(group[0])
            keys = [k for k in sorted(set(chosen) | set(other)) if chosen.get(k) != other.get(k)]
            diff = {k: _config_value(group[0], k) for k in keys}
            shown = {k: _config_value(ranked[0][0], k) for k in keys}
            for rec in group:
                left_out.append(
                    f"{rec['_path']}: left out, made with other settings ({_format_settings(diff)}) than the "
                    f"{len(ranked[0])} record(s) shown for {method} at {bits} bits ({_format_settings(shown)})"
                )
    return kept


def _settings_notes(records: list[dict[str, Any]]) -> dict[str, str]:
    """Per method, its non-default settings (per code length where they differ between code lengths)."""
    per_method: dict[str, dict[int, str]] = defaultdict(dict)
    for rec in records:
        per_method[rec["method"]][int(rec["bits"])] = _format_settings(non_default_settings(rec))
    out = {}
    for method, by_bits in sorted(per_method.items()):
        texts = set(by_bits.values())
        if texts == {"defaults"}:
            continue
        if len(texts) == 1:
            out[method] = texts.pop()
        else:
            out[method] = "; ".join(f"{b} bits: {t}" for b, t in sorted(by_bits.items()))
    return out


#: provenance fields whose difference between the seeds of one cell can change results bitwise
_PROVENANCE = {
    "torch": lambda r: (r.get("versions") or {}).get("torch"),
    "numpy": lambda r: (r.get("versions") or {}).get("numpy"),
    "BLAS": lambda r: ", ".join((r.get("versions") or {}).get("blas") or []) or None,
    "torch threads": lambda r: (r.get("threads") or {}).get("torch", r.get("torch_threads")),
    "BLAS threads": lambda r: (r.get("threads") or {}).get("blas"),
    "device": lambda r: r.get("device"),
    "CPUs": lambda r: r.get("cpu"),  # float kernels differ between CPU models
}


def provenance_notes(records: list[dict[str, Any]]) -> list[str]:
    """Footnotes for cells whose seeds ran on different versions, thread counts, devices or CPUs, and a count of
    records that do not state them (written before cmh recorded them)."""
    by_cell: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_cell[rec["method"], int(rec["bits"])].append(rec)
    out = []
    for (method, bits), recs in sorted(by_cell.items()):
        diffs = []
        for name, get in _PROVENANCE.items():
            seen = {get(r) for r in recs if get(r) is not None}
            if len(seen) > 1:
                diffs.append(f"{name} " + " vs ".join(map(str, sorted(seen, key=str))))
        if diffs:
            out.append(f"{method} at {bits} bits: seeds ran with different {'; '.join(diffs)}.")
    unknown = [r for r in records if (r.get("threads") or {}).get("blas") is None]
    if unknown:
        out.append(
            f"{len(unknown)} of {len(records)} records do not state their BLAS library and thread counts "
            "(written before cmh recorded them); their seeds may differ there."
        )
    return out


def warning_notes(records: list[dict[str, Any]]) -> list[str]:
    """The warnings the records kept, one footnote per (method, warning kind), with the code lengths."""
    seen: dict[tuple[str, str], tuple[str, set[int]]] = {}
    for rec in records:
        for text in rec.get("warnings") or []:
            kind, _, message = str(text).partition(": ")
            key = (rec["method"], kind)
            seen.setdefault(key, (message, set()))[1].add(int(rec["bits"]))
    return [
        f"{method} ({', '.join(map(str, sorted(bits)))} bits) warned {kind}: {message}"
        for (method, kind), (message, bits) in sorted(seen.items())
    ]


def _match_method(name: str, wanted: Sequence[str] | None) -> bool:
    """A reported method matches a requested cmh method by name or family (``scm`` ~ ``scm-seq``)."""
    if not wanted:
        return True
    return any(name == w or name == w.split("-")[0] for w in wanted)


def _norm_dataset(name: str) -> str:
    key = name.lower().replace("_", "-")
    return _REPORTED_ALIASES.get(key, key)


#: the columns of a reported-numbers CSV that are not values (the others are named by their metric)
_REPORTED_KEYS = ("source", "table", "features", "dataset", "task", "method", "bits")


def _reported_csv_rows(directory: str | Path) -> Iterable[dict[str, str]]:
    """Every row of the reported-numbers CSV files in ``directory`` (``#`` lines are their citations)."""
    for path in sorted(Path(directory).glob("*.csv")):
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
        yield from csv.DictReader(lines)


def load_reported(
    dataset: str,
    methods: Sequence[str] | None = None,
    bits: Sequence[int] | None = None,
    metric: str = "map",
    directory: str | Path = REPORTED_DIR,
) -> list[ReportedRow]:
    """Published numbers for ``dataset`` from the CSV files in ``directory`` (columns: source, table, features,
    dataset, task, method, bits, then one value column named by its metric: ``map``, or ``map@50`` for the
    unsupervised papers that report mAP over the top 50). A file without a ``metric`` column gives no rows
    for that metric."""
    grouped: dict[tuple[str, str, str, str], dict[tuple[str, int], float]] = defaultdict(dict)
    for row in _reported_csv_rows(directory):
        if not row.get(metric):
            continue
        if _norm_dataset(row["dataset"]) != _norm_dataset(dataset) or not _match_method(
            row["method"], methods
        ):
            continue
        if bits and int(row["bits"]) not in bits:
            continue
        key = (row["source"], row["table"], row["features"], row["method"])
        grouped[key][row["task"], int(row["bits"])] = float(row[metric])
    return [ReportedRow(s, t, f, m, v) for (s, t, f, m), v in grouped.items()]


def _no_reported_note(dataset: str, metric: str, directory: str | Path) -> str:
    """Why ``--reported`` added no row: which datasets and metrics have published numbers."""
    have: dict[str, set[str]] = defaultdict(set)
    for row in _reported_csv_rows(directory):
        have[row["dataset"]].update(k for k, v in row.items() if k not in _REPORTED_KEYS and v)
    listed = ", ".join(f"{d} ({', '.join(sorted(m))})" for d, m in sorted(have.items())) or "none"
    return f"--reported: no published {metric} numbers for {dataset} in cmh/reported/ (the papers report: {listed})."


def _paired_test(a: Cell, b: Cell) -> Significance | None:
    """Wilcoxon signed-rank test of per-query values of ``a`` vs ``b`` over the seeds both have."""
    from scipy.stats import wilcoxon

    common = sorted(set(a.seeds) & set(b.seeds))
    qa = [a.per_query[a.seeds.index(s)] for s in common]
    qb = [b.per_query[b.seeds.index(s)] for s in common]
    if not common or any(q is None for q in qa + qb) or len({len(q) for q in qa + qb}) != 1:
        return None
    x, y = np.mean(np.asarray(qa, float), axis=0), np.mean(np.asarray(qb, float), axis=0)
    d = x - y
    if not np.any(d != 0):
        return Significance(1.0, 0.0, len(d))
    p = float(wilcoxon(x, y, zero_method="wilcox").pvalue)
    return Significance(p, float(d.mean()), len(d))


def build_table(
    records: Iterable[dict[str, Any]],
    dataset: str,
    methods: Sequence[str] | None = None,
    bits: Sequence[int] | None = None,
    metric: str = "map",
    reported: bool = False,
    against: str | None = None,
    version: str | None = None,
    reported_dir: str | Path = REPORTED_DIR,
    database: str | None = None,
) -> ComparisonTable:
    """Collect one dataset's records into a :class:`ComparisonTable` (see the module docstring).

    ``methods``/``bits`` restrict and order rows/columns (default: all recorded, methods in name order);
    ``metric`` is any scalar metric of the records (``map``, ``map@1000``, ``map_tie_avg``, ``p_r2``, ...);
    ``version`` picks a dataset version by content-hash prefix (default: the one with the most records);
    ``database`` picks records made with ``per-view`` (the default) or ``unified`` database codes.
    """
    all_records = [r for r in records if r["dataset"]["name"] == dataset]
    left_out: list[str] = []
    ver, recs = _pick_version(all_records, dataset, version, left_out, database)
    if recs:
        known = scalar_metrics(recs)
        if metric not in known:
            raise CMHError(
                f"unknown metric '{metric}'{did_you_mean(metric, known)}; recorded: {', '.join(known)}"
            )
    if methods:
        recorded = sorted({r["method"] for r in recs})
        missing = [m for m in methods if m not in recorded]
        if missing and recs:
            left_out.append(
                f"no records of {', '.join(missing)} on {dataset}" + did_you_mean(missing[0], recorded)
            )
        recs = [r for r in recs if r["method"] in methods]
    if bits:
        recs = [r for r in recs if r["bits"] in bits]
    recs = _one_setting_per_cell(recs, left_out)
    cells: dict[tuple[str, str, int], Cell] = defaultdict(Cell)
    pq_key = PER_QUERY_KEYS.get(metric)
    for rec in sorted(recs, key=lambda r: (r["method"], r["bits"], r["seed"])):
        for task in TASKS:
            res = rec["tasks"].get(task) or {}
            value = res.get(metric)
            if not isinstance(value, (int, float)) or math.isnan(value):
                left_out.append(f"{rec['_path']}: no {metric} for {TASK_TITLES[task]}")
                continue
            cell = cells[rec["method"], task, int(rec["bits"])]
            cell.values.append(float(value))
            cell.seeds.append(int(rec["seed"]))
            cell.paths.append(rec["_path"])
            cell.per_query.append(res.get(pq_key) if pq_key else None)
    row_names = (
        [m for m in methods if any(k[0] == m for k in cells)] if methods else sorted({k[0] for k in cells})
    )
    columns = (
        sorted({k[2] for k in cells}) if not bits else [b for b in bits if any(k[2] == b for k in cells)]
    )
    table = ComparisonTable(
        dataset,
        ver,
        metric,
        columns,
        row_names,
        dict(cells),
        left_out=left_out,
        settings=_settings_notes(recs),
        provenance=provenance_notes(recs),
        warnings=warning_notes(recs),
    )
    if reported:
        table.reported = load_reported(dataset, methods, columns or bits, metric, reported_dir)
        if not table.reported:
            table.left_out.append(_no_reported_note(dataset, metric, reported_dir))
    if against:
        _add_significance(table, against)
    return table


def _add_significance(table: ComparisonTable, against: str) -> None:
    if table.metric not in PER_QUERY_KEYS:
        raise CMHError(
            f"--against needs per-query values, which records keep for {', '.join(PER_QUERY_KEYS)}; "
            f"use --metric map"
        )
    if against not in table.methods:
        raise CMHError(
            f"--against {against}: no records of it in this table{did_you_mean(against, table.methods)}; "
            "run it first (cmh run) or pick a listed method"
        )
    table.against = against
    for m in table.methods:
        for task, b in table.columns:
            if m == against or (m, task, b) not in table.cells or (against, task, b) not in table.cells:
                continue
            sig = _paired_test(table.cells[m, task, b], table.cells[against, task, b])
            if sig is not None:
                table.significance[m, task, b] = sig


def compare(
    results: str | Path | Sequence[str | Path], dataset: str | None = None, **options: Any
) -> tuple[list[ComparisonTable], list[tuple[Path, str]]]:
    """Tables for ``dataset`` (or every recorded dataset) from the records under ``results``; plus skipped files."""
    records, skipped = load_records(results)
    names = sorted({r["dataset"]["name"] for r in records})
    if dataset is not None and dataset not in names:
        where = results if isinstance(results, (str, Path)) else ", ".join(map(str, results))
        raise CMHError(
            f"no result records of dataset '{dataset}' under {where}{did_you_mean(dataset, names)}; "
            f"recorded: {', '.join(names) or 'none'} (run `cmh run METHOD --dataset {dataset}` first)"
        )
    return [build_table(records, name, **options) for name in ([dataset] if dataset else names)], skipped


# ----------------------------------------------------------------------------------------------- formatting


def format_cell(cell: Cell, digits: int = 4, sep: str = " ± ") -> str:
    """``0.6123 ± 0.0041`` (the ± part only with more than one seed); ``0.6123 (=3)`` when every seed gave
    the same number (a deterministic method on a fixed split: no spread was measured)."""
    if cell.n > 1 and len(set(cell.values)) == 1:
        return f"{cell.mean:.{digits}f} (={cell.n})"
    return f"{cell.mean:.{digits}f}" + (f"{sep}{cell.std:.{digits}f}" if cell.n > 1 else "")


def _header(table: ComparisonTable) -> list[str]:
    return ["Method", "Seeds"] + [f"{TASK_TITLES[t]} {b}" for t, b in table.columns]


def _cmh_rows(
    table: ComparisonTable, bold: tuple[str, str], digits: int = 4, sep: str = " ± "
) -> list[list[str]]:
    rows = []
    for m in table.methods:
        row = [m, table.seeds_label(m)]
        for task, b in table.columns:
            cell = table.cells.get((m, task, b))
            text = "–" if cell is None else format_cell(cell, digits, sep)
            if cell is not None and table.best(task, b) == m:
                text = f"{bold[0]}{text}{bold[1]}"
            sig = table.significance.get((m, task, b))
            if sig is not None and sig.mark:
                text += f" {sig.mark}"
            row.append(text)
        rows.append(row)
    return rows


def _reported_rows(table: ComparisonTable, digits: int = 3) -> list[list[str]]:
    return [
        [r.label, "reported"]
        + [f"{r.values[t, b]:.{digits}f}" if (t, b) in r.values else "–" for t, b in table.columns]
        for r in table.reported
    ]


def caption(table: ComparisonTable) -> str:
    what = {"map": "MAP", "map@50": "mAP@50"}.get(table.metric, table.metric)
    ver = f" — {table.version.label()}" if table.version else ""
    return f"{table.dataset}: {what}, mean ± std over seeds{ver}"


def notes(table: ComparisonTable) -> list[str]:
    """Footnotes: significance legend, reported-number caveat, and what was left out and why."""
    out = []
    if table.against:
        out.append(
            f"▲/▼: significantly better/worse than {table.against} (paired Wilcoxon signed-rank test over "
            f"queries on per-query AP averaged over shared seeds, p < {ALPHA}, not corrected for multiple "
            "comparisons)."
        )
    if table.settings:
        listed = "; ".join(f"{m}: {t}" for m, t in table.settings.items())
        out.append(f"Settings other than the method's defaults: {listed}.")
    if any(c.n > 1 and len(set(c.values)) == 1 for c in table.cells.values()):
        out.append(
            "(=n): all n seeds gave the same number (the method is deterministic on this split), so no spread "
            "was measured; ± is the sample standard deviation (ddof = 1) elsewhere."
        )
    out.extend(table.warnings)
    out.extend(table.provenance)
    if table.reported:
        out.append(
            "Reported rows are published numbers (other features, splits and runs); bold marks the best "
            "of cmh's own rows only."
        )
    out.extend(table.left_out)
    return out


def render_rich(table: ComparisonTable, width: int | None = None) -> Any:
    """A :class:`rich.table.Table` (best per column in bold; reported rows dimmed).

    When ``width`` (the console's) is too narrow for all columns, one table per task is returned (a Group).
    """
    from rich.console import Group
    from rich.table import Table

    head, rep = _header(table), _reported_rows(table)

    def fits(rows: list[list[str]], ncols: int) -> bool:
        name_w = max([len(r[0]) for r in rows + rep] + [6])
        cell_w = max([len(c) - 13 * ("[bold]" in c) for r in rows + rep for c in r[2:]] + [6])
        return width is None or name_w + 12 + ncols * (cell_w + 3) + 1 <= width

    rows = _cmh_rows(table, ("[bold]", "[/bold]"))
    groups = [list(range(len(table.columns)))]
    if not fits(rows, len(table.columns)):
        n = len(table.bits)
        groups = [list(range(i * n, (i + 1) * n)) for i in range(len(TASKS))]
        if not fits(rows, n):
            rows = _cmh_rows(table, ("[bold]", "[/bold]"), digits=3, sep="±")
    name_w = max([len(r[0]) for r in rows + rep] + [6])
    out = []
    for gi, cols in enumerate(groups):
        last = gi == len(groups) - 1
        t = Table(
            title=caption(table) if gi == 0 else None,
            title_justify="left",
            caption="\n".join(notes(table)) or None if last else None,
            caption_justify="left",
        )
        t.add_column(head[0], no_wrap=True, min_width=min(name_w, 40))
        t.add_column(head[1], justify="right", no_wrap=True, min_width=5)
        for c in cols:
            t.add_column(head[2 + c], justify="right", no_wrap=True)
        for row in rows:
            t.add_row(row[0], row[1], *(row[2 + c] for c in cols))
        if rep:
            t.add_section()
            for row in rep:
                t.add_row(row[0], row[1], *(row[2 + c] for c in cols), style="dim")
        out.append(t)
    return out[0] if len(out) == 1 else Group(*out)


def to_markdown(table: ComparisonTable, digits: int = 4) -> str:
    """A GitHub-markdown table (best per column in **bold**) with its caption and footnotes."""
    head = _header(table)
    lines = [
        f"**{caption(table)}**",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    rows = _cmh_rows(table, ("**", "**"), digits) + [[f"*{r[0]}*", *r[1:]] for r in _reported_rows(table)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    foot = notes(table)
    if foot:
        lines += [""] + [f"- {n}" for n in foot]
    return "\n".join(lines) + "\n"


def to_rows(table: ComparisonTable) -> list[dict[str, Any]]:
    """Long format: one dict per (method, task, bits) with mean, std, n, seeds and (with against) p-value."""
    out: list[dict[str, Any]] = []
    for m in table.methods:
        for task, b in table.columns:
            cell = table.cells.get((m, task, b))
            if cell is None:
                continue
            row: dict[str, Any] = {
                "dataset": table.dataset,
                "method": m,
                "source": "cmh",
                "task": task,
                "bits": b,
                "metric": table.metric,
                "mean": round(cell.mean, 6),
                "std": round(cell.std, 6),
                "n": cell.n,
                "seeds": cell.seeds,
                "records": cell.paths,
            }
            sig = table.significance.get((m, task, b))
            if sig is not None:
                row.update(against=table.against, p_value=sig.p_value, mean_difference=sig.mean_difference)
            out.append(row)
    for r in table.reported:
        for (task, b), v in sorted(r.values.items()):
            out.append(
                {
                    "dataset": table.dataset,
                    "method": r.method,
                    "source": f"{r.source} {r.table}",
                    "features": r.features,
                    "task": task,
                    "bits": b,
                    "metric": table.metric,
                    "mean": v,
                    "reported": True,
                }
            )
    return out


def to_csv(table: ComparisonTable) -> str:
    fields = ["dataset", "method", "source", "task", "bits", "metric", "mean", "std", "n", "p_value"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in to_rows(table):
        w.writerow(row)
    return buf.getvalue()


def to_json(table: ComparisonTable) -> str:
    doc = {
        "dataset": table.dataset,
        "metric": table.metric,
        "version": None
        if table.version is None
        else {
            "protocol": table.version.protocol,
            "split_seed": table.version.split_seed,
            "content_hash": table.version.content_hash,
            "database_codes": table.version.database_codes,
        },
        "rows": to_rows(table),
        "settings": table.settings,
        "notes": notes(table),
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


FORMATTERS = {"md": to_markdown, "csv": to_csv, "json": to_json}


def print_comparison(
    results: str | Path, dataset: str, reported: bool = False, console: Any = None, **options: Any
) -> None:
    """Print one dataset's table (used by ``cmh reproduce`` after its runs)."""
    from rich.console import Console

    console = console or Console()
    tables, skipped = compare(results, dataset, reported=reported, **options)
    for path, why in skipped:
        console.print(f"[yellow]skipped {path}: {why}[/]")
    for table in tables:
        console.print(render_rich(table, console.width))


def relative_paths(paths: Iterable[str], start: str | Path) -> list[str]:
    """``paths`` relative to ``start`` with forward slashes (stable links in generated pages)."""
    return [os.path.relpath(p, start).replace(os.sep, "/") for p in paths]
