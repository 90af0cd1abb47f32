"""Local debugging and profiling of training runs with SageMaker Debugger's and Profiler's rules.

`python train.py debugger=on profiler=on` adds the TensorDebugger and TrainingProfiler callbacks; both
write under the run directory and together one HTML report and one JSON summary of the rule outcomes.
"""
