"""BOPAR gives bit-identical results whatever the batch size, the order of the images and DDP-style padding
(duplicated samples), and the toolkit's per-estimate selection on this subset is respected."""
from __future__ import annotations

import pytest
import torch
from bop_golden_io import load_models, load_preds, load_targets

from metrics.bop.ar import BOPAR

pytestmark = pytest.mark.slow  # scores golden images several times (VSD renders): several seconds


def _subset():
    targets = load_targets("case1")
    preds = load_preds("case1", targets)
    keep = [0, 1, 4]  # three images from both scenes
    return load_models("case1"), [targets[i] for i in keep], [preds[i] for i in keep]


def test_order_batch_and_duplicates_do_not_change_results():
    models, targets, preds = _subset()
    ref = BOPAR(models)
    ref.update(preds, targets)
    expected = ref.compute()
    expected_errors = ref.per_estimate_errors()

    m = BOPAR(models)
    order = [2, 0, 2, 1, 0]  # reversed-ish, with two padded duplicates, one image per batch
    for i in order:
        m.update([preds[i]], [targets[i]])
    got = m.compute()
    assert got.keys() == expected.keys()
    for k in expected:
        assert torch.equal(got[k], expected[k]), k
    assert m.per_estimate_errors() == expected_errors

    m2 = BOPAR(models)
    m2.update([preds[1], preds[2]], [targets[1], targets[2]])
    m2.update([preds[0], preds[1]], [targets[0], targets[1]])
    got2 = m2.compute()
    for k in expected:
        assert torch.equal(got2[k], expected[k]), k


def test_reset_and_empty_predictions():
    models, targets, preds = _subset()
    m = BOPAR(models)
    empty = {"obj_id": torch.zeros(0, dtype=torch.int64), "R": torch.zeros(0, 3, 3, dtype=torch.float64),
             "t": torch.zeros(0, 3, dtype=torch.float64), "score": torch.zeros(0, dtype=torch.float64)}
    m.update([empty] * len(targets), targets)
    out = m.compute()
    assert float(out["AR"]) == 0.0 and float(out["AR_VSD"]) == 0.0
    m.reset()
    m.update(preds, targets)
    assert float(m.compute()["AR"]) > 0.0
