"""edge.training: ViT-lite models, data loaders, training, pruning and QAT (torch side)."""
