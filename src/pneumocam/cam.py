"""Class activation maps for the 1-logit ResNet-18: classic CAM, batched, plus six library methods.

Classic CAM (Zhou et al., 2016). The model ends ``layer4 -> avgpool -> fc = Linear(512, 1)``, so
with ``A`` the layer4 output of shape ``(N, 512, h, w)`` and ``w, b`` the fc weight and bias::

    logit = mean_ij(sum_k w_k A_k[i, j]) + b   =   mean_ij(CAM[i, j]) + b

``CAM = einsum("nchw,c->nhw", A, w)`` is taken from the *same* forward pass as the prediction (a
forward hook on ``layer4``). **Sign convention**: positive CAM values are evidence for pneumonia
(they raise the logit), negative values evidence against; the bias is excluded, so the spatial
mean of the low-resolution CAM plus ``fc.bias`` is the logit (tested). The raw map is upsampled
bilinearly (``align_corners=False``) to the input size, which keeps its mean up to border effects.

Library methods (package ``grad-cam``, module ``pytorch_grad_cam``, target layer ``model.layer4``
unless the method says otherwise,
target ``BinaryClassifierOutputTarget(1)``, which is the raw logit: the library applies no
sigmoid, so gradients are those of the logit). The library ReLUs each low-resolution map,
min-max scales it and resizes it with ``cv2.resize``. Here the library computes the channel
weights and the weighted low-resolution map (its ``get_cam_image``, captured as it runs); this
module then applies one upsampling rule to every method:

- ``raw``: the library's signed low-resolution map, upsampled bilinearly (for ``gradcam`` this
  is exactly ``CAM / (h * w)``: the gradient of the logit w.r.t. ``A_k`` is ``w_k / (h * w)``);
- ``normalized``: ReLU at feature resolution, upsample, per-image min-max. This equals the
  library's own output up to interpolation rounding (cv2 and PyTorch bilinear both use
  half-pixel centres; tested at correlation > 0.999).

Eigen-CAM's first principal component has an arbitrary sign (the library's ``EigenCAM`` does not
fix it, so its ReLU'd output can show the complement of the salient region). Here its sign is
chosen per image so that the projection correlates positively with the channel-mean activation.

LayerCAM (Jiang et al., 2021) is offered on ``layer3`` (``layercam``: 14x14 at 224 px, twice the
resolution of the standard model's ``layer4``) and fused over ``layer3`` and ``layer4``
(``layercam-fused``): as the library aggregates target layers, each layer's map is ReLU'd and
min-max scaled, then the maps are averaged, here at the finer layer's resolution (``layer4``'s
map upsampled bilinearly to it) so that the fused map still has a feature-resolution copy.

For ``"cam"``, ``normalized`` is the per-image min-max of the signed map (Zhou et al.'s
visualisation); a constant map normalises to zeros.

Code layout: each method is one small :class:`CamMethod` subclass whose one hook,
:meth:`CamMethod.low_res_maps`, returns a batch's logits and signed low-resolution maps
(:data:`CAM_METHODS` maps names to classes); :func:`compute_cams` does the rest once for all
(batches to and from the device, upsampling, normalisation). The randomisation sanity check
lives in :mod:`pneumocam.sanity`.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .model import CAM_LAYER


@dataclass
class CamResult:
    """Maps and predictions for N images.

    Attributes:
        logits: (N,) float32, the model's logits (same forward pass as the maps).
        probs: (N,) float32, ``sigmoid(logits)`` in [0, 1].
        raw: (N, H, W) float32 maps at input size, raw scale (for ``"cam"`` the signed class
            activation map in logit units; see the module docstring for the library methods).
        normalized: (N, H, W) float32 in [0, 1], per-image min-max (library methods: of the
            map ReLU'd at feature resolution).
        low: (N, h, w) float32, the signed maps at feature resolution (7x7 for 224 px input)
            that ``raw`` is upsampled from: where the pointing game and the overlays take the
            peak (:func:`pneumocam.localization.peak_yx`); (N, 0, 0) when N is 0.
        method: the method that produced the maps.

    With ``compute_cams(..., upsample="none")`` only ``logits``, ``probs`` and ``low`` are
    filled (``raw`` and ``normalized`` are (N, 0, 0)); :meth:`full_size` or
    :func:`full_size_maps` upsample all of them, or a slice, when they are needed.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    raw: torch.Tensor
    normalized: torch.Tensor
    low: torch.Tensor
    method: str = "cam"

    def full_size(self, size: tuple[int, int], rows: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(raw, normalized)`` (n, *size) float32 upsampled from ``low`` (all rows, or
        ``rows``) with the same rule as :func:`compute_cams`, on ``low``'s device."""
        low = self.low if rows is None else self.low[rows]
        return full_size_maps(low, size, CAM_METHODS[self.method].relu_first)


def _check_model(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    layer = getattr(model, CAM_LAYER, None)
    fc = getattr(model, "fc", None)
    if layer is None or not isinstance(fc, nn.Linear) or fc.out_features != 1:
        raise ConfigError(
            f"CAM needs a model with a '{CAM_LAYER}' stage and fc = Linear(C, 1) "
            f"(got {type(model).__name__}); build it with pneumocam.model.build_model()."
        )
    return layer, fc


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor of shape (N, 1, H, W), got {shape}")
    if not images.is_floating_point():
        raise ValueError(
            f"images must be normalised floats (got dtype {images.dtype}); scale uint8 arrays "
            "to [0, 1] and standardise with the train mean/std from stats.json first."
        )


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (``align_corners=False``) of (N, h, w) maps to (N, *size), float32."""
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max of (N, H, W) maps to [0, 1]; a constant map becomes all zeros."""
    lo = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - lo
    return (maps - lo) / torch.where(span > 0, span, torch.ones_like(span))


def full_size_maps(low: torch.Tensor, size: tuple[int, int], relu_first: bool
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The one upsampling rule of every method (see the module docstring).

    Args:
        low: (N, h, w) signed maps at feature resolution, on any device.
        size: the input's (H, W).
        relu_first: normalise the map ReLU'd at feature resolution (library methods) instead
            of the signed map (classic CAM).

    Returns:
        ``(raw, normalized)``: (N, H, W) float32, the signed map upsampled bilinearly and its
        per-image min-max in [0, 1].
    """
    raw = upsample_maps(low, size)
    shown = upsample_maps(low.clamp_min(0), size) if relu_first else raw
    return raw, minmax_normalize(shown)


def class_activation_map(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch: logits and the low-resolution CAM from ONE forward pass.

    Args:
        model: a ResNet-18 from :func:`pneumocam.model.build_model` (put it in eval mode).
        images: (N, 1, H, W) float on the model's device (autocast, if active, applies).

    Returns:
        ``(logits, cam)``: logits (N,) and the signed CAM (N, h, w) (h = w = 7 for 224 input),
        both in the dtype the forward pass produced; ``cam.mean((1, 2)) + fc.bias == logits``.
    """
    layer, fc = _check_model(model)
    store: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: store.append(out))
    try:
        with torch.no_grad():
            logits = model(images)
            feats = store[-1]
            cam = torch.einsum("nchw,c->nhw", feats, fc.weight[0].to(feats.dtype))
    finally:
        handle.remove()
    return logits.reshape(-1), cam


class _DeviceFeeder:
    """Batches of host images to the device, the copy overlapping the previous batch's compute.

    From pageable CPU memory to CUDA, each batch is first copied into one of two pinned
    buffers (used in turn) and sent with an asynchronous copy; a pageable ``.to("cuda")``
    would block the host until the copy ends. Elsewhere this is a plain ``.to(device)``.
    """

    def __init__(self, images: torch.Tensor, device: torch.device, batch_size: int):
        self.images, self.device = images, device
        self.staged = device.type == "cuda" and images.device.type == "cpu" and not images.is_pinned()
        self.buffers: list[torch.Tensor] = []
        self.events: list[torch.cuda.Event | None] = [None, None]
        if self.staged:
            shape = (min(batch_size, len(images)), *images.shape[1:])
            self.buffers = [torch.empty(shape, dtype=images.dtype, pin_memory=True) for _ in range(2)]

    def batch(self, index: int, start: int, stop: int) -> torch.Tensor:
        """Images ``start:stop`` on the device as float32; ``index`` counts the batches."""
        if not self.staged:
            return self.images[start:stop].to(self.device, non_blocking=True).float()
        slot = index % 2
        if self.events[slot] is not None:
            self.events[slot].synchronize()  # its last async copy has left the buffer
        buf = self.buffers[slot][: stop - start]
        buf.copy_(self.images[start:stop])
        on_device = buf.to(self.device, non_blocking=True)
        self.events[slot] = torch.cuda.Event()
        self.events[slot].record()
        return on_device.float()


@contextlib.contextmanager
def _channels_last(model: nn.Module, enable: bool):
    """Run the model with channels-last weights (faster cuDNN kernels), then restore the format.

    The parameters are converted in place (same Parameter objects, values unchanged).
    """
    # a 1-channel kernel counts as contiguous in both formats: look at a multi-channel one
    convs = (m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
    weight = next(convs, None)
    if not enable or weight is None or weight.weight.is_contiguous(memory_format=torch.channels_last):
        yield
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)


class _HostSink:
    """Copies per-batch device tensors into host tensors, overlapping the copy with compute.

    On CUDA each batch goes device -> pinned staging buffer asynchronously (two buffers in
    turn), and the previous batch goes staging -> pageable output on the CPU while the GPU
    works; a plain ``.cpu()`` would block the host until the copy ends, idling the GPU.
    """

    def __init__(self, n: int, device: torch.device):
        self.cuda, self.n = device.type == "cuda", n
        self.out: dict[str, torch.Tensor] = {}  # allocated from the first batch's shapes
        self.staging: list[dict[str, torch.Tensor]] = []  # two pinned buffers, used in turn
        self.pending: list[tuple[torch.cuda.Event, int, int, int]] = []  # (event, slot, start, stop)

    def put(self, start: int, parts: dict[str, torch.Tensor]) -> None:
        """Queue the copy of one batch (tensors on the device) into rows ``start:start+n``."""
        stop = start + parts["logits"].shape[0]
        for key, value in parts.items():
            if key not in self.out:
                self.out[key] = torch.empty((self.n, *value.shape[1:]), dtype=torch.float32)
        if not self.cuda:
            for key, value in parts.items():
                self.out[key][start:stop].copy_(value)
            return
        if not self.staging:  # the first batch is the largest
            self.staging = [
                {k: torch.empty(v.shape, dtype=torch.float32, pin_memory=True) for k, v in parts.items()}
                for _ in range(2)
            ]
        if len(self.pending) == 2:
            self._drain_one()
        slot = 1 - self.pending[0][1] if self.pending else 0
        for key, value in parts.items():
            self.staging[slot][key][: stop - start].copy_(value, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.pending.append((event, slot, start, stop))

    def _drain_one(self) -> None:
        event, slot, start, stop = self.pending.pop(0)
        event.synchronize()
        for key, buf in self.staging[slot].items():
            self.out[key][start:stop].copy_(buf[: stop - start])

    def finish(self) -> dict[str, torch.Tensor]:
        """Wait for the queued copies; the host tensors, by the keys that :meth:`put` was
        given (none when no batch was put)."""
        while self.pending:
            self._drain_one()
        return self.out


# --------------------------------------------------------------------------- the methods


class CamMethod:
    """One CAM method: how a batch becomes logits and signed low-resolution maps.

    :func:`compute_cams` owns everything else (batches, device copies, upsampling,
    normalisation, the model's train/eval mode), so a new method is one small subclass that
    overrides :meth:`low_res_maps`, like ``pytorch_grad_cam``'s ``BaseCAM.get_cam_weights``.

    Attributes:
        name: the method's name in :data:`METHODS`.
        relu_first: normalise the map ReLU'd at feature resolution (library methods) instead
            of the signed map (classic CAM, Zhou et al.'s visualisation).
        channels_last: the method may run with channels-last weights on CUDA.
    """

    name = ""
    relu_first = True
    channels_last = False

    def __init__(self, model: nn.Module, layer: nn.Module, device: torch.device, amp: bool):
        self.model, self.layer, self.device, self.amp = model, layer, device, amp

    def low_res_maps(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (n,) and signed maps (n, h, w) at feature resolution, on the model's device
        (float32, or the autocast dtype; :func:`compute_cams` upcasts).

        Args:
            batch: (n, 1, H, W) normalised float32 images on the model's device.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release what the method attached to the model (hooks, gradients)."""


class ClassicCam(CamMethod):
    """Classic CAM: ``features @ fc.weight`` from the forward pass that gives the logits.

    Runs under bf16 autocast when ``amp`` is set (see :func:`compute_cams`).
    """

    name = "cam"
    relu_first = False
    channels_last = True  # measured on an H200 (torch 2.11, batch 256, bf16): 34.7k vs 29.5k img/s

    def low_res_maps(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            return class_activation_map(self.model, batch)


class LibraryCam(CamMethod):
    """A ``pytorch_grad_cam`` method: the library computes the channel weights and the weighted
    low-resolution map (its ``get_cam_image``, captured as it runs); fp32, the library's own
    layout. Subclasses name the library class and may re-orient the captured map."""

    library_class = ""
    quiet = False  #: silence the library's stderr (Score-CAM's tqdm bar per image)
    #: the model's stages the library hooks (None: the ``layer`` :func:`compute_cams` passes)
    target_layers: tuple[str, ...] | None = None

    def __init__(self, model: nn.Module, layer: nn.Module, device: torch.device, amp: bool):
        super().__init__(model, layer, device, amp)
        try:
            import pytorch_grad_cam
        except ImportError as exc:  # optional at import time: "cam" needs only torch
            raise ConfigError(
                f"method '{self.name}' needs the grad-cam package (pip install grad-cam==1.5.7); "
                "method 'cam' works without it."
            ) from exc
        layers = [layer] if self.target_layers is None else [
            getattr(model, name) for name in self.target_layers]
        self.cam = getattr(pytorch_grad_cam, self.library_class)(model=model, target_layers=layers)
        self.cam.batch_size = 128  # Score-CAM: masked copies per forward pass (library default 16)

    def orient(self, low: np.ndarray, activations: np.ndarray) -> np.ndarray:
        """The captured map (n, h, w) as this module reports it (the library's sign by default)."""
        return low

    def combine(self, lows: list[np.ndarray]) -> np.ndarray:
        """One (n, h, w) map from the per-target-layer maps (one layer by default: its map)."""
        return lows[-1]

    def low_res_maps(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the optional library, imported where it is first needed (as in __init__)
        from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

        captured: list[tuple[np.ndarray, np.ndarray]] = []
        original = type(self.cam).get_cam_image

        def capture(*args, **kwargs):  # (input, layer, targets, activations, grads, eigen_smooth)
            out = original(self.cam, *args, **kwargs)
            captured.append((out, args[3]))
            return out

        self.cam.get_cam_image = capture  # instance attribute shadows the method for this call
        targets = [BinaryClassifierOutputTarget(1)] * batch.shape[0]
        # keep library chatter out of our logs
        quiet = contextlib.redirect_stderr(io.StringIO()) if self.quiet else contextlib.nullcontext()
        try:
            with torch.enable_grad(), quiet:
                self.cam(input_tensor=batch, targets=targets)
        finally:
            del self.cam.get_cam_image
        per_layer = captured[-len(self.cam.target_layers):]  # this call's, one per target layer
        low = self.combine([self.orient(np.asarray(out, dtype=np.float32),
                                        np.asarray(acts, dtype=np.float32))
                            for out, acts in per_layer])
        logits = self.cam.outputs.detach().float().reshape(-1)
        return logits.to(self.device), torch.from_numpy(low).to(self.device)

    def close(self) -> None:
        self.cam.activations_and_grads.release()
        self.model.zero_grad(set_to_none=True)


class GradCam(LibraryCam):
    name, library_class = "gradcam", "GradCAM"


class GradCamPlusPlus(LibraryCam):
    name, library_class = "gradcam++", "GradCAMPlusPlus"


class ScoreCam(LibraryCam):
    name, library_class = "scorecam", "ScoreCAM"
    quiet = True  # a tqdm bar per image on stderr


class LayerCam(LibraryCam):
    """LayerCAM on ``layer3`` (14x14 at 224 px: the finer stage; ``layer4`` has 7x7)."""

    name, library_class = "layercam", "LayerCAM"
    target_layers = ("layer3",)


class LayerCamFused(LibraryCam):
    """LayerCAM on ``layer3`` and ``layer4``, fused as the library fuses target layers (each
    ReLU'd and min-max scaled, then averaged), at ``layer3``'s resolution."""

    name, library_class = "layercam-fused", "LayerCAM"
    target_layers = ("layer3", CAM_LAYER)

    def combine(self, lows: list[np.ndarray]) -> np.ndarray:
        size = max((low.shape[1:] for low in lows), key=lambda hw: hw[0] * hw[1])
        scaled = [minmax_normalize(upsample_maps(torch.from_numpy(np.maximum(low, 0)), size))
                  for low in lows]
        return torch.stack(scaled).mean(dim=0).numpy()


class EigenCam(LibraryCam):
    """Eigen-CAM with its sign fixed per image (see the module docstring)."""

    name, library_class = "eigencam", "EigenCAM"

    def orient(self, low: np.ndarray, activations: np.ndarray) -> np.ndarray:
        return _eigen_sign(low, activations)


def _eigen_sign(low: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """Flip each (h, w) projection so it correlates positively with the channel-mean activation."""
    ref = activations.mean(axis=1).reshape(len(low), -1)
    flat = low.reshape(len(low), -1)
    ref = ref - ref.mean(axis=1, keepdims=True)
    cov = ((flat - flat.mean(axis=1, keepdims=True)) * ref).sum(axis=1)
    return low * np.where(cov < 0, -1.0, 1.0).astype(low.dtype)[:, None, None]


#: method name -> its class; :data:`METHODS` lists the names.
CAM_METHODS: dict[str, type[CamMethod]] = {
    m.name: m for m in (ClassicCam, GradCam, GradCamPlusPlus, ScoreCam, EigenCam, LayerCam,
                        LayerCamFused)
}
METHODS = tuple(CAM_METHODS)


#: Where :func:`compute_cams` upsamples the feature-resolution maps to the input size.
UPSAMPLE_PLACES = ("device", "host", "none")

#: Maps upsampled on the host per chunk: bounds the temporary memory (2 x 256 x 224 x 224 x 4 B
#: is about 100 MB) while keeping each interpolate call large enough to use every thread.
HOST_UPSAMPLE_CHUNK = 256


def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    method: str = "cam",
    batch_size: int = 64,
    keep_on_device: bool = False,
    amp: bool | None = None,
    upsample: str = "device",
) -> CamResult:
    """Maps and predictions for a stack of images, in batches on the model's device.

    Args:
        model: ResNet-18 from :func:`pneumocam.model.build_model`; run in eval mode here (its
            train/eval mode is restored afterwards).
        images: (N, 1, H, W) normalised float images on any device (moved batch by batch).
        method: one of :data:`METHODS`. ``"cam"`` is this module's batched classic CAM;
            the others come from ``pytorch_grad_cam`` (see the module docstring).
        batch_size: images per forward pass.
        keep_on_device: return tensors on the model's device instead of the CPU.
        amp: bf16 autocast for ``"cam"``; default (None) = on exactly when ``keep_on_device``
            and the device is CUDA (the fast path); fp32 elsewhere. Library methods run fp32.
        upsample: where ``raw`` and ``normalized`` are made from the feature-resolution maps
            (:data:`UPSAMPLE_PLACES`): ``"device"`` (default) on the model's device, batch by
            batch; ``"host"`` after only the logits and the (N, h, w) maps were copied to the
            host (at 224 px one 7x7 map instead of two 224x224 maps: 2,048x fewer bytes), then
            upsampled there (needs ``keep_on_device=False``);
            ``"none"`` not at all (``raw``/``normalized`` are (N, 0, 0); use
            :meth:`CamResult.full_size` for the rows that need them). The maps are the same in
            all three (float32 rounding aside); ``benchmarks/bench_cam.py`` measures which is
            faster on a given machine.

    Returns:
        :class:`CamResult` with logits/probs (N,), raw/normalized (N, H, W) and the
        low-resolution maps (N, h, w), all float32.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown CAM method '{method}'; choose one of {', '.join(METHODS)}")
    if upsample not in UPSAMPLE_PLACES:
        raise ConfigError(f"upsample={upsample!r}: choose one of {', '.join(UPSAMPLE_PLACES)}")
    if upsample == "host" and keep_on_device:
        raise ConfigError("upsample='host' returns host tensors; it needs keep_on_device=False")
    _check_images(images)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    layer, _ = _check_model(model)
    device = next(model.parameters()).device
    use_amp = (keep_on_device and device.type == "cuda") if amp is None else amp
    if use_amp and device.type != "cuda":
        use_amp = False  # bf16 autocast on CPU is slower than fp32 for these convolutions
    n, size = images.shape[0], tuple(images.shape[-2:])
    sink = None if keep_on_device else _HostSink(n, device)
    chunks: list[dict[str, torch.Tensor]] = []
    was_training = model.training  # read before the library's constructor calls model.eval()
    cam = CAM_METHODS[method](model, layer, device, use_amp)
    model.eval()
    feeder = _DeviceFeeder(images, device, batch_size)
    try:
        with _channels_last(model, enable=device.type == "cuda" and cam.channels_last):
            for index, start in enumerate(range(0, n, batch_size)):
                batch = feeder.batch(index, start, min(start + batch_size, n))
                logits, low = cam.low_res_maps(batch)
                parts = {"logits": logits.float(), "low": low.float()}
                if upsample == "device":
                    parts["raw"], parts["normalized"] = full_size_maps(low, size, cam.relu_first)
                if sink is None:
                    chunks.append(parts)
                else:
                    sink.put(start, parts)
    finally:
        cam.close()
        model.train(was_training)
    out_device = device if sink is None else torch.device("cpu")
    out = sink.finish() if sink is not None else {
        k: torch.cat([c[k] for c in chunks]) for k in (chunks[0] if chunks else {})}
    out.setdefault("logits", torch.empty(0, device=out_device))
    out.setdefault("low", torch.empty((n, 0, 0), device=out_device))
    if upsample == "host":
        out["raw"], out["normalized"] = _upsample_on_host(out["low"], size, cam.relu_first)
    else:  # "none", or no batch at all
        not_made = (n, 0, 0) if upsample == "none" else (n, *size)
        out.setdefault("raw", torch.empty(not_made, device=out_device))
        out.setdefault("normalized", torch.empty(not_made, device=out_device))
    return CamResult(
        logits=out["logits"],
        probs=torch.sigmoid(out["logits"]),
        raw=out["raw"],
        normalized=out["normalized"],
        low=out["low"],
        method=method,
    )


def _upsample_on_host(low: torch.Tensor, size: tuple[int, int], relu_first: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`full_size_maps` of (N, h, w) host maps, chunk by chunk into preallocated
    (N, *size) float32 outputs."""
    n = low.shape[0]
    raw = torch.empty((n, *size), dtype=torch.float32)
    normalized = torch.empty((n, *size), dtype=torch.float32)
    for start in range(0, n, HOST_UPSAMPLE_CHUNK):
        rows = slice(start, start + HOST_UPSAMPLE_CHUNK)
        raw[rows], normalized[rows] = full_size_maps(low[rows], size, relu_first)
    return raw, normalized
