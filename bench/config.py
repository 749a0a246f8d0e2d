"""The evaluate config: Hydra's compose API over bench/conf, with the command line's own checks first.

Composed inside the entry point (not ``@hydra.main``) so Lightning's DDP launcher can re-run the same command line
for the other ranks; ``compare`` and the manifest compose the same way.
"""
from __future__ import annotations

from importlib import resources

from bench.errors import InputError


def conf_names(group: str) -> set[str]:
    """The names of the YAML configs of ``group`` (dataset, method): what the command line accepts."""
    folder = resources.files("bench.conf") / group
    return {p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")}


def _split(overrides: list[str]) -> tuple[list[str], dict[str, str]]:
    """Rewrite ``method=X`` for a name without a config (allowed with predictions=) to the replay config."""
    values = dict(o.split("=", 1) for o in overrides if "=" in o and not o.startswith(("+", "~")))
    if values.get("predictions") not in (None, "", "null") and not values.get("method"):
        # the config default would name the row, and the run would replace that method's committed row
        raise InputError(None, None, "method", "predictions= needs method=NAME, the leaderboard row its scores go "
                         "to (e.g. method=mine); nothing written")
    dataset = values.get("dataset")
    if dataset is not None and dataset not in conf_names("dataset"):
        raise InputError(None, None, "dataset", f"unknown dataset {dataset!r}; registered: "
                         f"{', '.join(sorted(conf_names('dataset')))}")
    out = []
    for o in overrides:
        if "=" not in o:
            raise InputError(None, None, o, "expected key=value")
        key, val = o.split("=", 1)
        if key == "method" and val not in conf_names("method"):
            if not values.get("predictions") or values.get("predictions") == "null":
                from bench.registry import METHODS, load_all

                load_all()  # plugins (POSEARENA_PLUGINS) register methods that have no YAML of ours
                if val not in METHODS:
                    known = sorted(set(METHODS) | (conf_names("method") - {"predictions"}))
                    raise InputError(None, None, "method", f"unknown method {val!r}; registered: "
                                     f"{', '.join(known)} (any name is accepted with predictions=FILE)")
            # no config of ours: the bare node, named (a plugin method reads what it needs from method.*)
            out += ["method=predictions", f"method.name={val}"]
        else:
            out.append(o)
    return out, values


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides, _ = _split(overrides)
    try:
        with initialize_config_module(config_module="bench.conf", version_base="1.3"):
            return hydra_compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        msg = " ".join(str(e).split())
        raise InputError(None, None, None, f"bad override: {msg}") from e
