"""The networks, shared by train, freeze and verify, and their specs.

``models.spec`` holds what the road knows of each built-in model (``spec.get(name)``):
its dataset, pixel mapping, noise inputs, metrics and graph module. Each graph module
(``models.realnvp``, ``models.sbn``) provides, besides what its trainer uses, the inference
contract freeze and the checkpoint runner rely on:

    GRAPHS = ("forward", ...)            # inference graphs it can build
    inference_graph(config, batch, graph="forward", **opts) -> (inputs, outputs)
        Builds, in the current tf.Graph, a static-batch graph with named placeholders
        and outputs named with tf.identity, creating the model variables under the same
        names as training (so a Saver restores them from the checkpoint). No random ops:
        every noise source is an input. ``inputs``/``outputs`` are lists of
        ``IO(tensor, layout, meaning)`` in msame order.
    example_feed(config, batch, graph, rng, **opts) -> {input name: np.ndarray}
        Valid random inputs (in-range pixels, uniforms in (0,1)) for the graph's checks.
"""

import collections

IO = collections.namedtuple("IO", "tensor layout meaning")
