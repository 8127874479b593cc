"""A read-only Qt table model over a pandas DataFrame (for reports and previews)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QColor

STATUS_COLOURS = {"rejected": QColor(250, 205, 205), "unmatched": QColor(250, 205, 205),
                  "warning": QColor(255, 238, 190), "suspicious": QColor(255, 238, 190)}


class FrameModel(QAbstractTableModel):
    def __init__(self, df: pd.DataFrame | None = None, parent=None):
        super().__init__(parent)
        self.df = df if df is not None else pd.DataFrame()

    def set_frame(self, df: pd.DataFrame) -> None:
        self.beginResetModel()
        self.df = df.reset_index(drop=True)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.df)

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.df.columns)

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        v = self.df.iat[index.row(), index.column()]
        if role in (Qt.DisplayRole, Qt.ToolTipRole):   # tooltip: the whole text of an elided cell
            if isinstance(v, (float, np.floating)):
                return "" if np.isnan(v) else f"{v:.6g}"
            return "" if v is None else str(v)
        if role == Qt.BackgroundRole and "status" in self.df.columns:
            return STATUS_COLOURS.get(str(self.df.at[index.row(), "status"]).lower())
        return None

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if role != Qt.DisplayRole:
            return None
        if orientation == Qt.Horizontal:
            return str(self.df.columns[section])
        return str(section + 1)
