"""fit and its stages, callbacks, the checkpoint loader, resume, evaluation, metric lines."""
