"""Retrieval figures: rows of retrieved photos (or texts), relevant ones framed, drawn with matplotlib.

Used by ``cmh search --show`` (one row: the query and its top-k) and by the leaderboard galleries (one row per
method for the same query). The bytes are deterministic for a given matplotlib and Pillow version (no
timestamps, fixed DPI, thumbnails made with a fixed centre crop and resampling filter, a 256-colour palette made
by median cut).
"""

from __future__ import annotations

import dataclasses
import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cmh.errors import CMHError

THUMB = 128
RELEVANT, IRRELEVANT, UNKNOWN = "#1a9850", "#d73027", "#999999"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One panel: a photo (``image`` path) or a text, a caption under it, and whether it is relevant."""

    image: str | None = None
    text: str | None = None
    caption: str = ""
    relevant: bool | None = None


@dataclasses.dataclass(frozen=True)
class Row:
    """A labelled row of panels (e.g. a method's top-8, or the query followed by its results)."""

    label: str
    cells: Sequence[Cell]


def thumbnail(path: str | Path, size: int = THUMB) -> np.ndarray:
    """A photo as a ``(size, size, 3)`` uint8 array: RGB, centre square crop, bilinear resize."""
    from PIL import Image

    from cmh.extract.images import to_rgb

    try:
        with Image.open(path) as img:
            img.load()
            img = to_rgb(img)
    except Exception as exc:  # noqa: BLE001 - any decoding failure
        raise CMHError(f"cannot read image '{path}' ({type(exc).__name__}) for the figure") from None
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def draw_rows(rows: Sequence[Row], title: str = "", label_width: float = 1.6) -> bytes:
    """PNG bytes of ``rows`` (panels of equal size; a coloured frame marks relevant/irrelevant items)."""
    try:
        import matplotlib
    except ImportError:
        raise CMHError("drawing needs matplotlib; install it: pip install 'cmh[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise CMHError("nothing to draw: no rows")
    ncols = max(len(r.cells) for r in rows)
    cell_in = 1.25
    with matplotlib.rc_context({"font.size": 7, "savefig.dpi": 100, "font.family": "DejaVu Sans"}):
        fig = plt.figure(figsize=(label_width + ncols * cell_in, 0.45 + len(rows) * (cell_in + 0.3)))
        top = 1 - 0.45 / fig.get_figheight() if title else 0.99
        gs = fig.add_gridspec(
            len(rows),
            ncols + 1,
            width_ratios=[label_width / cell_in] + [1] * ncols,
            left=0.005,
            right=0.995,
            bottom=0.01,
            top=top,
            wspace=0.06,
            hspace=0.32,
        )
        for i, row in enumerate(rows):
            ax = fig.add_subplot(gs[i, 0])
            ax.axis("off")
            ax.text(0.0, 0.5, "\n".join(textwrap.wrap(row.label, 22)), va="center", ha="left", fontsize=7.5)
            for j, cell in enumerate(row.cells):
                ax = fig.add_subplot(gs[i, j + 1])
                ax.set_box_aspect(1)
                ax.set_xticks([])
                ax.set_yticks([])
                color = UNKNOWN if cell.relevant is None else (RELEVANT if cell.relevant else IRRELEVANT)
                width = 1.0 if cell.relevant is None else 3.5
                for spine in ax.spines.values():
                    spine.set_edgecolor(color)
                    spine.set_linewidth(width)
                if cell.image is not None:
                    ax.imshow(thumbnail(cell.image), interpolation="nearest")
                else:
                    ax.set_xlim(0, 1)
                    ax.set_ylim(0, 1)
                    big = i == 0 and j == 0 and cell.caption == "query"  # a typed query: larger type
                    wrapped = "\n".join(textwrap.wrap(cell.text or "", 18 if big else 24)[:7])
                    ax.text(0.05, 0.95, wrapped, va="top", ha="left", fontsize=8 if big else 6)
                ax.set_xlabel(cell.caption, fontsize=6.5, labelpad=1.5)
        if title:
            fig.suptitle(title, fontsize=9, y=0.995, va="top")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        plt.close(fig)
    return _palette_png(buf.getvalue())


def _palette_png(png: bytes) -> bytes:
    """A photo grid as a 256-colour palette PNG (median cut, deterministic): ~4x smaller than RGBA."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    small.save(out, format="PNG")
    return out.getvalue()
