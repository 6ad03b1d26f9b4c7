"""Training: RealNVP on CIFAR-10, the SBN with REBAR on binarized MNIST.
train/runinfo.py owns config.json, the record saved beside every checkpoint;
train/runguard.py keeps a training folder safe to stop and resume (lock, signals,
metrics.jsonl, what a resume needs); train/worker.py is one trainer process among the
workers (its session, a step through the collectives, the stop after a signal)."""
