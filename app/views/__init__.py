"""Plot views (pyqtgraph): spectrum, downcore, reconstruction, training."""
