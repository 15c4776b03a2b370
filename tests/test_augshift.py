"""AugShift's loss and crops, and the shift-consistency metric Cons.S."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.nn import functional as F

from conftest import compose_train
from spatialprobe.errors import ConfigError
from spatialprobe.tasks import AugShift, ShiftConsistency, augshift_loss, shift_agreement, shifted_crops


class SumPoolNet(nn.Module):
    """features = x, latent = per-channel sum (exactly shift invariant while content stays inside), head = linear."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.fc.weight.data.copy_(weight)

    def forward_features(self, x):
        return x

    def pool(self, f):
        return f.sum(dim=(2, 3))

    def forward_head(self, z):
        return self.fc(z)

    def forward(self, x):
        return self.forward_head(self.pool(self.forward_features(x)))


class WhereIsTheMax(nn.Module):
    """Predicts the column of the brightest pixel: as position-sensitive as a model can be."""

    def forward(self, x):
        col = x.sum(1).amax(1).argmax(-1)
        return F.one_hot(col, x.shape[-1]).float()


def test_augshift_loss_is_ce1_plus_ce2_plus_lambda_mse_by_hand():
    model = SumPoolNet(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x1 = torch.zeros(1, 2, 2, 2)
    x1[0, 0, 0, 0] = 1.0                     # latent z1 = (1, 0)
    x2 = torch.zeros(1, 2, 2, 2)
    x2[0, 1, 1, 1] = 2.0                     # latent z2 = (0, 2)
    y = torch.tensor([0])
    loss, ce1, ce2, mse = (float(t.detach()) for t in augshift_loss(model, x1, x2, y, lam=0.5)[:4])
    e = math.e
    assert ce1 == pytest.approx(-math.log(e / (e + 1)), abs=1e-6)       # logits (1, 0), class 0
    assert ce2 == pytest.approx(-math.log(1 / (1 + e**2)), abs=1e-6)    # logits (0, 2), class 0
    assert mse == pytest.approx(((1 - 0) ** 2 + (0 - 2) ** 2) / 2, abs=1e-6)  # mean over the 2 latent channels
    assert loss == pytest.approx(ce1 + ce2 + 0.5 * 2.5, abs=1e-6)


def test_augshift_training_step_uses_two_shifted_views(monkeypatch):
    model = SumPoolNet(torch.randn(3, 2))
    recipe = OmegaConf.to_container(compose_train().recipe)
    module = AugShift(model, 3, recipe, lam=2.0, shift=1)
    views = []
    real = shifted_crops

    def spy(x, shift, g):
        out = real(x, shift, g)
        views.append(out)
        return out

    monkeypatch.setattr("spatialprobe.tasks.shifted_crops", spy)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    monkeypatch.setattr(module, "log_dict", lambda *a, **k: None)
    x, y = torch.rand(4, 2, 5, 5), torch.tensor([0, 1, 2, 0])
    torch.manual_seed(0)
    loss = module.training_step((x, y), 0)
    assert len(views) == 2 and not torch.equal(views[0], views[1])
    expected = augshift_loss(model, views[0], views[1], y, 2.0)[0]
    assert torch.allclose(loss, expected)


def test_shifted_crops_are_windows_of_the_zero_padded_images():
    x = torch.rand(8, 3, 6, 6) + 1
    out = shifted_crops(x, 2, torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(8):
        assert any(torch.equal(padded[i, :, dy:dy + 6, dx:dx + 6], out[i]) for dy in range(5) for dx in range(5))
    assert torch.equal(shifted_crops(x, 0, torch.Generator()), x)


def cons(model, x, shift, passes=10):
    cb = ShiftConsistency(shift, passes, seed=0)
    cb.on_test_epoch_start(None, None)
    logged = {}
    cb.on_test_batch_end(None, model, None, (x, None), 0)
    cb.on_test_epoch_end(None, type("M", (), {"log": lambda self, k, v, **kw: logged.update({k: v})})())
    return logged[f"test_cons{shift}"]


def test_consistency_is_100_for_a_shift_invariant_model_and_lower_for_a_position_sensitive_one():
    x = torch.zeros(64, 3, 32, 32)
    x[:, :, 6:26, 6:26] = torch.rand(64, 3, 20, 20)  # a margin wider than S/2: shifts never cut content
    invariant = SumPoolNet(torch.randn(10, 3))
    assert cons(invariant, x, 8) == 100.0
    assert cons(WhereIsTheMax(), x, 8) < 50.0


def test_shift_agreement_shifts_the_same_pair_for_the_whole_batch():
    x = torch.zeros(5, 1, 8, 8)
    x[:, :, 4, 4] = 1.0  # the same image five times: every image agrees, or none does
    g = torch.Generator().manual_seed(3)
    results = {shift_agreement(WhereIsTheMax(), x, 4, g) for _ in range(20)}
    assert results == {0, 5}


@pytest.mark.parametrize("override,key", [("eval.consistency=1", "eval.consistency"),
                                          ("eval.consistency=64", "eval.consistency"),
                                          ("augshift.lambda=-1", "augshift.lambda")])
def test_bad_augshift_and_consistency_values(override, key):
    from spatialprobe.train import validate

    with pytest.raises(ConfigError) as err:
        validate(compose_train("task=augshift", override))
    assert err.value.key == key
