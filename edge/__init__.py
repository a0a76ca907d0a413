"""edge: an edge vision pipeline from a timm ViT-lite to a year on a battery."""

__version__ = "0.1.0"
