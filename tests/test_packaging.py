"""`pip install .` ships every package of the road: a subpackage left out of the wheel
(infer/backends once was) breaks the installed `ascend-road` commands while an editable
install still works."""

import os

import pytest
import tomllib
from setuptools import find_packages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# compat/ holds an `ais_bench` stand-in: installed, it would shadow Huawei's real package on an Ascend host
NOT_SHIPPED = {"tests", "bench", "demo", "examples", "docs", "data", "runs", "build", "compat"}


def test_every_package_in_the_tree_is_in_the_wheel():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        find = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]
    shipped = set(find_packages(ROOT, include=find["include"]))
    in_tree = set()
    for d, subdirs, files in os.walk(ROOT):
        if d == ROOT:
            subdirs[:] = [s for s in subdirs if not s.startswith(".") and s not in NOT_SHIPPED]
            continue
        subdirs[:] = [s for s in subdirs if s != "__pycache__"]
        if "__init__.py" in files:
            in_tree.add(os.path.relpath(d, ROOT).replace(os.sep, "."))
    assert {"infer.backends", "verify.doctor", "common"} <= in_tree
    assert in_tree == shipped, f"left out of the wheel: {sorted(in_tree - shipped)}"


def test_user_model_frameworks_come_without_a_second_tensorflow():
    """tf-keras is installed --no-deps (its wheel requires `tensorflow`, which pip would put
    beside tensorflow-cpu): pinned to TensorFlow's version, in no requirement list pip resolves,
    and no `tensorflow` distribution in the environment. tf-slim comes with the test extra."""
    from importlib import metadata

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    nodeps = project["tool"]["ascend-road"]["no-deps"]
    tf_pin = next(d for d in project["project"]["dependencies"] if d.startswith("tensorflow-cpu=="))
    assert nodeps == ["tf-keras==" + tf_pin.split("==")[1]]
    resolved = project["project"]["dependencies"] + sum(project["project"]["optional-dependencies"].values(), [])
    assert not any(r.startswith("tf-keras") for r in resolved)
    assert "ascend-road[user-models]" in project["project"]["optional-dependencies"]["test"]
    assert metadata.version("tf-keras") == nodeps[0].split("==")[1]
    with pytest.raises(metadata.PackageNotFoundError):  # only tensorflow-cpu
        metadata.distribution("tensorflow")
