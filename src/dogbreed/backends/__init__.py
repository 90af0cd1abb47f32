"""Where a run happens: in this process (training.fit) or as a SageMaker job running the same train.py."""
