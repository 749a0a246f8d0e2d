"""Reading official checkpoints without running anything from them.

``torch.load(weights_only=True)`` refuses any class a checkpoint names; official files name some in their
metadata (mmengine's ``message_hub``, numpy arrays in ``meta``, Lightning's ``hyper_parameters`` holding a yacs
``CfgNode``, VideoPose3D's numpy ``RandomState``). Those names get inert stand-ins, so the tensors load and
nothing from the file is constructed or called.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.errors import InputError

__all__ = ["read_checkpoint", "tensor_dict"]


class _Inert:
    """What a stubbed call with arguments gives (numpy's ``_reconstruct``, ``dtype`` ...): state is ignored."""

    def __setstate__(self, state):
        return None


def _stub(name: str):
    """Inert stand-in for a class or function named in checkpoint metadata.

    Built without arguments (``NEWOBJ`` of a plain object or of a dict subclass such as yacs' ``CfgNode``) it
    is an empty ``OrderedDict`` that the pickle may fill (SETITEMS, BUILD of a ``__dict__``); called with
    arguments (numpy scalars, arrays, dtypes) it is an :class:`_Inert`. Either way nothing from the file runs.
    """
    def new(cls, *args, **kwargs):
        return _Inert() if args or kwargs else OrderedDict()

    return type(name.rsplit(".", 1)[-1], (), {"__new__": new})


def read_checkpoint(path: str | Path, field: str = "weights") -> Any:
    """``torch.load(weights_only=True)`` of an official file, metadata classes stubbed; any failure to read is
    an :class:`InputError` on ``field``."""
    path = Path(path)
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as first:
            try:
                names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            except Exception:  # noqa: BLE001 - not a torch zip checkpoint at all
                raise first from None
            if not names:
                raise
            with torch.serialization.safe_globals([(_stub(n), n) for n in names] + [_Inert]):
                return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read is the user's file
        raise InputError(path, None, field, f"cannot read the checkpoint ({type(e).__name__}: {str(e)[:200]})") from None


def tensor_dict(path: str | Path, sd: Any, field: str = "state_dict") -> dict[str, Tensor]:
    """Check that ``sd`` is a non-empty ``{name: tensor}`` dict; strip a DataParallel ``module.`` prefix."""
    if not isinstance(sd, dict) or not sd:
        raise InputError(path, None, field, "expected a state dict of tensors")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise InputError(path, f"key {bad[0]!r}", field, "expected a tensor")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)
