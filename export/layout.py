"""TF Serving's versioned layout: integer version folders, written whole, and `models.config`.

Layout written under an exports root (default `exports/`):

    exports/
      models.config                 TF Serving model config listing every model below
      nmt/
        1/                          one integer version per export, never overwritten
          saved_model.pb
          variables/
          assets.extra/tf_serving_warmup_requests
        2/ ...
      captioning/
        1/ ...

A version is built in a temporary folder `exports/.tmp-<recipe>-*` (outside every model's base
path, so a server never sees it) and then renamed into place, so a server watching
`exports/<recipe>/` only ever sees complete versions.

Nothing here knows a recipe or imports TensorFlow: what goes into a version is the caller's
`write(folder)` (each recipe's `save_saved_model`, see `export/<recipe>.py`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

TEMP_PREFIX = ".tmp-"


def versions(model_dir: str) -> list[int]:
    """The integer versions present in `exports/<recipe>/`, ascending."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(n) for n in os.listdir(model_dir) if re.fullmatch(r"\d+", n))


def write_version(exports_root: str, name: str, write) -> str:
    """Calls `write(folder)` on a fresh temporary folder, then renames it to the next version.

    The temporary folder sits in `exports_root` itself, outside `exports_root/name` (TF
    Serving's base path for the model), so a server never sees a half-written version. A version
    that appears meanwhile (a concurrent export) is never touched: the rename moves on to the
    next free number. Returns the final folder.
    """
    model_dir = os.path.join(exports_root, name)
    os.makedirs(model_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{name}-", dir=exports_root)
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a server may run as another user
        write(tmp)
        version = (versions(model_dir) or [0])[-1] + 1
        while True:
            final = os.path.join(model_dir, str(version))
            if not os.path.exists(final):
                try:
                    os.rename(tmp, final)
                    return final
                except OSError:
                    if not os.path.exists(final):
                        raise
            version += 1
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def served_models(exports_root: str) -> list[str]:
    """Names of the folders under `exports_root` that hold at least one SavedModel version."""
    if not os.path.isdir(exports_root):
        return []
    names = []
    for name in sorted(os.listdir(exports_root)):
        model_dir = os.path.join(exports_root, name)
        if name.startswith(".") or not os.path.isdir(model_dir):
            continue
        if any(
            os.path.exists(os.path.join(model_dir, str(v), "saved_model.pb"))
            for v in versions(model_dir)
        ):
            names.append(name)
    return names


def write_models_config(exports_root: str, base_path: str = "/models") -> str:
    """Writes `exports_root/models.config` listing every exported model; returns its path.

    `base_path` is where `exports_root` is mounted in the server, `/models` for
    `docker run -v $PWD/exports:/models tensorflow/serving --model_config_file=/models/models.config`.
    The file is TF Serving's `ModelServerConfig` in protobuf text format; each model serves its
    latest version.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name in served_models(exports_root):
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = f"{base_path.rstrip('/')}/{name}"
        entry.model_platform = "tensorflow"
    path = os.path.join(exports_root, "models.config")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text_format.MessageToString(config))
    os.replace(tmp, path)
    return path
