"""PySide6 6.12.0 under Python 3.11 steals a reference to None/True on every void call and
signal emit and aborts the app within minutes; pyproject pins it out. This catches a
regression of that pin (or a new release with the same bug) in a throwaway process."""
import subprocess
import sys

PROBE = """
import sys
from PySide6.QtCore import QObject, Signal
class P(QObject):
    sig = Signal(int)
p = P()
a, b = sys.getrefcount(None), sys.getrefcount(True)
for _ in range(200):
    p.setObjectName("x")
    p.sig.emit(1)
print(a - sys.getrefcount(None), b - sys.getrefcount(True))
"""


def test_void_calls_and_emits_keep_refcounts():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-500:]
    lost_none, lost_true = map(int, out.stdout.split())
    assert abs(lost_none) < 20 and abs(lost_true) < 20, (lost_none, lost_true)
