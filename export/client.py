"""A small TF Serving REST client: builds `:predict` request bodies and posts them.

    python -m export.client nmt "three hundred forty-two" "seven"            # print the body
    python -m export.client nmt "seven" --url http://localhost:8501          # and post it
    python -m export.client nmt "seven" --signature greedy --url http://localhost:8501
    python -m export.client captioning scene.png --url http://localhost:8501

The bodies use TF Serving's row format, `{"signature_name": ..., "instances": [...]}`, one
instance per example with the signature's input names as keys. Binary strings (encoded images,
text that is not valid UTF-8) travel as `{"b64": "<base64>"}`, which TF Serving decodes to the
raw bytes. Standard library only, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.request


def _string(value):
    """A JSON value for a string input: plain text when it is UTF-8, else TF Serving's b64."""
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def nmt_request(texts, signature: str = "serving_default") -> dict:
    """The body translating `texts` (str or bytes); `signature`: `serving_default` (beam search)
    or `greedy`. The response's `predictions` hold, per text, `translation`, `target_tokens`,
    `source_tokens`, `attention`, `score` and `truncated` (the text was cut to the model's
    `max_sentence_bytes` bytes or `max_source_length` tokens first).

    A body of more texts than the model's `max_request_sentences` (`assets.extra/nmt.json`;
    256 by default) is refused with INVALID_ARGUMENT: split them with `nmt_requests`."""
    return {"signature_name": signature, "instances": [{"text": _string(t)} for t in texts]}


def nmt_requests(texts, max_sentences: int, signature: str = "serving_default") -> list[dict]:
    """`nmt_request` bodies of at most `max_sentences` texts each, in order (none for none)."""
    if max_sentences < 1:
        raise ValueError(f"max_sentences={max_sentences}: must be at least 1")
    texts = list(texts)
    return [nmt_request(texts[i : i + max_sentences], signature)
            for i in range(0, len(texts), max_sentences)]


def captioning_request(images, signature: str = "serving_bytes") -> dict:
    """The body captioning images.

    Args:
        images: for `serving_bytes`, encoded JPEG/PNG files as bytes (sent as b64); for
            `serving_default`, uint8 arrays `[H, W, 3]` (anything with `.tolist()`).
    """
    if signature == "serving_bytes":
        return {
            "signature_name": signature,
            "instances": [{"image_bytes": {"b64": base64.b64encode(b).decode("ascii")}}
                          for b in images],
        }
    return {"signature_name": signature, "instances": [{"image": image.tolist()} for image in images]}


def predict_url(server: str, model: str, version: int | None = None) -> str:
    """`http://host:8501/v1/models/<model>[/versions/<n>]:predict`."""
    version_part = f"/versions/{version}" if version is not None else ""
    return f"{server.rstrip('/')}/v1/models/{model}{version_part}:predict"


def predict(server: str, model: str, body: dict, version: int | None = None,
            timeout: float = 60.0) -> dict:
    """POSTs `body` to the server's `:predict` endpoint; returns the decoded JSON response."""
    request = urllib.request.Request(
        predict_url(server, model, version),
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.client", description=__doc__.split("\n")[0])
    p.add_argument("model", help="nmt or captioning (the model name in models.config)")
    p.add_argument("inputs", nargs="+", help="sentences (nmt) or image files (captioning)")
    p.add_argument("--signature", default=None, help="signature name (default per model)")
    p.add_argument("--url", default=None, help="server, e.g. http://localhost:8501; "
                   "without it the request body is printed")
    p.add_argument("--version", type=int, default=None)
    args = p.parse_args(argv)
    if args.model == "captioning":
        images = []
        for path in args.inputs:
            with open(path, "rb") as f:
                images.append(f.read())
        body = captioning_request(images, args.signature or "serving_bytes")
    else:
        body = nmt_request(args.inputs, args.signature or "serving_default")
    if args.url is None:
        print(json.dumps(body, ensure_ascii=False, indent=1))
        return 0
    print(json.dumps(predict(args.url, args.model, body, args.version), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
