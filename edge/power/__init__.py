"""Device side of the pipeline: power profiles, the per-inference cost model, the battery simulator
and the lifetime gate (issue 5). Nothing here imports torch or TensorFlow."""
