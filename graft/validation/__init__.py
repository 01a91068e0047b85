"""The target-data gate: ``target_gate`` splits the target and runs the Great Expectations suite of
``gate`` over the manifest table of its files (``manifest``); ``run`` validates a target spec end to end."""
