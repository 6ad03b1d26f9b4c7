"""One trainer process among the workers, as both trainers run it: its place (chief, rank),
its session (on the cluster's server when there are several), a step through the
collectives, its share of the global batch, restore, and the stop after a signal (the
chief saves, every worker exits with the signal's status)."""

from collections.abc import Callable

from common.errors import UserError, first_line
from common.tfcompat import session_config, tf
from train import distributed, runguard


def make_session_config(
    device: str,
    n_devices: int = 1,
    precision_mode: str = "allow_fp32_to_fp16",
    check_bridge: bool = True,
    deterministic: bool = False,
):
    config = session_config(device, n_devices=n_devices, precision_mode=precision_mode, check_bridge=check_bridge)
    if deterministic:  # per-session pools: the process-wide ones are sized by the first session
        config.intra_op_parallelism_threads = 1
        config.inter_op_parallelism_threads = 1
        config.use_per_session_threads = True
    return config


def restore(sess, saver, ckpt: str, expected: str) -> None:
    """saver.restore, a mismatch (another model or config) as a one-line error."""
    try:
        saver.restore(sess, ckpt)
    except tf.errors.OpError as e:
        raise UserError(
            f"{ckpt}: cannot restore ({type(e).__name__}: {first_line(e)[:160]}); expected {expected}"
        ) from None


class Worker:
    """This process: alone (``cluster`` None) or one of ``cluster.n`` workers."""

    def __init__(self, cluster: "distributed.Cluster | None"):
        self.cluster = cluster
        self.chief = cluster is None or cluster.is_chief
        self.n = 1 if cluster is None else cluster.n
        self.rank = 0 if cluster is None else cluster.index
        self.coll = self.watchdog = self.sess = self.sess_config = None

    def start(self, sess_config, device: str) -> None:
        """With several workers: start this one's server, its collectives and the watchdog."""
        self.sess_config = sess_config
        if self.cluster is not None:
            self.cluster.start(self.cluster.session_config(sess_config))
            self.coll = distributed.make_collectives(self.cluster, device)
            self.watchdog = distributed.Watchdog(self.cluster)

    def global_batch(self, n_images: int, batch: int, data: str, batch_flag: str, lr_flag: str) -> tuple[int, int]:
        """(global batch, steps per epoch): worker k takes rows k*batch:(k+1)*batch of each global batch."""
        gb = batch * self.n
        if n_images // gb == 0:
            raise UserError(
                f"{data}: {n_images} training images, fewer than the global batch {gb} "
                f"({batch_flag} {batch} x {self.n} workers)"
            )
        if self.cluster is not None and self.chief:
            print(
                f"{self.cluster!r}: global batch {gb} = {batch_flag} {batch} x {self.n} workers; "
                f"{lr_flag} applies to the mean gradient of the global batch",
                flush=True,
            )
        return gb, n_images // gb

    def share(self, rows, batch: int):
        """This worker's part of the global batch's ``rows``."""
        return rows[self.rank * batch : (self.rank + 1) * batch]

    def set_seed(self, seed: int) -> None:
        tf.set_random_seed(seed + 7919 * self.rank)  # each worker its own init: the chief's is broadcast

    def device(self):
        return tf.device(self.cluster.device if self.cluster is not None else None)

    def broadcast_op(self):
        """The op giving every worker the chief's variables (None alone); build it after the model."""
        return self.coll.broadcast_from_chief(tf.global_variables()) if self.coll is not None else None

    def open_session(self):
        self.sess = tf.Session(self.cluster.target if self.cluster is not None else "", config=self.sess_config)
        return self.sess

    def run(self, fetches, feed, what: str):
        """sess.run of a step; with several workers, one that meets the others (a missing peer is an error)."""
        if self.cluster is None:
            return self.sess.run(fetches, feed)
        return distributed.run_collective(self.sess, fetches, feed, self.cluster, self.watchdog, what)

    def broadcast(self, sync) -> None:
        if sync is not None:  # every worker starts from the chief's values (fresh init or checkpoint)
            self.run(sync, None, "start (broadcast of the chief's variables)")

    def stop_if_signalled(self, stop: runguard.Interrupts, stop_all: float, step: int, save: Callable[[], str]) -> None:
        """After a finished step: when this worker got a signal, or another one did (``stop_all`` > 0:
        every worker sees it after the same step), the chief saves (``save()``: the checkpoint's path)
        and every worker raises ``Interrupted`` (exit 128 + the signal; 143 for another's)."""
        if not (stop.signum or stop_all > 0):
            return
        if not self.chief:
            if stop.signum:
                raise stop.error(
                    f"stopped at step {step} with the other workers; the chief saved the checkpoint "
                    "(continue with --load_params 1)"
                )
            raise runguard.Interrupted(
                f"stopped at step {step}: another worker was interrupted; the chief saved the checkpoint "
                "(continue with --load_params 1)",
                15,
            )
        msg = f"interrupted at step {step}; checkpoint saved: {save()} (continue with --load_params 1)"
        raise stop.error(msg) if stop.signum else runguard.Interrupted(f"a worker was interrupted: {msg}", 15)
