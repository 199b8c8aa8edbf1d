"""ghanet-pipeline: whole-slide images to per-patient risk scores with G-HANet."""

__version__ = "0.1.0"

import os as _os

# No network at run time: huggingface_hub reads this once, at import, so set it before timm can.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
