"""The power area's stages, one module each (docs/architecture.md, "The run"): `profile`, `battery`.

Each module exposes `run_stage(run, config)`; `edge.pipeline.STAGES` names them.
"""
