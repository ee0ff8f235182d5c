"""Shape coordinates from annotation files: checked to be numbers, and clipped before anything is drawn.

A vertex may be NaN, infinite or 1e308 in a file that still parses. Pillow draws a NaN polygon as
garbage without complaint and overflows on 1e308, and OpenCV needs 32-bit integers, so every reader
passes its points through here: non-finite values are refused (the caller names the file and shape),
and a polygon or line reaching more than a million pixels outside the image is clipped to a box that far
around it (Sutherland-Hodgman for polygons, Liang-Barsky for segments). Shapes within that reach, which
is every real annotation, are drawn untouched, so the labels stay exactly those of the tool's own
converter (Pillow's and OpenCV's edge rules depend on where a vertex lies, even outside the image).
"""

from __future__ import annotations

import numpy as np


class BadPoints(ValueError):
    """Coordinates that are not finite numbers: the caller adds the file and the shape."""


def points_array(points: object, what: str) -> np.ndarray:
    """An Nx2 float64 array of finite numbers from [[x, y], ...] or [x, y, x, y, ...]; BadPoints if not."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadPoints(f"{what} has coordinates that are not numbers") from None
    if array.ndim == 1 and array.size % 2 == 0:
        array = array.reshape(-1, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise BadPoints(f"{what} is not a list of x, y points")
    if not np.isfinite(array).all():
        bad = array[~np.isfinite(array)][0]
        raise BadPoints(f"{what} has the coordinate {bad} (not a finite number)")
    return array


REACH = 1_000_000.0  # pixels outside the image beyond which a vertex is clipped


def clip_box(height: float, width: float, reach: float = REACH) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1): the image grown by `reach` on every side."""
    return -reach, -reach, width + reach, height + reach


def needs_clipping(points: np.ndarray, height: float, width: float, reach: float = REACH) -> bool:
    x0, y0, x1, y1 = clip_box(height, width, reach)
    return bool(
        len(points)
        and (points[:, 0].min() < x0 or points[:, 0].max() > x1 or points[:, 1].min() < y0 or points[:, 1].max() > y1)
    )


def clip_polygon(points: np.ndarray, height: float, width: float, reach: float = REACH) -> np.ndarray:
    """The polygon cut to the clip box (the same array when it lies inside it); may come back empty."""
    if not needs_clipping(points, height, width, reach):
        return points
    x0, y0, x1, y1 = clip_box(height, width, reach)
    polygon = [tuple(p) for p in points.tolist()]
    for axis, limit, keep_below in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
        polygon = _clip_half_plane(polygon, axis, limit, keep_below)
        if not polygon:
            break
    return np.asarray(polygon, dtype=np.float64).reshape(-1, 2)


def _clip_half_plane(
    polygon: list[tuple[float, float]], axis: int, limit: float, keep_below: bool
) -> list[tuple[float, float]]:
    def inside(p: tuple[float, float]) -> bool:
        return p[axis] <= limit if keep_below else p[axis] >= limit

    def crossing(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
        t = (limit - a[axis]) / (b[axis] - a[axis])
        point = [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]
        point[axis] = limit
        return point[0], point[1]

    out: list[tuple[float, float]] = []
    for i, current in enumerate(polygon):
        previous = polygon[i - 1]
        if inside(current):
            if not inside(previous):
                out.append(crossing(previous, current))
            out.append(current)
        elif inside(previous):
            out.append(crossing(previous, current))
    return out


def clip_segments(points: np.ndarray, height: int, width: int) -> list[np.ndarray]:
    """A polyline as the list of its segments cut to the clip box (the whole line when nothing reaches out)."""
    if not needs_clipping(points, height, width):
        return [points]
    x0, y0, x1, y1 = clip_box(height, width)
    pieces = []
    for a, b in zip(points[:-1], points[1:], strict=True):
        d = b - a
        low, high = 0.0, 1.0
        for p, q in ((-d[0], a[0] - x0), (d[0], x1 - a[0]), (-d[1], a[1] - y0), (d[1], y1 - a[1])):
            if p == 0:
                if q < 0:
                    low, high = 1.0, 0.0
                continue
            t = q / p
            low, high = (max(low, t), high) if p < 0 else (low, min(high, t))
        if low <= high:
            pieces.append(np.stack([a + low * d, a + high * d]))
    return pieces
