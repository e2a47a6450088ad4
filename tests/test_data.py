"""Unit tests of pneumocam.data: samplers, augmentation, batch sources; and the model's shape."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from pneumocam.data import (
    AugmentConfig,
    DeviceBatches,
    DistributedWeightedSampler,
    LoaderBatches,
    augment_batch,
    balanced_weights,
    class_counts,
    epoch_indices,
    make_generator,
    normalize,
    prepare_batch,
    random_affine_theta,
    rank_share,
)
from pneumocam.distributed import DistInfo, gather_predictions
from pneumocam.model import CAM_LAYER, build_model
from pneumocam.train import limited_rows

LABELS = np.array([1] * 20 + [0] * 180)  # 10% positive, like a harsh RSNA subset


def test_model_is_one_channel_one_logit_with_torchvision_names():
    model = build_model()
    names = [n for n, _ in model.named_children()]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                     "avgpool", "fc"]
    assert model.conv1.in_channels == 1
    assert (model.fc.in_features, model.fc.out_features) == (512, 1)
    assert CAM_LAYER == "layer4"
    out = model.eval()(torch.zeros(2, 1, 32, 32))
    assert out.shape == (2, 1)


def test_balanced_weights_are_inverse_class_counts():
    w = balanced_weights(LABELS)
    assert w.dtype == torch.float64
    assert torch.allclose(w[:20], torch.full((20,), 1 / 20, dtype=torch.float64))
    assert torch.allclose(w[20:], torch.full((180,), 1 / 180, dtype=torch.float64))
    assert class_counts(LABELS) == (180, 20)


def test_weighted_random_sampler_draws_classes_evenly():
    gen = make_generator(0)
    sampler = WeightedRandomSampler(balanced_weights(LABELS), len(LABELS) * 50, replacement=True,
                                    generator=gen)
    idx = np.fromiter(iter(sampler), dtype=np.int64)
    frac_pos = LABELS[idx].mean()
    assert abs(frac_pos - 0.5) < 0.02  # 10,000 draws: sd of the fraction is 0.005
    assert len(np.unique(idx[LABELS[idx] == 1])) == 20  # every positive gets drawn


def test_gpu_style_draw_equals_weighted_random_sampler_and_is_balanced():
    labels = torch.as_tensor(LABELS)
    sampler = WeightedRandomSampler(balanced_weights(labels), len(labels), replacement=True,
                                    generator=make_generator(7))
    ours = epoch_indices(labels, "balanced", make_generator(7))
    assert ours.tolist() == list(sampler)  # the same torch.multinomial draw
    many = epoch_indices(labels, "balanced", make_generator(1), num_samples=20_000)
    assert abs(LABELS[many.numpy()].mean() - 0.5) < 0.02


def test_original_draw_is_a_permutation():
    labels = torch.as_tensor(LABELS)
    idx = epoch_indices(labels, "original", make_generator(3))
    assert sorted(idx.tolist()) == list(range(len(LABELS)))
    assert idx.tolist() != list(range(len(LABELS)))
    longer = epoch_indices(labels, "original", make_generator(3), num_samples=450)
    assert len(longer) == 450 and np.bincount(longer.numpy()).min() >= 2
    with pytest.raises(ValueError):
        epoch_indices(labels, "nope", make_generator(0))


def test_distributed_sampler_shares_are_disjoint_and_balanced():
    world = 3
    samplers = [DistributedWeightedSampler(LABELS, "balanced", world, r, seed=5)
                for r in range(world)]
    for epoch in (0, 1):
        for s in samplers:
            s.set_epoch(epoch)
        shares = [list(iter(s)) for s in samplers]
        glob = samplers[0].global_indices()
        assert all(len(sh) == math.ceil(len(LABELS) / world) for sh in shares)
        # Positions are disjoint: rank r holds positions r, r+world, ... of one global draw.
        for r, sh in enumerate(shares):
            assert sh == glob[r::world].tolist()
        assert sorted(sum(shares, [])) == sorted(glob.tolist())
    # One balanced draw overall (many epochs pooled)
    drawn = []
    for epoch in range(40):
        for s in samplers:
            s.set_epoch(epoch)
            drawn += list(iter(s))
    assert abs(LABELS[np.array(drawn)].mean() - 0.5) < 0.03
    # Different epochs give different draws; the same epoch the same
    s = samplers[0]
    s.set_epoch(0)
    a = list(iter(s))
    s.set_epoch(1)
    assert list(iter(s)) != a
    s.set_epoch(0)
    assert list(iter(s)) == a


def test_distributed_original_sampler_covers_every_image_once():
    labels = np.array([0, 1] * 5 + [0])  # 11 images, 2 ranks -> padded to 12 positions
    shares = []
    for r in range(2):
        s = DistributedWeightedSampler(labels, "original", 2, r, seed=0)
        s.set_epoch(4)
        shares.append(list(iter(s)))
    assert len(shares[0]) == len(shares[1]) == 6
    pooled = sum(shares, [])
    assert set(pooled) == set(range(11))


def test_rank_share():
    idx = torch.arange(10)
    assert rank_share(idx, 1, 2).tolist() == [1, 3, 5, 7, 9]


def test_affine_ranges_are_mild():
    cfg = AugmentConfig()
    theta = random_affine_theta(5000, make_generator(0), cfg)
    a = theta[:, :, :2]
    scale = 1 / torch.sqrt(torch.linalg.det(a))  # content zoom factor
    angle = torch.rad2deg(torch.atan2(a[:, 1, 0], a[:, 0, 0]))
    shift = theta[:, :, 2] / 2  # normalised units -> fraction of the image size
    assert scale.min() >= 0.95 - 1e-6 and scale.max() <= 1.05 + 1e-6
    assert angle.abs().max() <= 5 + 1e-4
    assert shift.abs().max() <= 0.04 + 1e-6
    assert angle.abs().max() > 4 and shift.abs().max() > 0.035  # the ranges are used


def test_normalisation_after_augmentation_fill_is_normalised_black():
    mean, std = 0.3, 0.2
    white = torch.full((4, 16, 16), 255, dtype=torch.uint8)
    big_shift = AugmentConfig(degrees=0, translate=0.25, scale=(1.0, 1.0))
    x = prepare_batch(white, mean, std, make_generator(0), big_shift)
    fill, inside = (0 - mean) / std, (1 - mean) / std
    vals = x.flatten()
    # Uncovered pixels hold black air *after* normalisation, i.e. (0 - mean) / std ...
    assert torch.isclose(vals, torch.tensor(fill)).sum() > 0
    assert torch.isclose(vals, torch.tensor(inside)).sum() > 0
    assert vals.min() >= fill - 1e-5 and vals.max() <= inside + 1e-5
    # ... which normalising first would not give (the fill would be 0).
    assert not torch.isclose(vals, torch.tensor(0.0), atol=1e-4).any()


def test_eval_batches_are_only_normalised():
    imgs = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    x = prepare_batch(imgs, 0.5, 0.25)
    expected = normalize(imgs.float().unsqueeze(1) / 255, 0.5, 0.25)
    assert torch.allclose(x, expected)
    with pytest.raises(ValueError):
        prepare_batch(imgs, 0.5, 0.25, None, AugmentConfig())


def test_augmentation_keeps_a_finding_near_the_edge():
    size = 64
    img = torch.zeros(1, 1, size, size)
    img[..., 4:14, 4:14] = 1.0  # a 10x10 finding 4 px from the corner
    batch = img.repeat(256, 1, 1, 1)
    out = augment_batch(batch, make_generator(1))
    kept = out.sum(dim=(1, 2, 3)) / img.sum()
    assert kept.min() > 0.8  # never cropped away (the max shift is 2.6 px, zoom <= 5%)
    assert (out.amax(dim=(1, 2, 3)) > 0.9).all()
    assert out.shape == batch.shape
    # And the augmentation does move things: not an identity
    assert not torch.allclose(out, batch)


def test_augmentation_is_seeded():
    x = torch.rand(8, 1, 16, 16)
    a = augment_batch(x, make_generator(3))
    b = augment_batch(x, make_generator(3))
    c = augment_batch(x, make_generator(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_device_batches_on_cpu_tensors_balanced_and_seeded():
    n = 64
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1).expand(n, 4, 4).contiguous()
    labels = torch.tensor([1] * 8 + [0] * 56)
    src = DeviceBatches(images, labels, batch_size=16, sampler="balanced", seed=0)
    assert len(src) == 4
    batches = list(src.epoch(1))
    assert len(batches) == 4 and batches[0][0].shape == (16, 4, 4)
    idx = torch.cat([b[0][:, 0, 0] for b in batches]).long()
    assert torch.equal(torch.cat([b[1] for b in batches]), labels[idx].float())
    expected = epoch_indices(labels, "balanced", make_generator(0 + 1))
    assert torch.equal(idx, expected)
    again = torch.cat([b[0][:, 0, 0] for b in src.epoch(1)]).long()
    assert torch.equal(idx, again)
    pooled = torch.cat([torch.cat([b[1] for b in src.epoch(e)]) for e in range(30)])
    assert abs(pooled.mean().item() - 0.5) < 0.05


def test_loader_batches_balanced_original_and_reseeded_per_epoch():
    n = 40
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 4, axis=1).repeat(4, axis=2)
    labels = np.array([1] * 4 + [0] * 36)
    bal = LoaderBatches(images, labels, batch_size=8, sampler="balanced", seed=2)
    first = [b[0][:, 0, 0].clone() for b in bal.epoch(1)]
    second = [b[0][:, 0, 0].clone() for b in bal.epoch(2)]
    again = [b[0][:, 0, 0].clone() for b in bal.epoch(1)]
    assert len(first) == 5 and all(len(b) == 8 for b in first)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    # The loader's draw is epoch_indices' draw with the epoch's seed
    expected = epoch_indices(torch.as_tensor(labels), "balanced", make_generator(2 + 1))
    assert torch.equal(torch.cat(first).long(), expected)
    orig = LoaderBatches(images, labels, batch_size=8, sampler="original", seed=2)
    seen = torch.cat([b[0][:, 0, 0] for b in orig.epoch(1)]).long()
    assert sorted(seen.tolist()) == list(range(n))
    assert seen.dtype == torch.long and first[0].dtype == torch.uint8


def test_gather_predictions_single_process_orders_by_index():
    idx = torch.tensor([2, 0, 1])
    val = torch.tensor([0.2, 0.0, 0.1])
    i, v = gather_predictions(idx, val, DistInfo())
    assert i.tolist() == [0, 1, 2] and torch.allclose(v, torch.tensor([0.0, 0.1, 0.2]))


def test_limited_rows_keeps_both_classes_in_manifest_order():
    rows = pd.DataFrame({"patientId": [f"p{i}" for i in range(20)],
                         "label": [0] * 16 + [1] * 4})
    sub = limited_rows(rows, 5)
    assert len(sub) == 5 and set(sub["label"]) == {0, 1}
    assert list(sub["patientId"]) == sorted(sub["patientId"], key=lambda p: int(p[1:]))
    assert len(limited_rows(rows, None)) == 20 and len(limited_rows(rows, 50)) == 20
