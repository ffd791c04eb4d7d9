"""The REST client's request bodies, checked against the SavedModel's signatures by decoding them
as TF Serving does (row format, b64 strings) and calling the signature; and its HTTP path against a
stand-in server on localhost (no docker here)."""

import base64
import http.server
import json
import threading

import numpy as np
import pytest

from export import client
from tests.export.conftest import TEXTS


def _decode_rows(body):
    """What TF Serving does with a row-format body: one column per input name, b64 decoded."""
    instances = body["instances"]
    names = set(instances[0])
    assert all(set(row) == names for row in instances)

    def value(v):
        if isinstance(v, dict):
            assert set(v) == {"b64"}
            return base64.b64decode(v["b64"])
        return v.encode("utf-8") if isinstance(v, str) else v

    return body["signature_name"], {n: [value(row[n]) for row in instances] for n in names}


def test_nmt_body_shape():
    body = client.nmt_request(["seven", b"\xff bad", "ünï"], signature="greedy")
    assert body["signature_name"] == "greedy"
    assert body["instances"][0] == {"text": "seven"}
    assert body["instances"][1] == {"text": {"b64": base64.b64encode(b"\xff bad").decode()}}
    assert body["instances"][2] == {"text": "ünï"}
    json.dumps(body)  # serialisable as is


def test_captioning_bodies():
    body = client.captioning_request([b"\x89PNG..."])
    assert body == {"signature_name": "serving_bytes",
                    "instances": [{"image_bytes": {"b64": base64.b64encode(b"\x89PNG...").decode()}}]}
    image = np.zeros((2, 3, 3), np.uint8)
    body = client.captioning_request([image], signature="serving_default")
    assert body["instances"][0]["image"] == image.tolist()


def test_predict_url():
    assert client.predict_url("http://h:8501/", "nmt") == "http://h:8501/v1/models/nmt:predict"
    assert client.predict_url("http://h:8501", "nmt", 3) == \
        "http://h:8501/v1/models/nmt/versions/3:predict"


@pytest.mark.slow
@pytest.mark.parametrize("signature", ["serving_default", "greedy"])
def test_nmt_bodies_match_the_signatures(loaded_saved_model, clean_outputs, signature):
    import tensorflow as tf

    name, columns = _decode_rows(client.nmt_request(TEXTS, signature))
    fn = loaded_saved_model.signatures[name]
    spec = fn.structured_input_signature[1]
    assert set(columns) == set(spec)
    assert all(s.dtype == tf.string for s in spec.values())
    out = fn(**{k: tf.constant(v, tf.string) for k, v in columns.items()})
    expected = clean_outputs["outputs"][f"{signature}/texts"]
    assert [t.decode("utf-8") for t in out["translation"].numpy()] == list(expected["translation"])


class _FakeServing(http.server.BaseHTTPRequestHandler):
    """Answers POST /v1/models/nmt:predict like TF Serving's REST API, from a loaded model."""

    model = None

    def do_POST(self):  # noqa: N802 - the http.server API
        import tensorflow as tf

        assert self.path == "/v1/models/nmt:predict"
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name, columns = _decode_rows(body)
        out = self.model.signatures[name](**{k: tf.constant(v) for k, v in columns.items()})
        rows = [{k: _jsonable(v.numpy()[i]) for k, v in out.items()} for i in range(len(body["instances"]))]
        data = json.dumps({"predictions": rows}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _jsonable(x):
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x]
    return x.item() if hasattr(x, "item") else x


@pytest.mark.slow
def test_predict_posts_to_a_server(loaded_saved_model, clean_outputs):
    _FakeServing.model = loaded_saved_model
    server = http.server.HTTPServer(("127.0.0.1", 0), _FakeServing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        response = client.predict(url, "nmt", client.nmt_request(TEXTS[:2]))
    finally:
        server.shutdown()
    expected = clean_outputs["outputs"]["serving_default/texts"]["translation"]
    # TEXTS[:2] alone: the step limit follows the longest of the two, so compare only ended ones.
    assert len(response["predictions"]) == 2
    assert set(response["predictions"][0]) == {"translation", "attention", "source_tokens",
                                               "target_tokens", "score", "truncated"}
    assert [p["truncated"] for p in response["predictions"]] == [False, False]
    assert isinstance(response["predictions"][0]["translation"], str)
    assert expected.shape == (len(TEXTS),)
