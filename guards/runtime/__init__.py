"""What runs checks: the pipeline of a stage's guards, the runner protocol and model cache, the runners built from
the registry, the gate every text passes, guards in child processes, red-team evaluation."""
