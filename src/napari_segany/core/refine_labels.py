"""Refine existing labels with prompts: each object re-segmented from its own prompts.

Every object of a label plane (or the ids asked for) is decoded again from three
prompts derived from it:

- its **box**: the object's bounding box grown by :attr:`RefineRules.box_margin` of its
  sides (at least :attr:`RefineRules.min_margin_px` pixels) on each side, clipped to the
  plane, so an eroded or shifted object can grow back past its own box;
- a **positive point** at its most interior pixel (the maximum of the distance to the
  object's edge, first on ties);
- its **mask** as ``mask_input``: the object's pixels placed exactly as the model's frame
  places the plane (:func:`mask_to_logits`), ``+-`` :attr:`RefineRules.mask_logit`.

Objects are decoded :attr:`RefineRules.batch_size` at a time, each with its own point,
box and mask (the decoder takes N prompt sets at once).

Acceptance (per object, in this order; the first rule that applies decides):

1. an empty answer is refused (``"empty"``);
2. a predicted IoU below :attr:`RefineRules.min_score` is refused (``"low_score"``);
3. an IoU with the input below :attr:`RefineRules.min_iou` is refused (``"low_iou"``):
   the model answered with another object (a neighbour, the background);
4. an answer whose mean boundary displacement from the input, ``|answer xor input| /
   perimeter(input)``, is at most :attr:`RefineRules.agree_px` pixels agrees with the
   input, which is kept exactly as it was (``"agrees"``): the model's boundary noise
   does not move an object that is already right (an answer farther off still does:
   on generated nuclei 62-87 % of exact objects stay pixel for pixel the same);
5. otherwise the answer is accepted (``"refined"``).

The defaults were chosen on generated nuclei with the built-in model
(``benchmarks/bench_refine.py``).

Writing back (:func:`write_back`): ids are kept; an accepted object takes only pixels
that were background or its own in the input (never another id's, nor one an
earlier-written object of this call already took), and the pixels it loses become
background. Refused objects keep their pixels. A merged object (two nuclei under one
id) keeps its id on whatever the answer is: when the answer is one nucleus (the one
under the interior point), the other becomes background, or, with ``split=True``, each
connected part of what it loses that covers at least :attr:`RefineRules.split_min_area`
of the answer's area gets a new id (above every id of the input). Its box and mask
prompt cover both nuclei, so a model often answers with the pair; with a ``probe``
(one click per object, what ``SegAny.refine_labels`` gives unless
``separate_merged=False``), objects the model answers as two confident, separate parts
(``core.merged``) are answered by the part under their interior point instead
(``"separated"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .depth import deepest_pixel
from .label_inputs import check_ids
from .labels import check_label_room
from .mask_prompts import MaskFrame, mask_to_logits
from .merged import Probe, separate
from .results import SegmentResult

# (points_yx (N, 1, 2), boxes_yxyx (N, 4), mask_input (N, 1, h, w)) -> a result with
# masks (N, K, H, W) and scores (N, K)
Decode = Callable[[np.ndarray, np.ndarray, np.ndarray], SegmentResult]


@dataclass(frozen=True)
class RefineRules:
    """How objects are prompted and when an answer replaces them (module docstring).

    Attributes
    ----------
    box_margin : float
        Growth of the box on each side, as a fraction of the box's side.
    min_margin_px : float
        Smallest growth on each side, in pixels.
    mask_logit : float
        Logit magnitude of the mask prompt (inside ``+``, outside ``-``).
    min_score : float
        Smallest predicted IoU accepted.
    min_iou : float
        Smallest IoU with the input accepted.
    agree_px : float
        Mean boundary displacement (pixels) up to which the input is kept as it is.
    batch_size : int
        Objects decoded at once.
    split_min_area : float
        With ``split``: a lost part becomes a new object when it holds at least this
        fraction of the answer's area.
    """

    box_margin: float = 0.15
    min_margin_px: float = 3.0
    mask_logit: float = 8.0
    min_score: float = 0.5
    min_iou: float = 0.3
    agree_px: float = 1.0
    batch_size: int = 16
    split_min_area: float = 0.3


@dataclass(frozen=True)
class ObjectOutcome:
    """What refinement did to one object.

    Attributes
    ----------
    obj_id : int
        The object's id (kept).
    accepted : bool
        Whether its pixels were replaced by the model's answer.
    score : float
        The answer's predicted IoU (NaN when not decoded).
    iou_with_input : float
        IoU of the answer with the object's input pixels.
    reason : str
        ``"refined"``, ``"separated"``, ``"agrees"``, ``"low_score"``, ``"low_iou"`` or
        ``"empty"``.
    new_ids : tuple of int
        Ids given to the parts it lost (``split=True`` only).
    """

    obj_id: int
    accepted: bool
    score: float
    iou_with_input: float
    reason: str
    new_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Refinement:
    """The refined label plane and one :class:`ObjectOutcome` per object, by id."""

    labels: np.ndarray
    outcomes: tuple[ObjectOutcome, ...]


@dataclass(frozen=True)
class ObjectPrompt:
    """One object's prompts, in plane pixels (row, col)."""

    obj_id: int
    point_yx: tuple[float, float]
    box_yxyx: tuple[float, float, float, float]


def object_prompts(labels: np.ndarray, ids: Sequence[int], rules: RefineRules) -> list:
    """Each object's box (grown, clipped) and most interior point.

    Parameters
    ----------
    labels : numpy.ndarray, (H, W) int
    ids : sequence of int
        Ids present in ``labels``.

    Returns
    -------
    list of ObjectPrompt
        In the order of ``ids``.
    """
    numbers, spans = _object_spans(labels)
    found = []
    for obj_id in ids:
        rows, cols = spans[numbers[int(obj_id)] - 1]
        found.append(_prompt(labels[rows, cols] == obj_id, rows, cols, labels.shape, obj_id, rules))
    return found


def mask_prompt(mask: np.ndarray, obj_id: int, rules: RefineRules) -> ObjectPrompt:
    """The prompts :func:`object_prompts` gives object ``obj_id`` whose (H, W) bool
    ``mask`` (not empty) is given: no pass over the other ids (fast on large planes)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    rows, cols = slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
    return _prompt(mask[rows, cols], rows, cols, mask.shape, obj_id, rules)


def grown_boxes(labels: np.ndarray, ids: Sequence[int], rules: RefineRules) -> list:
    """Each object's grown, clipped box as in :func:`object_prompts` (which holds its
    point too), without the point; in the order of ``ids``."""
    numbers, spans = _object_spans(labels)
    return [_grown_box(*spans[numbers[int(i)] - 1], labels.shape, rules) for i in ids]


def _prompt(own: np.ndarray, rows: slice, cols: slice, hw, obj_id: int, rules) -> ObjectPrompt:
    """An object's prompts from ``own``, its mask within its bounding box
    ``(rows, cols)`` of an (H, W) plane."""
    (y, x), _ = deepest_pixel(own)
    point = (float(rows.start + y), float(cols.start + x))  # a pixel's (row, col)
    return ObjectPrompt(int(obj_id), point, _grown_box(rows, cols, hw, rules))


def _grown_box(rows: slice, cols: slice, hw, rules: RefineRules) -> tuple:
    """A bounding box ``(rows, cols)`` grown by the rules' margins, cut to the plane."""
    margin_y = max(rules.min_margin_px, rules.box_margin * (rows.stop - rows.start))
    margin_x = max(rules.min_margin_px, rules.box_margin * (cols.stop - cols.start))
    return (
        max(0.0, rows.start - margin_y),
        max(0.0, cols.start - margin_x),
        min(float(hw[0]), rows.stop + margin_y),
        min(float(hw[1]), cols.stop + margin_x),
    )


def _object_spans(labels: np.ndarray) -> tuple[dict[int, int], list]:
    """Each non-zero id's number (1..M) and the (rows, cols) slices of every number's
    bounding box (``scipy.ndimage.find_objects`` on ids renumbered densely, so ids may
    be large or negative)."""
    values, inverse = np.unique(labels, return_inverse=True)
    numbers = np.arange(1, len(values) + 1)
    zero = np.flatnonzero(values == 0)
    if zero.size:
        numbers[zero[0]] = 0
        numbers[zero[0] + 1 :] -= 1
    dense = numbers[inverse.reshape(labels.shape)]
    by_id = {int(v): int(n) for v, n in zip(values, numbers) if v != 0}
    return by_id, ndimage.find_objects(dense)


@dataclass(frozen=True)
class _Answer:
    """One object's chosen answer and the verdict on it."""

    outcome: ObjectOutcome
    mask: np.ndarray | None  # (H, W) bool, the answer where accepted


def refine_objects(
    labels: np.ndarray,
    prompts: Sequence[ObjectPrompt],
    decode: Decode,
    frame: MaskFrame,
    rules: RefineRules,
) -> list[_Answer]:
    """Decode every object in batches and judge each answer (module docstring).

    Parameters
    ----------
    labels : numpy.ndarray, (H, W) int
    prompts : sequence of ObjectPrompt
    decode : callable
        ``(points_yx (N, 1, 2), boxes_yxyx (N, 4), mask_input (N, 1, h, w)) ->
        SegmentResult`` with masks (N, K, H, W), e.g. ``mask_prompts.decode_objects``.
    frame : MaskFrame
        Where the plane lies in the model's mask frame.
    rules : RefineRules
    """
    answers = []
    for start in range(0, len(prompts), max(1, int(rules.batch_size))):
        batch = prompts[start : start + max(1, int(rules.batch_size))]
        inputs = np.stack([labels == p.obj_id for p in batch])
        points_yx = np.array([[p.point_yx] for p in batch], dtype=np.float64)
        boxes_yxyx = np.array([p.box_yxyx for p in batch], dtype=np.float64)
        mask_input = mask_to_logits(inputs, frame, rules.mask_logit)
        result = decode(points_yx, boxes_yxyx, mask_input)
        for prompt, given, candidates, score in zip(batch, inputs, result.masks, result.scores):
            best = int(np.argmax(score))
            answers.append(judge(prompt.obj_id, given, candidates[best], float(score[best]), rules))
    return answers


def judge(
    obj_id: int, given: np.ndarray, answer: np.ndarray, score: float, rules: RefineRules
) -> _Answer:
    """The verdict on one answer (the acceptance rules of the module docstring).

    Parameters
    ----------
    given, answer : numpy.ndarray, (H, W) bool
        The object's input pixels and the model's answer.
    score : float
        The answer's predicted IoU.
    """
    overlap = int(np.count_nonzero(given & answer))
    union = int(np.count_nonzero(given | answer))
    iou = overlap / union if union else 0.0
    changed = union - overlap
    edge = given & ~ndimage.binary_erosion(given, border_value=0)
    displacement = changed / max(1, int(np.count_nonzero(edge)))
    if not answer.any():
        reason = "empty"
    elif score < rules.min_score:
        reason = "low_score"
    elif iou < rules.min_iou:
        reason = "low_iou"
    elif displacement <= rules.agree_px:
        reason = "agrees"
    else:
        reason = "refined"
    accepted = reason == "refined"
    outcome = ObjectOutcome(int(obj_id), accepted, score, iou, reason)
    return _Answer(outcome, answer if accepted else None)


def write_back(labels: np.ndarray, answers: Sequence[_Answer], split: bool, rules) -> Refinement:
    """The refined labels (a new array, same dtype) from the judged answers.

    Accepted answers are written in the order given; each takes only pixels that were
    background or its own in ``labels`` and not yet taken by an earlier answer; its
    other former pixels become background (with ``split``, large lost parts get new
    ids, module docstring).
    """
    refined = labels.copy()
    taken = np.zeros(labels.shape, dtype=bool)
    next_id = int(labels.max()) + 1 if labels.size else 1
    outcomes = []
    for answer in answers:
        outcome = answer.outcome
        if not outcome.accepted:
            outcomes.append(outcome)
            continue
        own = labels == outcome.obj_id
        mask = answer.mask & (own | (labels == 0)) & ~taken
        refined[own & ~mask] = 0
        refined[mask] = labels.dtype.type(outcome.obj_id)
        taken |= mask
        new_ids: tuple[int, ...] = ()
        if split:
            lost = own & ~mask
            new_ids, next_id = _split_off(refined, lost, int(mask.sum()), next_id, rules)
            for new_id in new_ids:
                taken |= refined == new_id
        outcomes.append(ObjectOutcome(**{**outcome.__dict__, "new_ids": new_ids}))
    return Refinement(refined, tuple(sorted(outcomes, key=lambda o: o.obj_id)))


def _split_off(refined, lost, kept_area: int, next_id: int, rules) -> tuple[tuple, int]:
    """Give each large connected part of ``lost`` a new id in ``refined`` (in place)."""
    parts, count = ndimage.label(lost)
    if count == 0:
        return (), next_id
    sizes = np.bincount(parts.ravel(), minlength=count + 1)[1:]
    new_ids = []
    for number in np.flatnonzero(sizes >= rules.split_min_area * max(1, kept_area)) + 1:
        check_label_room(refined.dtype, next_id, "labels")
        refined[parts == number] = refined.dtype.type(next_id)
        new_ids.append(next_id)
        next_id += 1
    return tuple(new_ids), next_id


def refine_label_plane(
    labels: np.ndarray,
    ids: Sequence[int] | None,
    decode: Decode,
    frame: MaskFrame,
    rules: RefineRules = RefineRules(),
    split: bool = False,
    probe: Probe | None = None,
) -> Refinement:
    """Refine the objects of one checked label plane (:func:`check_labels`).

    Parameters
    ----------
    labels : numpy.ndarray, (H, W) int or bool
        Not modified.
    ids : sequence of int, optional
        The objects to refine (default: all); others are never touched.
    decode : callable
        As in :func:`refine_objects`.
    frame : MaskFrame
    rules : RefineRules
    split : bool
        Give large parts a merged object loses new ids instead of background.
    probe : callable, optional
        One click per object (``core.merged.Probe``): objects that are two under one
        id are then found and kept to one of them (``core.merged.separate``).

    Returns
    -------
    Refinement
    """
    wanted = check_ids(labels, ids)
    if not wanted:
        return Refinement(labels.copy(), ())
    prompts = object_prompts(labels, wanted, rules)
    answers = refine_objects(labels, prompts, decode, frame, rules)
    if probe is not None:
        answers = _with_separated(labels, answers, separate(labels, wanted, probe))
    return write_back(labels, answers, split, rules)


def _with_separated(labels: np.ndarray, answers: list, parts: dict) -> list:
    """``answers`` with the objects found to be two (``core.merged``) answered by the
    part that keeps their id (reason ``"separated"``)."""
    changed = []
    for answer in answers:
        obj_id = answer.outcome.obj_id
        if obj_id not in parts:
            changed.append(answer)
            continue
        part, score = parts[obj_id]
        own = labels == obj_id
        iou = float((part & own).sum() / max(1, (part | own).sum()))
        changed.append(_Answer(ObjectOutcome(obj_id, True, score, iou, "separated"), part))
    return changed
