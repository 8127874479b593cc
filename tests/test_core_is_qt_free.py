"""The core must import without Qt: checked in a fresh interpreter that blocks PySide6."""
import subprocess
import sys
import pkgutil

import xrfcore


def test_core_imports_without_qt():
    mods = [m.name for m in pkgutil.walk_packages(xrfcore.__path__, "xrfcore.")]
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6', 'app'):\n"
        "            raise ImportError('Qt is forbidden in xrfcore: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import importlib\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "print('ok', len(" + repr(mods) + "))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")
