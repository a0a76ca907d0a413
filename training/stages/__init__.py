"""The training area's stages, one module each (docs/architecture.md, "The run"): `data`, `train`, `prune`, `qat`.

Each module exposes `run_stage(run, config)`; `edge.pipeline.STAGES` names them.
"""
