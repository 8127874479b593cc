"""Small pyqtgraph helpers shared by the views."""
from __future__ import annotations

from PySide6.QtWidgets import QGraphicsItem


def cache_axes(plot_item) -> None:
    """Render each axis into a cached pixmap: an axis is then only redrawn when its own range
    changes, not every time a curve or cursor next to it moves (axis text dominated redraw time)."""
    for name in ("left", "bottom", "top", "right"):
        ax = plot_item.getAxis(name)
        if ax is not None:
            ax.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
