"""Random streams (spatialprobe.run.streams): distinct for every (purpose, epoch, batch) of a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatialprobe.run import streams
from spatialprobe.run.streams import PURPOSES, generator, mix, stream_seed

SMALL_IMAGENET_BATCHES = 10_009  # 1,281,167 images / batch 128, the epoch of the issue


def test_torch_cpu_generators_keep_only_32_bits_of_the_seed():
    """Why the low 32 bits of a stream seed are a bijection rather than a hash (module docstring)."""
    a = torch.rand(4, generator=torch.Generator().manual_seed(5))
    b = torch.rand(4, generator=torch.Generator().manual_seed(5 + 2**32))
    assert torch.equal(a, b)


def test_the_mix_is_a_bijection_of_32_bit_words():
    key = streams._seed_words(0)[0]
    x = np.arange(2**22, dtype=np.uint64)
    for start in (0, 2**31 - 2**21, 2**32 - 2**22):  # three slices of the 2**32 words, one at the top
        assert (np.diff(np.sort(mix(x + start, key))) > 0).all()
    assert all(int(mix(np.uint64(v), key)) == mix(v, key) for v in (0, 1, 12345, 2**32 - 1))  # arrays = ints


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 7])
def test_no_two_streams_of_a_run_coincide_over_small_imagenet_epochs(seed):
    """Two consecutive 10,009-batch epochs of training steps and of augmentation, 90 epochs of
    everything per epoch: all 64-bit seeds distinct, and so are their low 32 bits (the CPU stream)."""
    n = SMALL_IMAGENET_BATCHES
    keys = [(p, e, b, n) for p in ("train_step", "augment", "augment_view2") for e in (0, 1) for b in range(n)]
    keys += [(p, e, 0, 1) for p in ("val", "order", "eval_pass") for e in range(90)]
    keys += [("cells", e, r, 8) for e in range(90) for r in range(8)]
    keys += [("placement", 0, s, 2) for s in (0, 1)] + [(p, 0, 0, 1) for p in ("test", "final_test", "consistency")]
    seeds = [stream_seed(seed, *k) for k in keys]
    assert len(set(seeds)) == len(keys)
    assert len({s & 0xFFFFFFFF for s in seeds}) == len(keys)
    assert {k[0] for k in keys} == set(PURPOSES)


def test_the_old_collision_is_gone():
    """The former mixers gave batch b of epoch e+1 the stream of batch b+7919 of epoch e."""
    n = SMALL_IMAGENET_BATCHES
    for b in (0, 5, 2089):
        later = torch.rand(8, generator=generator(0, "augment", 1, b, n))
        earlier = torch.rand(8, generator=generator(0, "augment", 0, b + 7919, n))
        assert not torch.equal(later, earlier)
    assert not torch.equal(torch.rand(8, generator=generator(0, "augment")), torch.rand(8, generator=generator(1, "augment")))


def test_a_stream_is_a_pure_function_of_its_key_and_positions_are_checked():
    assert stream_seed(3, "val", 7) == stream_seed(3, "val", 7)
    assert torch.equal(torch.rand(5, generator=generator(3, "order", 2)), torch.rand(5, generator=generator(3, "order", 2)))
    with pytest.raises(ValueError, match="batch 10 is outside 0..9"):
        stream_seed(0, "augment", 0, 10, 10)
    with pytest.raises(ValueError, match="outside 0..2\\*\\*28-1"):
        stream_seed(0, "augment", 2**20, 0, 2**10)


def test_seed_global_sets_the_cpu_generator():
    streams.seed_global(4, "train_step", 1, 2, 3)
    a = torch.rand(3)
    torch.manual_seed(stream_seed(4, "train_step", 1, 2, 3))
    assert torch.equal(a, torch.rand(3))
