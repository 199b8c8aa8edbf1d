"""ghanet-pipeline: whole-slide images to per-patient risk scores with G-HANet."""

__version__ = "0.1.0"
