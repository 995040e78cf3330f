"""The stages of a run as plain functions over files: what the CLI commands and the Prefect
tasks both call. One module per stage group: `data` (load, shard, translate, filter, mix,
report); training and evaluation join as `train` and `evaluate`.

A stage reads its inputs from paths (a missing one is a FileNotFoundError naming it), writes its
outputs and rejects atomically at the paths RunPaths names, and returns a small JSON-able
summary with counts. Stages never import Prefect; models they load come from ruinstruct.runtime.
"""
