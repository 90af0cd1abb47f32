"""train.py inside a SageMaker training container: entry.py (what train.py calls), overrides.py (the job's
hyperparameters and folders as Hydra overrides), resume.py (the job's own checkpoints), distributed.py (one
node per host), smdebug_hook.py (the Debugger hook). The job's environment is parsed once, by
dogbreed.config.job_environment.JobEnvironment, and passed down."""
