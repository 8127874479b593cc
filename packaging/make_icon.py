"""Draw the app icon (a core-scanner spectrum over a sediment core) as a PNG with Qt, offscreen.

    python packaging/make_icon.py [OUT.png] [SIZE]     (default: packaging/xrfcore.png, 256)

The committed packaging/xrfcore.png was made with this script; the build script redraws it only
when it is missing.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QGuiApplication, QImage, QLinearGradient, QPainter, QPainterPath, QPen  # noqa: E402


def draw(size: int = 256) -> QImage:
    img = QImage(size, size, QImage.Format_ARGB32)
    img.fill(Qt.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.Antialiasing)
    s = size / 256.0
    # rounded tile
    bg = QLinearGradient(0, 0, 0, size)
    bg.setColorAt(0, QColor("#1d3557"))
    bg.setColorAt(1, QColor("#0b1a2e"))
    p.setPen(Qt.NoPen)
    p.setBrush(bg)
    p.drawRoundedRect(QRectF(8 * s, 8 * s, 240 * s, 240 * s), 44 * s, 44 * s)
    # the core: sediment layers in a vertical half-pipe
    layers = ["#e9d8a6", "#ca9e67", "#e9d8a6", "#8d6b48", "#d8c08a", "#b08350", "#efe3c0", "#7a5c3e"]
    top, h = 34 * s, 188 * s
    for i, c in enumerate(layers):
        p.setBrush(QColor(c))
        p.drawRect(QRectF(34 * s, top + i * h / len(layers), 46 * s, h / len(layers) + 1))
    p.setBrush(Qt.NoBrush)
    p.setPen(QPen(QColor("#f1faee"), 4 * s))
    p.drawRoundedRect(QRectF(34 * s, top, 46 * s, h), 8 * s, 8 * s)
    # a spectrum: peaks on a smooth background
    path = QPainterPath()
    x0, x1, base = 96 * s, 226 * s, 206 * s
    peaks = [(0.12, 0.35, 0.018), (0.30, 0.95, 0.02), (0.36, 0.3, 0.015), (0.58, 0.55, 0.02), (0.78, 0.25, 0.02)]
    for k in range(121):
        t = k / 120
        y = 0.08 * math.exp(-((t - 0.5) ** 2) / 0.12)
        y += sum(a * math.exp(-((t - c) ** 2) / (2 * w * w)) for c, a, w in peaks)
        pt = QPointF(x0 + t * (x1 - x0), base - y * 150 * s)
        path.lineTo(pt) if k else path.moveTo(pt)
    p.setPen(QPen(QColor("#e63946"), 7 * s, Qt.SolidLine, Qt.RoundCap, Qt.RoundJoin))
    p.drawPath(path)
    p.setPen(QPen(QColor("#a8dadc"), 4 * s))
    p.drawLine(QPointF(x0, base + 6 * s), QPointF(x1, base + 6 * s))
    p.end()
    return img


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path(__file__).with_name("xrfcore.png")
    size = int(argv[1]) if len(argv) > 1 else 256
    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 (fonts/paint need it)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    if not draw(size).save(str(tmp), "PNG"):
        print(f"make_icon: could not write {out}", file=sys.stderr)
        return 1
    os.replace(tmp, out)
    print(f"wrote {out} ({size}x{size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
