"""What every training program shares: devices, precision, the run folder,
checkpoints that resume exactly, the step loop, logs and the final files.

Run folder ``--out DIR``:

* ``run.json``: program and model signature, written once; a rerun with a
  different model is refused before anything is touched;
* ``checkpoints/``: TensorFlow checkpoints (model, optimizer, step) every
  ``checkpoint_every`` steps and at the end; the ``checkpoint`` index is
  replaced atomically after the data files are written, so a kill at any
  moment leaves the previous checkpoint valid;
* ``tensorboard/``: scalars (loss, learning rate, evaluation metrics);
* ``model.keras`` and ``metrics.json`` (metrics, config, versions), written
  atomically at the end.

Data is a function of the sample index, and the pipeline starts at the
restored step, so a rerun continues with exactly the batches that follow the
last checkpoint: no step before it is repeated or lost.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from adaptive_dff.environment import machine, versions
from schedulers import files

logger = logging.getLogger(__name__)


def choose_strategy() -> tf.distribute.Strategy:
    """Multi-worker mirrored under ``TF_CONFIG``; mirrored on several GPUs;
    one device on one GPU; the default strategy on a CPU."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    return tf.distribute.get_strategy()


def set_precision(mixed: bool) -> None:
    """``mixed_float16`` or ``float32`` for layers built from now on."""
    if mixed and not tf.config.list_logical_devices("GPU"):
        warnings.warn("mixed precision on a CPU is slower than float32; it is meant for GPUs", stacklevel=2)
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")


def learning_rate_schedule(config: dict):
    """The optimizer's learning rate: a constant, or ``poly`` decay to 0 at ``steps``
    (``lr * (1 - step / steps) ** 0.9``, as DeepLab trains). It follows the optimizer's
    own step count, so a resumed run continues the schedule where it stopped."""
    if config.get("lr_schedule", "constant") == "poly":
        return keras.optimizers.schedules.PolynomialDecay(
            config["learning_rate"], decay_steps=config["steps"], end_learning_rate=0.0, power=0.9)
    return config["learning_rate"]


def learning_rate_at(config: dict, step: int) -> float:
    """The learning rate used for optimizer step ``step`` (0-based)."""
    if config.get("lr_schedule", "constant") == "poly":
        return config["learning_rate"] * (1 - min(step, config["steps"]) / config["steps"]) ** 0.9
    return config["learning_rate"]


def check_run_folder(out: str, program: str, signature: dict) -> None:
    """Refuse a folder that holds another program's or another model's run.

    Only reads; :func:`claim_run_folder` writes, once every check passed.
    """
    files.claim_folder(out, "run.json", {"program": program, "signature": signature},
                       "a checkpoint of a different model", write=False)


def claim_run_folder(out: str, program: str, signature: dict) -> None:
    """Record the run in ``run.json`` (after :func:`check_run_folder` and every other check passed)."""
    files.claim_folder(out, "run.json", {"program": program, "signature": signature},
                       "a checkpoint of a different model")


def check_frame_size(config: dict, divisor: int = 128) -> tuple[int, int]:
    """``(height, width)`` of the config, which must be multiples of ``divisor``."""
    h, w = config["height"], config["width"]
    if h % divisor or w % divisor:
        raise ValueError(
            f"config height and width must be multiples of {divisor} (the flow net's divisor), got {h}x{w}"
        )
    return h, w


def start(program: str, config: dict, out: str, signature: dict, build: Callable, strategy=None):
    """Claim the run folder (every check passed by now), set precision and
    seeds, pick the strategy and build the model in its scope."""
    claim_run_folder(out, program, signature)
    set_precision(config["mixed_precision"])
    keras.utils.set_random_seed(config["seed"])
    strategy = strategy or choose_strategy()
    with strategy.scope():
        model = build()
    return strategy, model


class Trainer:
    """The step loop with exact resumption.

    Args:
        out: the run folder.
        model: a Keras model built under ``strategy.scope()``.
        loss_fn: ``loss_fn(model, batch, training) -> per-example loss [B]``.
        make_sample: ``make_sample(index) -> tuple of arrays``, a function of
            the index (and the config's seed) only.
        sample_spec: a ``tf.TensorSpec`` per array of a sample.
        config: the validated configuration (``steps``, ``batch_size`` per
            replica, ``learning_rate``, ``checkpoint_every``, ``jit_compile``).
        strategy: a ``tf.distribute.Strategy``.
    """

    def __init__(self, *, out, model, loss_fn, make_sample, sample_spec, config, strategy, log: Callable = logger.info):
        self.out = out
        self.model = model
        self.loss_fn = loss_fn
        self.make_sample = make_sample
        self.sample_spec = sample_spec
        self.config = config
        self.strategy = strategy
        self.log = log
        self.global_batch = config["batch_size"] * strategy.num_replicas_in_sync
        with strategy.scope():
            self.optimizer = keras.optimizers.Adam(learning_rate_schedule(config))
            if config["mixed_precision"]:
                # float16 gradients underflow without loss scaling.
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            # Create the optimizer's slots now, so a restore fills them.
            self.optimizer.build(model.trainable_variables)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=self.optimizer, step=self.step)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(out, "checkpoints"), max_to_keep=3
        )

    def restore(self) -> int:
        """Restore the latest checkpoint, if any; return the step reached."""
        latest = self.manager.latest_checkpoint
        if latest:
            try:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as error:
                raise ValueError(
                    f"checkpoint {latest!r} does not match this model ({str(error).splitlines()[0]}); "
                    "choose another --out folder"
                ) from None
        return int(self.step.numpy())

    def _train_step_fn(self):
        model, loss_fn, optimizer = self.model, self.loss_fn, self.optimizer
        global_batch = self.global_batch

        def replica_step(batch):
            with tf.GradientTape() as tape:
                per_example = loss_fn(model, batch, True)
                loss = tf.reduce_sum(per_example) / global_batch
                scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            # Parts the loss does not reach (e.g. the scale field in flow
            # pretraining) are left as they are.
            optimizer.apply_gradients(
                [(g, v) for g, v in zip(grads, model.trainable_variables) if g is not None]
            )
            return loss

        strategy = self.strategy

        def step(batch):
            losses = strategy.run(replica_step, args=(batch,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

        return tf.function(step, jit_compile=bool(self.config["jit_compile"]) or None)

    def run(self) -> dict:
        """Train from the restored step to ``steps``; return ``{"loss": last loss, "steps": n}``."""
        start = self.restore()
        total = self.config["steps"]
        if start >= total:
            self.log(f"already trained to step {start} of {total}")
            return {"loss": None, "steps": start, "resumed_from": start}
        if start:
            self.log(f"resuming from step {start}")
        dataset = sample_dataset(self.make_sample, start * self.global_batch, self.sample_spec, self.global_batch)
        distributed = iter(self.strategy.experimental_distribute_dataset(dataset))
        train_step = self._train_step_fn()
        writer = tf.summary.create_file_writer(os.path.join(self.out, "tensorboard"))
        # Keras's progress bar on a terminal, unless the run logs quietly; else a line every twentieth.
        interactive = sys.stdout.isatty() and logger.isEnabledFor(logging.INFO)
        progress = keras.utils.Progbar(total, stateful_metrics=["loss"]) if interactive else None
        report_every = max(1, (total - start) // 20)
        started = time.perf_counter()
        loss_value = None
        for step in range(start + 1, total + 1):
            loss = train_step(next(distributed))
            self.step.assign(step)
            loss_value = float(loss)
            if not np.isfinite(loss_value):
                raise FloatingPointError(f"loss became {loss_value} at step {step}; the last checkpoint is kept")
            with writer.as_default():
                tf.summary.scalar("loss", loss_value, step=step)
                tf.summary.scalar("learning_rate", learning_rate_at(self.config, step - 1), step=step)
            if progress is not None:
                progress.update(step, [("loss", loss_value)])
            elif (step - start) % report_every == 0 or step == total:
                elapsed = time.perf_counter() - started
                eta = elapsed / (step - start) * (total - step)
                self.log(f"step {step}/{total}  loss {loss_value:.4f}  {elapsed:.0f}s elapsed, ~{eta:.0f}s left")
            if step % self.config["checkpoint_every"] == 0 or step == total:
                self.manager.save(checkpoint_number=step)
        writer.flush()
        return {"loss": loss_value, "steps": total, "resumed_from": start}

    def write_scalars(self, metrics: dict) -> None:
        writer = tf.summary.create_file_writer(os.path.join(self.out, "tensorboard"))
        with writer.as_default():
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and np.isfinite(value):
                    tf.summary.scalar(f"eval/{key}", value, step=int(self.step.numpy()))
        writer.flush()


def finish(out: str, program: str, model: keras.Model, config: dict, metrics: dict) -> None:
    """Write the final model and the metrics JSON, atomically."""
    files.save_keras_atomic(model, os.path.join(out, "model.keras"))
    write_metrics(out, program, config, metrics)


def write_metrics(out: str, program: str, config: dict, metrics: dict) -> None:
    """``metrics.json`` of a run: the metrics, the configuration, versions and machine (atomically)."""
    files.write_json_atomic(os.path.join(out, "metrics.json"), {
        "program": program, "metrics": metrics, "config": config, "versions": versions(), "machine": machine()})


def sample_dataset(make_sample: Callable[[int], tuple], first_index: int, output_signature, global_batch: int,
                   total_samples: Optional[int] = None) -> tf.data.Dataset:
    """Batches of ``make_sample(index)`` for ``index = first_index, first_index + 1, ...``.

    Samples are made in parallel (``tf.numpy_function``) and kept in order, so
    the pipeline is as deterministic as ``make_sample``.
    """
    stop = first_index + total_samples if total_samples is not None else np.iinfo(np.int64).max
    indices = tf.data.Dataset.range(first_index, stop)
    dtypes = [s.dtype for s in output_signature]

    def load(index):
        values = tf.numpy_function(lambda i: make_sample(int(i)), [index], dtypes)
        return tuple(tf.ensure_shape(v, s.shape) for v, s in zip(values, output_signature))

    return (
        indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(global_batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
