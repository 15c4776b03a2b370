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
from spatialprobe.tasks.augshift import AugShift, augshift_loss
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


def test_augshift_training_step_uses_the_loaders_two_views(monkeypatch):
    model = SumPoolNet(torch.randn(3, 2))
    recipe = OmegaConf.to_container(compose_train().recipe)
    module = AugShift(model, 3, recipe, lam=2.0)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    monkeypatch.setattr(module, "log_dict", lambda *a, **k: None)
    x1, x2, y = torch.rand(4, 2, 5, 5), torch.rand(4, 2, 5, 5), torch.tensor([0, 1, 2, 0])
    loss = module.training_step(((x1, x2), y), 0)
    assert torch.allclose(loss, augshift_loss(model, x1, x2, y, 2.0)[0])
    assert not torch.allclose(loss, augshift_loss(model, x1, x1, y, 2.0)[0])


def pixel_views(x: torch.Tensor, views: int, pad: int = 4, seed: int = 0):
    """One training batch of the device loader over uint8 NHWC ``x``, back in pixel values (NHWC)."""
    from spatialprobe.data.loader import TensorBatches

    loader = TensorBatches(x, torch.arange(len(x)), len(x), (0.0, 0.0, 0.0), (1 / 255,) * 3, shuffle=False,
                           augment=True, pad=pad, seed=seed, views=views)
    out, _ = next(iter(loader))
    as_pixels = lambda v: v.round().to(torch.uint8).permute(0, 2, 3, 1)  # noqa: E731
    return tuple(as_pixels(v) for v in out) if views > 1 else as_pixels(out)


def crop_offset(view: torch.Tensor, image: torch.Tensor, pad: int) -> tuple[int, int]:
    """The (dy, dx) at which ``view`` (or its mirror) is a window of ``image`` zero-padded by ``pad``: the
    crop's shift, -pad..pad per axis."""
    size = image.shape[0]
    padded = torch.nn.functional.pad(image, (0, 0, pad, pad, pad, pad))
    hits = [(dy - pad, dx - pad) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
            if any(torch.equal(padded[dy:dy + size, dx:dx + size], v) for v in (view, view.flip(1)))]
    assert len(hits) == 1, hits
    return hits[0]


def test_each_augshift_view_is_one_draw_of_the_baselines_crop_and_the_two_are_independent():
    """P 4.1's "two different crops of the same image": each view is the loader's own pad-4 crop and flip of the
    un-augmented image (not a crop of an already cropped one), so each view's shift ranges over exactly the
    baseline's -4..4 px per axis, and the shift between the two views over -8..8."""
    n, size, pad = 2048, 10, 4
    x = torch.randint(1, 256, (n, size, size, 3), dtype=torch.uint8)  # no zeros: the padding is recognisable
    single = pixel_views(x, 1, pad)
    v1, v2 = pixel_views(x, 2, pad)
    assert torch.equal(v1, single)  # view 1 is the baseline's batch itself (same stream)
    o1 = torch.tensor([crop_offset(v1[i], x[i], pad) for i in range(n)])
    o2 = torch.tensor([crop_offset(v2[i], x[i], pad) for i in range(n)])
    for o in (o1, o2):
        assert o.min() == -pad and o.max() == pad  # each view: exactly the baseline's range, every value seen
        assert len({tuple(r) for r in o.tolist()}) == (2 * pad + 1) ** 2
    diff = o1 - o2
    assert diff.min() == -2 * pad and diff.max() == 2 * pad  # between the views: up to 8 px per axis
    same = (diff == 0).all(1).float().mean().item()
    assert same < 0.03  # independent draws: the same shift about 1 time in 81, not always
    flips = torch.tensor([torch.equal(v1[i], v2[i].flip(1)) for i in range(n)]).float().mean().item()
    assert 0.0 <= flips < 0.05


def test_the_torch_loaders_views_are_independent_draws_of_its_transform():
    from torchvision import transforms as T

    from spatialprobe.data.torchpath import Views

    torch.manual_seed(0)
    image = T.ToPILImage()(torch.rand(3, 12, 12))
    pair = Views(T.Compose([T.RandomCrop(12, padding=4), T.ToTensor()]), 2)(image)
    assert isinstance(pair, tuple) and len(pair) == 2 and not torch.equal(pair[0], pair[1])
    assert isinstance(Views(T.ToTensor(), 1)(image), torch.Tensor)


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
