"""Tiny stand-ins for the few torchvision and timm names upstream SAM imports.

PyPI's torchvision does not import beside the CPU torch build we use, and timm
needs torchvision. Upstream ``segment_anything`` and ``mobile_sam`` only use:

- ``torchvision.transforms.functional.resize`` / ``to_pil_image`` (PIL bilinear
  resize of a uint8 HWC image, used by ``ResizeLongestSide.apply_image``);
- ``torchvision.ops.boxes.batched_nms`` / ``box_area`` (everything mode);
- ``timm.models.layers.DropPath`` / ``to_2tuple`` / ``trunc_normal_`` and
  ``timm.models.registry.register_model`` (MobileSAM's TinyViT);
- ``cv2.connectedComponentsWithStats`` (the generator's ``min_mask_region_area``;
  OpenCV is not installed here);
- ``torchvision.transforms.ToTensor`` / ``Resize`` / ``Normalize`` (SAM 2's image
  transforms; ``Resize`` and ``Normalize`` must be scriptable).

:func:`install` puts faithful, minimal versions into ``sys.modules`` (only where
the real module is absent) so the oracles import. Keep them small and exact.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import torch
from PIL import Image
from scipy import ndimage


def to_pil_image(pic: np.ndarray) -> Image.Image:
    """HWC uint8 numpy array -> PIL image (RGB for 3 channels, L for 2D)."""
    array = np.asarray(pic)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return Image.fromarray(array)


def resize(img: Image.Image, size: list[int] | tuple[int, int]) -> Image.Image:
    """Bilinear PIL resize to ``size`` = (height, width), as torchvision does."""
    height, width = int(size[0]), int(size[1])
    return img.resize((width, height), Image.BILINEAR)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of (N, 4) XYXY boxes."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _box_iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(box[:2], boxes[:, :2])
    rb = torch.minimum(box[2:], boxes[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = box_area(box[None])[0] + box_area(boxes) - inter
    return inter / union


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS; indices of kept boxes by decreasing score (torchvision semantics)."""
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes.float()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for rank, index in enumerate(order.tolist()):
        if suppressed[rank]:
            continue
        keep.append(index)
        rest = order[rank + 1 :]
        if len(rest):
            overlap = _box_iou(boxes[index], boxes[rest]) > iou_threshold
            suppressed[rank + 1 :] |= overlap
    return torch.tensor(keep, dtype=torch.int64)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS applied independently per category ``idxs`` (coordinate-offset trick)."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


class DropPath(torch.nn.Module):
    """Stochastic depth; identity in eval mode, which is all the oracle uses."""

    def __init__(self, drop_prob: float | None = None) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.drop_prob or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def to_2tuple(value):
    """``x`` -> ``(x, x)`` unless already iterable."""
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value, value)


def trunc_normal_(tensor: torch.Tensor, mean=0.0, std=1.0, a=-2.0, b=2.0) -> torch.Tensor:
    """Truncated normal init (delegates to torch)."""
    return torch.nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


def register_model(fn):
    """timm's registry decorator; registration is not needed here."""
    return fn


def connectedComponentsWithStats(image: np.ndarray, connectivity: int = 8):
    """(n_labels, labels int32, stats (n, 5) int32, centroids (n, 2)); label 0 = zeros.

    Labels are numbered in raster order of their first pixel, as OpenCV does; only the
    area column (last) of ``stats`` is filled, the only one upstream reads.
    """
    structure = np.ones((3, 3), int) if connectivity == 8 else None
    labels, count = ndimage.label(np.asarray(image) != 0, structure=structure)
    stats = np.zeros((count + 1, 5), dtype=np.int32)
    stats[:, 4] = np.bincount(labels.ravel(), minlength=count + 1)
    return count + 1, labels.astype(np.int32), stats, np.zeros((count + 1, 2))


class ToTensor:
    """HWC uint8 numpy image -> CHW float32 in [0, 1] (torchvision's rule for uint8)."""

    def __call__(self, picture: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(picture).transpose(2, 0, 1).copy()).float().div(255)


class Resize(torch.nn.Module):
    """torchvision's tensor ``Resize((h, w))``: bilinear, antialiased (its default for
    tensors since 0.17), no rounding for float images. Scriptable, as SAM 2 scripts it."""

    def __init__(self, size) -> None:
        super().__init__()
        self.size = [int(size[0]), int(size[1])]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        resized = torch.nn.functional.interpolate(
            image.unsqueeze(0), size=self.size, mode="bilinear", align_corners=False, antialias=True
        )
        return resized.squeeze(0)


class Normalize(torch.nn.Module):
    """``(x - mean) / std`` per channel of a CHW tensor. Scriptable."""

    def __init__(self, mean, std) -> None:
        super().__init__()
        self.mean = [float(value) for value in mean]
        self.std = [float(value) for value in std]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        return (image - mean) / std


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def install() -> None:
    """Register the stand-ins in ``sys.modules`` unless the real packages import."""
    try:
        import torchvision  # noqa: F401

        have_torchvision = True
    except Exception:
        have_torchvision = False
    if not have_torchvision:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        functional = _module(
            "torchvision.transforms.functional", resize=resize, to_pil_image=to_pil_image
        )
        boxes = _module(
            "torchvision.ops.boxes", batched_nms=batched_nms, box_area=box_area, nms=nms
        )
        sys.modules["torchvision"] = _module("torchvision")
        sys.modules["torchvision.transforms"] = _module(
            "torchvision.transforms",
            functional=functional,
            ToTensor=ToTensor,
            Resize=Resize,
            Normalize=Normalize,
        )
        sys.modules["torchvision.transforms.functional"] = functional
        sys.modules["torchvision.ops"] = _module("torchvision.ops", boxes=boxes)
        sys.modules["torchvision.ops.boxes"] = boxes
    if "timm" not in sys.modules:
        layers = _module(
            "timm.models.layers",
            DropPath=DropPath,
            to_2tuple=to_2tuple,
            trunc_normal_=trunc_normal_,
        )
        registry = _module("timm.models.registry", register_model=register_model)
        sys.modules["timm"] = _module("timm")
        sys.modules["timm.models"] = _module("timm.models", layers=layers, registry=registry)
        sys.modules["timm.models.layers"] = layers
        sys.modules["timm.models.registry"] = registry
    try:
        import cv2  # noqa: F401
    except ImportError:
        sys.modules["cv2"] = _module(
            "cv2", connectedComponentsWithStats=connectedComponentsWithStats
        )
