"""TF-Slim and tf.keras (Keras 2) in TF1 graph mode on TensorFlow 2.21: one import.

A user's training script (and anything that builds a slim or tf.keras graph) starts with

    import common.userframeworks  # noqa: F401  (before tensorflow)

after ``pip install '.[user-models]'`` (``make setup`` does it; see the README section
"TF-Slim and Keras models"). What it fixes, measured on tensorflow-cpu 2.21:

- ``tf.keras`` is Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow decides
  (its import, or the first ``tf.keras``): Keras 3 gives KerasTensors that no TF1 session
  runs. With it, ``tf.keras`` is the ``tf-keras`` package (Keras 2), which builds graphs.
- tf-slim's ``batch_norm`` reaches ``tf_keras.legacy_tf_layers.normalization`` through
  TensorFlow's lazy loader; tf-keras 2.21 ships it as ``tf_keras.src.legacy_tf_layers``, so
  the import fails (ModuleNotFoundError). The old name is aliased to the shipped module.

Importing this module changes nothing else; without tf-keras installed it raises one
ImportError that says how to install it.
"""

import importlib
import os
import sys

INSTALL = "pip install '.[user-models]' && pip install --no-deps tf-keras==2.21.0 (or: make setup)"

os.environ["TF_USE_LEGACY_KERAS"] = "1"


def _alias_legacy_tf_layers():
    """The name TensorFlow's lazy loader asks for -> the module tf-keras ships (one object
    under both names, so its layers' class identity is one)."""
    try:
        legacy = importlib.import_module("tf_keras.src.legacy_tf_layers")
        normalization = importlib.import_module("tf_keras.src.legacy_tf_layers.normalization")
    except ImportError as e:
        raise ImportError(f"tf-keras is not installed ({e}); install it with: {INSTALL}") from None
    sys.modules.setdefault("tf_keras.legacy_tf_layers", legacy)
    sys.modules.setdefault("tf_keras.legacy_tf_layers.normalization", normalization)


_alias_legacy_tf_layers()
