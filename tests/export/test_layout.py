"""TF Serving's versioned layout (`export.layout`): integer versions written whole in a temporary
folder then renamed, never touching an existing one, and `models.config` listing every model."""

import os

import pytest


@pytest.mark.slow
def test_layout_and_models_config(nmt_export):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    root = nmt_export["root"]
    version = nmt_export["saved_model"]
    assert os.path.dirname(version) == os.path.join(root, "nmt")
    assert os.path.basename(version).isdigit()
    for name in ("saved_model.pb", "variables", "assets.extra/tf_serving_warmup_requests"):
        assert os.path.exists(os.path.join(version, name)), name
    assert not [n for n in os.listdir(root) if n.startswith(".tmp-")]  # no leftover temp folder
    with open(nmt_export["models_config"], encoding="utf-8") as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    entries = [(c.name, c.base_path, c.model_platform) for c in config.model_config_list.config]
    assert entries == [("nmt", "/models/nmt", "tensorflow")]


def test_write_version_takes_the_next_free_number_and_never_touches_existing(tmp_path):
    from export.layout import write_version

    (tmp_path / "nmt" / "1").mkdir(parents=True)
    (tmp_path / "nmt" / "1" / "keep").write_text("v1")

    def write(folder):
        # A concurrent export finishes version 2 while this one is being written.
        (tmp_path / "nmt" / "2").mkdir()
        (tmp_path / "nmt" / "2" / "keep").write_text("v2")
        with open(os.path.join(folder, "saved_model.pb"), "w") as f:
            f.write("new")

    final = write_version(str(tmp_path), "nmt", write)
    assert final == str(tmp_path / "nmt" / "3")
    assert (tmp_path / "nmt" / "3" / "saved_model.pb").read_text() == "new"
    assert (tmp_path / "nmt" / "1" / "keep").read_text() == "v1"
    assert (tmp_path / "nmt" / "2" / "keep").read_text() == "v2"
    assert sorted(os.listdir(tmp_path)) == ["nmt"]  # the temporary folder is gone


def test_write_version_cleans_up_after_a_failed_write(tmp_path):
    from export.layout import write_version

    def write(folder):
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        write_version(str(tmp_path), "nmt", write)
    assert os.listdir(tmp_path / "nmt") == []
    assert sorted(os.listdir(tmp_path)) == ["nmt"]


def test_models_config_lists_every_exported_model(tmp_path):
    from export.layout import write_models_config

    for path in ("nmt/1", "nmt/4", "captioning/2", "tflite", ".tmp-nmt-x/1", "empty"):
        (tmp_path / path).mkdir(parents=True)
    for path in ("nmt/4", "captioning/2", ".tmp-nmt-x/1"):
        (tmp_path / path / "saved_model.pb").write_text("")
    text = open(write_models_config(str(tmp_path), "/srv/models/")).read()
    assert text.count("config {") == 2
    assert 'name: "captioning"' in text and 'base_path: "/srv/models/captioning"' in text
    assert 'name: "nmt"' in text and 'base_path: "/srv/models/nmt"' in text
