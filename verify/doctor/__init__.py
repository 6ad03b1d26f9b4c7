"""The precision doctor: layer-by-layer frozen graph (fp32) vs portable model (e.g. fp16).

For one batch, every float op output of the TF graph and every node output of the
ONNX models are fetched (``capture``). TF and ONNX tensors are matched by name (tf2onnx
keeps TF names for most nodes), and every match is validated on the fp32 ONNX model
first: its tensor must equal TF's (RED <= 1e-4), else the name is a false match (tf2onnx
names the Sqrt of its Sqrt + Reciprocal decomposition of Rsqrt "Rsqrt"; an NCHW Conv
output can have the NHWC shape) and is dropped, and counted (``match``). The examined
(fp16) model is a converted copy of the same graph, so its nodes carry the fp32 model's
node names: it is compared on the validated (node, output) pairs only. Each layer gets
the loss_check metrics, in graph order; NaN/Inf where TF is finite fails a layer first,
then msit's thresholds (cosine 0.99, RED 0.05); the first failing layer is named
(``diagnose``). The --keep_dtype list it gives (TF op names, ATC's format, accepted by
convert/to_onnx.py) holds
  - error sources: failing layers whose matched inputs all pass, and
  - range casualties: ops reading or writing values beyond fp16's 65504 in fp32, which
    no fp16 node can carry (keeping only the source would re-overflow at the next cast).
``search`` repeats diagnose, keep, rebuild until nothing fails, then prunes the keep list.
verify/compare_layers.py is the command line over these.
"""
