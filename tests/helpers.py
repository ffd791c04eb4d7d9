"""One test helper every zoo layer goes through, so each gets the same checks for free."""

import inspect
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from recipes import config as recipes_config


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    expected_num_trainable_weights=None,
    run_training_check=True,
    run_saving_check=True,
    run_xla_check=True,
):
    """Runs the checks every zoo layer must pass and returns the eagerly called layer.

    - `get_config()` names every constructor argument and round-trips through `from_config()`
      and Keras (de)serialisation by registered name;
    - eager outputs have `expected_output_shape`, contain no NaN, and the layer has
      `expected_num_trainable_weights` weights;
    - a symbolic call on `keras.Input`s gives the same shapes with batch size `None`;
    - a functional model of the layer gives, after a `.keras` save and a `load_model(...,
      safe_mode=True)`, the same outputs;
    - one `fit` step on that model (if it has weights) gives a finite loss and moves every
      trainable weight;
    - `tf.function(jit_compile=True)` (XLA) gives the eager outputs.

    Args:
        layer_cls: The layer class.
        init_kwargs: Dict of constructor arguments.
        input_data: Dict of call arguments, each a NumPy array (a boolean mask too).
        expected_output_shape: A shape tuple, or a tuple of them for several outputs.
        expected_num_trainable_weights: Optional integer.
        run_training_check, run_saving_check, run_xla_check: Booleans to skip the slower checks.

    Returns:
        The layer instance built and called eagerly on `input_data`.
    """
    _check_config(layer_cls, init_kwargs)

    layer = layer_cls(**init_kwargs)
    outputs = layer(**input_data)
    _assert_shapes(outputs, expected_output_shape, "eager call")
    for output in _flat(outputs):
        assert not np.any(np.isnan(keras.ops.convert_to_numpy(output))), "NaN in eager output"
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights, [
            w.path for w in layer.trainable_weights
        ]

    inputs = {
        name: keras.Input(shape=array.shape[1:], dtype=str(array.dtype), name=name)
        for name, array in input_data.items()
    }
    symbolic_layer = layer_cls(**init_kwargs)
    symbolic_outputs = symbolic_layer(**inputs)
    expected_symbolic = _map_shapes(lambda shape: (None,) + tuple(shape[1:]), expected_output_shape)
    _assert_shapes(symbolic_outputs, expected_symbolic, "symbolic call")

    model = keras.Model(inputs, symbolic_outputs)
    model_outputs = model(input_data)
    _assert_shapes(model_outputs, expected_output_shape, "functional model")
    _assert_all_close(model_outputs, symbolic_layer(**input_data), "functional model vs layer")

    if run_saving_check:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            model.save(path)
            reloaded = keras.saving.load_model(path, safe_mode=True)
        assert any(isinstance(sub, layer_cls) for sub in reloaded.layers)
        _assert_all_close(reloaded(input_data), model_outputs, ".keras save and reload")

    if run_training_check and model.trainable_weights:
        before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        targets = tuple(np.zeros(keras.ops.shape(o), "float32") for o in _flat(model_outputs))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        batch_size = len(next(iter(input_data.values())))
        history = model.fit(input_data, targets, batch_size=batch_size, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0]), history.history
        for weight, old in zip(model.trainable_weights, before, strict=True):
            moved = not np.allclose(keras.ops.convert_to_numpy(weight), old)
            assert moved, f"one fit step left {weight.path} unchanged"

    if run_xla_check:
        compiled = tf.function(lambda kwargs: layer(**kwargs), jit_compile=True)
        _assert_all_close(compiled(input_data), outputs, "XLA call", atol=1e-5)

    return layer


def _check_config(layer_cls, init_kwargs):
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    parameters = inspect.signature(layer_cls.__init__).parameters
    arguments = [n for n, p in parameters.items() if n != "self" and p.kind != p.VAR_KEYWORD]
    missing = [name for name in arguments if name not in config]
    assert not missing, f"get_config() leaves out constructor arguments {missing}"
    for name, value in init_kwargs.items():
        assert config[name] == value, (name, config[name], value)
    assert layer_cls.from_config(config).get_config() == config

    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is layer_cls
    assert restored.get_config() == config


def _flat(outputs):
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def _is_shape(shape):
    return all(d is None or isinstance(d, int) for d in shape)


def _map_shapes(fn, shapes):
    return fn(shapes) if _is_shape(shapes) else tuple(fn(s) for s in shapes)


def _assert_shapes(outputs, expected, where):
    expected = [expected] if _is_shape(expected) else list(expected)
    actual = [tuple(o.shape) for o in _flat(outputs)]
    assert actual == [tuple(e) for e in expected], f"{where}: shapes {actual} != {expected}"


def _assert_all_close(actual, expected, where, atol=1e-6):
    for a, e in zip(_flat(actual), _flat(expected), strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(e), atol=atol, err_msg=where
        )


def train_under(root, train, config, **kwargs):
    """`train(config, quiet=True, **kwargs)` with the runs root pointed at `root` meanwhile;
    returns the run folder. The session fixtures that train a tiny run use it."""

    old = recipes_config.RUNS_ROOT
    recipes_config.RUNS_ROOT = str(root)
    try:
        return train(config, quiet=True, **kwargs)
    finally:
        recipes_config.RUNS_ROOT = old


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """`python -c code args...` in a fresh interpreter at the repository root (this checkout's
    packages first), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "PYTHONPATH": REPO},
    )
