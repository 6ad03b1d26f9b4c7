"""`pip install .` ships every package of the road: a subpackage left out of the wheel
(infer/backends once was) breaks the installed `ascend-road` commands while an editable
install still works."""

import os

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
