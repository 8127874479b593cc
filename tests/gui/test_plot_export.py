"""Plots out: every plot saved as PNG / SVG / PDF at the chosen size, with its title and provenance,
or copied to the clipboard (real files, read back)."""
from __future__ import annotations

from PySide6.QtGui import QGuiApplication, QImage

from tests.gui.conftest import wait_idle


def _ink(img: QImage) -> int:
    """Non-white pixels on a coarse grid: a blank export has none."""
    return sum(img.pixelColor(x, y).lightness() < 200
               for x in range(0, img.width(), 7) for y in range(0, img.height(), 7))


def test_save_and_copy_plots(window, qtbot, project, tmp_path, errors_shown):
    from app.dialogs.plot_dialog import PlotDialog
    w = window
    w.open_project(str(project))
    qtbot.waitUntil(lambda: w.view is not None, timeout=30_000)
    wait_idle(qtbot, w)
    views = w.plot_views()
    assert set(views) == {"Downcore", "Spectrum", "Reconstruction", "Training loss"}
    prov = w.plot_provenance()
    assert "project" in prov and w.view.core in prov and "SIMULATED data" in prov
    dlg = PlotDialog(views, prov, w, current="Spectrum")
    qtbot.addWidget(dlg)
    dlg.width_box.setValue(1000)
    dlg.height_box.setValue(600)
    png = dlg.save(str(tmp_path / "spectrum.png"))
    img = QImage(png)
    assert (img.width(), img.height()) == (1000, 600) and _ink(img) > 200
    top = QImage(png).copy(0, 0, 1000, 30)            # the title band has text in it
    assert _ink(top) > 0
    dlg.which.setCurrentText("Downcore")
    dlg.width_box.setValue(700)
    dlg.height_box.setValue(900)
    svg = dlg.save(str(tmp_path / "downcore.svg"))
    text = open(svg, encoding="utf-8").read()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and prov in text
    assert 'width="700' in text or "width='700" in text or "700" in text.split("<svg", 1)[1][:300]
    pdf = dlg.save(str(tmp_path / "downcore.pdf"))
    raw = open(pdf, "rb").read()
    assert raw.startswith(b"%PDF") and len(raw) > 2000
    dlg.copy()
    clip = QGuiApplication.clipboard().image()
    assert (clip.width(), clip.height()) == (700, 900) and _ink(clip) > 50
    assert dlg.save(str(tmp_path / "plot.jpg")) is None     # an unknown format: said, nothing written
    assert errors_shown and "png" in errors_shown[-1][1] and not (tmp_path / "plot.jpg").exists()
    assert dlg.saved == [png, svg, pdf]
