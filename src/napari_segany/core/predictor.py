"""Prompts in image coordinates -> masks at image resolution.

This is the one place where napari's (row, col) = (y, x) becomes SAM's (x, y), and where
prompts are scaled from the user's plane to the model frame (long side ``image_size``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .channels import COLOUR_RULE, ChannelRule, describe_channels, with_signal
from .embeddings import Embedding
from .errors import ImageError, InputError, PromptError
from .image import model_input_hw, preprocess, preprocess_square, to_model_rgb, validate_plane
from .model.sam import Sam

if TYPE_CHECKING:
    from .model.sam2 import Sam2
from .prompts import check_boxes, check_mask_input, check_points, to_model_frame
from .results import SegmentResult
from .upscale_x4 import threshold_upscaled_x4

logger = logging.getLogger(__name__)

_UPSAMPLE_CHUNK_VALUES = 1 << 24  # float32 values interpolated at once (64 MiB)
_X4_CHUNK_MASKS = 16  # masks enlarged at once by threshold_upscaled_x4 (~2 MiB each)


class Predictor:
    """Embed planes and predict masks from point / box / mask prompts.

    Parameters
    ----------
    model : Sam or Sam2
        The network; moved to ``device`` and put in eval mode. Its ``square_frame``
        says how planes map to its frame (SAM: long side, padded; SAM 2: squeezed to
        the square) and back.
    device : torch.device or str
        Where the model runs.
    precision : {"fp32", "bf16"}
        ``"bf16"`` runs the image encoder under bf16 autocast (embeddings are still
        stored as float32); the prompt path always runs in float32.
    model_key : str
        Name stored in every :class:`Embedding` this predictor computes.
    max_upscale : float, optional
        The model's largest enlargement of a plane into its frame (``ModelPlugin``;
        smaller planes are padded); None: SAM's rule, the long side fills the frame.
    name : str
        The model's name (registry name, or what a session was given).
    channel_rule : ChannelRule
        How the model reads a plane's channels (``ModelPlugin.channel_rule``):
        :meth:`rgb` and :meth:`describe_channels` apply it.
    """

    def __init__(
        self,
        model: Sam | Sam2,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        model_key: str = "",
        max_upscale: float | None = None,
        name: str = "",
        channel_rule: ChannelRule = COLOUR_RULE,
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f'precision must be "fp32" or "bf16", got {precision!r}')
        if max_upscale is not None and not max_upscale > 0:
            raise ValueError(f"max_upscale must be a positive number or None, got {max_upscale}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.precision = precision
        self.model_key = model_key
        self.max_upscale = max_upscale
        self.name = name
        self.channel_rule = channel_rule

    def rgb(
        self,
        image: np.ndarray,
        contrast_limits=None,
        channels: Sequence[int] | None = None,
        channel_axis: int | None = None,
    ) -> np.ndarray:
        """The plane as this model sees it, (H, W, 3) uint8: ``core.image.to_model_rgb``
        with :attr:`channel_rule`; arguments as in ``SegAny.set_image``."""
        return to_model_rgb(image, contrast_limits, channels, channel_axis, self.channel_rule)

    def describe_channels(
        self, plane, channels: Sequence[int] | None = None, channel_axis: int | None = None
    ) -> str:
        """One line saying how a plane becomes this model's R, G, B (e.g. ``"channel 0
        as grey (unused: channel 1; ...)"``), for the widget and logs. ``plane``: the
        array (its empty channels are seen) or only its shape."""
        signal = None
        if isinstance(plane, np.ndarray):
            signal = with_signal(validate_plane(plane, None, channels, channel_axis))
        shape = plane.shape if isinstance(plane, np.ndarray) else plane
        return describe_channels(shape, channels, self.channel_rule, signal, channel_axis)

    def embed(self, rgb_uint8: np.ndarray, enlarge: float = 1.0) -> Embedding:
        """Compute the embedding of a ``(H, W, 3)`` uint8 RGB plane (see ``to_model_rgb``).

        Parameters
        ----------
        rgb_uint8 : numpy.ndarray, (H, W, 3) uint8
        enlarge : float
            For a model with :attr:`max_upscale`: this view may be enlarged ``enlarge``
            times more than a plane (a zoomed tile of a plane: its zoom). No effect
            under SAM's rule.

        Raises
        ------
        ImageError
            If the array is not ``(H, W, 3)`` uint8.
        """
        rgb = np.asarray(rgb_uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
            raise ImageError(
                f"Predictor.embed needs an (H, W, 3) uint8 RGB image, got shape {rgb.shape} "
                f"and dtype {rgb.dtype}; convert planes with core.image.to_model_rgb first."
            )
        image_size = self.model.image_size
        max_upscale = None if self.max_upscale is None else self.max_upscale * enlarge
        mean = self.model.pixel_mean.flatten().tolist()
        std = self.model.pixel_std.flatten().tolist()
        original_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        if self.model.square_frame:  # SAM 2: the plane fills the square frame
            pixels = preprocess_square(rgb, image_size, self.device, mean, std)
            input_hw = (image_size, image_size)
        else:
            pixels = preprocess(rgb, image_size, self.device, mean, std, max_upscale)
            input_hw = model_input_hw(original_hw, image_size, max_upscale)
        with torch.inference_mode(), self.autocast():
            features = self.model.encode(pixels)
        return Embedding(
            features=features.float().contiguous()
            if isinstance(features, torch.Tensor)
            else features.float(),
            original_hw=original_hw,
            input_hw=input_hw,
            model_key=self.model_key,
        )

    def autocast(self):
        """The context a per-plane network runs in (the image encoder, an instance
        decoder): bf16 autocast under ``precision="bf16"``, else nothing."""
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def predict(
        self,
        embedding: Embedding,
        points_yx: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box_yxyx: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> SegmentResult:
        """Predict masks for prompts given in the plane's (row, col) pixel coordinates.

        Parameters
        ----------
        embedding : Embedding
            From :meth:`embed`, for the plane the prompts refer to.
        points_yx : array (P, 2) float, optional
            Point prompts as (y, x) = (row, col), with ``0 <= y < H`` and ``0 <= x < W``.
            An empty (0, 2) array means no points.
        labels : array (P,) int, optional
            1 for a positive point (on the object), 0 for a negative one.
        box_yxyx : array (4,) or (N, 4) float, optional
            Box(es) as (y0, x0, y1, x1) with ``0 <= y0 <= y1 <= H`` and
            ``0 <= x0 <= x1 <= W`` (edges may lie on the border: end-exclusive boxes such
            as ``(0, 0, H, W)`` are valid; see :mod:`.prompts`). N boxes segment N
            objects in one batch (points, if given, apply to each).
        mask_input : array (256, 256), (1, 256, 256) or (N, 1, 256, 256), optional
            Low-resolution logits of a previous prediction, to refine it.
        multimask : bool
            Return SAM's three ambiguity candidates (K = 3) instead of one (K = 1).

        Returns
        -------
        SegmentResult
            Arrays with a leading N axis only when ``box_yxyx`` was given as (N, 4).

        Raises
        ------
        PromptError
            On a missing, mis-shaped, non-finite or out-of-image prompt; nothing changes.
        InputError
            If ``embedding`` was computed by another model.
        """
        if embedding.model_key and self.model_key and embedding.model_key != self.model_key:
            raise InputError(
                f"This embedding was computed by model {embedding.model_key!r}, not by "
                f"{self.model_key!r}; embed the plane again with this model."
            )
        height, width = embedding.original_hw
        points, point_labels = check_points(points_yx, labels, (height, width))
        boxes, batched = check_boxes(box_yxyx, (height, width))
        if points is None and boxes is None:
            raise PromptError(
                "Give at least one prompt: a point (points_yx with labels) or a box "
                "(box_yxyx); mask_input only refines such a prompt."
            )
        n_objects = 1 if boxes is None else boxes.shape[0]
        low_res_hw = tuple(4 * side for side in embedding.grid_hw)
        masks_in = check_mask_input(mask_input, n_objects, low_res_hw)
        logits, scores = self._decode(
            embedding, points, point_labels, boxes, masks_in, n_objects, multimask
        )
        masks = self._plane_masks(logits, embedding)
        limit = self.model.returned_logit_limit
        if limit is not None:  # after the masks were made from the unclamped logits
            logits = logits.clamp(-limit, limit)
        scores_np = scores.float().cpu().numpy()
        logits_np = logits.float().cpu().numpy()
        if not batched:
            return SegmentResult(masks[0], scores_np[0], logits_np[0])
        return SegmentResult(masks, scores_np, logits_np)

    def _plane_masks(self, logits: torch.Tensor, embedding: Embedding) -> np.ndarray:
        """(N, K, H, W) bool masks of (N, K, h, w) logits, by the model's frame rule."""
        if self.model.square_frame:  # SAM 2: one bilinear resize to the plane
            return square_masks(logits, embedding.original_hw)
        return upscale_masks(
            logits, embedding.input_hw, embedding.original_hw, self.model.image_size
        )

    def _decode(
        self,
        embedding: Embedding,
        points: np.ndarray | None,
        point_labels: np.ndarray | None,
        boxes: np.ndarray | None,
        masks_in: np.ndarray | None,
        n_objects: int,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale to the model frame, flip (y, x) -> (x, y), and run ``Sam.decode``.

        Returns ``(low_res_logits (N, K, 256, 256), iou_predictions (N, K))``.
        """
        device = self.device
        points_xy = labels_t = boxes_xyxy = masks_t = None
        if points is not None:
            model_xy = to_model_frame(points, embedding.input_hw, embedding.original_hw)
            points_xy = torch.as_tensor(model_xy, dtype=torch.float32, device=device)
            points_xy = points_xy[None].expand(n_objects, -1, -1)
            labels_t = torch.as_tensor(point_labels, dtype=torch.int64, device=device)
            labels_t = labels_t[None].expand(n_objects, -1)
        if boxes is not None:
            model_xyxy = to_model_frame(boxes, embedding.input_hw, embedding.original_hw)
            boxes_xyxy = torch.as_tensor(model_xyxy, dtype=torch.float32, device=device)
        if masks_in is not None:
            masks_t = torch.as_tensor(masks_in, dtype=torch.float32, device=device)
        features = embedding.features.to(device)
        with torch.inference_mode():
            return self.model.decode(
                features, points_xy, labels_t, boxes_xyxy, masks_t, bool(multimask)
            )


def upscale_masks(
    low_res_logits: torch.Tensor,
    input_hw: tuple[int, int],
    original_hw: tuple[int, int],
    image_size: int = 1024,
) -> np.ndarray:
    """Threshold low-resolution logits at the plane's resolution (``logits > 0``).

    Masks are upscaled a few at a time by :func:`iter_upscaled_logits` (bounded memory)
    and thresholded straight into a bool array; on the CPU, a plane whose size is the
    model frame's (one exact 4x enlargement) goes through
    :func:`~.upscale_x4.threshold_upscaled_x4` instead (same masks, no float image).

    Parameters
    ----------
    low_res_logits : torch.Tensor, (N, K, h, w)
        Decoder logits (256 x 256 for SAM).
    input_hw : (int, int)
        (h', w'), the unpadded plane size in the model frame.
    original_hw : (int, int)
        (H, W), the plane size.
    image_size : int
        Side of the square model frame.

    Returns
    -------
    numpy.ndarray, (N, K, H, W) bool
    """
    n_objects, n_masks, low_h, low_w = low_res_logits.shape
    height, width = original_hw
    flat = low_res_logits.reshape(n_objects * n_masks, low_h, low_w)
    masks = np.empty((flat.shape[0], height, width), dtype=np.bool_)
    exact_x4 = tuple(input_hw) == tuple(original_hw) and image_size == 4 * low_h == 4 * low_w
    if exact_x4 and flat.device.type == "cpu":  # one enlargement, straight to the plane
        with torch.inference_mode():
            for start in range(0, flat.shape[0], _X4_CHUNK_MASKS):
                chunk = flat[start : start + _X4_CHUNK_MASKS].float()
                threshold_upscaled_x4(chunk, original_hw, out=masks[start : start + len(chunk)])
        return masks.reshape(n_objects, n_masks, height, width)
    with torch.inference_mode():
        for start, logits in iter_upscaled_logits(flat, input_hw, original_hw, image_size):
            target = masks[start : start + logits.shape[0]]
            if logits.device.type == "cpu":
                # numpy thresholds float32 into bool several times faster than torch.gt
                np.greater(logits.numpy(), 0.0, out=target)
            else:
                target[...] = (logits > 0).cpu().numpy()
    return masks.reshape(n_objects, n_masks, height, width)


def square_masks(low_res_logits: torch.Tensor, original_hw: tuple[int, int]) -> np.ndarray:
    """SAM 2's masks: low-resolution logits (N, K, h, w) resized bilinearly straight to
    the plane (the frame was the whole plane, squeezed) and thresholded at 0, a few
    masks at a time: (N, K, H, W) bool."""
    n_objects, n_masks, low_h, low_w = low_res_logits.shape
    flat = low_res_logits.reshape(n_objects * n_masks, low_h, low_w)
    masks = np.empty((flat.shape[0], *original_hw), dtype=np.bool_)
    with torch.inference_mode():
        chunks = iter_upscaled_logits(flat, original_hw, original_hw, square=True)
        for start, logits in chunks:
            masks[start : start + len(logits)] = (logits > 0).cpu().numpy()
    return masks.reshape(n_objects, n_masks, *original_hw)


def iter_upscaled_logits(
    low_res_logits: torch.Tensor,
    input_hw: tuple[int, int],
    original_hw: tuple[int, int],
    image_size: int = 1024,
    max_values: int = _UPSAMPLE_CHUNK_VALUES,
    square: bool = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Full-resolution float logits of M masks, a chunk at a time (bounded memory).

    ``low_res_logits`` is (M, h, w); ``input_hw``, ``original_hw`` and ``image_size``
    are as in :func:`upscale_masks`; a chunk holds at most ``max_values`` floats (but
    at least one mask).

    Yields
    ------
    start : int
        Index of the chunk's first mask.
    logits : torch.Tensor, (m, H, W) float32
        Chunk ``low_res_logits[start : start + m]`` at the plane's resolution.
    """
    height, width = original_hw
    largest = max(height * width, input_hw[0] * input_hw[1])
    step = max(1, max_values // largest)
    for start in range(0, low_res_logits.shape[0], step):
        chunk = low_res_logits[start : start + step].float()
        yield start, upscale_logits(chunk, input_hw, original_hw, image_size, square)


def upscale_logits(
    low_res: torch.Tensor,
    input_hw: tuple[int, int],
    out_hw: tuple[int, int],
    image_size: int,
    square: bool = False,
) -> torch.Tensor:
    """Low-resolution logits (m, h, w) -> (m, H, W) float logits at plane resolution.

    With ``square`` (a model whose frame is the whole plane squeezed, SAM 2): one
    bilinear resize straight to (H, W), as SAM 2 does. Otherwise SAM's rule, with the
    same numbers as upstream SAM (bilinear to the ``image_size`` frame, crop the padding,
    bilinear to (H, W)) without its waste: the first resize produces only the unpadded
    (h', w') region (rows ``i`` sit at low-res ``(i + 0.5) / 4 - 0.5`` either way, so this
    equals resize-then-crop); the second is skipped when (h', w') == (H, W) (where it is
    the identity); and when (h', w') == 2 (H, W) (e.g. 512 x 512 planes) both compose
    to one bilinear resize with factor ``image_size / (2 h)`` -- both model-frame pixels
    averaged by the second step lie in the same low-res cell -- computed directly
    (results differ only by float rounding). All m masks go through one resize call,
    as a batch of m one-channel planes: with several threads that gives the same bits
    as m channels of one image (upstream's layout), and with one thread it is ~3x
    faster (the one-thread kernel for several channels is slow and rounds differently).
    """
    chunk = low_res.float()[:, None]  # (m, 1, h, w): masks as a batch
    if square:
        return F.interpolate(chunk, out_hw, mode="bilinear", align_corners=False)[:, 0]
    low_h, low_w = low_res.shape[-2:]
    if tuple(2 * s for s in out_hw) == tuple(input_hw):
        scales = (image_size / low_h / 2, image_size / low_w / 2)
        return torch.ops.aten.upsample_bilinear2d(chunk, list(out_hw), False, *scales)[:, 0]
    model_frame = torch.ops.aten.upsample_bilinear2d(
        chunk, list(input_hw), False, image_size / low_h, image_size / low_w
    )
    if tuple(input_hw) != tuple(out_hw):
        model_frame = F.interpolate(model_frame, out_hw, mode="bilinear", align_corners=False)
    return model_frame[:, 0]
