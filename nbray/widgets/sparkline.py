"""Small inline-SVG time series (sparklines) for the notebook widgets (notebook kernel).

Pure string building: ``ClusterView`` keeps each node's recent samples in
a bounded ring and shows them with ``sparklines_html``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

SPARK_WIDTH_PX = 110
SPARK_HEIGHT_PX = 16


def sparkline_points(values: Sequence[float], max_value: float, capacity: int,
                     width: float = SPARK_WIDTH_PX, height: float = SPARK_HEIGHT_PX) -> str:
    """SVG polyline points: the last sample at the right edge, one step per sample of a `capacity`-long ring."""
    if capacity < 2:
        raise ValueError(f"a sparkline needs room for at least 2 samples, got {capacity}")
    top = max_value if max_value > 0 else 1.0
    step = width / (capacity - 1)
    first_x = width - step * (len(values) - 1)
    points = []
    for i, v in enumerate(values):
        y = height - min(max(v, 0.0), top) / top * height
        points.append(f"{first_x + i * step:.1f},{y:.1f}")
    return " ".join(points)


def sparklines_html(series: Sequence[tuple[str, Sequence[float], float]], capacity: int, period_s: float) -> str:
    """One labelled sparkline per (label, values, max) over the last `capacity` samples."""
    minutes = capacity * period_s / 60
    cells = []
    for label, values, max_value in series:
        points = sparkline_points(values, max_value, capacity)
        peak = max(values, default=0.0)
        cells.append(
            f"<span class='nbray-spark' data-series='{html.escape(label)}' data-points='{len(values)}' "
            f"style='display:inline-flex;align-items:center;gap:3px;margin-right:8px;font-size:11px'>"
            f"{html.escape(label)}<svg width='{SPARK_WIDTH_PX}' height='{SPARK_HEIGHT_PX}' "
            f"style='background:var(--jp-layout-color2,#eee);border-radius:2px'>"
            f"<polyline fill='none' stroke='var(--jp-brand-color1,#1976d2)' stroke-width='1.2' points='{points}'/>"
            f"</svg><span style='opacity:.7'>peak {peak:g}</span></span>")
    return (f"<div title='the last {minutes:.0f} min' style='line-height:18px'>{''.join(cells)}</div>"
            if cells else "")
