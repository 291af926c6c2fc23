"""Config errors in one line: which key is wrong, what is wrong with it, where to fix it."""

from __future__ import annotations

import jsonschema

from saeflow.errors import SaeflowError


def _validation_error(err: BaseException) -> jsonschema.ValidationError | None:
    """The jsonschema error behind snakemake.utils.validate's WorkflowError, if any."""
    while err is not None:
        if isinstance(err, jsonschema.ValidationError):
            return err
        err = err.__cause__ or err.__context__
    return None


def describe_config_error(err: BaseException) -> str:
    cause = _validation_error(err)
    if cause is None:
        return str(err)
    where = ".".join(str(part) for part in cause.absolute_path)
    if cause.validator == "additionalProperties" and isinstance(cause.instance, dict):
        known = set(cause.schema.get("properties", {}))
        unknown = sorted(key for key in cause.instance if key not in known)
        keys = ", ".join(f"{where}.{key}" if where else key for key in unknown)
        problem = f"unknown config key {keys}"
        if known:
            problem += f" (known keys{' of ' + where if where else ''}: {', '.join(sorted(known))})"
    else:
        problem = f"config key {where or '(top level)'}: {cause.message}"
    return f"{problem}; fix config.yaml or the --config override (config.schema.yaml lists every key)"


def sae_width(name: str, settings: dict, d_in: int) -> int:
    """d_sae from the config: `d_sae` if given, else `expansion` × the hook's width; k must stay below it.
    A pretrained SAE's comes from its folder, whose input width must be the hook's."""
    if settings.get("pretrained"):
        from saeflow.pretrained import pretrained_shape

        key = f"saes.{name}.pretrained"
        width, d_sae = pretrained_shape(settings["pretrained"], key)
        if width != d_in:
            raise SaeflowError(f"{key}: the SAE in {settings['pretrained']} reads {width} dimensions but its hook "
                               f"has {d_in}; point saes.{name} at the hook it was trained on")
        return d_sae
    d_sae = settings["d_sae"] or int(round(settings["expansion"] * d_in))
    if settings["k"] >= d_sae:
        raise SaeflowError(
            f"saes.{name}.k: k={settings['k']} must be smaller than d_sae={d_sae}; lower k or raise "
            f"saes.{name}.expansion / d_sae"
        )
    return d_sae


def layer_hook_name(layer: int) -> str:
    """The hook name of the shorthand `layer: L` (= hidden_states.L)."""
    return f"layer-{layer}"


def sae_hook(name: str, settings: dict, hooks: dict) -> str:
    """The hook point an SAE reads: `hook` (a key of hooks:) or the `layer` shorthand."""
    if "hook" in settings:
        if settings["hook"] not in hooks:
            raise SaeflowError(
                f"saes.{name}.hook: {settings['hook']!r} is not a key of hooks: (known: "
                f"{', '.join(hooks) or 'none'}); add it under hooks: or use `layer: L`"
            )
        return settings["hook"]
    return layer_hook_name(settings["layer"])


def hook_specs(config: dict) -> dict:
    """Every hook point the run captures, name -> spec: those of `hooks:`, then each SAE's
    `layer: L` shorthand (hidden_states.L), each once, in config order."""
    hooks = dict(config["hooks"])
    for name, settings in config["saes"].items():
        if "layer" not in settings:
            continue
        hook, spec = layer_hook_name(settings["layer"]), f"hidden_states.{settings['layer']}"
        if hooks.setdefault(hook, spec) != spec:
            raise SaeflowError(
                f"hooks.{hook}: the name {hook} is the shorthand of saes.{name}.layer (hidden_states."
                f"{settings['layer']}) but hooks: gives it {hooks[hook]!r}; rename that hook"
            )
    for name, settings in config["saes"].items():
        sae_hook(name, settings, hooks)
    return hooks


def hook_config_keys(config: dict) -> dict:
    """hook name -> the config key that asks for it, for error messages."""
    keys = {f"layer-{settings['layer']}": f"saes.{name}.layer"
            for name, settings in reversed(config["saes"].items()) if "layer" in settings}
    return keys | {name: f"hooks.{name}" for name in config["hooks"]}


def steering_experiments(config: dict, hooks: dict, sae_hooks: dict, sae_widths: dict, causal_lm: bool,
                         has_labels: bool) -> dict:
    """name -> experiment of `steering:`, checked before any job runs: unique names, a known SAE
    on a hook that can be edited in a causal LM's forward, feature ids within the SAE, and label
    vectors only where the corpus has labels."""
    from saeflow.hooks import replaceable

    experiments = {}
    for index, experiment in enumerate(config["steering"]):
        name, sae = experiment["name"], experiment["sae"]
        key = f"steering[{index}] ({name})"
        if name in experiments:
            raise SaeflowError(f"{key}: the name {name!r} is used twice; give each experiment its own name")
        if sae not in sae_hooks:
            raise SaeflowError(f"{key}.sae: {sae!r} is not a key of saes: (known: {', '.join(sae_hooks)}); "
                               "set it to one of those")
        if not causal_lm:
            raise SaeflowError(f"{key}: steering generates text, which needs a causal LM; model.path is not one")
        spec = hooks[sae_hooks[sae]]
        if not replaceable(spec):
            raise SaeflowError(f"{key}.sae: {sae}'s hook {spec!r} is an :input or a list, which cannot be edited "
                               "in the forward pass; steer an SAE on one module output or hidden_states.L")
        past = [f for f in experiment.get("features", []) if f >= sae_widths[sae]]
        if past:
            raise SaeflowError(f"{key}.features: feature {past[0]} is past {sae}'s {sae_widths[sae]} features "
                               f"(ids 0..{sae_widths[sae] - 1}); pick ids below {sae_widths[sae]}")
        if "vector" in experiment and not has_labels:
            raise SaeflowError(f"{key}.vector: label vectors need a corpus with labels (corpus.labels_field); "
                               "steer by `features:` or `label:` instead")
        if "vector" in experiment and experiment["mode"] != "add":
            raise SaeflowError(f"{key}.mode: a label vector can only be added (mode: add)")
        experiments[name] = experiment
    return experiments
