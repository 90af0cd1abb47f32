"""Amazon SageMaker, one module per resource (every SageMaker SDK call of the project lives here):

session        the SDK, credentials, region, bucket, role and instance checks, one-line AWS errors
training_job   checks, data channels, security settings, the estimator and the launch
tuning_job     the HyperparameterTuner over the search space and tune.objective
rules          SageMaker Debugger/Profiler settings from the shared rules node
metrics        the metric lines a job prints and the regexes that read them
results        `attach=`: a finished job's model, output, rule reports and best values
endpoint       real-time endpoints (endpoint_model: the archive; endpoint_autoscaling: scaling)
container/     what runs inside a job: argv to Hydra overrides, channels, own-checkpoint resume, hosts
dry_run, source_bundle   requests answered locally; what a job receives as source
"""
