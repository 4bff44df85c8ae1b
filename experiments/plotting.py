"""Small matplotlib helpers shared by the report and the studies (matplotlib only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def label_points(ax: Any, rows: Sequence[tuple[float, float, str]], points: Sequence[tuple[float, float]],
                 fontsize: float = 8) -> None:
    """Label each ``(x, y, text)`` next to its marker, on the side where the label box covers the
    fewest of ``points`` and no earlier label, inside the axes (call after the limits are final)."""
    fig = ax.figure
    fig.canvas.draw()  # final limits and layout, so data -> pixel is exact
    to_px = ax.transData.transform
    px_per_pt = fig.dpi / 72.0
    drawn = [to_px(p) for p in points]
    placed: list[tuple[float, float, float, float]] = []
    bbox = ax.get_window_extent()
    offsets = [(7, 5, "left"), (7, -13, "left"), (-7, 5, "right"), (-7, -13, "right"), (0, 12, "center"),
               (0, -20, "center"), (14, 14, "left"), (-14, -24, "right"), (14, -26, "left"), (-14, 16, "right")]
    for x, y, text in rows:
        anchor = to_px((x, y))
        w = len(text) * fontsize * 0.62 * px_per_pt
        h = fontsize * 1.25 * px_per_pt
        best = None
        for dx, dy, ha in offsets:
            left = anchor[0] + dx * px_per_pt - (w if ha == "right" else w / 2 if ha == "center" else 0)
            bottom = anchor[1] + dy * px_per_pt
            box = (left - 3, bottom - 3, left + w + 3, bottom + h + 3)
            cost = sum(box[0] <= px <= box[2] and box[1] <= py <= box[3] for px, py in drawn) * 10
            cost += sum(not (box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1]) for b in placed) * 20
            cost += 30 * (box[0] < bbox.x0 or box[2] > bbox.x1 or box[1] < bbox.y0 or box[3] > bbox.y1)
            if best is None or cost < best[0]:
                best = (cost, dx, dy, ha, box)
        assert best is not None
        _, dx, dy, ha, box = best
        placed.append(box)
        far = abs(dx) > 7 or dy < -13 or dy > 5
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize=fontsize,
                    zorder=6, arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.4"} if far else None)
