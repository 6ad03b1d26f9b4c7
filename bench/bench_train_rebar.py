"""Training speed of every SBN estimator (linear 2-layer, batch 24, the Ascend config) on real data."""

import time

import numpy as np

from common.tfcompat import session_config, tf
from data_tools import datasets
from models import estimators, sbn
from train.train_rebar import ASCEND_HPARAMS


def run(data_dir, warmup=5, steps=40):
    train = datasets.load_binarized_mnist(data_dir, "train")
    hp = sbn.parse_hparams(ASCEND_HPARAMS)
    rng = np.random.RandomState(0)
    out = {"config": sbn.format_hparams(hp), "warmup_steps": warmup, "timed_steps": steps, "steps_per_sec": {}}
    for name in estimators.CLASSES:
        with tf.Graph().as_default():
            t = time.time()
            m = estimators.build(dict(hp, model=name), train.mean(0))
            build = time.time() - t
            with tf.Session(config=session_config("cpu")) as s:
                s.run(tf.global_variables_initializer())
                batches = [
                    train[rng.choice(len(train), hp["batch_size"])].astype(np.float32) for _ in range(warmup + steps)
                ]
                for b in batches[:warmup]:
                    s.run(m.train_op, {m.x: b})
                t = time.time()
                for b in batches[warmup:]:
                    s.run([m.train_op, m.logs, m.grad_variance], {m.x: b})
                out["steps_per_sec"][name] = round(steps / (time.time() - t), 2)
                out.setdefault("graph_build_seconds", {})[name] = round(build, 2)
    return out


if __name__ == "__main__":
    import json
    import os
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DATA_DIR", "data")), indent=1))
