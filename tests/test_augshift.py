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
from spatialprobe.tasks.augshift import AugShift, augshift_loss, shifted_crops
from spatialprobe.tasks.consistency import ConsistencyMetric, ShiftConsistency, black, shifted_views


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

    def spy(x, shift, g, fill=None):
        out = real(x, shift, g, fill)
        views.append(out)
        return out

    monkeypatch.setattr("spatialprobe.tasks.augshift.shifted_crops", spy)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    monkeypatch.setattr(module, "log_dict", lambda *a, **k: None)
    x, y = torch.rand(4, 2, 5, 5), torch.tensor([0, 1, 2, 0])
    torch.manual_seed(0)
    loss = module.training_step((x, y), 0)
    assert len(views) == 2 and not torch.equal(views[0], views[1])
    expected = augshift_loss(model, views[0], views[1], y, 2.0)[0]
    assert torch.allclose(loss, expected)


def test_shifted_crops_are_windows_of_the_padded_images_drawn_per_image():
    x = torch.rand(16, 3, 6, 6) + 1
    fill = torch.tensor([-1.0, -2.0, -3.0]).view(1, 3, 1, 1)
    out = shifted_crops(x, 2, torch.Generator().manual_seed(0), fill)
    padded = fill.expand(16, 3, 10, 10).clone()
    padded[..., 2:8, 2:8] = x
    found = []
    for i in range(16):
        hits = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(padded[i, :, dy:dy + 6, dx:dx + 6], out[i])]
        assert len(hits) == 1
        found.append(hits[0])
    assert len(set(found)) > 1  # every image its own offset
    assert torch.equal(shifted_crops(x, 0, torch.Generator()), x)


def test_black_is_the_normalised_value_of_a_zero_pixel():
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 2.0)
    assert torch.allclose(black(mean, std).flatten(), torch.tensor([-1.0, -1.0, 0.0]))


def offsets_of(view, canvas, size):
    """Every (dy, dx) at which ``view`` is the size x size window of ``canvas``."""
    return [(dy, dx) for dy in range(canvas.shape[-2] - size + 1) for dx in range(canvas.shape[-1] - size + 1)
            if torch.equal(canvas[..., dy:dy + size, dx:dx + size], view)]


@pytest.mark.parametrize("shift", [4, 5])
def test_views_are_windows_of_the_image_extended_by_half_the_shift_each_drawn_per_image_and_view(shift):
    n, size = 64, 8
    x = torch.rand(n, 1, size, size) + 1           # distinct pixels: a window is found at one offset only
    fill = torch.full((1, 1, 1, 1), -5.0)
    lo = shift // 2  # px of extension before the image (shift - lo after it)
    canvas = torch.full((n, 1, size + shift, size + shift), -5.0)
    canvas[..., lo:lo + size, lo:lo + size] = x
    v1, v2 = shifted_views(x, shift, torch.Generator().manual_seed(1), fill)
    pairs = []
    for i in range(n):
        (o1,), (o2,) = offsets_of(v1[i], canvas[i], size), offsets_of(v2[i], canvas[i], size)
        pairs.append((o1, o2))
    offsets = [o for pair in pairs for o in pair]
    assert {d for o in offsets for d in o} == set(range(shift + 1))     # each axis: 0..S, the full range
    assert len(set(pairs)) > n // 2                                     # drawn per image, not per batch
    assert sum(o1 != o2 for o1, o2 in pairs) > n // 2                   # and per view


def test_views_use_real_context_when_the_loader_gives_it():
    n, size, margin, shift = 32, 6, 5, 8           # margin >= S/2: no fill is ever needed
    big = torch.rand(n, 3, size + 2 * margin, size + 2 * margin) + 1
    v1, v2 = shifted_views(big, shift, torch.Generator().manual_seed(0), torch.full((1, 3, 1, 1), -9.0), margin)
    assert v1.shape == (n, 3, size, size) and (v1 > 0).all() and (v2 > 0).all()
    for i in range(n):  # windows of the central (size + S) px region, around the image at offset margin
        for v in (v1[i], v2[i]):
            (dy, dx), = offsets_of(v, big[i], size)
            assert margin - shift // 2 <= dy <= margin + shift // 2 and margin - shift // 2 <= dx <= margin + shift // 2


class FakeTrainer:
    global_rank, world_size = 0, 1
    testing = True

    class precision_plugin:  # noqa: N801  (Lightning's attribute name)
        test_step_context = staticmethod(torch.no_grad)


def cons(model, batches, shifts=(8,), passes=10, seed=0):
    cb = ShiftConsistency(shifts, passes, seed=seed)
    cb.on_test_epoch_start(FakeTrainer(), None)
    logged = {}
    for i, batch in enumerate(batches):
        cb.on_test_batch_end(FakeTrainer(), model, None, batch, i)
    cb.on_test_epoch_end(FakeTrainer(), type("M", (), {"log": lambda self, k, v, **kw: logged.update({k: float(v)})})())
    return logged


def test_consistency_is_100_for_a_shift_invariant_model_and_lower_for_a_position_sensitive_one():
    x = torch.zeros(64, 3, 32, 32)
    x[:, :, 8:24, 8:24] = torch.rand(64, 3, 16, 16)  # a black margin wider than S/2: shifts never cut content
    invariant = SumPoolNet(torch.randn(10, 3))
    logged = cons(invariant, [(x, None)], shifts=(2, 8))
    assert logged == {"test_cons2": 100.0, "test_cons8": 100.0}
    assert cons(WhereIsTheMax(), [(x, None)])["test_cons8"] < 50.0


def test_consistency_counts_every_image_and_pass_whatever_the_batching():
    """Identical images in one batch get different views (per image), and the value is the fraction over all
    (image, pass) pairs however the test set is cut into batches."""
    x = torch.zeros(40, 3, 8, 8)
    x[:, :, 4, 4] = 1.0
    one = cons(WhereIsTheMax(), [(x, None)], shifts=(4,), passes=3)["test_cons4"]
    assert 0.0 < one < 100.0
    metric = ConsistencyMetric()
    g = torch.Generator().manual_seed(0)
    agree = []
    for _ in range(3):
        v1, v2 = shifted_views(x, 4, g, torch.zeros(1, 3, 1, 1))
        p1, p2 = WhereIsTheMax()(v1).argmax(1), WhereIsTheMax()(v2).argmax(1)
        metric.update(p1, p2)
        agree.append(p1 == p2)
    assert 0 < int(agree[0].sum()) < 40    # not all-or-none within a batch of identical images
    assert float(metric.compute()) == pytest.approx(100.0 * torch.cat(agree).float().mean().item())


def test_consistency_metric_sums_its_counts_across_processes():
    """What DDP does: every rank's states are reduced with their dist_reduce_fx (sum), then compute()."""
    a, b = ConsistencyMetric(), ConsistencyMetric()
    a.update(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 0]))            # 2 of 3 agree
    b.update(torch.tensor([0] * 7), torch.tensor([0] * 7))                 # 7 of 7
    assert a._reductions["agree"] is b._reductions["total"]  # both summed  # noqa: SLF001
    a.merge_state(b)                                                       # torchmetrics' reduction of the two
    assert float(a.compute()) == pytest.approx(90.0)                       # 9 of 10, not the mean of 66.7 and 100


@pytest.mark.parametrize("override,key", [("eval.consistency=0", "eval.consistency"),
                                          ("eval.consistency=32", "eval.consistency"),
                                          ("eval.consistency=[4,4]", "eval.consistency"),
                                          ("eval.consistency=[2,eight]", "eval.consistency"),
                                          ("augshift.lambda=-1", "augshift.lambda")])
def test_bad_augshift_and_consistency_values(override, key):
    from spatialprobe.train import validate

    with pytest.raises(ConfigError) as err:
        validate(compose_train("task=augshift", override))
    assert err.value.key == key


def test_consistency_on_imagenet_needs_the_larger_crop_inside_the_resized_image():
    from spatialprobe.train import validate

    validate(compose_train("dataset=imagenet", "recipe=imagenet", "eval.consistency=[8,16,32]"))  # 224 + 32 = 256
    with pytest.raises(ConfigError) as err:
        validate(compose_train("dataset=imagenet", "recipe=imagenet", "eval.consistency=[8,40]"))
    assert err.value.key == "eval.consistency" and "264 px centre crop" in str(err.value)
