"""The PySide6 desktop application: views and wiring only; the science is in xrfcore."""
