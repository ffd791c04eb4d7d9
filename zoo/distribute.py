"""Training the zoo's models under `tf.distribute`: what Keras 3 needs help with."""

from __future__ import annotations

import tensorflow as tf


def _multi_worker(strategy) -> bool:
    in_mode = getattr(getattr(strategy, "extended", None), "_in_multi_worker_mode", None)
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        in_mode and in_mode()
    )


class MultiWorkerFitMixin:
    """Lets Keras 3's `fit` and `evaluate` run under a multi-worker `MultiWorkerMirroredStrategy`.

    Two steps of Keras 3's TensorFlow trainer fail across workers, where every reduction is a
    collective op:

    - before training it averages the first batch across replicas, only to learn its shapes for
      a symbolic build; a collective takes one tensor, so a nested batch (a dict of inputs)
      fails with "Attempt to convert a value ({'source': PerReplica...}) to a Tensor"
      (keras-team/keras#20329). Shapes are the same on every replica: the local batch is used.
    - after each step it averages the step's logs with `reduce("MEAN", value, axis=0)`, which
      fails on the scalar loss and metrics ("Invalid reduction dimension 0 for input with 0
      dimensions"). The logs are given a length-1 axis here, which that reduction removes:
      every worker sees the mean over all workers.

    Put it first among a model's bases. On one worker it changes nothing.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is None or strategy is None or not _multi_worker(strategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        batch = None
        for _, _, it in iterator:
            batch = next(it)
            break

        def local(value):
            if isinstance(value, tf.distribute.DistributedValues):
                return strategy.experimental_local_results(value)[0]
            return value

        return super()._maybe_symbolic_build(data_batch=tf.nest.map_structure(local, batch))

    def _reducible_logs(self, logs):
        if not _multi_worker(self.distribute_strategy):
            return logs
        return {
            k: tf.reshape(v, (1,)) if isinstance(v, tf.Tensor) and v.shape.rank == 0 else v
            for k, v in logs.items()
        }

    def train_step(self, data):
        return self._reducible_logs(super().train_step(data))

    def test_step(self, data):
        return self._reducible_logs(super().test_step(data))
