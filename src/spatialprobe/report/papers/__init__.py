"""The papers' numbers as data: one file per paper (``s0.yaml``, ``s1.yaml``, ``p.yaml`` beside this module),
keyed by figure or table, row and column; ``s0.yaml`` describes the format.

Everything that shows a paper's number reads it from here: the results site (:mod:`spatialprobe.report.site`),
``sweeps/table2.py --paper``, and the test that holds every number the reproduction ledger
(docs/REPRODUCTION.md) quotes against these files. :func:`entries` flattens them into one :class:`Entry`
per number, with what identifies the runs it compares with (:attr:`Entry.select`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAPERS = ("S0", "S1", "P")  # the ledger's order
KINDS = ("value", "delta", "info")
#: selector keys a cell may carry (besides value, std, approx, digits, note, kind, metric)
SELECT_KEYS = ("model", "dataset", "method", "k", "unit", "train", "test", "best", "config")
CELL_KEYS = {"value", "std", "approx", "digits", "note", "kind", "metric", *SELECT_KEYS}
ITEM_KEYS = {"caption", "ledger", "experiments", "cpu_scale", "match", "row_match", "column_match", "rows"}


@dataclass(frozen=True)
class Entry:
    """One number of a paper: ``paper`` / ``item`` (figure or table) / ``row`` / ``column`` -> ``value``."""

    paper: str
    item: str
    row: str
    column: str
    value: float
    digits: int
    kind: str = "value"  # value | delta (difference to the K=0 baseline) | info (shown, never compared)
    metric: str = "test_top1"
    std: float | None = None
    approx: bool = False
    note: str | None = None
    select: dict = field(default_factory=dict, hash=False, compare=False)
    caption: str = ""
    experiments: tuple[str, ...] = ()
    cpu_scale: tuple[str, ...] = ()
    ledger: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.paper} {self.item} / {self.row} / {self.column}"

    @property
    def unit(self) -> str:
        return "M" if self.metric == "params" else ("points" if self.kind == "delta" else "")

    def text(self, value: float | None = None) -> str:
        """``value`` (default: the paper's) as the paper prints it: its decimals, ``M`` for parameters, a sign
        for a difference, ``+- std`` where the paper gives one, ``~`` for a number read off a figure."""
        v = self.value if value is None else value
        sign = "+" if self.kind == "delta" and v > 0 else ""
        out = f"{sign}{v:.{self.digits}f}" + ("M" if self.metric == "params" else "")
        if value is None and self.std is not None:
            out += f" ± {self.std:.{self.digits}f}"
        return ("~" if self.approx and value is None else "") + out


def _path(paper: str) -> Path:
    return HERE / f"{paper.lower()}.yaml"


@functools.cache
def load(paper: str) -> dict:
    """The parsed file of ``paper`` (S0, S1 or P); checked: every item, row and cell in the documented shape."""
    import yaml

    if paper not in PAPERS:
        raise KeyError(f"unknown paper {paper!r} (valid: {', '.join(PAPERS)})")
    data = yaml.safe_load(_path(paper).read_text())
    if data.get("paper") != paper or not isinstance(data.get("items"), dict):
        raise ValueError(f"{_path(paper)}: expected 'paper: {paper}' and 'items'")
    for name, item in data["items"].items():
        unknown = set(item) - ITEM_KEYS
        if unknown or not isinstance(item.get("rows"), dict):
            raise ValueError(f"{_path(paper)}: item {name!r}: unknown keys {sorted(unknown)} or no rows")
    return data


def papers() -> dict[str, dict]:
    """paper -> its title, authors, reference and url."""
    return {p: {k: v for k, v in load(p).items() if k != "items"} for p in PAPERS}


def _merge(*parts: dict | None) -> dict:
    out: dict = {}
    for part in parts:
        for key, value in (part or {}).items():
            if key == "config":
                out["config"] = {**out.get("config", {}), **value}
            else:
                out[key] = value
    return out


@functools.cache
def _entries(paper: str) -> tuple[Entry, ...]:
    data = load(paper)
    out = []
    for item_name, item in data["items"].items():
        for row_name, row in item["rows"].items():
            if not isinstance(row, dict):
                raise ValueError(f"{_path(paper)}: {item_name} / {row_name}: a row maps columns to cells")
            for column_name, cell in row.items():
                cell = cell if isinstance(cell, dict) else {"value": cell}
                unknown = set(cell) - CELL_KEYS
                merged = _merge(item.get("match"), (item.get("column_match") or {}).get(column_name),
                                (item.get("row_match") or {}).get(row_name), cell)
                if unknown or not isinstance(merged.get("value"), int | float) or isinstance(merged["value"], bool):
                    raise ValueError(f"{_path(paper)}: {item_name} / {row_name} / {column_name}: a cell is a number "
                                     f"or a mapping with a numeric 'value' (unknown keys: {sorted(unknown)})")
                kind = merged.get("kind", "value")
                if kind not in KINDS:
                    raise ValueError(f"{_path(paper)}: {item_name} / {row_name} / {column_name}: kind={kind!r} "
                                     f"(valid: {', '.join(KINDS)})")
                out.append(Entry(
                    paper=paper, item=str(item_name), row=str(row_name), column=str(column_name),
                    value=float(merged["value"]), digits=int(merged.get("digits", data.get("digits", 2))), kind=kind,
                    metric=str(merged.get("metric", "test_top1")), std=merged.get("std"),
                    approx=bool(merged.get("approx", False)), note=merged.get("note"),
                    select={k: merged[k] for k in SELECT_KEYS if k in merged},
                    caption=str(item.get("caption", "")), experiments=tuple(item.get("experiments") or ()),
                    cpu_scale=tuple(item.get("cpu_scale") or ()), ledger=tuple(item.get("ledger") or ()),
                ))
    return tuple(out)


def entries(paper: str | None = None) -> list[Entry]:
    """Every number of one paper (or of all three, in the ledger's order)."""
    return [e for p in ([paper] if paper else PAPERS) for e in _entries(p)]


def items(paper: str | None = None) -> dict[tuple[str, str], list[Entry]]:
    """(paper, item) -> its entries, in the files' order."""
    out: dict[tuple[str, str], list[Entry]] = {}
    for e in entries(paper):
        out.setdefault((e.paper, e.item), []).append(e)
    return out
