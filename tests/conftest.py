"""Shared fixtures. Real data is read through DATA_DIR; with REQUIRE_DATA=1 (CI) a
missing dataset fails the test instead of skipping it."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


# modules that train, freeze or walk a whole road: `make test-fast` skips them
SLOW_MODULES = {
    "test_road",
    "test_train_realnvp",
    "test_train_rebar",
    "test_train_faults",
    "test_distributed",
    "test_freeze_realnvp",
    "test_freeze_rebar",
    "test_user_models",
    "test_compare_layers",
    "test_sbn",
    "test_report",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def _data_dir(sub):
    d = os.environ.get("DATA_DIR", os.path.join(ROOT, "data"))
    if not os.path.isdir(os.path.join(d, sub)):
        msg = f"real data not found: {os.path.join(d, sub)} (set DATA_DIR)"
        if os.environ.get("REQUIRE_DATA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return os.path.abspath(d)


@pytest.fixture(scope="session")
def cifar_dir():
    """DATA_DIR holding the real cifar-10-batches-py/."""
    return _data_dir("cifar-10-batches-py")


@pytest.fixture(scope="session")
def mnist_dir():
    """DATA_DIR holding the real binarized_mnist/."""
    return _data_dir("binarized_mnist")


@pytest.fixture(scope="session")
def repo_root():
    return ROOT


# --- RealNVP: one short trained run shared by the trainer and freeze tests ---------

REALNVP_TRAIN_ARGS = [
    "--config",
    "tiny32",
    "--batch_size",
    "4",
    "--init_batch_size",
    "8",
    "--save_interval",
    "1",
    "--log_every",
    "1",
    "--dropout_p",
    "0.1",
    "--sample_batch_size",
    "4",
    "--seed",
    "3",
    "--deterministic",
]


@pytest.fixture(scope="session")
def fake_cifar(tmp_path_factory):
    """A tiny CIFAR-10 python layout: 5 x 4 training images (5 steps per epoch at batch 4), 8 test images."""
    import pickle

    import numpy as np

    d = tmp_path_factory.mktemp("data")
    root = d / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.RandomState(0)
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 8)]:
        x = rng.randint(0, 256, (n, 3072)).astype(np.uint8)
        with open(root / name, "wb") as f:
            pickle.dump({b"data": x, b"labels": [0] * n}, f)
    return str(d)


@pytest.fixture(scope="session")
def realnvp_runs(fake_cifar, tmp_path_factory):
    """Three short deterministic RealNVP trainings on ``fake_cifar`` (each costs seconds of graph
    building, so they are made once): "full" runs 6 steps uninterrupted; "part" runs 3 steps, then
    resumes to 6 with --load_params 1. Both cross the epoch boundary at step 5. Treat as read-only
    (copy a folder before training on in it)."""
    from train import train_realnvp as T

    d = tmp_path_factory.mktemp("realnvp_runs")
    full, part = str(d / "full"), str(d / "part")
    common = ["--data_url", fake_cifar] + REALNVP_TRAIN_ARGS
    assert T.main(common + ["--train_url", full, "--max_steps", "6"]) == 0
    assert T.main(common + ["--train_url", part, "--max_steps", "3"]) == 0
    assert T.main(common + ["--train_url", part, "--max_steps", "6", "--load_params", "1"]) == 0
    return {"full": full, "part": part, "args": common}
