"""Dialogs: import, lab-sample column mapping, fine-tune, export, report."""
