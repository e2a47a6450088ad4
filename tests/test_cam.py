"""Class activation maps: the CAM identity, batching, CAM == Grad-CAM, library methods, sanity check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

from pneumocam.cam import (
    METHODS,
    CamResult,
    _channels_last,
    _eigen_sign,
    class_activation_map,
    compute_cams,
    upsample_maps,
)
from pneumocam.errors import ConfigError
from pneumocam.model import build_model
from pneumocam.sanity import (
    CASCADE_STAGES,
    randomization_sanity_check,
    randomized_copy,
    spearman_rows,
)

BLOB_SIZE = 128  # layer4 maps are 4x4: enough spatial detail for the maps to follow a blob


def blob_images(n: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise images, every other one with a bright Gaussian blob: (images, labels, blob maps)."""
    x = torch.randn(n, 1, size, size, generator=gen) * 0.3
    y = (torch.arange(n) % 2).float()
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = torch.randint(size // 5, size - size // 5, (n, 2), generator=gen)
    blobs = torch.zeros(n, size, size)
    for i in range(n):
        cy, cx = centres[i]
        blobs[i] = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 12) ** 2))
        if y[i]:
            x[i, 0] += 2.5 * blobs[i]
    return x, y, blobs


@pytest.fixture(scope="module")
def blob_model():
    """A ResNet-18 trained a few SGD steps to detect blobs, and held-out positive images."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = build_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(12):
        x, y, _ = blob_images(16, BLOB_SIZE, gen)
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(model(x)[:, 0], y).backward()
        opt.step()
    model.eval()
    x, y, blobs = blob_images(16, BLOB_SIZE, gen)
    pos = y == 1
    return model, x[pos], blobs[pos]


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(1)
    return build_model().eval()


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_cam_shapes_dtypes_and_ranges(small_model):
    x = images(5, 64)
    res = compute_cams(small_model, x, "cam", batch_size=2)
    assert isinstance(res, CamResult) and res.method == "cam"
    assert res.logits.shape == res.probs.shape == (5,)
    assert res.raw.shape == res.normalized.shape == (5, 64, 64)
    for t in (res.logits, res.probs, res.raw, res.normalized):
        assert t.dtype == torch.float32 and t.device.type == "cpu"
    with torch.no_grad():
        expected = small_model(x)[:, 0]
    torch.testing.assert_close(res.logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(res.probs, torch.sigmoid(expected), rtol=1e-5, atol=1e-6)
    flat = res.normalized.reshape(5, -1)
    assert torch.allclose(flat.amin(1), torch.zeros(5)) and torch.allclose(flat.amax(1), torch.ones(5))
    # normalized is the min-max of raw: same order of pixels
    raw = res.raw.reshape(5, -1)
    assert torch.equal(raw.argmax(1), flat.argmax(1))


def test_cam_identity_mean_plus_bias_is_logit(small_model):
    x = images(6, 64, seed=1)
    logits, low = class_activation_map(small_model, x)
    assert low.shape == (6, 2, 2) and not low.requires_grad
    torch.testing.assert_close(low.mean(dim=(1, 2)) + small_model.fc.bias, logits, rtol=0, atol=1e-5)
    # by hand: the fc weights applied to layer4's maps
    feats = small_model.layer4(small_model.layer3(small_model.layer2(small_model.layer1(
        small_model.maxpool(small_model.relu(small_model.bn1(small_model.conv1(x))))))))
    manual = (feats * small_model.fc.weight[0][None, :, None, None]).sum(1)
    torch.testing.assert_close(low, manual.detach(), rtol=1e-4, atol=1e-5)
    # bilinear upsampling (align_corners=False) of a 2x2 map keeps its mean for even scale factors
    res = compute_cams(small_model, x)
    torch.testing.assert_close(res.raw.mean(dim=(1, 2)) + small_model.fc.bias.detach(), res.logits,
                               rtol=0, atol=1e-4)


def test_low_resolution_maps_are_what_raw_is_upsampled_from(small_model):
    """CamResult.low: the signed maps at feature resolution, for every method and on both the
    host and the keep-on-device path; the pointing game takes its peak there."""
    x = images(5, 64, seed=5)
    res = compute_cams(small_model, x, batch_size=2)
    assert res.low.shape == (5, 2, 2) and res.low.dtype == torch.float32
    assert res.low.device.type == "cpu"
    torch.testing.assert_close(upsample_maps(res.low, (64, 64)), res.raw, rtol=0, atol=0)
    torch.testing.assert_close(res.low.mean(dim=(1, 2)) + small_model.fc.bias.detach(), res.logits,
                               rtol=0, atol=1e-5)
    _, by_hand = class_activation_map(small_model, x)
    torch.testing.assert_close(res.low, by_hand, rtol=1e-5, atol=1e-5)
    on_device = compute_cams(small_model, x, batch_size=3, keep_on_device=True)
    torch.testing.assert_close(on_device.low, res.low)
    grad = compute_cams(small_model, x[:2], "gradcam", batch_size=1)
    assert grad.low.shape == (2, 2, 2)
    torch.testing.assert_close(upsample_maps(grad.low, (64, 64)), grad.raw, rtol=0, atol=0)
    empty = compute_cams(small_model, x[:0])
    assert empty.low.shape[0] == 0 and empty.raw.shape == (0, 64, 64)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_upsampling_on_the_host_or_on_demand_gives_the_same_maps(small_model, method, monkeypatch):
    """upsample="host" copies only logits and feature maps and upsamples after; "none" leaves
    the full-size maps to CamResult.full_size. Both equal the on-device default."""
    import pneumocam.cam as cam_module

    monkeypatch.setattr(cam_module, "HOST_UPSAMPLE_CHUNK", 2)  # several host chunks for 5 maps
    x = images(5, 64, seed=6)
    ref = compute_cams(small_model, x, method, batch_size=2)
    host = compute_cams(small_model, x, method, batch_size=2, upsample="host")
    for key in ("logits", "probs", "raw", "normalized", "low"):
        got, want = getattr(host, key), getattr(ref, key)
        assert got.device.type == "cpu" and got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    lazy = compute_cams(small_model, x, method, batch_size=2, upsample="none")
    assert lazy.raw.shape == lazy.normalized.shape == (5, 0, 0)
    torch.testing.assert_close(lazy.low, ref.low, rtol=0, atol=0)
    raw, normalized = lazy.full_size((64, 64))
    torch.testing.assert_close(raw, ref.raw, rtol=0, atol=1e-6)
    torch.testing.assert_close(normalized, ref.normalized, rtol=0, atol=1e-6)
    raw_rows, norm_rows = lazy.full_size((64, 64), rows=slice(3, 5))  # on demand: two images
    torch.testing.assert_close(norm_rows, ref.normalized[3:5], rtol=0, atol=1e-6)
    assert raw_rows.shape == (2, 64, 64)
    on_device = compute_cams(small_model, x, method, batch_size=2, keep_on_device=True, upsample="none")
    assert on_device.raw.shape == (5, 0, 0)
    empty = compute_cams(small_model, x[:0], method, upsample="host")
    assert empty.raw.shape == (0, 64, 64) and empty.logits.shape == (0,)


def test_upsample_place_is_checked(small_model):
    with pytest.raises(ConfigError, match="upsample='gpu'.*device, host, none"):
        compute_cams(small_model, images(2, 32), upsample="gpu")
    with pytest.raises(ConfigError, match="keep_on_device=False"):
        compute_cams(small_model, images(2, 32), keep_on_device=True, upsample="host")


def test_batching_does_not_change_maps(small_model):
    x = images(7, 64, seed=2)
    a = compute_cams(small_model, x, batch_size=3)
    b = compute_cams(small_model, x, batch_size=64)
    torch.testing.assert_close(a.raw, b.raw, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.normalized, b.normalized, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-5)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a**2).sum(1) * (b**2).sum(1))


def test_cam_equals_gradcam_at_layer4(blob_model):
    model, x, _ = blob_model
    x = x[:8]
    size = tuple(x.shape[-2:])
    _, low = class_activation_map(model, x)
    assert (low > 0).any(dim=(1, 2)).all(), "the comparison needs maps with a positive part"
    ours = upsample_maps(low.clamp_min(0), size).numpy()  # ReLU before upsampling, like the library
    with GradCAM(model=model, target_layers=[model.layer4]) as cam:
        library = cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(1)] * len(x))
    assert library.shape == (len(x), *size)
    assert _pearson_rows(ours, library).min() > 0.99
    # Theory, exactly: d logit / d A_k = w_k / (h * w), so raw Grad-CAM = CAM / (h * w)
    grad = compute_cams(model, x, "gradcam", batch_size=3)
    cam = compute_cams(model, x, "cam")
    h, w = low.shape[-2:]
    torch.testing.assert_close(grad.raw * (h * w), cam.raw, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(grad.logits, cam.logits, rtol=1e-5, atol=1e-5)
    # our normalized Grad-CAM is the library's output up to interpolation rounding
    assert _pearson_rows(grad.normalized.numpy(), library).min() > 0.999


@pytest.mark.parametrize("method", [m for m in METHODS if m != "cam"])
def test_library_methods_return_maps(small_model, method):
    n = 1 if method == "scorecam" else 2  # Score-CAM runs 512 forward passes per image
    x = images(n, 32, seed=3)
    res = compute_cams(small_model, x, method, batch_size=1)
    assert res.method == method
    assert res.raw.shape == res.normalized.shape == (n, 32, 32)
    assert res.raw.dtype == res.normalized.dtype == torch.float32
    assert float(res.normalized.min()) >= 0.0 and float(res.normalized.max()) <= 1.0
    assert torch.isfinite(res.raw).all()
    torch.testing.assert_close(res.logits, compute_cams(small_model, x).logits, rtol=1e-5, atol=1e-5)
    assert all(p.grad is None for p in small_model.parameters())  # library gradients cleared


def test_eigen_sign_follows_mean_activation():
    acts = np.zeros((2, 3, 4, 4), dtype=np.float32)
    acts[:, :, 1, 2] = 5.0  # one hot spot in every channel
    proj = np.zeros((2, 4, 4), dtype=np.float32)
    proj[:, 1, 2] = 1.0
    proj[1] *= -1  # the second image came out of the SVD with the other sign
    fixed = _eigen_sign(proj, acts)
    assert (fixed[:, 1, 2] == 1.0).all()


def test_eigencam_highlights_the_blob(blob_model):
    model, x, blobs = blob_model
    res = compute_cams(model, x[:4], "eigencam")
    assert np.mean(spearman_rows(res.normalized.numpy(), blobs[:4].numpy())) > 0.5


def test_randomization_check_separates_cam_from_eigencam(blob_model):
    model, x, blobs = blob_model
    # the trained CAM follows the blob
    trained = compute_cams(model, x).raw.numpy()
    assert np.mean(spearman_rows(trained, blobs.numpy())) > 0.8
    out = randomization_sanity_check(model, x, "cam", seed=0, cascading=True)
    assert out["n_images"] == len(x) and len(out["per_image_rho"]) == len(x)
    assert out["mean_abs_rho"] < 0.5 and out["passed"] is True
    assert [s["randomized"][-1] for s in out["cascading"]] == [s[-1] for s in CASCADE_STAGES]
    # Eigen-CAM ignores the class weights and tracks image contrast: random weights show the blob too
    eig = randomization_sanity_check(model, x, "eigencam", seed=0)
    assert eig["mean_abs_rho"] > 0.5 and eig["passed"] is False


def test_randomized_copy_leaves_model_and_rng_alone(small_model):
    before = {k: v.clone() for k, v in small_model.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    clone = randomized_copy(small_model, seed=5, stages=("fc",))
    assert torch.equal(torch.rand(1), expected_next)
    for key, value in small_model.state_dict().items():
        assert torch.equal(value, before[key])
    assert not torch.equal(clone.fc.weight, small_model.fc.weight)
    assert torch.equal(clone.layer4[0].conv1.weight, small_model.layer4[0].conv1.weight)
    again = randomized_copy(small_model, seed=5, stages=("fc",))
    assert torch.equal(clone.fc.weight, again.fc.weight)


def test_spearman_rows_known_values():
    a = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    b = np.array([[10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    rho = spearman_rows(a, b)
    assert rho[0] == pytest.approx(1.0) and rho[1] == pytest.approx(-1.0) and np.isnan(rho[2])


def test_mode_restored_and_bad_inputs(small_model):
    small_model.train()
    try:
        compute_cams(small_model, images(2, 32))
        assert small_model.training
        compute_cams(small_model, images(2, 32), "gradcam")
        assert small_model.training
    finally:
        small_model.eval()
    with pytest.raises(ConfigError, match="unknown CAM method"):
        compute_cams(small_model, images(2, 32), method="lime")
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        compute_cams(small_model, torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="normalised floats"):
        compute_cams(small_model, torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="fc = Linear"):
        compute_cams(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)), images(1, 32))


def test_channels_last_layout_is_restored(small_model):
    params = list(small_model.parameters())
    x = images(3, 32)
    ref = compute_cams(small_model, x)
    conv = small_model.layer1[0].conv1.weight
    with _channels_last(small_model, enable=True):  # used on CUDA; the mechanics hold on CPU
        assert conv.is_contiguous(memory_format=torch.channels_last)
        inside = compute_cams(small_model, x)
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)
    assert all(a is b for a, b in zip(params, small_model.parameters(), strict=True))
    torch.testing.assert_close(inside.raw, ref.raw, rtol=1e-4, atol=1e-4)


def test_keep_on_device_on_cpu(small_model):
    x = images(3, 32)
    res = compute_cams(small_model, x, keep_on_device=True, amp=True)  # amp is ignored on CPU
    ref = compute_cams(small_model, x)
    assert res.raw.device.type == "cpu" and res.raw.dtype == torch.float32
    torch.testing.assert_close(res.raw, ref.raw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_paths_match_cpu(small_model):
    x = images(37, 64, seed=4)
    ref = compute_cams(small_model, x)  # CPU fp32
    gpu_model = build_model()
    gpu_model.load_state_dict(small_model.state_dict())
    gpu_model = gpu_model.cuda().eval()
    host = compute_cams(gpu_model, x, batch_size=8)  # fp32 on the GPU, maps back to the host
    assert host.raw.device.type == "cpu"
    torch.testing.assert_close(host.raw, ref.raw, rtol=1e-2, atol=1e-2)  # TF32 convolutions
    torch.testing.assert_close(host.logits, ref.logits, rtol=1e-2, atol=1e-2)
    via_host = compute_cams(gpu_model, x, batch_size=8, upsample="host")  # 7x7 maps copied
    torch.testing.assert_close(via_host.raw, host.raw, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(via_host.normalized, host.normalized, rtol=1e-5, atol=1e-5)
    fast = compute_cams(gpu_model, x.cuda(), batch_size=16, keep_on_device=True)  # bf16
    assert fast.raw.device.type == "cuda" and fast.raw.dtype == torch.float32
    corr = _pearson_rows(fast.raw.cpu().numpy(), ref.raw.numpy())
    assert corr.min() > 0.99
    torch.testing.assert_close(fast.logits.cpu(), ref.logits, rtol=0.05, atol=0.1)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, low = class_activation_map(gpu_model, x[:8].cuda())
    identity = low.float().mean(dim=(1, 2)) + gpu_model.fc.bias.detach()
    torch.testing.assert_close(identity, logits.float(), rtol=0.02, atol=0.05)


def test_layercam_fused_averages_the_scaled_layers_at_the_finer_resolution():
    from pneumocam.cam import LayerCamFused

    fine = np.zeros((1, 4, 4), np.float32)
    fine[0, 0, 0] = 2.0  # layer3: one hot cell, top left
    coarse = np.full((1, 2, 2), -1.0, np.float32)
    coarse[0, 1, 1] = 5.0  # layer4: bottom right, negatives ReLU'd away
    fused = LayerCamFused.combine(None, [fine, coarse])
    assert fused.shape == (1, 4, 4) and fused.min() >= 0 and fused.max() <= 1
    assert fused[0, 0, 0] == pytest.approx(0.5)  # 1 (layer3) + 0 (layer4), averaged
    assert fused[0, 3, 3] == pytest.approx(0.5)  # 0 + 1
    assert fused[0, 0, 3] == pytest.approx(0.0)


def test_layercam_runs_on_layer3(small_model):
    x = images(2, 64, seed=4)
    assert compute_cams(small_model, x, "layercam").low.shape == (2, 4, 4)  # layer3: 64 / 16
    assert compute_cams(small_model, x, "layercam-fused").low.shape == (2, 4, 4)
    assert compute_cams(small_model, x, "gradcam").low.shape == (2, 2, 2)  # layer4: 64 / 32
