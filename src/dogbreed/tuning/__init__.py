"""the Optuna study, the objective, the search space, the report."""
