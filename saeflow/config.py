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
    """d_sae from the config: `d_sae` if given, else `expansion` × d_model; k must stay below it."""
    d_sae = settings.get("d_sae") or int(round(settings.get("expansion", 8) * d_in))
    if settings["k"] >= d_sae:
        raise SaeflowError(
            f"saes.{name}.k: k={settings['k']} must be smaller than d_sae={d_sae}; lower k or raise "
            f"saes.{name}.expansion / d_sae"
        )
    return d_sae
