"""xrfcore: XRF core-scanner spectra to downcore CaCO3/TOC records (Qt-free core)."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("xrfcore")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
