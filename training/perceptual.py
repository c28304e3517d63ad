"""Perceptual losses on pretrained ImageNet networks: LPIPS (``lpips`` package) and VGG19 features.

The backbones' ImageNet weights are read from the torch hub cache (``torch.hub.get_dir()`` /
``checkpoints``, where torchvision keeps them) with ``torch.load(weights_only=True)``; nothing is
downloaded here. When a file is missing, ``PretrainedWeightsMissingError`` names the exact file, the
folder to put it in and where to get it. ``pretrained=False`` builds randomly initialised
backbones: only for tests, and the object says so (``.pretrained``) - a random backbone measures
nothing perceptual.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision AlexNet_Weights.IMAGENET1K_V1
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision VGG19_Weights.IMAGENET1K_V1
DOWNLOAD = "https://download.pytorch.org/models/"
# VGG19 ``features`` indices of conv1_2, conv2_2, conv3_4, conv4_4, conv5_4: taken before their
# ReLU, as ESRGAN does (features after activation are sparse and lose brightness information).
VGG_LAYERS = {"conv1_2": 2, "conv2_2": 7, "conv3_4": 16, "conv4_4": 25, "conv5_4": 34}
# Real-ESRGAN's layer weights (options/train_realesrgan_x4plus.yml): 0.1, 0.1, 1, 1, 1.
VGG_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PretrainedWeightsMissingError(FileNotFoundError):
    """A pretrained backbone file is not in the torch hub cache."""


def hub_file(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def load_hub_weights(
    name: str, purpose: str, remedy: str = "set its loss weight to 0"
) -> dict[str, torch.Tensor]:
    path = hub_file(name)
    if not path.is_file():
        raise PretrainedWeightsMissingError(
            f"{purpose} needs pretrained ImageNet weights: {path} is missing. Put {name} in "
            f"{path.parent} (download {DOWNLOAD}{name}), or {remedy}."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise PretrainedWeightsMissingError(f"{path}: not a state dict of tensors")
    return state


def weights_available(name: str) -> bool:
    return hub_file(name).is_file()


class VGGFeatures(nn.Module):
    """VGG19 feature maps before activation at ``VGG_LAYERS``; frozen, eval mode."""

    def __init__(self, *, pretrained: bool = True) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        state = load_hub_weights(VGG19_FILE, "the VGG perceptual loss") if pretrained else None
        features = make_layers(cfgs["E"])  # VGG19's conv stack only; the classifier is not needed
        if state is not None:
            prefix = "features."
            features.load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )
        self.pretrained = pretrained
        last = max(VGG_LAYERS.values())
        layers = list(features.children())[: last + 1]
        # Not in place: a ReLU would overwrite the pre-activation maps we keep.
        self.layers = nn.ModuleList(nn.ReLU() if isinstance(m, nn.ReLU) else m for m in layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean) / self.std
        wanted = {index: name for name, index in VGG_LAYERS.items()}
        out = {}
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x
        return out


def vgg_perceptual_loss(
    pred: torch.Tensor, target: torch.Tensor, features: VGGFeatures
) -> torch.Tensor:
    """Weighted L1 between VGG19 pre-activation features of ``pred`` and ``target``
    ``(B, 3, H, W)`` in ``[0, 1]`` (H, W >= 16)."""
    if pred.shape != target.shape or pred.shape[1] != 3:
        raise ValueError(
            f"need two (B, 3, H, W) images, got {tuple(pred.shape)}, {tuple(target.shape)}"
        )
    fp, ft = features(pred), features(target.detach())
    return sum(VGG_WEIGHTS[k] * F.l1_loss(fp[k], ft[k]) for k in VGG_LAYERS) / sum(
        VGG_WEIGHTS.values()
    )


class VGGPerceptualLoss(nn.Module):
    def __init__(self, *, pretrained: bool = True) -> None:
        super().__init__()
        self.features = VGGFeatures(pretrained=pretrained)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return vgg_perceptual_loss(pred, target, self.features)


def build_lpips(*, pretrained: bool = True) -> nn.Module:
    """LPIPS (AlexNet trunk, v0.1 linear heads shipped inside the ``lpips`` package), frozen.

    The trunk comes from the hub cache; ``pretrained=False`` leaves it random (tests only).
    """
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lpips passes torchvision's deprecated ``pretrained``
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    if pretrained:
        trunk = load_hub_weights(ALEXNET_FILE, "LPIPS")
        own = model.net.state_dict()
        by_index = {key.split(".", 1)[1]: key for key in own}  # "0.weight" -> "slice1.0.weight"
        mapped = {
            by_index[k.removeprefix("features.")]: v
            for k, v in trunk.items()
            if k.startswith("features.") and k.removeprefix("features.") in by_index
        }
        if len(mapped) != len(own):
            raise PretrainedWeightsMissingError(f"{hub_file(ALEXNET_FILE)}: not AlexNet weights")
        model.net.load_state_dict(mapped)
    model.pretrained = pretrained
    return model.requires_grad_(False).eval()


def lpips_loss(pred: torch.Tensor, target: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Mean LPIPS distance between ``(B, 3, H, W)`` images in ``[0, 1]``; lower is closer."""
    if pred.shape != target.shape or pred.shape[1] != 3:
        raise ValueError(
            f"need two (B, 3, H, W) images, got {tuple(pred.shape)}, {tuple(target.shape)}"
        )
    return model(pred, target.detach(), normalize=True).mean()


class LPIPSLoss(nn.Module):
    def __init__(self, *, pretrained: bool = True) -> None:
        super().__init__()
        self.model = build_lpips(pretrained=pretrained)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lpips_loss(pred, target, self.model)


class SRFeatures(nn.Module):
    """Feature maps of a pretrained SPAN super-resolution network, run on full-size images: the
    perceptual signal this project can have without ImageNet weights.

    A network trained to restore photos (the official SPAN x4 weights: DIV2K, Apache-2.0, in
    ``../shared/peers``) has learnt filters for the edges, grain and small patterns of real
    images. Its first convolution and first ``blocks`` SPAB blocks (receptive field 3 + 6 per
    block pixels) are used as a frozen feature extractor, as VGG is in ESRGAN: the loss compares
    local structure, not exact pixel values. It is what it is: features of an SR network, not an
    ImageNet classifier; the recipes and cards name it so.
    """

    def __init__(self, path: str | Path, blocks: int = 2) -> None:
        super().__init__()
        from spandrel import ModelLoader

        from .archs import settle

        model = ModelLoader().load_from_file(str(path)).model
        if type(model).__name__ != "SPAN":
            raise ValueError(f"{path}: the SR feature loss needs a SPAN model file")
        if not 1 <= blocks <= 6:
            raise ValueError(f"loss.sr_feature_blocks must be in 1..6, got {blocks}")
        settle(model)
        self.pretrained = True
        self.norm = bool(getattr(model, "is_norm", True))
        self.register_buffer("mean", model.mean.detach().clone().float().view(1, 3, 1, 1))
        self.img_range = float(getattr(model, "img_range", 255.0))
        self.first = model.conv_1
        self.blocks = nn.ModuleList(getattr(model, f"block_{i}") for i in range(1, blocks + 1))
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> SRFeatures:
        return super().train(False)  # Conv3XC re-fuses its branches in training mode: never

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.norm:
            x = (x - self.mean) * self.img_range
        feature = self.first(x)
        out = [feature]
        for block in self.blocks:
            feature = block(feature)[0]
            out.append(feature)
        return out


def sr_feature_loss(pred: torch.Tensor, target: torch.Tensor, features: SRFeatures) -> torch.Tensor:
    """Mean over layers of L1 between ``features`` of ``pred`` and ``target`` ``(B, 3, H, W)`` in
    ``[0, 1]``, each layer divided by the target's mean magnitude (so each counts alike)."""
    if pred.shape != target.shape or pred.shape[1] != 3:
        raise ValueError(
            f"need two (B, 3, H, W) images, got {tuple(pred.shape)}, {tuple(target.shape)}"
        )
    with torch.no_grad():
        theirs = features(target)
    ours = features(pred)
    terms = [
        (a - b).abs().mean() / b.abs().mean().clamp(min=1e-6)
        for a, b in zip(ours, theirs, strict=True)
    ]
    return torch.stack(terms).mean()


class Teacher(nn.Module):
    """A pretrained super-resolution model run frozen on the training inputs, for ``detail_loss``.

    Any single-image model file ``spandrel`` loads (safetensors or a weights-only ``.pth``: no code
    is run from it) whose scale is the run's or a multiple of it: a x4 teacher of a x2 run has
    its output box-averaged to the run's size. Its licence carries over to what it teaches: a
    model distilled from 4xSPANkendata is CC-BY-SA-4.0, and a non-commercial peer must not be
    used.
    """

    def __init__(self, path: str | Path, scale: int) -> None:
        super().__init__()
        from spandrel import ModelLoader

        from .archs import settle

        descriptor = ModelLoader().load_from_file(str(path))
        if descriptor.scale % scale:
            raise ValueError(f"{path}: the teacher is x{descriptor.scale}, the run x{scale}")
        self.reduce = descriptor.scale // scale
        self.model = descriptor.model
        settle(self.model)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # fused SPAN branches re-fuse in training mode: never

    @torch.no_grad()
    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        out = self.model(lq).clamp(0, 1)
        return F.avg_pool2d(out, self.reduce) if self.reduce > 1 else out
