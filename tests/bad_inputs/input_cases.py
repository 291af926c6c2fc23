"""The input half of the bad-input matrix: corpus files, model and adapter folders, GGUF files, hook
specs and steering settings, each met by the job or planning check a user would run into.

Jobs run the library function their workflow script calls; a planning check runs the function
rules/common.smk calls while the Snakefile loads (one case runs the real Snakefile's dry run).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bad_inputs.registry import Attempt, case
from saeflow import config as run_config
from saeflow import adapter, corpus, hook_plan, model, model_source, steering, storage
from tiny_models import build_lora_adapter, build_tiny_causal_lm
from workflow_runner import REPO, tiny_config, write_corpus

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", *TOKENIZER_FILES)
CORPUS_SETTINGS = {"format": "auto", "text_field": "text", "labels_field": None, "spans_field": None,
                   "context_len": 16, "max_documents": None, "max_tokens": None, "prepend_bos": False}


# ---------------------------------------------------------------- corpus: the corpus rule's job


def _corpus_attempt(tokenizer, files, expect, results=None, **settings) -> Attempt:
    results = Path(results) / "corpus"
    outputs = {"tokens": results / "tokens.parquet", "documents": results / "documents.unsplit.parquet",
               "idf": results / "idf.parquet"}
    paths = [str(path) for path in files]
    return Attempt(expect, job=lambda: corpus.corpus_job(paths, tokenizer, outputs, CORPUS_SETTINGS | settings),
                   outputs=list(outputs.values()))


def _corpus_case(tmp_path, request, name, content, expect, **settings) -> Attempt:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return _corpus_attempt(request.getfixturevalue("tiny_lm"), [path], expect, tmp_path / "results", **settings)


def _jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def _parquet(path: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


@case("corpus text file not UTF-8")
def _(tmp_path, request):
    return _corpus_case(tmp_path, request, "latin.txt", "caf\u00e9".encode("latin-1"),
                        ("latin.txt: not valid UTF-8", "convert the file to UTF-8"))


@case("corpus JSONL line not JSON")
def _(tmp_path, request):
    return _corpus_case(tmp_path, request, "c.jsonl", _jsonl({"text": "fine"}, '{"text": "cut'),
                        ("c.jsonl:2: invalid JSON", "fix or remove that line"))


@case("corpus JSONL line not an object")
def _(tmp_path, request):
    return _corpus_case(tmp_path, request, "c.jsonl", _jsonl(["a", "list"]),
                        ("c.jsonl:1: expected a JSON object", "fix or remove that line"))


@case("corpus JSONL text not a string")
def _(tmp_path, request):
    return _corpus_case(tmp_path, request, "c.jsonl", _jsonl({"text": 5}),
                        ("c.jsonl:1: no string field 'text'", "set corpus.text_field"))


@case("corpus Parquet without the text column")
def _(tmp_path, request):
    _parquet(tmp_path / "c.parquet", {"body": ["a document"]})
    return _corpus_attempt(request.getfixturevalue("tiny_lm"), [tmp_path / "c.parquet"],
                           ("c.parquet: no column 'text'", "set corpus.text_field"), tmp_path / "results")


@case("corpus Parquet file that is not Parquet")
def _(tmp_path, request):
    return _corpus_case(tmp_path, request, "c.parquet", "text\nplain csv\n",
                        ("c.parquet: not a readable Parquet file", "corpus.format"))


@case("corpus labels not a list of strings")
def _(tmp_path, request):
    return _corpus_case(tmp_path, request, "c.jsonl", _jsonl({"text": "a fox", "labels": "animal"}),
                        ("c.jsonl:1: field 'labels' must be a list of strings", "corpus.labels_field"),
                        labels_field="labels")


@case("corpus Parquet labels of numbers")
def _(tmp_path, request):
    _parquet(tmp_path / "c.parquet", {"text": ["a fox"], "labels": [[1, 2]]})
    return _corpus_attempt(request.getfixturevalue("tiny_lm"), [tmp_path / "c.parquet"],
                           ("c.parquet:0: field 'labels' must be a list of strings", "corpus.labels_field"),
                           tmp_path / "results", labels_field="labels")


@case("corpus span past the text")
def _(tmp_path, request):
    return _corpus_case(tmp_path, request, "c.jsonl", _jsonl({"text": "a fox", "spans": [[2, 99, "animal"]]}),
                        ("c.jsonl:1: span [2, 99, 'animal'] of field 'spans' is not within the text",
                         "corpus.spans_field"), spans_field="spans")


@case("corpus span malformed")
def _(tmp_path, request):
    return _corpus_case(tmp_path, request, "c.jsonl", _jsonl({"text": "a fox", "spans": [[2, "five", "animal"]]}),
                        ("c.jsonl:1: field 'spans' has [2, 'five', 'animal'], not [start, end, label]",
                         "corpus.spans_field"), spans_field="spans")


@case("corpus file gone after planning")
def _(tmp_path, request):
    return _corpus_attempt(request.getfixturevalue("tiny_lm"), [tmp_path / "gone.txt"],
                           ("gone.txt: cannot read this corpus file", "fix corpus.source"), tmp_path / "results")


@case("corpus without any text")
def _(tmp_path, request):
    write_corpus(tmp_path / "docs", {"a.txt": "", "b.txt": ""})
    return _corpus_attempt(request.getfixturevalue("tiny_lm"), sorted((tmp_path / "docs").glob("*.txt")),
                           ("corpus.source: the corpus has no document with tokens", "point corpus.source"),
                           tmp_path / "results")


@case("results folder read-only")
def _(tmp_path, request):
    # Under /tmp, not pytest's private tmp dir, so that the unprivileged job can reach it.
    root = Path(tempfile.mkdtemp(prefix="saeflow-read-only-"))
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    tokenizer = _copy_model(request.getfixturevalue("tiny_lm"), root / "tokenizer", TOKENIZER_FILES)
    write_corpus(root / "docs", {"a.txt": "The quick brown fox jumps over the lazy dog."})
    (root / "results").mkdir()
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (root / "results").chmod(0o555)
    # The job once as root first: where Python itself lies in a folder nobody cannot read (/root),
    # the unprivileged job can only use modules already imported.
    _corpus_attempt(tokenizer, [root / "docs/a.txt"], (), tmp_path / "warm-up").job()
    attempt = _corpus_attempt(tokenizer, [root / "docs/a.txt"], ("not writable by this user", "chmod u+w"),
                              root / "results")
    attempt.unprivileged = True
    return attempt


# ---------------------------------------------------------------- model folders and GGUF files


def _copy_model(source: Path, folder: Path, names=MODEL_FILES) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(source / name, folder / name)
    return folder


def _model_case(tmp_path, request, names, expect, edit=lambda folder: None, job=model.load_model) -> Attempt:
    folder = _copy_model(request.getfixturevalue("tiny_lm"), tmp_path / "model", names)
    edit(folder)
    return Attempt(expect, job=lambda: job(folder))


def _edit_config(**changes):
    def edit(folder):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | changes))

    return edit


@case("model folder without weights")
def _(tmp_path, request):
    names = [name for name in MODEL_FILES if name != "model.safetensors"]
    return _model_case(tmp_path, request, names, ("model.path:", "has no weights", "model.safetensors"))


@case("model folder with only pickle weights")
def _(tmp_path, request):
    names = [name for name in MODEL_FILES if name != "model.safetensors"]
    # Not even a pickle: the point is that saeflow never opens it.
    edit = lambda folder: (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 never unpickled")  # noqa: E731
    return _model_case(tmp_path, request, names, ("only pickle weights (pytorch_model.bin)",
                                                  "safe_serialization=True"), edit)


@case("model folder with only pickle weights, while planning")
def _(tmp_path, request):
    names = [name for name in MODEL_FILES if name != "model.safetensors"]
    edit = lambda folder: (folder / "model.ckpt").write_bytes(b"\x80\x04 never unpickled")  # noqa: E731
    return _model_case(tmp_path, request, names, ("only pickle weights (model.ckpt)", "safe_serialization=True"),
                       edit, job=model_source.check_safetensors_weights)


@case("model folder without config.json")
def _(tmp_path, request):
    names = [name for name in MODEL_FILES if name != "config.json"]
    return _model_case(tmp_path, request, names, ("no config.json", "fix model.path"))


@case("model config.json not JSON")
def _(tmp_path, request):
    edit = lambda folder: (folder / "config.json").write_text('{"model_type": "gpt2",')  # noqa: E731
    return _model_case(tmp_path, request, MODEL_FILES, ("config.json is not readable JSON", "restore"), edit)


@case("model config asks for its own code")
def _(tmp_path, request):
    edit = _edit_config(auto_map={"AutoModelForCausalLM": "modeling_evil.EvilLM"})
    return _model_case(tmp_path, request, MODEL_FILES, ("config.json asks for the model's own code (auto_map)",
                                                        "trust_remote_code"), edit)


@case("model type transformers does not ship")
def _(tmp_path, request):
    edit = _edit_config(model_type="saeflow-custom")
    return _model_case(tmp_path, request, MODEL_FILES, ("model_type 'saeflow-custom'",
                                                        "use a model of an architecture transformers ships"), edit)


@case("model folder without a tokenizer")
def _(tmp_path, request):
    names = ("config.json", "model.safetensors")
    return _model_case(tmp_path, request, names, ("cannot load a tokenizer from", "save_pretrained"),
                       job=model.load_tokenizer)


@case("model needing its own code refused while planning")
def _(tmp_path, request):
    folder = _copy_model(request.getfixturevalue("tiny_lm"), tmp_path / "model")
    _edit_config(auto_map={"AutoConfig": "configuration_evil.EvilConfig"})(folder)
    work = tmp_path / "work"
    work.mkdir()
    config = tiny_config(folder, write_corpus(tmp_path / "docs"))
    (work / "config.yaml").write_text(json.dumps(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "-n",
               "--cores", "1"]
    return Attempt(("asks for the model's own code (auto_map)", "trust_remote_code"), command=command,
                   outputs=[work / "results"])


def _gguf(path: Path) -> Path:
    from test_model_source import write_gguf

    return write_gguf(path, blocks=2, width=4)


@case("GGUF file truncated")
def _(tmp_path, request):
    whole = _gguf(tmp_path / "whole.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:-40])  # the header whole, the tensor data cut short
    out = tmp_path / "results/model"
    return Attempt(("cut.gguf is not a readable GGUF file (truncated)", "point model.path"),
                   job=lambda: model_source.convert_gguf(cut, out), outputs=[out])


@case("GGUF file that is not GGUF")
def _(tmp_path, request):
    path = tmp_path / "zip.gguf"
    path.write_bytes(b"PK\x03\x04 a zip, not a model")
    return Attempt(("zip.gguf is not a readable GGUF file (not a GGUF file", "point model.path"),
                   job=lambda: model_source.source_shape(model_source.resolve_model_source(str(path))))


@case("GGUF tokenizer of a truncated file")
def _(tmp_path, request):
    whole = _gguf(tmp_path / "whole.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:40])
    out = tmp_path / "results/tokenizer"
    return Attempt(("cut.gguf is not a readable GGUF file (truncated)", "point model.path"),
                   job=lambda: model_source.convert_gguf_tokenizer(cut, out), outputs=[out])


# ---------------------------------------------------------------- adapters


def _adapter_case(tmp_path, request, expect, edit=lambda folder: None, made_on=None) -> Attempt:
    tiny_lm = request.getfixturevalue("tiny_lm")
    folder = build_lora_adapter(made_on or tiny_lm, tmp_path / "adapter", target_modules=("c_attn",))
    edit(folder)
    return Attempt(expect, job=lambda: model.load_model(tiny_lm, adapter=folder))


@case("adapter for a wider model")
def _(tmp_path, request):
    wide = build_tiny_causal_lm(tmp_path / "wide", n_embd=48)
    return _adapter_case(tmp_path, request, ("model.adapter:", "was made for another model", "size mismatch",
                                             "set model.adapter to an adapter trained on this model"), made_on=wide)


@case("adapter targeting modules the model lacks")
def _(tmp_path, request):
    def edit(folder):
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps(config | {"target_modules": ["q_proj"]}))

    return _adapter_case(tmp_path, request, ("was made for another model", "q_proj",
                                             "set model.adapter to an adapter trained on this model"), edit)


@case("adapter folder without adapter_config.json")
def _(tmp_path, request):
    edit = lambda folder: (folder / "adapter_config.json").unlink()  # noqa: E731
    return _adapter_case(tmp_path, request, ("model.adapter:", "no adapter_config.json", "set it to null"), edit)


@case("adapter folder that does not exist, while planning")
def _(tmp_path, request):
    return Attempt(("model.adapter:", "absent-adapter is not a PEFT adapter directory", "set it to null"),
                   job=lambda: adapter.check_adapter_folder(tmp_path / "absent-adapter"))


@case("adapter config not JSON")
def _(tmp_path, request):
    edit = lambda folder: (folder / "adapter_config.json").write_text("{'r': 4}")  # noqa: E731
    return _adapter_case(tmp_path, request, ("adapter_config.json is not a readable PEFT config",
                                             "save the adapter again"), edit)


@case("adapter with only pickle weights")
def _(tmp_path, request):
    def edit(folder):
        (folder / "adapter_model.safetensors").unlink()
        (folder / "adapter_model.bin").write_bytes(b"\x80\x04 never unpickled")

    return _adapter_case(tmp_path, request, ("has no adapter_model.safetensors", "safe_serialization=True"), edit)


# ---------------------------------------------------------------- hooks, checked while planning


def _hook_case(tmp_path, request, hooks: dict, expect) -> Attempt:
    source = model_source.ModelSource(request.getfixturevalue("tiny_lm"), "tiny")
    cache = tmp_path / "cache"
    return Attempt(expect, job=lambda: hook_plan.hook_widths(source, None, hooks, cache), outputs=[cache])


@case("hook module that does not exist")
def _(tmp_path, request):
    return _hook_case(tmp_path, request, {"mlp9": "transformer.h.9.mlp"},
                      ("hooks.mlp9: no module 'transformer.h.9.mlp'", "did you mean"))


@case("hook layer out of range")
def _(tmp_path, request):
    return _hook_case(tmp_path, request, {"deep": "hidden_states.7"},
                      ("hooks.deep: hidden_states.7 is out of range", "set L between 0 and 2"))


@case("hook spec malformed")
def _(tmp_path, request):
    return _hook_case(tmp_path, request, {"odd": "transformer.h.0.mlp:output"},
                      ("hooks.odd: 'transformer.h.0.mlp:output' is not a hook spec", "<module path>:input"))


@case("SAE hook not among hooks")
def _(tmp_path, request):
    return Attempt(("saes.s.hook: 'mlp' is not a key of hooks:", "add it under hooks:"),
                   job=lambda: run_config.hook_specs({"hooks": {}, "saes": {"s": {"hook": "mlp", "k": 4}}}))


# ---------------------------------------------------------------- steering


def _steering_case(expect, has_labels=True, hooks=None, **experiment) -> Attempt:
    experiment = {"name": "push", "sae": "tiny", "mode": "add", **experiment}
    hooks = hooks or {"layer-1": "hidden_states.1"}
    return Attempt(expect, job=lambda: run_config.steering_experiments(
        {"steering": [experiment]}, hooks, {"tiny": next(iter(hooks))}, {"tiny": 64}, True, has_labels))


@case("steering feature past d_sae")
def _(tmp_path, request):
    return _steering_case(("steering[0] (push).features: feature 64 is past tiny's 64 features",
                           "pick ids below 64"), features=[3, 64])


@case("steering SAE unknown")
def _(tmp_path, request):
    return _steering_case(("steering[0] (push).sae: 'nope' is not a key of saes:", "set it to one of those"),
                          sae="nope", features=[3])


@case("steering label vector without corpus labels")
def _(tmp_path, request):
    return _steering_case(("steering[0] (push).vector: label vectors need a corpus with labels",
                           "corpus.labels_field"), has_labels=False, vector="animal")


@case("steering label vector clamped")
def _(tmp_path, request):
    return _steering_case(("steering[0] (push).mode: a label vector can only be added", "mode: add"),
                          mode="clamp", vector="animal")


@case("steering an SAE on an input hook")
def _(tmp_path, request):
    return _steering_case(("steering[0] (push).sae:", "steer an SAE on one module output or hidden_states.L"),
                          hooks={"attn-in": "transformer.h.0.attn:input"}, features=[3])


@case("steering label vector the corpus lacks")
def _(tmp_path, request):
    vectors = tmp_path / "label_vectors.safetensors"
    storage.write_safetensors(vectors, {"vectors": np.ones((2, 4), dtype=np.float32)},
                              {"labels": json.dumps(["animal", "ml"])})
    experiment = {"name": "towards", "sae": "tiny", "mode": "add", "vector": "plants"}
    return Attempt(("steering.towards.vector: no label vector 'plants'", "set vector: to one of the corpus's labels"),
                   job=lambda: steering.steering_targets(experiment, None, None, None, vectors))

