"""Training speed of every SBN estimator (linear 2-layer, batch 24, the Ascend config) on real data:
steps/s over ``chunks`` chunks of timed steps after a warm-up, with the load of each estimator's chunks."""

import time

import numpy as np

from bench import stats
from common.tfcompat import session_config, tf
from data_tools import datasets
from models import estimators, sbn
from train.train_rebar import ASCEND_HPARAMS

LABELS = {"SBN": "REINFORCE", "SBNGumbel": "Concrete", "SBNRebar": "REBAR", "SBNDynamicRebar": "dynamic REBAR"}


def run(data_dir, warmup=5, chunks=4, steps=10, smoke=False):
    chunks, steps = (2, 5) if smoke else (chunks, steps)
    train = datasets.load_binarized_mnist(data_dir, "train")
    hp = sbn.parse_hparams(ASCEND_HPARAMS)
    rng = np.random.RandomState(0)
    out = {"config": sbn.format_hparams(hp), "warmup_steps": warmup, "chunks": chunks, "steps_per_chunk": steps}
    figures, build = {}, {}
    for name in estimators.CLASSES:
        with tf.Graph().as_default():
            t = time.time()
            m = estimators.build(dict(hp, model=name), train.mean(0))
            build[name] = round(time.time() - t, 2)
            with tf.Session(config=session_config("cpu")) as s:
                s.run(tf.global_variables_initializer())
                batches = [
                    train[rng.choice(len(train), hp["batch_size"])].astype(np.float32)
                    for _ in range(warmup + chunks * steps)
                ]
                for b in batches[:warmup]:
                    s.run(m.train_op, {m.x: b})
                load, rates = stats.Load(), []
                for c in range(chunks):
                    with load.watch():
                        t = time.perf_counter()
                        for b in batches[warmup + c * steps : warmup + (c + 1) * steps]:
                            s.run([m.train_op, m.logs, m.grad_variance], {m.x: b})
                        rates.append(steps / (time.perf_counter() - t))
        figures[f"steps_per_s_{name}"] = stats.figure(
            rates,
            "steps/s",
            load,
            "all_cores",
            f"rebar {name}",
            f"SBN training steps/s, {LABELS.get(name, name[3:] or name)} (batch 24, 2 layers)",
        )
    return dict(out, figures=figures, graph_build_seconds=build)


if __name__ == "__main__":
    import json
    import os
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DATA_DIR", "data")), indent=1))
