"""Each configured hook point's width, checked against the model while the workflow plans.

`hidden_states.L` hooks need only the model's depth and width (config.json or the GGUF header),
so the default plans without importing torch; module paths are checked, and measured, on the
model built without weights (saeflow.hooks.describe_hooks), cached per model, adapter and hooks.
"""

from __future__ import annotations

from saeflow.hooks import check_hook_spec, describe_hooks, parse_hook_spec
from saeflow.model_source import ModelSource, source_shape


def hook_widths(source: ModelSource, adapter: str | None, hooks: dict, cache_dir, keys: dict | None = None
                ) -> dict[str, int]:
    """name -> width of every hook (a list hook: the sum of its parts); `keys` names the config
    key behind each hook in errors (default hooks.<name>)."""
    keys = keys or {}
    shape = source_shape(source)
    widths, module_hooks = {}, {}
    for name, spec in hooks.items():
        key = keys.get(name, f"hooks.{name}")
        sites = parse_hook_spec(spec, key)
        if all(site.kind == "hidden_states" for site in sites):
            check_hook_spec(spec, [], shape.n_layers, key, str(source.name))
            widths[name] = shape.d_model * len(sites)
        else:
            module_hooks[name] = spec
    if module_hooks:
        widths |= describe_hooks(source, adapter, module_hooks, cache_dir)
    return {name: widths[name] for name in hooks}
