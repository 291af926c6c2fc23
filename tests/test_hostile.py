"""Hostile models and text (issue 14): the code never unpickles, never trusts a model's remote code,
never loads weights but from safetensors (or GGUF), and never hands a string to a shell.

A static scan of the package (saeflow/, scripts/ by their syntax trees; Snakefile and rules/*.smk
by their text, as Snakemake's dialect is not Python), with a self-test that feeds the scanner
each forbidden pattern, so the scan can fail; and one dry run whose config strings are full of
shell metacharacters.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from workflow_runner import REPO, run_snakemake, tiny_config

# Modules whose loading runs code stored in the data.
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
# from_pretrained on these reads JSON and vocabulary files, never weights; every other receiver
# (a model class, PeftModel, or a variable holding an auto class) must say use_safetensors=True,
# a GGUF load too (transformers reads a gguf_file whatever use_safetensors says, so one rule
# covers both, and no call can fall back to a pickled pytorch_model.bin).
WEIGHTLESS = re.compile(r"(Tokenizer|TokenizerFast|Config|Processor|FeatureExtractor|ImageProcessor)$")
SHELL_CALLS = {"os.system", "os.popen", "asyncio.create_subprocess_shell", "snakemake.shell.shell", "snakemake.shell"}
# Snakemake's dialect, by text: a `shell:` directive or a shell() call; and the Python rules above
# where a rule file's own code could break them.
SMK_RULES = {
    "shell directive": re.compile(r"^\s*shell\s*:", re.M),
    "shell call": re.compile(r"\bshell\s*\("),
    "shell=True": re.compile(r"\bshell\s*=\s*(?!False\b)"),
    "trust_remote_code": re.compile(r"\btrust_remote_code\b(?!\s*=\s*False\b)"),
    "pickle module": re.compile(r"\bimport\s+(" + "|".join(PICKLE_MODULES) + r")\b|\bfrom\s+(" +
                                "|".join(PICKLE_MODULES) + r")\s+import\b"),
    "os.system/popen": re.compile(r"\bos\.(system|popen)\b"),
    "subprocess": re.compile(r"\bsubprocess\b"),
}


@dataclass(frozen=True)
class Finding:
    where: str  # path:line
    rule: str


def _is_literal(node: ast.AST | None, value: bool) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _dotted(node: ast.AST) -> str | None:
    """`a.b.c` for a chain of attributes on a name, else None (a call's result, a subscript)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> what it was imported as (`np` -> numpy, `run` -> subprocess.run), so an
    alias does not hide a call."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update({a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0]
                          for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    return names


def _canonical(func: ast.AST, aliases: dict[str, str]) -> str | None:
    dotted = _dotted(func)
    if dotted is None:
        return None
    head, _, rest = dotted.partition(".")
    return ".".join(filter(None, [aliases.get(head, head), rest]))


def _import_rules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        modules = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        modules = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
    else:
        return []
    rules = []
    if any(m.split(".")[0] in PICKLE_MODULES for m in modules):
        rules.append("pickle module")
    if any(m in ("snakemake.shell", "snakemake.shell.shell") for m in modules):
        rules.append("shell call")
    return rules


def _loads_weights(name: str) -> bool:
    """Whether from_pretrained on `name` (its dotted callee; "" when that is an expression) may
    load weights: all but the weightless classes, so a variable or an expression counts."""
    parts = name.split(".")
    return not (len(parts) > 1 and WEIGHTLESS.search(parts[-2]))


def _call_rules(call: ast.Call, name: str | None) -> list[str]:
    """The rules a call breaks: `name` is its callee as imported (None when not a plain chain)."""
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    rules = []
    if "trust_remote_code" in kw and not _is_literal(kw["trust_remote_code"], False):
        rules.append("trust_remote_code")
    last = call.func.attr if isinstance(call.func, ast.Attribute) else (name or "").rsplit(".", 1)[-1]
    if last == "read_pickle":
        rules.append("read_pickle")
    if last == "from_pretrained" and _loads_weights(name or "") and not _is_literal(kw.get("use_safetensors"), True):
        rules.append("from_pretrained without use_safetensors=True")
    if name is None:
        return rules
    if name in ("torch.load", "torch.serialization.load") and not _is_literal(kw.get("weights_only"), True):
        rules.append("torch.load without weights_only=True")
    if name == "numpy.load" and "allow_pickle" in kw and not _is_literal(kw["allow_pickle"], False):
        rules.append("numpy.load allow_pickle")
    if name.startswith("subprocess.") and "shell" in kw and not _is_literal(kw["shell"], False):
        rules.append("shell=True")
    if name in SHELL_CALLS or name.startswith(("os.spawn", "os.exec")):
        rules.append("shell call")
    return rules


def _dict_rules(node: ast.Dict) -> list[str]:
    """{"trust_remote_code": True} passed on as **kwargs."""
    return ["trust_remote_code" for key, value in zip(node.keys, node.values)
            if isinstance(key, ast.Constant) and key.value == "trust_remote_code" and not _is_literal(value, False)]


def scan_python(source: str, where: str) -> list[Finding]:
    tree = ast.parse(source)
    aliases = _aliases(tree)
    findings = []
    for node in ast.walk(tree):
        rules = _import_rules(node)
        if isinstance(node, ast.Call):
            rules += _call_rules(node, _canonical(node.func, aliases))
        elif isinstance(node, ast.Dict):
            rules += _dict_rules(node)
        findings += [Finding(f"{where}:{node.lineno}", rule) for rule in rules]
    return findings


def scan_snakemake(text: str, where: str) -> list[Finding]:
    code = re.sub(r"#.*", "", text)  # comments may name what they forbid
    return [Finding(f"{where}:{code.count(chr(10), 0, match.start()) + 1}", rule)
            for rule, pattern in SMK_RULES.items() for match in pattern.finditer(code)]


def scan_package() -> list[Finding]:
    findings = []
    for path in sorted([*REPO.glob("saeflow/**/*.py"), *REPO.glob("scripts/**/*.py")]):
        findings += scan_python(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    for path in [REPO / "Snakefile", *sorted(REPO.glob("rules/*.smk"))]:
        findings += scan_snakemake(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    return findings


def test_the_package_never_unpickles_trusts_remote_code_or_shells_out():
    assert scan_package() == []


FORBIDDEN_PYTHON = [
    ("import pickle\npickle.loads(b'')", "pickle module"),
    ("import cPickle", "pickle module"),
    ("from dill import load", "pickle module"),
    ("import cloudpickle as cp", "pickle module"),
    ("from joblib import load", "pickle module"),
    ("import shelve", "pickle module"),
    ("import marshal", "pickle module"),
    ("import torch\ntorch.load('w.pt')", "torch.load without weights_only=True"),
    ("import torch\ntorch.load('w.pt', weights_only=False)", "torch.load without weights_only=True"),
    ("from torch import load as tl\ntl('w.pt')", "torch.load without weights_only=True"),
    ("import numpy as np\nnp.load('a.npy', allow_pickle=True)", "numpy.load allow_pickle"),
    ("import numpy\nnumpy.load('a.npy', allow_pickle=flag)", "numpy.load allow_pickle"),
    ("import pandas as pd\npd.read_pickle('t.pkl')", "read_pickle"),
    ("AutoModelForCausalLM.from_pretrained(p, trust_remote_code=True)", "trust_remote_code"),
    ("AutoTokenizer.from_pretrained(p, trust_remote_code=flag)", "trust_remote_code"),
    ("AutoModel.from_pretrained(p, **{'trust_remote_code': True})", "trust_remote_code"),
    ("AutoModelForCausalLM.from_pretrained(p)", "from_pretrained without use_safetensors=True"),
    ("auto.from_pretrained(p, use_safetensors=None)", "from_pretrained without use_safetensors=True"),
    ("transformers.GPT2LMHeadModel.from_pretrained(p, use_safetensors=False)",
     "from_pretrained without use_safetensors=True"),
    ("get_class(cfg).from_pretrained(p)", "from_pretrained without use_safetensors=True"),
    ("from pandas import read_pickle as rp\nrp('t.pkl')", "read_pickle"),
    ("import subprocess\nsubprocess.run(cmd, shell=True)", "shell=True"),
    ("import subprocess as sp\nsp.Popen(cmd, shell=1)", "shell=True"),
    ("from subprocess import check_output\ncheck_output(cmd, shell=True)", "shell=True"),
    ("import os\nos.system('ls')", "shell call"),
    ("import os\nos.popen('ls')", "shell call"),
    ("from os import system\nsystem('ls')", "shell call"),
    ("import os\nos.execvp('sh', ['sh'])", "shell call"),
    ("from snakemake.shell import shell\nshell('ls {input}')", "shell call"),
]

ALLOWED_PYTHON = [
    "import torch\ntorch.load('w.pt', weights_only=True)",
    "import numpy as np\nnp.load('a.npy')\nnp.load('a.npy', allow_pickle=False)",
    "AutoModelForCausalLM.from_pretrained(p, use_safetensors=True, trust_remote_code=False)",
    "AutoTokenizer.from_pretrained(p)\nAutoConfig.from_pretrained(p)\nPeftConfig.from_pretrained(p)",
    "import subprocess, sys\nsubprocess.run([sys.executable, '-m', 'snakemake'], shell=False)",
    "from safetensors.torch import load_file\nload_file('w.safetensors')",
]


@pytest.mark.parametrize("source,rule", FORBIDDEN_PYTHON)
def test_the_scan_flags_each_forbidden_call(source, rule):
    assert rule in [f.rule for f in scan_python(source, "snippet")]


def test_the_scan_passes_safe_calls():
    assert [f for source in ALLOWED_PYTHON for f in scan_python(source, "snippet")] == []


def test_the_scan_flags_snakemake_shell_and_python_in_rule_files():
    rule = 'rule x:\n    output: "a"\n    shell:\n        "touch {output}"\n'
    run = 'rule y:\n    run:\n        shell("echo {params.prompt}")\n        os.system("ls")\n'
    assert [f.rule for f in scan_snakemake(rule, "x.smk")] == ["shell directive"]
    assert {f.rule for f in scan_snakemake(run, "y.smk")} == {"shell call", "os.system/popen"}
    assert scan_snakemake("import pickle\nx = dict(trust_remote_code=True)\n", "z.smk") != []
    assert scan_snakemake('# never a shell: directive, never shell("x")\nrule z:\n    script: "s.py"\n', "z") == []


# ---------------------------------------------------------------- config strings never reach a shell

HOSTILE = ["$(touch PWNED)", "`touch PWNED2`", "; touch PWNED3 #", "' \" && touch PWNED4 | cat"]


def test_config_strings_full_of_shell_syntax_plan_as_data(tiny_lm, tmp_path):
    """A corpus folder and file, a text field and steering prompts made of shell syntax: the
    workflow plans on them (Snakemake runs scripts, never shells) and nothing they say runs."""
    folder = tmp_path / "corpus $(touch PWNED) `touch PWNED2`; touch PWNED3"
    folder.mkdir()
    field = HOSTILE[3]
    (folder / "a'b\"; touch PWNED5.jsonl").write_text(
        "".join(json.dumps({field: f"The lazy fox {i} {h}"}) + "\n" for i, h in enumerate(HOSTILE)))
    config = tiny_config(tiny_lm, str(folder / "*.jsonl"), corpus__format="jsonl", corpus__text_field=field)
    config["steering"] = [{"name": "s", "sae": "tiny", "features": [1], "alphas": [1.0], "prompts": HOSTILE,
                           "max_new_tokens": 2}]
    result = run_snakemake(tmp_path / "run", config, "-n", "-p")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "touch PWNED5.jsonl" in result.stdout and "steer" in result.stdout  # planned, as data
    assert sorted(p.name for p in tmp_path.rglob("PWNED*")) == []
    assert not list(REPO.glob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))


@pytest.mark.parametrize("where", ["saes", "steering name", "hooks"])
def test_names_that_become_paths_refuse_shell_syntax(where):
    """Names end up in file paths and wildcards: the schema allows letters, digits, _ . - only."""
    schema = yaml.safe_load((REPO / "config.schema.yaml").read_text())
    name = "x;touch PWNED"
    config = tiny_config("m", "c/*.txt")
    if where == "saes":
        config["saes"] = {name: config["saes"]["tiny"]}
    elif where == "steering name":
        config["steering"] = [{"name": name, "sae": "tiny", "features": [1], "alphas": [1.0], "prompts": ["a"]}]
    else:
        config["hooks"] = {name: "hidden_states.1"}
    with pytest.raises(jsonschema.ValidationError, match="does not match"):
        jsonschema.validate(config, schema)
