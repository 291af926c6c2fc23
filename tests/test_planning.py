"""What the workflow fixes while it plans: hook points, their widths, the corpus's size and labels."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saeflow.config import hook_specs, sae_hook
from saeflow.corpus_plan import estimated_bytes, has_field
from saeflow.errors import SaeflowError
from saeflow.hook_plan import hook_widths
from saeflow.model_source import resolve_model_source


def test_hooks_are_the_configured_ones_then_each_layer_shorthand_once():
    config = {"hooks": {"mlp3": "model.layers.3.mlp", "pair": ["hidden_states.1", "hidden_states.2"]},
              "saes": {"a": {"layer": 4}, "b": {"hook": "mlp3"}, "c": {"layer": 4}, "d": {"layer": 0}}}
    assert hook_specs(config) == {"mlp3": "model.layers.3.mlp", "pair": ["hidden_states.1", "hidden_states.2"],
                                  "layer-4": "hidden_states.4", "layer-0": "hidden_states.0"}
    assert sae_hook("b", config["saes"]["b"], hook_specs(config)) == "mlp3"
    assert sae_hook("a", config["saes"]["a"], hook_specs(config)) == "layer-4"


def test_an_unknown_hook_or_a_clashing_shorthand_is_one_clear_error():
    with pytest.raises(SaeflowError, match=r"saes.b.hook: 'mlp9' is not a key of hooks: \(known: mlp3\)"):
        hook_specs({"hooks": {"mlp3": "x"}, "saes": {"b": {"hook": "mlp9"}}})
    with pytest.raises(SaeflowError, match=r"hooks.layer-2: .*saes.a.layer.*rename that hook"):
        hook_specs({"hooks": {"layer-2": "model.layers.2.mlp"}, "saes": {"a": {"layer": 2}}})


def test_hidden_states_widths_need_only_the_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 4, "hidden_size": 48}))
    source = resolve_model_source(str(tmp_path))
    hooks = {"top": "hidden_states.4", "two": ["hidden_states.0", "hidden_states.2"]}
    assert hook_widths(source, None, hooks, tmp_path / "cache") == {"top": 48, "two": 96}
    with pytest.raises(SaeflowError, match=r"hooks.bad: hidden_states.5 is out of range.*between 0 and 4"):
        hook_widths(source, None, {"bad": "hidden_states.5"}, tmp_path / "cache")


def test_corpus_bytes_come_from_the_files_and_max_documents_takes_their_share(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("x" * 100)
    b.write_text("y" * 300)
    assert estimated_bytes([str(a), str(b)], "auto", None) == 400
    assert estimated_bytes([str(a), str(b)], "auto", 1) == 100
    lines = tmp_path / "c.jsonl"
    lines.write_text("".join(json.dumps({"text": "z" * 40}) + "\n" for _ in range(10)))
    size = lines.stat().st_size
    assert estimated_bytes([str(lines)], "auto", None) == size
    assert abs(estimated_bytes([str(lines)], "auto", 5) - size / 2) <= size / 10
    assert estimated_bytes([], "auto", None) > 400_000  # the built-in corpus: Python's doc topics


def test_labels_are_found_in_a_parquet_schema_or_any_jsonl_record(tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"text": "no labels here, though \\"labels\\" is in the text"}\n')
    late = tmp_path / "late.jsonl"
    late.write_text('{"text": "a"}\n{"text": "b", "labels": ["x"]}\n')
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["a"], "topics": [["x"]]}), table)
    assert not has_field([str(plain)], "auto", "labels")
    assert has_field([str(plain), str(late)], "auto", "labels")
    assert not has_field([str(late)], "auto", None)
    assert has_field([str(table)], "auto", "topics") and not has_field([str(table)], "auto", "labels")
    assert not has_field([], "auto", "labels")  # the built-in corpus has none
