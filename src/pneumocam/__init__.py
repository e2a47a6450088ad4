"""Pneumonia detection on RSNA chest radiographs with interpretable CNNs."""

__version__ = "0.1.0"
