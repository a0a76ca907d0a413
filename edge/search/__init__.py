"""`edge search`: energy-constrained architecture search with Optuna (docs/search.md).

One module a job: `space` (what is searched), `estimate` (cheap checks before training), `constraints`
(the hard limits, as Optuna's constrained samplers read them), `fidelity` (pruning on the val curve),
`trial` (one trial = one normal run of the pipeline), `storage` (where the study lives, recovery),
`worker` (one process running trials), `pareto` (front, recommendation, files), `export_best`
(a trial -> a normal run), `progress` and `summary` (lines while it runs, and at its end), `cli`
(the command).
Nothing here imports torch or TensorFlow at module level.
"""
