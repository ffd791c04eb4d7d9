"""An empty batch through the Python inference paths (`Translator`, `Captioner`), in a fresh
process with TensorFlow's oneDNN rewrites forced on and forced off: which CPUs turn them on by
default differs, and with them on a batch-normalised CNN failed on a zero-sized batch."""

import json
import os
import subprocess
import sys

import pytest

from tests.export.conftest import ONEDNN_SETTINGS, REPO

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys
import numpy as np
from recipes.captioning import Captioner
from recipes.nmt.inference import Translator

tiny_nmt_run, caption_run = sys.argv[1:3]
translator = Translator.from_run(tiny_nmt_run)
captioner = Captioner.from_run(caption_run)
size = captioner.image_size
shapes = lambda out: {k: list(v.shape) for k, v in out.items()}
print(json.dumps({
    "translate": len(translator.translate([])),
    "decode_ids": shapes(translator.decode_ids(np.zeros((0, 3), np.int32), beam=2)),
    "caption": len(captioner.caption(np.zeros((0, size, size, 3), np.uint8))),
    "decode_images": shapes(captioner.decode_images(np.zeros((0, size, size, 3), np.uint8))),
    "decode_images_beam": shapes(
        captioner.decode_images(np.zeros((0, size, size, 3), np.uint8), beam=2)),
}))
"""


@pytest.mark.parametrize("onednn", ONEDNN_SETTINGS)
def test_python_paths_answer_an_empty_batch(tiny_nmt_run, tiny_captioning_run, captioner, onednn):
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, tiny_nmt_run, tiny_captioning_run],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["translate"] == 0 and out["caption"] == 0
    assert out["decode_ids"]["tokens"][:2] == [0, 1] and out["decode_ids"]["score"] == [0, 1]
    h, w = captioner.grid_shape
    for key in ("decode_images", "decode_images_beam"):
        assert out[key]["tokens"][0] == 0 and out[key]["score"] == [0]
        assert out[key]["attention"][0] == 0 and out[key]["attention"][2] == h * w
