"""TF Serving warmup: `assets.extra/tf_serving_warmup_requests` in a SavedModel version.

TF Serving replays these `PredictionLog` records (a TFRecord file) when it loads a version,
before marking it available, so the first real request does not pay for graph initialisation.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def predict_request(model_name: str, signature_name: str, inputs: dict):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` for named input arrays."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value, dtype=_dtype(value))))
    return request


def _dtype(value):
    array = np.asarray(value)
    return object if array.dtype.kind in ("U", "S", "O") else array.dtype


def write_requests(saved_model_dir: str, requests) -> str:
    """Writes `requests` (PredictRequests) as PredictionLog records; returns the file's path."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def read_requests(saved_model_dir: str) -> list:
    """The PredictRequests stored in a version's warmup file (for checks and debugging)."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(saved_model_dir, WARMUP_FILE)
    out = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        out.append(prediction_log_pb2.PredictionLog.FromString(record).predict_log.request)
    return out
