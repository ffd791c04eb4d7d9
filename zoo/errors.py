"""The project's error types, in one place (each message names the problem and how to fix it),
the one-line description a command prints for any error, and the optional packages' extras.

Nothing here imports TensorFlow: the command lines load it for their error handling."""

from __future__ import annotations

import errno


class DataError(ValueError):
    """A data file or data argument is missing, unreadable or malformed."""


class ConfigError(ValueError):
    """A config key or value is wrong; the message names it and the fix."""


class RunError(RuntimeError):
    """A run folder is missing, corrupt or does not match the command."""


class ExportError(RuntimeError):
    """A run cannot be exported as asked; the message says why and what to do."""


# The optional packages: import name -> (distribution, the extra of setup.cfg that installs it).
# A user who wants only the layers installs none of them.
EXTRAS = {
    "keras_tuner": ("keras-tuner", "tune"),
    "ai_edge_litert": ("ai-edge-litert", "export"),
    "tensorflow_serving": ("tensorflow-serving-api", "export"),
    "num2words": ("num2words", "data"),
    "sklearn": ("scikit-learn", "data"),
}


def missing_extra(error: ImportError, extra: str | None = None) -> ModuleNotFoundError:
    """The one-line error for an optional package that is not installed: it names the extra
    that brings it (`raise missing_extra(e) from None` around the import)."""
    name = (getattr(error, "name", None) or "").split(".")[0]
    distribution, known_extra = EXTRAS.get(name, (name, None))
    extra = extra or known_extra
    what = name if distribution == name else f"{name} ({distribution})"
    if extra is None:
        fix = "pip install attention-zoo (it installs what the project needs)"
    else:
        fix = f"pip install 'attention-zoo[{extra}]' (or 'attention-zoo[all]')"
    new = ModuleNotFoundError(f"{what or error} is not installed: {fix}", name=name or None)
    new.extra = extra
    return new


def describe(error: BaseException) -> str:
    """One line for a command that failed: what went wrong and what to do.

    The project's own errors (a `ValueError` whose message already names the fix) are shown as
    they are; errors from the system or from TensorFlow get the fix added here, and a pointer
    to `ZOO_DEBUG=1`, which shows the full traceback instead.
    """
    debug = " (ZOO_DEBUG=1 shows the traceback)"
    if isinstance(error, OSError):
        where = f": {error.filename}" if error.filename else ""
        if error.errno == errno.ENOSPC:
            return (f"no space left on the device{where}; free some space, or write runs to "
                    "another disk with ZOO_RUNS=FOLDER (a run resumes from its last finished "
                    f"epoch){debug}")
        if isinstance(error, PermissionError) or error.errno == errno.EROFS:
            return (f"{error.strerror or 'permission denied'}{where}; write somewhere this user "
                    f"may (runs go under ZOO_RUNS, default runs/; exports under --out){debug}")
        return f"{error.strerror or error}{where}{debug}"
    if isinstance(error, ModuleNotFoundError):
        if getattr(error, "extra", None) is not None:
            return str(error)
        named = missing_extra(error)
        return str(named) if named.extra else f"{named}{debug}"
    if isinstance(error, MemoryError) or type(error).__name__ == "ResourceExhaustedError":
        return ("out of memory; lower batch_size (or batch_tokens), max_source_length or the "
                f"model size{debug}")
    if type(error).__module__.split(".")[0] in ("recipes", "export", "zoo"):
        return str(error)
    if isinstance(error, ValueError):
        return f"{error}{debug}"
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}{debug}"
