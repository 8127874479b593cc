"""The PySide6 desktop application: views and wiring only; the science is in xrfcore."""
from app import qtcompat as _qtcompat  # noqa: F401  (must run before any signal is emitted)
