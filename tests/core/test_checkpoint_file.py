"""Checkpoint files that cannot be read say why and what to do (core/checkpoint_file.py)."""

from __future__ import annotations

import argparse
import pickle
import re

import pytest
import torch

from napari_segany.core import loading
from napari_segany.core.checkpoint_file import converted_path
from napari_segany.core.errors import CheckpointError

WEIGHTS = {"image_encoder.pos_embed": torch.arange(6.0).reshape(1, 1, 2, 3)}


class WholeModel(torch.nn.Module):
    """A model saved whole (``torch.save(model)``): loading it needs this class."""

    def __init__(self) -> None:
        super().__init__()
        self.image_encoder = torch.nn.Linear(2, 3)


def _refusal(path) -> str:
    with pytest.raises(CheckpointError) as caught:
        loading.read_state_dict(path)
    return str(caught.value)


def _run_advice(message: str) -> None:
    """Run the conversion snippet of a refusal, as a user who trusts the file would."""
    snippet = message.split("in Python:\n", 1)[1].rsplit("and pass", 1)[0]
    exec(compile("\n".join(line[4:] for line in snippet.splitlines()), "advice", "exec"), {})


@pytest.mark.parametrize(
    "content",
    [
        {"model": WEIGHTS, "args": argparse.Namespace(lr=1e-4)},
        {"model_state": WEIGHTS, "config": WholeModel},
    ],
    ids=["Namespace beside the weights", "a class beside the weights"],
)
def test_pickled_checkpoint_is_refused_with_a_conversion_that_works(tmp_path, content):
    path = tmp_path / "finetuned.pt"
    torch.save(content, path)
    message = _refusal(path)
    assert "arbitrary code execution" in message and "refused for safety" in message
    assert "trust" in message and "weights_only=False" in message
    assert "truncated" not in message
    _run_advice(message)  # the user's trusted conversion ...
    converted = loading.read_state_dict(converted_path(path))  # ... then loads safely
    assert torch.equal(converted["image_encoder.pos_embed"], WEIGHTS["image_encoder.pos_embed"])


def test_whole_model_saved_with_torch_save_is_refused_and_convertible(tmp_path):
    path = tmp_path / "whole.pth"
    model = WholeModel()
    torch.save(model, path)
    message = _refusal(path)
    assert re.search(r"WholeModel", message) and "refused for safety" in message
    _run_advice(message)
    converted = loading.read_state_dict(converted_path(path))
    assert torch.equal(converted["image_encoder.weight"], model.image_encoder.weight)


def test_plain_python_pickle_is_refused_for_safety_not_called_corrupt(tmp_path):
    path = tmp_path / "pickled.pt"
    with open(path, "wb") as handle:
        pickle.dump({"model": WEIGHTS}, handle, protocol=4)
    message = _refusal(path)
    assert "plain Python pickle" in message and "refused for safety" in message
    _run_advice(message)
    assert loading.read_state_dict(converted_path(path)).keys() == WEIGHTS.keys()


def test_random_bytes_are_still_called_corrupt(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(range(5, 200)) * 4)
    message = _refusal(path)
    assert "truncated or not a PyTorch checkpoint" in message and "safety" not in message


def test_a_directory_is_named_a_directory(tmp_path):
    folder = tmp_path / "vit_b_lm"
    folder.mkdir()
    (folder / "best.pt").write_bytes(b"")
    message = _refusal(folder)
    assert "is a directory" in message and "best.pt" in message
    assert "does not exist" not in message
    with pytest.raises(CheckpointError, match="is a directory"):
        loading.load_model(folder, device="cpu")
