"""attention-zoo: Bahdanau and Luong attention layers for Keras 3 (`zoo.layers`), the models,
decoders and data they are built into; `recipes` trains them and `export` ships them.

Importing `zoo` itself loads nothing heavy: `zoo.__version__` is the package version (setup.cfg
reads it from here).
"""

__version__ = "0.1.0"
