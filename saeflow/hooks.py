"""Hook points: parse a spec, check it against a model, capture hooks in one forward pass, and
replace one hook's value inside a forward (CE splicing).

A spec is `hidden_states.<L>` (the model's hidden_states[L], 0 = the embedding output),
`<module path>` (that submodule's output, its first element where it returns a tuple),
`<module path>:input` (its first positional input), or a list of those, concatenated along the
last axis in list order. Module paths are `model.named_modules()` names of the model as
`saeflow.model.load_model` returns it, adapter modules included.

torch is imported inside the functions that run a model: the workflow imports this module while
it plans (saeflow.hook_plan), and `describe_hooks` answers repeated plans from a JSON cache.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from saeflow.errors import SaeflowError, single_line

_HIDDEN = re.compile(r"hidden_states\.(\d+)")
_PATH = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
_META_SHAPE = (2, 5)  # batch, tokens of the width-finding forward: unlikely to equal any head count


@dataclass(frozen=True)
class Site:
    """One place in the forward pass: ("hidden_states", L), ("output", path) or ("input", path)."""

    kind: str
    target: int | str


def parse_hook_spec(spec, key: str = "hook") -> list[Site]:
    """The sites of a spec (a str or a list of str), in order; one clear error if malformed."""
    specs = spec if isinstance(spec, list) else [spec]
    if not specs or not all(isinstance(s, str) for s in specs):
        raise SaeflowError(f"{key}: {spec!r} is not a hook spec; give `hidden_states.<L>`, a module path, "
                           "`<module path>:input`, or a non-empty list of those")
    return [_parse_site(s, key) for s in specs]


def _parse_site(text: str, key: str) -> Site:
    path, _, suffix = text.partition(":")
    hidden = _HIDDEN.fullmatch(text)
    if hidden:
        return Site("hidden_states", int(hidden.group(1)))
    if _PATH.fullmatch(path) and not path.startswith("hidden_states.") and suffix in ("", "input"):
        return Site("input" if suffix else "output", path)
    raise SaeflowError(f"{key}: {text!r} is not a hook spec; write `hidden_states.<L>` (L a layer number), "
                       "a dotted module path such as `model.layers.3.mlp`, or `<module path>:input`")


def replaceable(spec) -> bool:
    """Whether `replaced` can splice at this spec: one module output or one hidden_states."""
    sites = parse_hook_spec(spec)
    return len(sites) == 1 and sites[0].kind != "input"


def module_names(model) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def _no_module(key: str, path: str, names: list[str], where: str) -> SaeflowError:
    near = difflib.get_close_matches(path, names, n=5, cutoff=0.6)
    top = ", ".join(n for n in names if "." not in n)
    hint = f"did you mean {', '.join(near)}?" if near else f"its top-level modules are {top}"
    return SaeflowError(f"{key}: no module {path!r} in {where}; {hint}")


def check_hook_spec(spec, names: list[str], n_layers: int, key: str, where: str = "the model") -> list[Site]:
    """The spec's sites, after checking every module path and layer against the model."""
    sites = parse_hook_spec(spec, key)
    known = set(names)
    for site in sites:
        if site.kind == "hidden_states":
            _check_layer(site, n_layers, key, where)
        elif site.target not in known:
            raise _no_module(key, site.target, names, where)
    return sites


# ---------------------------------------------------------------- widths before any job runs


def describe_hooks(source, adapter, hooks: dict, cache_dir) -> dict[str, int]:
    """name -> width of each hook (a list: the sum of its parts), checked against the model (a
    `saeflow.model_source.ModelSource`: a Hugging Face directory or a .gguf file) and its
    adapter, without weights: the model is built on the meta device and run once.

    The answer is cached in `cache_dir`, keyed by the model's config, the adapter's config and
    the specs, so later plans neither import torch nor build the model again.
    """
    identity = [_identity(source.path), _identity(Path(adapter) / "adapter_config.json") if adapter else "", hooks]
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    cached = Path(cache_dir) / f"hooks-{digest}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    widths = _meta_widths(source, adapter, hooks)
    from saeflow import storage

    storage.write_json(cached, widths)
    return widths


def _identity(path: Path) -> str:
    """What the cache key hashes for a model or adapter: its config, or a GGUF file's name and size."""
    if path.suffix == ".gguf":
        return f"{path.name}:{path.stat().st_size}"
    config = path / "config.json" if path.is_dir() else path
    return config.read_text() if config.is_file() else ""


def _meta_widths(source, adapter, hooks: dict) -> dict[str, int]:
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from saeflow.model_source import source_shape

    shape = source_shape(source)
    where = str(source.path) + (f" with adapter {adapter}" if adapter else "")
    location = (dict(pretrained_model_name_or_path=str(source.path.parent), gguf_file=source.path.name)
                if source.is_gguf else dict(pretrained_model_name_or_path=str(source.path)))
    try:
        config = AutoConfig.from_pretrained(**location, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:  # e.g. a model_type this transformers does not ship
        raise SaeflowError(f"model.path: cannot read the configuration of {source.path} ({single_line(err)}); "
                           "saeflow never runs a model's own code (no trust_remote_code), so use a model of an "
                           "architecture transformers ships") from None
    with torch.device("meta"):
        model = (AutoModelForCausalLM if shape.causal_lm else AutoModel).from_config(config)
        if adapter:
            from saeflow.adapter import inject_adapter_layers

            model = inject_adapter_layers(model, adapter)
    names = module_names(model)
    for name, spec in hooks.items():
        check_hook_spec(spec, names, shape.n_layers, f"hooks.{name}", where)
    ids = torch.zeros(_META_SHAPE, dtype=torch.long, device="meta")
    # No attention mask: building one from a meta mask would need its values.
    values = capture(model.eval(), hooks, ids, None)
    return {name: int(value.shape[-1]) for name, value in values.items()}


# ---------------------------------------------------------------- capture and replace


class _AllCaptured(Exception):
    """Raised from a hook once every site has its value: the rest of the forward is not needed."""


def transformer_blocks(model, n_layers: int):
    """The model's list of blocks: the first ModuleList with one entry per layer."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return module
    raise SaeflowError(f"cannot find the {n_layers} transformer blocks of {type(model).__name__}")


def _n_layers(model) -> int:
    return model.config.get_text_config().num_hidden_layers


def _submodule(model, path: str, key: str):
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise _no_module(key, path, module_names(model), type(model).__name__) from None


def _first_param(module) -> str:
    return next(iter(inspect.signature(module.forward).parameters))


def _first_input(module, args, kwargs):
    """The module's first positional input, however the caller passed it (Llama passes its
    attention input by keyword)."""
    return args[0] if args else kwargs[_first_param(module)]


def _check_layer(site: Site, n_layers: int, key: str, where: str = "the model") -> None:
    if site.target > n_layers:
        raise SaeflowError(f"{key}: hidden_states.{site.target} is out of range for {where} (hidden_states.0 "
                           f"is the embedding output, hidden_states.{n_layers} the last block's); set L "
                           f"between 0 and {n_layers}")


def _first_output(output):
    import torch

    return output if isinstance(output, torch.Tensor) else output[0]  # tuples and ModelOutputs


def _as_rows(value, batch: int, tokens: int, name: str):
    """[batch, tokens, d]: trailing dims flattened, or a [batch * tokens, d] output unflattened."""
    if tuple(value.shape[:2]) == (batch, tokens) or (value.ndim >= 2 and value.shape[0] == batch * tokens):
        return value.reshape(batch, tokens, -1)
    raise SaeflowError(f"hooks.{name}: the hooked value has shape {tuple(value.shape)}, not one row per "
                       f"token ({batch} x {tokens} x ...); hook a module whose output is per token")


def capture(model, hooks: dict, input_ids, attention_mask) -> dict:
    """{name: Tensor [batch, tokens, d]} for each hook, from ONE forward pass that stops as soon
    as every hook has its value (blocks after the deepest hook never run)."""
    import torch

    sites = {name: parse_hook_spec(spec, f"hooks.{name}") for name, spec in hooks.items()}
    wanted = list(dict.fromkeys(site for s in sites.values() for site in s))
    n = _n_layers(model)
    values = {}

    def record(site, value):
        if site not in values:  # a module run twice in one forward: its first call
            values[site] = value
        if len(values) == len(wanted):
            raise _AllCaptured

    key = {site: f"hooks.{name}" for name, s in sites.items() for site in s}
    handles = []
    try:
        for site in wanted:
            handles.append(_record_hook(model, site, n, record, key[site]))
        with torch.inference_mode():
            model(input_ids=input_ids, attention_mask=attention_mask,
                  output_hidden_states=Site("hidden_states", n) in wanted)
    except _AllCaptured:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [site for site in wanted if site not in values]
    if missing:
        raise SaeflowError(f"{key[missing[0]]}: module {missing[0].target!r} did not run in the model's forward "
                           "pass; hook a module the forward uses")
    batch, tokens = input_ids.shape
    return {name: torch.cat([_as_rows(values[site], batch, tokens, name) for site in s], dim=-1)
            for name, s in sites.items()}


def _record_hook(model, site: Site, n_layers: int, record, key: str):
    if site.kind == "hidden_states":
        _check_layer(site, n_layers, key)
        if site.target < n_layers:  # hidden_states[L] is what block L receives
            block = transformer_blocks(model, n_layers)[site.target]
            return block.register_forward_pre_hook(
                lambda m, args, kwargs: record(site, _first_input(m, args, kwargs)), with_kwargs=True)
        # The last one is whatever the model reports (after its final norm, where it applies one),
        # so take it from the base model's output; the LM head, if any, never runs.
        return model.base_model.register_forward_hook(lambda m, args, out: record(site, out.hidden_states[n_layers]))
    module = _submodule(model, site.target, key)
    if site.kind == "input":
        return module.register_forward_pre_hook(
            lambda m, args, kwargs: record(site, _first_input(m, args, kwargs)), with_kwargs=True)
    return module.register_forward_hook(lambda m, args, out: record(site, _first_output(out)))


@contextlib.contextmanager
def replaced(model, spec, replace: Callable):
    """Within the block, the model computes with `replace(value)` in place of the hook's value
    (one `hidden_states.L` or one module output); everything downstream runs unchanged."""
    import torch

    sites = parse_hook_spec(spec)
    if not replaceable(spec):
        raise SaeflowError(f"hook {spec!r}: only one module output or one hidden_states can be replaced "
                           "in a forward pass, not an :input or a list")
    (site,) = sites
    if site.kind == "hidden_states":
        n = _n_layers(model)
        _check_layer(site, n, "hook")
        # hidden_states[L] is the input of block L, and the last one the input of the LM head.
        target = transformer_blocks(model, n)[site.target] if site.target < n else model.get_output_embeddings()
        if target is None:
            raise SaeflowError(f"hook {spec!r}: the model has no output head to replace its last hidden state in")

        def pre_hook(module, args, kwargs):
            if args:
                return (replace(args[0]), *args[1:]), kwargs
            return args, {**kwargs, _first_param(module): replace(kwargs[_first_param(module)])}

        handle = target.register_forward_pre_hook(pre_hook, with_kwargs=True)
    else:
        def hook(module, args, out):
            return replace(out) if isinstance(out, torch.Tensor) else (replace(out[0]), *out[1:])

        handle = _submodule(model, site.target, "hook").register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
