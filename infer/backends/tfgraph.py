"""A frozen TensorFlow graph (.pb) in a TF1 session: the exact reference for the .om."""
from common.errors import UserError
from infer.runner import Runner


class FrozenGraphRunner(Runner):
    backend = "tf"

    def __init__(self, model, signature, device="cpu"):
        super().__init__(model, signature)
        self.device = device

    def activate_impl(self):
        from common.tfcompat import session_config, tf

        gd = tf.GraphDef()
        try:
            with open(self.model, "rb") as f:
                gd.ParseFromString(f.read())
        except Exception as e:
            raise UserError(f"{self.model}: not a frozen GraphDef ({type(e).__name__}: {e})") from None
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.import_graph_def(gd, name="")
        try:
            get = self.graph.get_tensor_by_name
            self.ins = [get(t.tensor) for t in self.signature.inputs]
            self.outs = [get(t.tensor) for t in self.signature.outputs]
        except KeyError as e:
            raise UserError(f"{self.model}: graph lacks a signature tensor ({e})") from None
        config = session_config(self.device)
        self.sess = tf.Session(graph=self.graph, config=config)
        # one callable: no per-call feed/fetch resolution, so per-file overhead stays low
        self.fn = self.sess.make_callable(self.outs, self.ins)

    def deactivate_impl(self):
        self.sess.close()

    def infer_impl(self, feed):
        return self.fn(*[feed[t.name] for t in self.signature.inputs])


def make(model, signature, device="cpu"):
    return FrozenGraphRunner(model, signature, device)
