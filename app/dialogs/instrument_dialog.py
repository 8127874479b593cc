"""The question asked when xrfcore refuses a run measured with another tube, voltage or energy range
than the model was trained for: it names both and offers to go on anyway (no science here: the
texts come from ``engine.instrument_refusal``)."""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QSizePolicy, QSpacerItem


class InstrumentMismatchDialog(QMessageBox):
    """Warning with "<Action> anyway" / Cancel; Cancel is the default."""

    def __init__(self, parent, info: dict, action: str = "Predict"):
        super().__init__(parent)
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle("Instrument mismatch")
        self.setText(f"<b>This run was measured differently from the spectra the model was trained "
                     f"for.</b><br>{action} only with a model made for this instrument, or go on knowing "
                     "that the numbers may mean nothing.")
        lines = [f"Run: {info['run']}"] if info.get("run") else [info.get("problem", "")]
        if info.get("model"):
            lines.append(f"Model: {info['model']}")
        if info.get("differences"):
            lines.append("Differences: " + "; ".join(info["differences"]))
        if info.get("window"):
            lines.append(info["window"][:1].upper() + info["window"][1:])
        lines += [f"Note: {n}" for n in info.get("notes", [])]
        lines.append(f"{action} anyway records the mismatch in the results' provenance.")
        self.setInformativeText("\n\n".join(lines))
        self.anyway_btn = self.addButton(f"{action} anyway", QMessageBox.ButtonRole.AcceptRole)
        self.cancel_btn = self.addButton(QMessageBox.StandardButton.Cancel)
        self.setDefaultButton(self.cancel_btn)
        self.setEscapeButton(self.cancel_btn)
        grid = self.layout()   # QMessageBox ignores setMinimumWidth: widen it with a spacer
        grid.addItem(QSpacerItem(620, 0, QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Expanding),
                     grid.rowCount(), 0, 1, grid.columnCount())


def ask_allow_mismatch(parent, info: dict, action: str = "Predict") -> bool:
    """True when the user chose "<action> anyway"."""
    dlg = InstrumentMismatchDialog(parent, info, action)
    dlg.exec()
    return dlg.clickedButton() is dlg.anyway_btn
