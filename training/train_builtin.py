"""Train the built-in model (architecture ``conv_s``) on generated images.

One command reproduces the shipped weights (2 CPU cores, see docs/models.md)::

    PYTHONPATH=src .venv/bin/python -m training.train_builtin

Steps: draw the training windows ahead (cached in ``training/out/``), train with
SAM's recipe (prompt sampling of ``training/prompts.py``, loss of
``training/losses.py``), write ``training/out/builtin.pt`` and, with ``--export``, the
packaged file ``src/napari_segany/models/builtin.pt``.

The model sees images in a 512 px frame; training runs on 256 px windows of that frame
(a quarter of the pixels), with each window placed at a random offset so that the
positional encoding of points, boxes and embedding cells is exactly that of the full
frame. Everything is seeded; bit-exact repetition also needs the same torch build and
thread count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_segany.core.image import resize_longest_side
from napari_segany.core.loading import load_model
from napari_segany.core.model.build import ARCHITECTURES, Architecture, build_sam
from napari_segany.core.model.conv_encoder import CONV_IMAGE_SIZE
from napari_segany.core.model.foreground_head import ForegroundHead
from napari_segany.core.model.sam import PIXEL_MEAN_RGB, PIXEL_STD_RGB, Sam

from .data import WindowSet, load_or_draw
from .losses import FOCAL_GAMMA, FOCAL_WEIGHT, prompt_loss
from .prompts import as_tensors, correction_clicks, sample_prompts
from .warm_start import (
    ATTENTION_SCALE,
    auxiliary_loss,
    local_attention_init,
    set_position_frequencies,
)

logger = logging.getLogger("train_builtin")
ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ROOT / "src" / "napari_segany" / "models" / "builtin.pt"
FRAME_FIRST_INDEX = 500_000  # frames are drawn from seeds no window uses
ZOOM_RANGE = (0.5, 2.0)  # an image of 256 px is enlarged 2x into the 512 px frame
CROP_MIN = 64
HEAD_STEPS, HEAD_HIDDEN_LAYERS, HEAD_LR = 1600, 2, 3e-3
HEAD_CONTACT = (0, 1.0)  # (reach px, weight) of the contact band, phase 3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--encoder-steps",
        type=int,
        default=2000,
        help="first steps that train only the encoder, on the auxiliary dense loss",
    )
    parser.add_argument("--steps", type=int, default=2900, help="steps with prompts")
    parser.add_argument("--batch", type=int, default=4, help="windows per step")
    parser.add_argument("--objects", type=int, default=12, help="prompted objects per window")
    parser.add_argument("--windows", type=int, default=2400, help="windows drawn ahead")
    parser.add_argument("--window-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=400, help="full 512 px frames drawn")
    parser.add_argument(
        "--frame-steps", type=int, default=500, help="last steps on full frames (batch 1)"
    )
    parser.add_argument("--frame-objects", type=int, default=24)
    parser.add_argument("--zoom-rate", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--device",
        default="cpu",
        help="'cuda' for experiments on a GPU; the shipped file is trained on the CPU",
    )
    parser.add_argument("--draw-workers", type=int, default=2, help="processes drawing data")
    parser.add_argument("--aux-weight", type=float, default=1.0)
    parser.add_argument("--correction-rate", type=float, default=0.4)
    parser.add_argument("--focal-weight", type=float, default=FOCAL_WEIGHT)
    parser.add_argument("--focal-gamma", type=float, default=FOCAL_GAMMA)
    parser.add_argument("--attention-scale", type=float, default=ATTENTION_SCALE)
    parser.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip")
    parser.add_argument("--stop-at", type=int, default=None, help="end early (experiments)")
    parser.add_argument(
        "--frames-from",
        type=Path,
        default=None,
        help="run only phase 2 (--restartable-frames), from the checkpoint written before it",
    )
    # Tried for v4 (docs/models.md) and not taken: the defaults give the shipped file.
    parser.add_argument(
        "--restartable-frames",
        action="store_true",
        help="phase 2 with a fresh optimizer, its own random stream and no auxiliary loss",
    )
    parser.add_argument(
        "--background-all",
        action="store_true",
        help="train every candidate's mask on background clicks, not only the best",
    )
    parser.add_argument(
        "--box-jitter",
        choices=("symmetric", "outward"),
        default="symmetric",
        help="box sides moved either way (SAM's recipe) or only away from the object",
    )
    parser.add_argument(
        "--detail-strides",
        default="",
        help="encoder detail path, e.g. '4' (ConvEncoder detail_strides); none by default",
    )
    parser.add_argument(
        "--head-steps", type=int, default=HEAD_STEPS, help="phase 3: the foreground head"
    )
    parser.add_argument("--head-hidden", type=int, default=HEAD_HIDDEN_LAYERS)
    parser.add_argument("--head-lr", type=float, default=HEAD_LR)
    parser.add_argument(
        "--head-contact-reach",
        type=int,
        default=HEAD_CONTACT[0],
        help="phase 3: border target widened where objects touch (px; 0: off)",
    )
    parser.add_argument(
        "--head-contact-weight",
        type=float,
        default=HEAD_CONTACT[1],
        help="phase 3: loss weight of that band",
    )
    parser.add_argument(
        "--head-from",
        type=Path,
        default=None,
        help="phase 3 only: train the foreground head of this trained model file",
    )
    parser.add_argument("--tag", default="", help="suffix of the output name (experiments)")
    parser.add_argument("--out", type=Path, default=ROOT / "training" / "out")
    parser.add_argument("--export", action="store_true", help=f"also write {PACKAGED}")
    return parser.parse_args(argv)


def nearest(labels: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(h, w) array resampled to ``out_hw`` by nearest neighbour (pixel centres)."""
    rows = ((np.arange(out_hw[0]) + 0.5) * labels.shape[0] / out_hw[0]).astype(np.intp)
    cols = ((np.arange(out_hw[1]) + 0.5) * labels.shape[1] / out_hw[1]).astype(np.intp)
    return labels[rows][:, cols]


def _zoom(rng: np.random.Generator, rgb: np.ndarray, labels: np.ndarray, pad: np.ndarray):
    """Rescale one window by a log-uniform factor in :data:`ZOOM_RANGE`, resizing the
    pixels exactly as the predictor resizes a user's image. Zooming in crops a random
    part and enlarges it (as a small image is enlarged to the model frame); zooming out
    shrinks the window into the top-left corner and pads the rest (as a small or
    non-square image is padded)."""
    size = labels.shape[0]
    factor = float(np.exp(rng.uniform(*np.log(ZOOM_RANGE))))
    if factor >= 1:
        side = max(CROP_MIN, int(round(size / factor)))
        y0, x0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
        crop = np.s_[y0 : y0 + side, x0 : x0 + side]
        pixels = resize_longest_side(rgb[crop], size)[0].permute(1, 2, 0).to(torch.uint8)
        return pixels.numpy(), nearest(labels[crop], (size, size)), nearest(pad[crop], (size, size))
    side = int(round(size * factor))
    out_rgb = np.zeros_like(rgb)
    out_rgb[:side, :side] = resize_longest_side(rgb, side)[0].permute(1, 2, 0).to(torch.uint8)
    out_labels = np.zeros_like(labels)
    out_labels[:side, :side] = nearest(labels, (side, side))
    out_pad = np.ones_like(pad)
    out_pad[:side, :side] = nearest(pad, (side, side))
    return out_rgb, out_labels, out_pad


def augment(rng: np.random.Generator, rgb: np.ndarray, labels: np.ndarray, zoom_rate: float):
    """Random rotation by 90 degrees and flip of each window, a zoom (:func:`_zoom`)
    with probability ``zoom_rate``; a band of some windows becomes padding (zero after
    normalisation, no objects), as at image edges."""
    rgb_out, labels_out, pads = [], [], []
    for index in range(len(labels)):
        turns, flip = int(rng.integers(0, 4)), bool(rng.integers(0, 2))
        r, lab = np.rot90(rgb[index], turns), np.rot90(labels[index], turns)
        if flip:
            r, lab = r[:, ::-1], lab[:, ::-1]
        r, lab = np.ascontiguousarray(r), np.ascontiguousarray(lab)
        pad = np.zeros(lab.shape, bool)
        if rng.random() < zoom_rate:
            r, lab, pad = _zoom(rng, r, lab, pad)
        if rng.random() < 0.15:
            width = int(rng.integers(16, lab.shape[1] // 2))
            lab[:, -width:] = 0
            pad[:, -width:] = True
        rgb_out.append(r)
        labels_out.append(lab)
        pads.append(pad)
    return np.stack(rgb_out), np.stack(labels_out), np.stack(pads)


def _normalise(rgb: np.ndarray, pad: np.ndarray) -> torch.Tensor:
    pixels = torch.from_numpy(rgb).permute(0, 3, 1, 2).float()
    mean = torch.tensor(PIXEL_MEAN_RGB).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD_RGB).view(1, 3, 1, 1)
    pixels = (pixels - mean) / std
    return pixels.masked_fill(torch.from_numpy(pad)[:, None], 0.0)


def window_pe(model: Sam, origin_xy: tuple[int, int], grid: int, stride: int) -> torch.Tensor:
    """(1, C, grid, grid) positional encoding of the embedding cells of a window whose
    top-left pixel is ``origin_xy`` in the model frame."""
    size = model.image_size
    cells = torch.arange(grid, dtype=torch.float32) * stride + stride / 2
    xs = (origin_xy[0] + cells) / size
    ys = (origin_xy[1] + cells) / size
    grid_xy = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).to(_device(model))
    return model.prompt_encoder.pe_layer.encode_unit(grid_xy).permute(2, 0, 1)[None]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _decode(model: Sam, embedding, pe, prompts: dict, origin, mask_input, multimask: bool):
    shift = torch.tensor(origin, dtype=torch.float32, device=embedding.device)
    points = None
    if prompts["points_xy"] is not None:
        points = (prompts["points_xy"] + shift, prompts["point_labels"])
    boxes = None if prompts["boxes_xyxy"] is None else prompts["boxes_xyxy"] + shift.repeat(2)
    sparse, dense = model.prompt_encoder(points, boxes, mask_input)
    return model.mask_decoder(embedding, pe, sparse, dense, multimask)


def _with_click(prompts: dict, clicks_xy: np.ndarray, click_labels: np.ndarray) -> dict:
    """The prompts plus one correction click each."""
    updated = dict(prompts)
    device = prompts["truth"].device
    clicks_xy = torch.from_numpy(clicks_xy).to(device)
    click_labels = torch.from_numpy(click_labels).to(device)
    if prompts["points_xy"] is None:
        updated["points_xy"], updated["point_labels"] = clicks_xy, click_labels
    else:
        updated["points_xy"] = torch.cat([prompts["points_xy"], clicks_xy], dim=1)
        updated["point_labels"] = torch.cat([prompts["point_labels"], click_labels], dim=1)
    return updated


def train_step(
    model: Sam,
    aux: ForegroundHead | None,
    batch: tuple,
    rng: np.random.Generator,
    args,
    objects: int,
    origin: tuple[int, int] | None = None,
) -> dict:
    """Forward and backward of one batch; returns the loss and per-group IoUs.

    The windows sit at ``origin`` (x, y) of the model frame, a random multiple of the
    embedding stride by default.

    Without ``aux`` (phase 2) only the prompt loss is trained. A batch without any
    prompt (e.g. a frame zoomed out until every object is smaller than
    ``MIN_PROMPT_AREA``, with no background to click) trains the auxiliary loss alone,
    or nothing.
    """
    rgb, labels, pad = batch
    device = _device(model)
    embedding = model.image_encoder(_normalise(rgb, pad).to(device))
    dense_loss = auxiliary_loss(aux(embedding), labels) if aux is not None else None
    grid = embedding.shape[-1]
    stride = labels.shape[-1] // grid
    if origin is None:
        span = (model.image_size - labels.shape[-1]) // stride
        origin = tuple(int(v) * stride for v in rng.integers(0, span + 1, 2))
    pe = window_pe(model, origin, grid, stride)
    groups = sample_prompts(rng, labels, objects, outward_boxes=args.box_jitter == "outward")
    correct = rng.random() < args.correction_rate
    focal = (args.focal_weight, args.focal_gamma, args.background_all)
    losses, stats, count = [], {}, 0
    for name, group in groups.items():
        if not len(group):
            continue
        on_host = as_tensors(group)
        prompts = {k: None if v is None else v.to(device) for k, v in on_host.items()}
        image = embedding[prompts["image_index"]]
        low, iou = _decode(model, image, pe, prompts, origin, None, name == "point")
        loss, best, best_iou = prompt_loss(
            low, iou, prompts["truth"], prompts["background"], *focal
        )
        losses.append(loss * len(group))
        count += len(group)
        on_objects = ~prompts["background"]
        if on_objects.any():  # a group may hold only a background click
            stats[name] = float(best_iou[on_objects].mean())
        if correct:
            chosen = low[torch.arange(len(best), device=device), best][:, None].detach()
            predicted = F.interpolate(chosen, size=labels.shape[-2:], mode="bilinear") > 0
            truth = on_host["truth"].numpy()
            clicks = correction_clicks(rng, predicted[:, 0].cpu().numpy(), truth)
            again = _with_click(prompts, *clicks)
            low2, iou2 = _decode(model, image, pe, again, origin, chosen, False)
            loss2, _, iou_2 = prompt_loss(low2, iou2, again["truth"], again["background"], *focal)
            losses.append(loss2 * len(group))
            count += len(group)
            if on_objects.any():
                stats[name + "+click"] = float(iou_2[on_objects].mean())
    total = torch.stack(losses).sum() / count if losses else embedding.new_zeros(())
    objective = total if dense_loss is None else total + args.aux_weight * dense_loss
    if objective.requires_grad:
        objective.backward()
    if losses:
        stats["loss"] = float(total.detach())
    if dense_loss is not None:
        stats["aux"] = float(dense_loss.detach())
    return stats


def _learning_rate(step: int, steps: int, peak: float) -> float:
    warmup = min(200, steps // 10)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return peak * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain_encoder(
    model: Sam, aux: ForegroundHead, windows: WindowSet, rng: np.random.Generator, args
) -> None:
    """Train the encoder alone on the auxiliary loss (foreground and borders) for
    ``args.encoder_steps`` batches of windows: about 4 times cheaper per step than a
    step with prompts, so the decoder meets a useful embedding from its first step."""
    parameters = [*model.image_encoder.parameters(), *aux.parameters()]

    def predict(pixels: torch.Tensor) -> torch.Tensor:
        return aux(model.image_encoder(pixels))

    schedule = (args.encoder_steps, args.lr, args.clip)
    _train_dense(parameters, predict, windows, rng, schedule, "encoder", args)


def _train_dense(
    parameters, predict, windows, rng, schedule, name: str, args, contacts=(0, 1.0)
) -> None:
    """AdamW on the auxiliary loss of ``predict(pixels)`` over batches of augmented
    windows; ``schedule`` = (steps, peak learning rate, gradient clip or None)."""
    steps, peak, clip = schedule
    optimizer = torch.optim.AdamW(parameters, lr=peak, weight_decay=0.01)
    started, history = time.perf_counter(), []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, steps, peak)
        chosen = rng.integers(0, len(windows), args.batch)
        rgb, labels, pad = augment(rng, windows.rgb[chosen], windows.labels[chosen], args.zoom_rate)
        optimizer.zero_grad(set_to_none=True)
        pixels = _normalise(rgb, pad).to(parameters[0].device)
        loss = auxiliary_loss(predict(pixels), labels, *contacts)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(parameters, clip)
        optimizer.step()
        history.append(float(loss.detach()))
        if step % 100 == 0 or step == steps - 1:
            elapsed = time.perf_counter() - started
            mean = np.mean(history[-100:])
            logger.info("%s step %d/%d  %.0f s  aux %.3f", name, step, steps, elapsed, mean)


def window_batch(args):
    """The training's batches: :func:`augment` windows at a random origin (the
    ``batches`` of :func:`optimise`)."""

    def make(rng, rgb, labels):
        return augment(rng, rgb, labels, args.zoom_rate), None, ""

    return make


def optimise(
    model, aux, optimizer, parameters, source, count, objects, steps, rng, args, batches=None
):
    """Steps ``steps`` (a range of step indexes of the schedule) on ``count`` items of
    ``source`` per step, logging every 25 steps. ``batches(rng, rgb, labels)`` makes a
    step's batch from the chosen items: (batch, the windows' origin or None for a
    random one, a prefix for its statistics); :func:`window_batch` by default."""
    batches = window_batch(args) if batches is None else batches
    started, history = time.perf_counter(), []
    for step in steps:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, args.steps, args.lr)
        chosen = rng.integers(0, len(source), count)
        batch, origin, tag = batches(rng, source.rgb[chosen], source.labels[chosen])
        optimizer.zero_grad(set_to_none=True)
        stats = train_step(model, aux, batch, rng, args, objects, origin)
        stats["grad"] = float(torch.nn.utils.clip_grad_norm_(parameters, args.clip))
        optimizer.step()
        history.append({tag + key: value for key, value in stats.items()})
        if step % 25 == 0 or step == args.steps - 1 or step + 1 == args.stop_at:
            recent = history[-25:]
            keys = sorted({k for s in recent for k in s})
            means = {k: np.mean([s[k] for s in recent if k in s]) for k in keys}
            elapsed = time.perf_counter() - started
            logger.info(
                "step %d/%d  %.0f s  %s",
                step,
                args.steps,
                elapsed,
                "  ".join(f"{k} {v:.3f}" for k, v in means.items()),
            )
        if args.stop_at is not None and step + 1 >= args.stop_at:
            return False
    return True


def train(args, windows: WindowSet, frames: WindowSet) -> Sam:
    """Phases 0, 1 and 2 (with ``--restartable-frames``: :func:`train_frames`)."""
    model, aux = fresh_model(args)
    rng = np.random.default_rng(args.seed + 1)
    if args.encoder_steps:
        pretrain_encoder(model, aux, windows, rng, args)
    parameters = [*model.parameters(), *aux.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01)
    window_steps = range(args.steps - args.frame_steps)
    phase_1 = (windows, args.batch, args.objects, window_steps)
    if not optimise(model, aux, optimizer, parameters, *phase_1, rng, args):
        return model.eval()
    # Kept to measure what phase 2 adds (docs/models.md) and to restart phase 2.
    torch.save(model.state_dict(), before_frames_path(args))
    if args.restartable_frames:
        return train_frames(model, frames, args)
    phase_2 = (frames, 1, args.frame_objects, range(args.steps - args.frame_steps, args.steps))
    optimise(model, aux, optimizer, parameters, *phase_2, rng, args)
    return model.eval()


def fresh_model(args) -> tuple[Sam, ForegroundHead]:
    """The untrained model (seeded, with the from-scratch helps of ``warm_start``) and
    the auxiliary head; phase 0 starts from these."""
    torch.manual_seed(args.seed)
    model = build_sam(architecture(args)).train()
    set_position_frequencies(model, args.seed)
    local_attention_init(model, args.attention_scale)
    aux = ForegroundHead(model.prompt_encoder.embed_dim, 8)
    return model.to(args.device), aux.to(args.device)


def architecture(args) -> Architecture:
    """``conv_s``, with the encoder detail path of ``--detail-strides`` if given."""
    strides = tuple(int(v) for v in args.detail_strides.split(",") if v)
    if not strides:
        return ARCHITECTURES["conv_s"]
    options = {**ARCHITECTURES["conv_s"].encoder_options, "detail_strides": strides}
    return dataclasses.replace(ARCHITECTURES["conv_s"], encoder_kwargs=options)


def before_frames_path(args) -> Path:
    return args.out / f"builtin{args.tag}_before_frames.pt"


def train_frames(model: Sam, frames: WindowSet, args) -> Sam:
    """Phase 2: the last ``args.frame_steps`` steps of the schedule on full frames.

    It depends only on the weights it starts from and on the seed: a fresh AdamW over
    the model's parameters (the learning rate is low there, 11 % of the peak), its
    own random stream, no auxiliary loss. So ``--frames-from`` the checkpoint written
    before it gives the same weights as the whole run.
    """
    model.train()
    rng = np.random.default_rng(args.seed + 2)
    parameters = list(model.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01)
    steps = range(args.steps - args.frame_steps, args.steps)
    optimise(model, None, optimizer, parameters, frames, 1, args.frame_objects, steps, rng, args)
    return model.eval()


def train_foreground_head(model: Sam, windows: WindowSet, args) -> ForegroundHead:
    """Phase 3: the shipped foreground head (``--head-hidden`` 3x3 layers), trained on
    the auxiliary loss over the frozen encoder of the finished model, for everything
    mode and snapped prompts (``core/objects.py``). It depends only on the model and the
    seed, so ``--head-from`` a trained file gives the same head as the whole run."""
    model.eval()
    torch.manual_seed(args.seed + 3)
    rng = np.random.default_rng(args.seed + 3)
    head = ForegroundHead(model.prompt_encoder.embed_dim, 8, args.head_hidden)
    head = head.to(_device(model)).train()

    def predict(pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            embedding = model.image_encoder(pixels)
        return head(embedding)

    schedule = (args.head_steps, args.head_lr, None)
    contacts = (args.head_contact_reach, args.head_contact_weight)
    _train_dense(list(head.parameters()), predict, windows, rng, schedule, "head", args, contacts)
    return head.eval()


def save(model: Sam, path: Path, meta: dict) -> None:
    """The model's weights (its foreground head's too, if it has one) and ``meta``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    torch.save(state, path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    logger.info("Wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)


def training_windows(args) -> WindowSet:
    """The training windows, drawn (``args.draw_workers`` processes) or read from their
    cache in ``args.out``."""
    cache = args.out / f"windows_{args.windows}_{args.window_size}_{args.seed}.npz"
    return load_or_draw(cache, args.windows, args.window_size, args.seed, args.draw_workers)


def training_data(args) -> tuple[WindowSet, WindowSet]:
    """:func:`training_windows` and the full frames, drawn or read likewise."""
    started = time.perf_counter()
    windows = training_windows(args)
    frames = load_or_draw(
        args.out / f"frames_{args.frames}_{CONV_IMAGE_SIZE}_{args.seed}.npz",
        args.frames,
        CONV_IMAGE_SIZE,
        args.seed,
        args.draw_workers,
        first_index=FRAME_FIRST_INDEX,
    )
    drawn = time.perf_counter() - started
    logger.info("%d windows and %d frames ready in %.0f s", len(windows), len(frames), drawn)
    return windows, frames


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.device.startswith("cuda"):  # fp32 convolutions, as on the CPU
        torch.backends.cudnn.allow_tf32 = False
    started = time.perf_counter()
    windows, frames = training_data(args)
    drawn = time.perf_counter() - started
    if args.head_from is not None:
        model = load_model(args.head_from, device=args.device).model
        model.foreground_head = None
    elif args.frames_from is not None:
        if not args.restartable_frames:
            raise SystemExit("--frames-from needs --restartable-frames (phase 2 as it ran)")
        model = build_sam(architecture(args))
        model.load_state_dict(torch.load(args.frames_from, map_location="cpu", weights_only=True))
        model = model.to(args.device)
        model = train_frames(model, frames, args)
    else:
        model = train(args, windows, frames)
    if args.head_steps:
        model.foreground_head = train_foreground_head(model, windows, args)
    meta = {
        "encoder_steps": args.encoder_steps,
        "steps": args.steps,
        "batch": args.batch,
        "objects": args.objects,
        "windows": args.windows,
        "window_size": args.window_size,
        "frames": args.frames,
        "frame_steps": args.frame_steps,
        "frame_objects": args.frame_objects,
        "frames_from": None if args.frames_from is None else str(args.frames_from.name),
        "head_steps": args.head_steps,
        "head_hidden": args.head_hidden,
        "head_lr": args.head_lr,
        "head_contact_reach": args.head_contact_reach,
        "head_contact_weight": args.head_contact_weight,
        "head_from": None if args.head_from is None else str(args.head_from.name),
        "restartable_frames": args.restartable_frames,
        "background_all": args.background_all,
        "box_jitter": args.box_jitter,
        "detail_strides": args.detail_strides,
        "zoom_rate": args.zoom_rate,
        "clip": args.clip,
        "lr": args.lr,
        "seed": args.seed,
        "threads": args.threads,
        "device": args.device,
        "torch": torch.__version__,
        "draw_seconds": round(drawn, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    save(model, args.out / f"builtin{args.tag}.pt", meta)
    if args.export:
        save(model, PACKAGED, meta)


if __name__ == "__main__":
    main()
