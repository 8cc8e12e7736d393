"""Architecture records and the builder that turns one into a :class:`~.sam.Sam`.

An :class:`Architecture` says which image encoder to build with which arguments, plus
the (rarely changed) prompt-encoder and mask-decoder sizes. The four official models
are in :data:`ARCHITECTURES`; a custom (e.g. smaller) model is one more record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from ..errors import InputError
from .conv_encoder import CONV_IMAGE_SIZE, CONV_STRIDE, ConvEncoder
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer

EncoderKind = Literal["vit", "tiny_vit", "conv"]
_ENCODERS: dict[str, type[nn.Module]] = {
    "vit": ImageEncoderViT,
    "tiny_vit": TinyViT,
    "conv": ConvEncoder,
}
# Set by build_sam from its own arguments, never by an Architecture.
_RESERVED_ENCODER_ARGS = ("img_size", "out_chans")
TINY_VIT_STRIDE = 16


def _frozen(value: Any) -> Any:
    """Lists (also nested) -> tuples, so that records stay hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(item) for item in value)
    return value


@dataclass(frozen=True)
class Architecture:
    """Everything needed to build a SAM-family model (but not its weights).

    Parameters
    ----------
    name : str
        Short name, e.g. ``"vit_b"``.
    encoder : {"vit", "tiny_vit", "conv"}
        Image encoder class: ``ImageEncoderViT``, ``TinyViT`` or ``ConvEncoder`` (the
        built-in model's small CNN).
    encoder_kwargs : mapping or tuple of (str, value) pairs
        Keyword arguments of the encoder, except ``img_size`` and ``out_chans`` (which
        come from ``build_sam``'s ``image_size`` and from ``prompt_embed_dim``). Stored
        as a sorted tuple of pairs with lists turned into tuples; read it back as a
        dict with :attr:`encoder_options`.
    prompt_embed_dim : int
        Channels of the image embedding, prompt tokens and decoder (256 for SAM).
    mask_in_chans : int
        Hidden channels of the prompt encoder's mask downscaling.
    decoder_depth, decoder_num_heads, decoder_mlp_dim : int
        Two-way transformer blocks, heads and MLP width.
    num_multimask_outputs, iou_head_depth, iou_head_hidden_dim : int
        Mask decoder outputs and IoU head size.
    description : str
        One line for humans.
    """

    name: str
    encoder: EncoderKind
    encoder_kwargs: tuple[tuple[str, Any], ...] = field(default=())
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    description: str = ""

    def __post_init__(self) -> None:
        if self.encoder not in _ENCODERS:
            raise InputError(
                f"Architecture {self.name!r}: unknown encoder {self.encoder!r}; "
                f"use one of {sorted(_ENCODERS)}."
            )
        pairs = self.encoder_kwargs
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        normalised = tuple(sorted((str(key), _frozen(value)) for key, value in items))
        reserved = [key for key, _ in normalised if key in _RESERVED_ENCODER_ARGS]
        if reserved:
            raise InputError(
                f"Architecture {self.name!r}: do not set {reserved} in encoder_kwargs; "
                "the input size comes from build_sam(image_size=...) and the output "
                "channels from prompt_embed_dim."
            )
        object.__setattr__(self, "encoder_kwargs", normalised)

    @property
    def encoder_options(self) -> dict[str, Any]:
        """``encoder_kwargs`` as a fresh dict."""
        return dict(self.encoder_kwargs)

    @property
    def embedding_stride(self) -> int:
        """Input pixels per embedding cell: the ViT patch size, 16 for TinyViT, 8 for
        the convolutional encoder."""
        if self.encoder == "vit":
            return int(self.encoder_options.get("patch_size", 16))
        if self.encoder == "conv":
            return CONV_STRIDE
        return TINY_VIT_STRIDE

    @property
    def default_image_size(self) -> int:
        """Model input side used when none is given: 1024 (SAM), 512 for the CNN."""
        return CONV_IMAGE_SIZE if self.encoder == "conv" else 1024


def _sam_vit(name: str, dim: int, depth: int, heads: int, global_blocks: tuple, text: str):
    options = {
        "patch_size": 16,
        "embed_dim": dim,
        "depth": depth,
        "num_heads": heads,
        "mlp_ratio": 4.0,
        "window_size": 14,
        "global_attn_indexes": global_blocks,
    }
    return Architecture(name, "vit", options, description=text)


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        _sam_vit("vit_b", 768, 12, 12, (2, 5, 8, 11), "SAM ViT-B image encoder (91M)"),
        _sam_vit("vit_l", 1024, 24, 16, (5, 11, 17, 23), "SAM ViT-L image encoder (308M)"),
        _sam_vit("vit_h", 1280, 32, 16, (7, 15, 23, 31), "SAM ViT-H image encoder (636M)"),
        Architecture(
            "vit_t",
            "tiny_vit",
            {
                "embed_dims": (64, 128, 160, 320),
                "depths": (2, 2, 6, 2),
                "num_heads": (2, 4, 5, 10),
                "window_sizes": (7, 7, 14, 7),
                "mlp_ratio": 4.0,
            },
            description="MobileSAM: TinyViT-5M image encoder, SAM decoder",
        ),
        Architecture(
            "conv_s",
            "conv",
            {
                "widths": (32, 64, 128),
                "stage_dilations": ((1,), (1, 2, 4, 8)),
            },
            prompt_embed_dim=128,
            decoder_mlp_dim=512,
            iou_head_hidden_dim=128,
            description="napari-segany built-in: residual CNN encoder (stride 8), "
            "SAM prompt encoder and two-way-transformer decoder at width 128",
        ),
    )
}


def resolve_architecture(arch: str | Architecture) -> Architecture:
    """Return ``arch`` itself or the registered record of that name.

    Raises
    ------
    InputError
        If the name is not registered.
    """
    if isinstance(arch, Architecture):
        return arch
    if isinstance(arch, str) and arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    raise InputError(
        f"Unknown model architecture {arch!r}; choose one of {sorted(ARCHITECTURES)} "
        "or pass an Architecture record."
    )


def build_sam(arch: str | Architecture, image_size: int | None = None) -> Sam:
    """Build a randomly initialised :class:`Sam` of architecture ``arch``, in eval mode.

    Parameters
    ----------
    arch : str or Architecture
        A name of :data:`ARCHITECTURES` or a record.
    image_size : int, optional
        Side of the square model input, a multiple of the encoder stride; default
        :attr:`Architecture.default_image_size` (1024 for SAM).

    Returns
    -------
    Sam
        State-dict keys and shapes equal those of the official checkpoint of ``arch``.
    """
    arch = resolve_architecture(arch)
    if image_size is None:
        image_size = arch.default_image_size
    stride = arch.embedding_stride
    if not isinstance(image_size, int) or image_size <= 0 or image_size % stride:
        raise InputError(
            f"image_size must be a positive multiple of {stride} for {arch.name!r}, "
            f"got {image_size!r}; SAM models use 1024."
        )
    dim = arch.prompt_embed_dim
    grid = image_size // stride
    encoder = _ENCODERS[arch.encoder](img_size=image_size, out_chans=dim, **arch.encoder_options)
    prompt_encoder = PromptEncoder(dim, (grid, grid), (image_size, image_size), arch.mask_in_chans)
    transformer = TwoWayTransformer(
        arch.decoder_depth, dim, arch.decoder_num_heads, arch.decoder_mlp_dim
    )
    mask_decoder = MaskDecoder(
        dim,
        arch.num_multimask_outputs,
        arch.iou_head_depth,
        arch.iou_head_hidden_dim,
        transformer=transformer,
    )
    return Sam(encoder, prompt_encoder, mask_decoder, image_size=image_size).eval()
