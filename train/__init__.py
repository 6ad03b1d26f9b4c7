"""Training: RealNVP on CIFAR-10, the SBN with REBAR on binarized MNIST.
train/runinfo.py owns config.json, the record saved beside every checkpoint."""
