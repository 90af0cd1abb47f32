"""Where a run came from and where it is recorded: run manifest, model card, MLflow, SageMaker tags.

Nothing here imports MLflow at module level: it is an optional extra, imported where a run asks for it.
"""
