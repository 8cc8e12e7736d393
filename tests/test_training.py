"""The training recipe of the built-in model: prompt sampling, losses, one step."""

from __future__ import annotations

import numpy as np
import torch
from training import train_builtin
from training.data import WindowSet
from training.losses import dice_loss, mask_iou, prompt_loss
from training.prompts import as_tensors, correction_clicks, jittered_box, sample_prompts
from training.warm_start import (
    auxiliary_loss,
    borders,
    set_position_frequencies,
)

from napari_segany.core.model.foreground_head import ForegroundHead


def _two_discs(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.uint16)
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 < 64] = 1
    labels[(yy - 40) ** 2 + (xx - 45) ** 2 < 100] = 2
    return labels


def test_sampled_prompts_lie_on_their_objects():
    labels = np.stack([_two_discs(), _two_discs()])
    groups = sample_prompts(np.random.default_rng(0), labels, objects_per_image=2)
    total = 0
    for name, group in groups.items():
        for index, truth in enumerate(group.truth):
            window = labels[group.image_index[index]]
            if group.background[index]:
                x, y = group.points_xy[index][0].astype(int)
                assert window[y, x] == 0 and not truth.any()
                continue
            total += 1
            object_id = window[truth][0]
            assert np.array_equal(truth, window == object_id)
            if name != "box":
                xy, flags = group.points_xy[index], group.point_labels[index]
                for (x, y), flag in zip(xy.astype(int), flags):
                    if flag == 1:
                        assert truth[y, x]
                    elif flag == 0:
                        assert not truth[y, x]
    assert total == 4  # every object of both windows, once


def test_jittered_box_stays_in_the_window_and_near_the_object():
    mask = _two_discs() == 2
    rng = np.random.default_rng(1)
    for _ in range(50):
        x0, y0, x1, y1 = jittered_box(rng, mask)
        assert 0 <= x0 < x1 <= 63 and 0 <= y0 < y1 <= 63
        assert abs(x0 - 35) <= 20 and abs(y1 - 49) <= 20


def test_outward_jittered_box_never_cuts_the_object_and_is_sometimes_loose():
    mask = _two_discs() == 2
    ys, xs = np.nonzero(mask)
    tight = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
    symmetric = [jittered_box(np.random.default_rng(seed), mask) for seed in range(40)]
    outward = [jittered_box(np.random.default_rng(seed), mask, True) for seed in range(40)]
    for box in outward:
        assert box[0] <= tight[0] and box[1] <= tight[1]
        assert box[2] >= tight[2] and box[3] >= tight[3]
    looser = [np.abs(o - tight).sum() for o in outward]
    assert np.mean(looser) > 2
    # the same draws: each side moves by the same amount, only the direction differs
    for s, o in zip(symmetric, outward):
        inside = (o > 0) & (o < 63) & (s > 0) & (s < 63)
        assert np.allclose(np.abs(s - tight)[inside], np.abs(o - tight)[inside], atol=1e-4)
    assert any((s[0] > tight[0]) or (s[2] < tight[2]) for s in symmetric)


def test_correction_clicks_point_at_the_error():
    truth = np.zeros((2, 32, 32), bool)
    truth[:, 8:20, 8:20] = True
    predicted = truth.copy()
    predicted[0, 8:20, 14:20] = False  # missed a part: expect a positive click there
    predicted[1, 24:30, 24:30] = True  # extra blob: expect a negative click there
    points, labels = correction_clicks(np.random.default_rng(0), predicted, truth)
    (x, y), flag = points[0, 0].astype(int), labels[0, 0]
    assert flag == 1 and 8 <= y < 20 and 14 <= x < 20
    (x, y), flag = points[1, 0].astype(int), labels[1, 0]
    assert flag == 0 and 24 <= y < 30 and 24 <= x < 30


def test_losses_rank_a_right_mask_above_a_wrong_one():
    truth = torch.from_numpy(_two_discs() == 1)[None]
    right = torch.where(truth, 8.0, -8.0)[:, None]
    wrong = torch.where(truth, -8.0, 8.0)[:, None]
    both = torch.cat([wrong, right], dim=1)  # (1, 2, S, S)
    assert dice_loss(right, truth[:, None]) < 0.01 < dice_loss(wrong, truth[:, None])
    assert torch.allclose(mask_iou(both, truth[:, None]), torch.tensor([[0.0, 1.0]]))
    # prompt_loss works on low-resolution logits (here the same size) and picks the best
    _, best, best_iou = prompt_loss(both, torch.zeros(1, 2), truth, torch.tensor([False]))
    assert best.tolist() == [1] and best_iou.tolist() == [1.0]


def test_background_all_trains_every_candidate_on_a_background_click():
    """With ``background_all`` every candidate gets a gradient on a background click
    (empty target), not only the emptiest one."""
    empty = torch.zeros(1, 16, 16, dtype=torch.bool)
    logits = torch.stack([torch.full((16, 16), v) for v in (-9.0, 2.0, 4.0)])[None]
    logits.requires_grad_(True)
    flag = torch.tensor([True])
    loss, best, _ = prompt_loss(logits, torch.zeros(1, 3), empty, flag, background_all=True)
    loss.backward()
    assert best.tolist() == [0]
    assert (logits.grad[0, 1:].abs().amax(dim=(-2, -1)) > 0).all()
    # by default (the shipped recipe) only the emptiest candidate is trained
    logits.grad = None
    prompt_loss(logits, torch.zeros(1, 3), empty, flag)[0].backward()
    assert logits.grad[0, 1:].abs().max() == 0 and logits.grad[0, 0].abs().max() > 0
    # an object prompt still trains only its best candidate
    logits.grad = None
    truth = torch.ones(1, 16, 16, dtype=torch.bool)
    no = torch.tensor([False])
    loss, best, _ = prompt_loss(logits, torch.zeros(1, 3), truth, no, background_all=True)
    loss.backward()
    assert best.tolist() == [2]
    assert logits.grad[0, :2].abs().max() == 0 and logits.grad[0, 2].abs().max() > 0


def test_auxiliary_head_and_borders():
    labels = _two_discs()[None]
    edge = borders(labels)
    assert edge.sum() > 0 and not edge[labels == 0].any()
    inner = np.zeros_like(labels, bool)
    inner[0, 18:23, 18:23] = True  # deep inside disc 1
    assert not edge[inner].any()
    head = ForegroundHead(16, 8)
    assert head(torch.zeros(2, 16, 8, 8)).shape == (2, 2, 64, 64)


def test_position_frequencies_have_the_chosen_magnitudes():
    model = train_builtin.build_sam("conv_s")
    set_position_frequencies(model, seed=0)
    matrix = model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    norms = matrix.norm(dim=0)
    assert norms.min() >= 1.0 - 1e-5 and norms.max() <= 12.0 + 1e-4


def test_a_few_steps_on_one_batch_lower_the_loss():
    torch.manual_seed(0)
    labels = np.stack([_two_discs(256)] * 2)
    rgb = np.where(labels[..., None] > 0, 200, 20).astype(np.uint8).repeat(3, axis=-1)
    batch = (rgb, labels, np.zeros(labels.shape, bool))
    args = train_builtin.parse_args(["--objects", "2", "--correction-rate", "0"])
    model = train_builtin.build_sam("conv_s").train()
    aux = ForegroundHead(128, 8)
    optimizer = torch.optim.Adam([*model.parameters(), *aux.parameters()], lr=1e-3)
    losses = []
    for step in range(8):
        optimizer.zero_grad()
        stats = train_builtin.train_step(
            model, aux, batch, np.random.default_rng(step), args, objects=2
        )
        optimizer.step()
        losses.append(stats["loss"] + stats["aux"])
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:2])


def test_encoder_pretraining_trains_only_the_encoder_and_lowers_the_dense_loss():
    torch.manual_seed(0)
    labels = np.stack([_two_discs(64)] * 2)
    rgb = np.where(labels[..., None] > 0, 200, 20).astype(np.uint8).repeat(3, axis=-1)
    windows = WindowSet(rgb, labels)
    model = train_builtin.build_sam("conv_s").train()
    aux = ForegroundHead(128, 8)
    decoder_before = {k: v.clone() for k, v in model.mask_decoder.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}

    def dense_loss() -> float:
        with torch.no_grad():
            pixels = train_builtin._normalise(rgb, np.zeros(labels.shape, bool))
            return float(auxiliary_loss(aux(model.image_encoder(pixels)), labels))

    before = dense_loss()
    args = train_builtin.parse_args(["--encoder-steps", "30", "--batch", "2", "--zoom-rate", "0"])
    train_builtin.pretrain_encoder(model, aux, windows, np.random.default_rng(0), args)
    assert dense_loss() < 0.7 * before
    for key, value in model.mask_decoder.state_dict().items():
        assert torch.equal(value, decoder_before[key]), key
    changed = [
        k
        for k, v in model.image_encoder.state_dict().items()
        if not torch.equal(v, encoder_before[k])
    ]
    assert any(k.startswith("stem") for k in changed) and any(k.startswith("neck") for k in changed)


def test_prompt_tensors_keep_the_group_order():
    labels = np.stack([_two_discs()])
    groups = sample_prompts(np.random.default_rng(3), labels, objects_per_image=2)
    for group in groups.values():
        if len(group):
            stacked = as_tensors(group)
            assert stacked["truth"].shape == (len(group), 64, 64)
            assert stacked["image_index"].tolist() == group.image_index


def test_zoom_keeps_pixels_and_labels_aligned():
    labels = _two_discs(256)
    rgb = np.where(labels[..., None] > 0, 200, 20).astype(np.uint8).repeat(3, axis=-1)
    pad = np.zeros(labels.shape, bool)
    rng = np.random.default_rng(4)
    seen = set()
    for _ in range(40):
        r, lab, out_pad = train_builtin._zoom(rng, rgb, labels, pad)
        assert r.shape == rgb.shape and lab.shape == labels.shape and r.dtype == np.uint8
        assert not lab[out_pad].any()  # padding holds no object
        inside = ~out_pad
        bright = r[..., 0] > 110
        # pixels and labels resampled alike: they disagree only along the rims
        disagree = (bright != (lab > 0)) & inside
        assert disagree.sum() <= 0.1 * max((lab > 0).sum(), 1) + 8
        seen.add("in" if not out_pad.any() else "out")
        if out_pad.any():  # zoomed out: the image sits in the top-left corner
            assert not out_pad[0, 0] and out_pad[-1, -1]
    assert seen == {"in", "out"}


def test_prompts_skip_remnants_too_small_to_click():
    labels = _two_discs()[None].copy()
    labels[0, 60:62, 0:3] = 7  # a 6-pixel remnant
    groups = sample_prompts(np.random.default_rng(0), labels, objects_per_image=5)
    truths = [truth for group in groups.values() for truth in group.truth if truth.any()]
    prompted = {int(labels[0][truth][0]) for truth in truths}
    assert prompted == {1, 2}


def test_window_sets_are_seeded_by_index():
    from training.data import draw_windows

    pair = draw_windows(2, 64, seed=3, workers=1)
    second = draw_windows(1, 64, seed=3, workers=1, first_index=1)
    assert np.array_equal(pair.labels[1], second.labels[0])
    assert np.array_equal(pair.rgb[1], second.rgb[0])
    assert not np.array_equal(pair.rgb[0], pair.rgb[1])


def test_phase_two_restarted_from_its_checkpoint_gives_the_same_weights(tmp_path):
    """`--frames-from` the checkpoint written before phase 2 reproduces the whole run,
    so a run stopped in phase 2 can be finished without redoing phases 0 and 1."""
    labels = np.stack([_two_discs(64)] * 3)
    rgb = np.where(labels[..., None] > 0, 200, 20).astype(np.uint8).repeat(3, axis=-1)
    data = WindowSet(rgb, labels)
    options = ["--encoder-steps", "2", "--steps", "4", "--frame-steps", "2", "--batch", "2"]
    options += ["--objects", "2", "--frame-objects", "2", "--out", str(tmp_path)]
    options += ["--restartable-frames"]
    args = train_builtin.parse_args(options)
    whole = train_builtin.train(args, data, data).state_dict()
    checkpoint = train_builtin.before_frames_path(args)
    restarted = train_builtin.build_sam("conv_s")
    restarted.load_state_dict(torch.load(checkpoint, weights_only=True))
    before = {k: v.clone() for k, v in restarted.state_dict().items()}
    finished = train_builtin.train_frames(restarted, data, args).state_dict()
    assert any(not torch.equal(finished[k], before[k]) for k in before)  # phase 2 trained
    for key, value in whole.items():
        assert torch.equal(value, finished[key]), key


def test_a_batch_without_prompts_trains_the_auxiliary_loss_alone():
    """A batch with nothing to prompt (here: no object may be prompted and the window
    has no background to click) used to end the run on an empty list of losses."""
    labels = np.ones((1, 64, 64), np.uint16)
    rgb = np.full((*labels.shape, 3), 200, np.uint8)
    args = train_builtin.parse_args(["--correction-rate", "0"])
    model = train_builtin.build_sam("conv_s").train()
    aux = ForegroundHead(128, 8)
    batch = (rgb, labels, np.zeros(labels.shape, bool))
    stats = train_builtin.train_step(model, aux, batch, np.random.default_rng(0), args, 0)
    assert "loss" not in stats and stats["aux"] > 0
    assert model.image_encoder.neck[0].weight.grad is not None
    assert model.mask_decoder.mask_tokens.weight.grad is None
    # phase 2 has no auxiliary head: such a batch then trains nothing
    model.zero_grad(set_to_none=True)
    stats = train_builtin.train_step(model, None, batch, np.random.default_rng(0), args, 0)
    assert stats == {} and model.image_encoder.neck[0].weight.grad is None


def test_phase_3_trains_only_the_head_and_repeats_from_the_model_and_seed(tmp_path):
    from napari_segany.core.loading import load_model

    labels = np.stack([_two_discs(64)] * 3)
    rgb = np.where(labels[..., None] > 0, 200, 20).astype(np.uint8).repeat(3, axis=-1)
    data = WindowSet(rgb, labels)
    args = train_builtin.parse_args(["--head-steps", "3", "--batch", "2", "--threads", "1"])
    torch.manual_seed(5)
    model = train_builtin.build_sam("conv_s")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head = train_builtin.train_foreground_head(model, data, args)
    for key, value in model.state_dict().items():  # the model is frozen
        assert torch.equal(value, before[key]), key
    assert len(head.hidden) == train_builtin.HEAD_HIDDEN_LAYERS == args.head_hidden
    again = train_builtin.train_foreground_head(model, data, args)
    torch.manual_seed(args.seed + 3)  # the head's initial weights, as phase 3 draws them
    initial = ForegroundHead(128, 8, args.head_hidden)
    for key, value in head.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key  # same model, same seed
        assert not torch.equal(value, initial.state_dict()[key]), key  # and it was trained
    model.foreground_head = head
    path = tmp_path / "with_head.pt"
    train_builtin.save(model, path, {"head_steps": 3})
    loaded = load_model(path, device="cpu").model
    for key, value in head.state_dict().items():
        assert torch.equal(loaded.foreground_head.state_dict()[key], value), key
