"""Plots out: PNG, SVG or PDF at a chosen size, or the clipboard, with a title above the plot and a
provenance line below it (what it shows, from which project and model, when; SIMULATED where so).

The plot is a pyqtgraph view (PlotWidget / GraphicsLayoutWidget, both QGraphicsViews); its scene is
rendered through QPainter onto the chosen device, so SVG and PDF stay vector graphics.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMarginsF, QRect, QRectF, QSize, QSizeF, Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QImage, QPageSize, QPainter, QPdfWriter

FORMATS = {".png": "PNG image (*.png)", ".svg": "SVG vector image (*.svg)", ".pdf": "PDF document (*.pdf)"}
SCREEN_DPI = 96.0   # a size in pixels becomes a PDF page at this resolution (a 1200 px wide plot: 31.75 cm)


def _fit_px(text: str, px: float, width: float, share: float = 0.56) -> float:
    """A text height at which ``text`` fits ``width`` (average glyph ~``share`` of the height wide)."""
    return min(px, width / max(1.0, share * len(text))) if text else px


def _paint(painter: QPainter, view, rect: QRectF, title: str, provenance: str) -> None:
    """White page, title band, the plot laid out at the output's proportions, provenance band."""
    painter.fillRect(rect, QColor("white"))
    px = max(10.0, rect.height() / 36.0)             # text height follows the output size
    title_h = 1.8 * px if title else 0.0
    prov_h = 1.5 * px if provenance else 0.0
    font = QFont()
    painter.setPen(QColor("black"))
    inner = rect.width() - px
    if title:
        font.setPixelSize(max(6, int(_fit_px(title, px, inner, 0.64))))
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(QRectF(rect.left() + px / 2, rect.top(), inner, title_h),
                         Qt.AlignLeft | Qt.AlignVCenter | Qt.TextSingleLine, title)
    if provenance:
        font.setPixelSize(max(6, int(_fit_px(provenance, 0.75 * px, inner, 0.5))))
        font.setBold(False)
        painter.setFont(font)
        painter.setPen(QColor(90, 90, 90))
        painter.drawText(QRectF(rect.left() + px / 2, rect.bottom() - prov_h, inner, prov_h),
                         Qt.AlignLeft | Qt.AlignVCenter | Qt.TextSingleLine, provenance)
    target = QRectF(rect.left(), rect.top() + title_h, rect.width(), rect.height() - title_h - prov_h)
    # lay the plot out at the target's proportions (a screen-sized layout scaled up: axis text keeps
    # its size relative to the plot), render, and give the widget its own size back
    scale = max(1.0, target.height() / 700.0, target.width() / 1400.0)
    old = view.size()
    view.resize(max(50, int(target.width() / scale)), max(50, int(target.height() / scale)))
    try:
        source = view.mapToScene(view.viewport().rect()).boundingRect()
        view.scene().render(painter, target, source, Qt.KeepAspectRatio)
    finally:
        view.resize(old)


def plot_image(view, size: tuple[int, int], title: str = "", provenance: str = "") -> QImage:
    """The plot as an image of ``size`` (width, height) pixels."""
    w, h = (int(v) for v in size)
    img = QImage(QSize(w, h), QImage.Format_ARGB32)
    img.fill(QColor("white"))
    p = QPainter(img)
    p.setRenderHint(QPainter.Antialiasing)
    try:
        _paint(p, view, QRectF(0, 0, w, h), title, provenance)
    finally:
        p.end()
    return img


def export_plot(view, path, size: tuple[int, int], title: str = "", provenance: str = "") -> Path:
    """Write the plot to ``path`` as PNG, SVG or PDF (by its suffix); ValueError for another suffix,
    OSError when the file cannot be written."""
    path = Path(path)
    fmt = path.suffix.lower()
    if fmt not in FORMATS:
        raise ValueError(f"{path.name}: plots are saved as {', '.join(FORMATS)}, not {fmt or 'no suffix'}")
    w, h = (int(v) for v in size)
    if fmt == ".png":
        if not plot_image(view, (w, h), title, provenance).save(str(path), "PNG"):
            raise OSError(f"{path}: could not be written")
        return path
    if fmt == ".svg":
        from PySide6.QtSvg import QSvgGenerator
        dev = QSvgGenerator()
        dev.setFileName(str(path))
        dev.setSize(QSize(w, h))
        dev.setViewBox(QRect(0, 0, w, h))
        dev.setTitle(title)
        dev.setDescription(provenance)
    else:
        dev = QPdfWriter(str(path))
        dev.setPageSize(QPageSize(QSizeF(w / SCREEN_DPI * 25.4, h / SCREEN_DPI * 25.4), QPageSize.Millimeter))
        dev.setPageMargins(QMarginsF(0, 0, 0, 0))
        dev.setResolution(300)
        dev.setTitle(title)
        dev.setCreator("xrfcore")
    p = QPainter()
    if not p.begin(dev):
        raise OSError(f"{path}: could not be written")
    try:
        p.setRenderHint(QPainter.Antialiasing)
        _paint(p, view, QRectF(p.viewport()) if fmt == ".pdf" else QRectF(0, 0, w, h), title, provenance)
    finally:
        p.end()
    if not path.is_file() or path.stat().st_size == 0:
        raise OSError(f"{path}: could not be written")
    return path


def copy_plot(view, size: tuple[int, int], title: str = "", provenance: str = "") -> QImage:
    """The plot as an image on the clipboard (pastes into slides, documents, e-mail)."""
    img = plot_image(view, size, title, provenance)
    QGuiApplication.clipboard().setImage(img)
    return img
