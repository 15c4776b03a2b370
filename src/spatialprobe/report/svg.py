"""Charts of the results site as inline SVG, drawn here in Python: visible without a script, interactive with the
site's own small script (``assets/site.js``): every point names a tooltip (``data-tip``: an index into the page's
JSON of tooltips), every trace a legend button that switches it off and on (``data-trace``).

Everything written from data goes through :func:`esc`; colours are CSS classes (``c0`` .. ``c9``), so a page
needs no inline style (its Content-Security-Policy allows none).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

COLOURS = 10


def esc(value) -> str:
    """Text or attribute value, HTML-escaped (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


@dataclass
class Trace:
    """One series of a chart. ``points``: (x, y, spread or None, tooltip index or None, link or None).
    ``kind``: line (markers joined), scatter (markers), hline (a horizontal reference line at the first point's
    y, across the chart; its spread as a band), step (a step line through the points, e.g. a Pareto front),
    paper (the papers' numbers: hollow diamonds)."""

    name: str
    points: list[tuple] = field(default_factory=list)
    kind: str = "line"
    colour: int | None = None
    attrs: dict = field(default_factory=dict)  # extra data-* attributes of the trace's <g>


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        lo, hi = lo - 1, hi + 1
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo <= v <= hi:
                out.append(v)
    return out if len(out) >= 2 else [lo, hi]


def tick_label(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if a >= size:
            return f"{v / size:g}{unit}"
    return f"{v:g}"


def chart(cid: str, traces: list[Trace], *, xlabel: str, ylabel: str, title: str = "", xlog: bool = False,
          xint: bool = False, top_axis: tuple[str, float] | None = None, css: str = "", width: int = 680,
          height: int = 380) -> str:
    """A figure: the SVG and, below it, the legend of buttons. ``top_axis``: (label, n): a second x axis on top
    showing x as a percentage of n (the K-curves' "% of the units modified")."""
    top = 52 if top_axis else 30
    left, right, bottom = 64, 18, 48
    pw, ph = width - left - right, height - top - bottom
    xs = [p[0] for t in traces for p in t.points if p[0] is not None]
    ys = []
    for t in traces:
        for p in t.points:
            if p[1] is None or not math.isfinite(p[1]):
                continue
            s = p[2] if len(p) > 2 and p[2] and math.isfinite(p[2]) else 0.0
            ys += [p[1] - s, p[1] + s]
    if not xs or not ys:
        return f'<p class="empty">{esc(title)}: nothing to draw</p>'
    x0, x1 = min(xs), max(xs)
    if xlog and x0 > 0:
        lx0, lx1 = math.log10(x0), math.log10(x1) if x1 > x0 else math.log10(x0) + 1
        pad = 0.05 * (lx1 - lx0)
        lx0, lx1 = lx0 - pad, lx1 + pad

        def sx(x):
            return left + (math.log10(x) - lx0) / (lx1 - lx0) * pw
        xticks = log_ticks(10**lx0, 10**lx1)
    else:
        xlog = False
        if x1 == x0:
            x0, x1 = (x0 * 0.9, x1 * 1.1) if x0 > 0 else (x0 - 1, x1 + 1)
        pad = 0.04 * (x1 - x0)
        x0p, x1p = x0 - pad, x1 + pad

        def sx(x):
            return left + (x - x0p) / (x1p - x0p) * pw
        xticks = [t for t in nice_ticks(x0, x1, 8 if xint else 6, integer=xint) if x0p <= t <= x1p]
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    pad = 0.06 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def sy(y):
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    out = [f'<figure class="chart {esc(css)}" id="{esc(cid)}">',
           f'<svg class="plot {esc(css)}" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" '
           f'xmlns="http://www.w3.org/2000/svg">']
    if title:
        out.append(f'<text class="title" x="{left}" y="{16 if not top_axis else 14}">{esc(title)}</text>')
    out.append('<g class="axis grid">')
    for t in nice_ticks(y0, y1, 6):
        if y0 <= t <= y1:
            y = sy(t)
            out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
                       f'<text class="tick y" x="{left - 6}" y="{y + 4:.1f}">{esc(tick_label(t))}</text>')
    for t in xticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}"/>'
                   f'<text class="tick x" x="{x:.1f}" y="{top + ph + 16}">{esc(tick_label(t))}</text>')
        if top_axis and top_axis[1]:
            out.append(f'<text class="tick x" x="{x:.1f}" y="{top - 6}">{100.0 * t / top_axis[1]:.0f}</text>')
    out.append(f'<rect class="frame" x="{left}" y="{top}" width="{pw}" height="{ph}"/>')
    out.append(f'<text class="label" x="{left + pw / 2:.1f}" y="{height - 8}">{esc(xlabel)}</text>')
    out.append(f'<text class="label" transform="translate(14 {top + ph / 2:.1f}) rotate(-90)">{esc(ylabel)}</text>')
    if top_axis:
        out.append(f'<text class="label" x="{left + pw / 2:.1f}" y="{top - 22}">{esc(top_axis[0])}</text>')
    out.append("</g>")
    legend = []
    for i, t in enumerate(traces):
        colour = t.colour if t.colour is not None else i
        tid = f"{cid}-t{i}"
        attrs = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in t.attrs.items())
        cls = {"hline": "baseline", "paper": "paper"}.get(t.kind, "trace")
        out.append(f'<g class="{cls} c{colour % COLOURS}" data-trace="{tid}" data-name="{esc(t.name)}"{attrs}>')
        pts = [p for p in t.points if p[1] is not None and math.isfinite(p[1]) and (t.kind == "hline" or p[0] is not None)]
        if t.kind == "hline" and pts:
            y, s = pts[0][1], pts[0][2] if len(pts[0]) > 2 else None
            if s and math.isfinite(s):
                out.append(f'<rect class="band" x="{left}" y="{sy(y + s):.1f}" width="{pw}" '
                           f'height="{max(sy(y - s) - sy(y + s), 0.5):.1f}"/>')
            out.append(f'<line class="line" x1="{left}" x2="{left + pw}" y1="{sy(y):.1f}" y2="{sy(y):.1f}"/>')
            pts = [(x, y, *p[2:]) for p in pts for x in [p[0]] if x is not None]  # markers where runs are
        if t.kind == "line" and any(len(p) > 2 and p[2] for p in pts) and len(pts) > 1:
            upper = [f"{sx(p[0]):.1f},{sy(p[1] + (p[2] or 0)):.1f}" for p in pts]
            lower = [f"{sx(p[0]):.1f},{sy(p[1] - (p[2] or 0)):.1f}" for p in reversed(pts)]
            out.append(f'<polygon class="band" points="{" ".join(upper + lower)}"/>')
        if t.kind in ("line", "step") and len(pts) > 1:
            if t.kind == "step":
                d = [f"M{sx(pts[0][0]):.1f},{sy(pts[0][1]):.1f}"]
                for b in pts[1:]:
                    d.append(f"H{sx(b[0]):.1f}V{sy(b[1]):.1f}")
                d.append(f"H{left + pw}")
                out.append(f'<path class="line" d="{"".join(d)}"/>')
            else:
                out.append('<polyline class="line" points="'
                           + " ".join(f"{sx(p[0]):.1f},{sy(p[1]):.1f}" for p in pts) + '"/>')
        for p in pts:
            tip = f' data-tip="{int(p[3])}" tabindex="0"' if len(p) > 3 and p[3] is not None else ""
            href = f' data-href="{esc(p[4])}"' if len(p) > 4 and p[4] else ""
            x, y = sx(p[0]), sy(p[1])
            if t.kind == "paper":
                out.append(f'<path class="pt" d="M{x:.1f},{y - 6:.1f}l6,6l-6,6l-6,-6z"{tip}/>')
            elif t.kind == "step":
                out.append(f'<circle class="ring" cx="{x:.1f}" cy="{y:.1f}" r="7"{tip}{href}/>')
            else:
                out.append(f'<circle class="pt" cx="{x:.1f}" cy="{y:.1f}" r="{3 if t.kind == "hline" else 4.5}"'
                           f'{tip}{href}/>')
        out.append("</g>")
        legend.append(f'<button type="button" class="key c{colour % COLOURS} {cls}" data-trace="{tid}" '
                      f'aria-pressed="true"><span class="swatch"></span>{esc(t.name)}</button>')
    out.append("</svg>")
    out.append(f'<figcaption class="legend" aria-label="switch a series off or on">{"".join(legend)}</figcaption>')
    out.append("</figure>")
    return "\n".join(out)
