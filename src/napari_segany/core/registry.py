"""Registry of known checkpoints: their names, architectures, URLs, hashes and plug-ins.

Files (the cache folder, download, import, verification) are in :mod:`.checkpoints`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotFoundError


@dataclass(frozen=True)
class ModelEntry:
    """One downloadable checkpoint.

    Attributes
    ----------
    name
        Registry name users type, e.g. ``"vit_b_lm"``.
    architecture
        Name of the network architecture in ``core.model.build.ARCHITECTURES``
        (``"vit_b"``, ``"vit_l"``, ``"vit_h"`` or ``"vit_t"``).
    url
        Where the file is downloaded from; empty for a model shipped inside the
        package (see :attr:`packaged`).
    xxh128
        Hex xxh128 hash of the file (32 hex digits); empty when :attr:`sha256` is given.
    filename
        Name of the file in the cache folder.
    description
        One line for humans.
    plugin
        ``"package.module:NAME"`` of the model's ``core.plugins.ModelPlugin`` (its
        prompt refiners, everything-mode proposers and defaults); empty for SAM's
        weights, whose results stay the reference code's.
    sha256
        Hex SHA-256 of the file, for files whose published hash is one (SAM 2.1).
    """

    name: str
    architecture: str
    url: str
    xxh128: str
    filename: str
    description: str
    plugin: str = ""
    sha256: str = ""

    @property
    def hash_name(self) -> str:
        """The algorithm of the registered hash: ``"sha256"`` or ``"xxh128"``."""
        return "sha256" if self.sha256 else "xxh128"

    @property
    def hash_hex(self) -> str:
        """The registered hash, hex."""
        return self.sha256 or self.xxh128

    @property
    def packaged(self) -> bool:
        """The file ships inside the package (``napari_segany/models/``): no download."""
        return not self.url

    @property
    def known_hash(self) -> str:
        """The hash in pooch's ``"alg:hex"`` notation."""
        return f"{self.hash_name}:{self.hash_hex}"


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_BIOIMAGEIO_URL = "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"

PACKAGED_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_MODEL = "builtin"

_ENTRIES = (
    ModelEntry(
        "builtin",
        "conv_s",
        "",
        "1b81cbce8ecc22cb6cab4b5a2ead9c93",
        "builtin/builtin.pt",
        "Built-in small model trained on synthetic nuclei/cell images (works offline; "
        "use SAM or micro-sam weights for best results), 9.8 MB",
        plugin="napari_segany.models.builtin:PLUGIN",
    ),
    ModelEntry(
        "vit_b",
        "vit_b",
        _SAM_URL + "sam_vit_b_01ec64.pth",
        "6923c33df3637b6a922d7682bfc9a86b",
        "sam_vit_b_01ec64.pth",
        "Segment Anything ViT-B (Meta), general purpose, 375 MB",
    ),
    ModelEntry(
        "vit_l",
        "vit_l",
        _SAM_URL + "sam_vit_l_0b3195.pth",
        "a82beb3c660661e3dd38d999cc860e9a",
        "sam_vit_l_0b3195.pth",
        "Segment Anything ViT-L (Meta), general purpose, 1.2 GB",
    ),
    ModelEntry(
        "vit_h",
        "vit_h",
        _SAM_URL + "sam_vit_h_4b8939.pth",
        "97698fac30bd929c2e6d8d8cc15933c2",
        "sam_vit_h_4b8939.pth",
        "Segment Anything ViT-H (Meta), largest and slowest, 2.5 GB",
    ),
    ModelEntry(
        "vit_t",
        "vit_t",
        "https://owncloud.gwdg.de/index.php/s/TuDzuwVDHd1ZDnQ/download",
        "8eadbc88aeb9d8c7e0b4b60c3db48bd0",
        "mobile_sam.pt",
        "MobileSAM (TinyViT encoder), fast on CPU, 40 MB",
    ),
    ModelEntry(
        "vit_b_lm",
        "vit_b",
        _BIOIMAGEIO_URL + "diplomatic-bug/1.2/files/vit_b.pt",
        "fe9252a29f3f4ea53c15a06de471e186",
        "vit_b_lm.pt",
        "micro-sam ViT-B fine-tuned for light microscopy",
    ),
    ModelEntry(
        "vit_t_lm",
        "vit_t",
        _BIOIMAGEIO_URL + "faithful-chicken/1.1/files/vit_t.pt",
        "72ec5074774761a6e5c05a08942f981e",
        "vit_t_lm.pt",
        "micro-sam ViT-T (MobileSAM) fine-tuned for light microscopy",
    ),
    ModelEntry(
        "vit_l_lm",
        "vit_l",
        _BIOIMAGEIO_URL + "idealistic-rat/1.2/files/vit_l.pt",
        "017f20677997d628426dec80a8018f9d",
        "vit_l_lm.pt",
        "micro-sam ViT-L fine-tuned for light microscopy",
    ),
    ModelEntry(
        "vit_b_em_organelles",
        "vit_b",
        _BIOIMAGEIO_URL + "noisy-ox/1.2/files/vit_b.pt",
        "f3bf2ed83d691456bae2c3f9a05fb438",
        "vit_b_em_organelles.pt",
        "micro-sam ViT-B fine-tuned for organelles in electron microscopy",
    ),
)


def _sam2(size: str, sha256: str, text: str) -> ModelEntry:
    name = f"sam2.1_{size}"
    filename = f"sam2.1_hiera_{size}.pt"
    return ModelEntry(name, name, _SAM2_URL + filename, "", filename, text, sha256=sha256)


_SAM2_ENTRIES = (
    _sam2(
        "tiny",
        "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
        "SAM 2.1 Hiera-T (Meta), the fastest SAM 2.1, 156 MB",
    ),
    _sam2(
        "small",
        "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
        "SAM 2.1 Hiera-S (Meta), 184 MB",
    ),
    _sam2(
        "base_plus",
        "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
        "SAM 2.1 Hiera-B+ (Meta), 323 MB",
    ),
    _sam2(
        "large",
        "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
        "SAM 2.1 Hiera-L (Meta), the most accurate SAM 2.1, 898 MB",
    ),
)

REGISTRY: Mapping[str, ModelEntry] = {entry.name: entry for entry in (*_ENTRIES, *_SAM2_ENTRIES)}


def _decoder(model: str, place: str, xxh128: str) -> ModelEntry:
    size = REGISTRY[model].architecture
    return ModelEntry(
        f"{model}_decoder",
        INSTANCE_DECODER,
        f"{_BIOIMAGEIO_URL}{place}/files/{size}_decoder.pt",
        xxh128,
        f"{model}_decoder.pt",
        f"micro-sam's instance decoder (foreground and distances) for {model}",
    )


INSTANCE_DECODER = "instance_decoder"  # the architecture of a decoder file
# micro-sam's instance decoders, fetched with (and named after) the model they decode
# (micro-sam's registry: file places and xxh128 hashes).
DECODERS: Mapping[str, ModelEntry] = {
    "vit_b_lm": _decoder("vit_b_lm", "diplomatic-bug/1.2", "708b15ac620e235f90bb38612c4929ba"),
    "vit_t_lm": _decoder("vit_t_lm", "faithful-chicken/1.1", "3e914a5f397b0312cdd36813031f8823"),
    "vit_l_lm": _decoder("vit_l_lm", "idealistic-rat/1.2", "2faeafa03819dfe03e7c46a44aaac64a"),
    "vit_b_em_organelles": _decoder(
        "vit_b_em_organelles", "noisy-ox/1.2", "bb6398956a6b0132c26b631c14f95ce2"
    ),
}


def get_entry(name_or_entry: str | ModelEntry) -> ModelEntry:
    """The registry entry for a name (or the entry itself).

    Raises
    ------
    ModelNotFoundError
        ``name_or_entry`` is not a registered model name.
    """
    if isinstance(name_or_entry, ModelEntry):
        return name_or_entry
    entry = REGISTRY.get(name_or_entry) if isinstance(name_or_entry, str) else None
    if entry is None:
        raise ModelNotFoundError(
            f"Unknown model {name_or_entry!r}. Known models: {', '.join(REGISTRY)}. "
            "To use another checkpoint, pass the path of its file instead of a name."
        )
    return entry
