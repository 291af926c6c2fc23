"""Which model a config means, and its shape read while planning (config.json or GGUF header)."""

import json

import numpy as np
import pytest

from saeflow.errors import SaeflowError
from saeflow.gguf_header import check_complete, read_metadata
from saeflow.model_source import PACKAGED, packaged_path, resolve_model_source, source_shape


def write_gguf(path, arch="llama", blocks=30, width=576, vocab=("a", "b", "<s>")):
    """A GGUF file written by the gguf package itself: a few keys, a string array, one tensor."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(blocks)
    writer.add_embedding_length(width)
    writer.add_token_list(list(vocab))
    writer.add_float32("custom.scale", 0.5)
    writer.add_tensor("token_embd.weight", np.zeros((len(vocab), 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_header_reader_matches_the_gguf_package_on_every_scalar(tmp_path):
    import gguf

    path = write_gguf(tmp_path / "m.gguf")
    ours = read_metadata(path)
    reader = gguf.GGUFReader(str(path))
    theirs = {key: field.contents() for key, field in reader.fields.items()
              if not key.startswith("GGUF.") and not isinstance(field.contents(), list)}
    assert ours == pytest.approx(theirs)
    assert ours["llama.block_count"] == 30 and ours["general.architecture"] == "llama"
    assert "tokenizer.ggml.tokens" not in ours  # arrays are skipped


def test_a_truncated_or_foreign_file_is_one_clear_error(tmp_path):
    path = write_gguf(tmp_path / "m.gguf")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:60])
    with pytest.raises(SaeflowError, match=r"cut.gguf is not a readable GGUF file \(truncated\).*model.path"):
        read_metadata(cut)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"PK\x03\x04 not gguf")
    with pytest.raises(SaeflowError, match="bad magic"):
        read_metadata(other)


def test_a_file_whose_tensor_data_is_cut_short_is_refused_before_conversion(tmp_path):
    path = write_gguf(tmp_path / "m.gguf")
    check_complete(path)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:-40])
    assert read_metadata(cut)["custom.scale"] == 0.5  # the header is whole
    with pytest.raises(SaeflowError, match=r"cut.gguf is not a readable GGUF file \(truncated\)"):
        check_complete(cut)


def test_a_config_asking_for_the_models_own_code_is_refused_while_planning(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"architectures": ["EvilForCausalLM"], "auto_map": {"AutoConfig": "evil.EvilConfig"}, "n_layer": 2,
         "n_embd": 8}))
    with pytest.raises(SaeflowError, match=r"model.path: .*config.json asks for the model's own code .*"
                                           r"trust_remote_code"):
        source_shape(resolve_model_source(str(tmp_path)))


def test_a_gguf_source_plans_from_its_header_and_names_itself_as_configured(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", blocks=6, width=64)
    source = resolve_model_source(str(path))
    assert source.is_gguf and source.name == str(path)
    shape = source_shape(source)
    assert (shape.n_layers, shape.d_model, shape.causal_lm) == (6, 64, True)


def test_a_directory_source_plans_from_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"architectures": ["BertModel"], "num_hidden_layers": 6, "hidden_size": 384}))
    shape = source_shape(resolve_model_source(str(tmp_path)))
    assert (shape.n_layers, shape.d_model, shape.causal_lm) == (6, 384, False)


def test_null_means_the_packaged_smollm2_and_packaged_names_resolve():
    default = resolve_model_source(None)
    assert default.name == "HuggingFaceTB/SmolLM2-135M-Instruct" and default.is_gguf
    assert default.path == packaged_path("SmolLM2-135M-Instruct")
    shape = source_shape(default)
    assert (shape.n_layers, shape.d_model) == (30, 576)
    minilm = resolve_model_source("all-MiniLM-L6-v2")
    assert minilm.name == PACKAGED["all-MiniLM-L6-v2"].name and (minilm.path / "config.json").is_file()


def test_unusable_paths_are_one_clear_error(tmp_path):
    with pytest.raises(SaeflowError, match=r"model.path: .*absent.gguf does not exist"):
        resolve_model_source(str(tmp_path / "absent.gguf"))
    with pytest.raises(SaeflowError, match=r"model.path: .* is not a Hugging Face model directory \(no config.json\)"):
        resolve_model_source(str(tmp_path))
