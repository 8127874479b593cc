import os

# Headless everywhere: Qt offscreen, BLAS pinned (default OpenBLAS threading is very slow here).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# the team's read-only shared folder sits beside the checkout; XRFCORE_SHARED points elsewhere
SHARED = Path(os.environ.get("XRFCORE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REALDATA = SHARED / "reference" / "realdata"


@pytest.fixture
def realdata() -> Path:
    """The read-only real example files; skip when this checkout has no ../shared."""
    if not REALDATA.is_dir():
        pytest.skip(f"real example files not found at {REALDATA}")
    return REALDATA
