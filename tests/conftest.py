"""Shared fixtures. Real data is read through DATA_DIR; with REQUIRE_DATA=1 (CI) a
missing dataset fails the test instead of skipping it."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


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
