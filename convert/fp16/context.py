"""What the fp16 passes share: the mode asked for, and what earlier passes found."""

from dataclasses import dataclass, field


@dataclass
class Context:
    """``mode``, ``keep_names`` (TF op names) and ``keep_types`` (ONNX op types) are the
    request; the rest is filled in by the passes, in order: ``block_ops`` / ``block_nodes``
    (what stays fp32) by ``blocklists.choose``, ``original_nodes`` / ``fp32_outputs`` (the
    graph as it was before the converter ran) by ``converter.to_fp16``."""

    mode: str
    keep_names: list = field(default_factory=list)
    keep_types: list = field(default_factory=list)
    block_ops: list = field(default_factory=list)
    block_nodes: list = field(default_factory=list)
    original_nodes: set = field(default_factory=set)
    fp32_outputs: set = field(default_factory=set)
