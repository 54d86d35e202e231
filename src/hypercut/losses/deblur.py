"""Deblurring losses for image-to-video prediction: naive, order-invariant and HyperCUT.

Every loss comes as a function and an ``nn.Module`` with the same arguments. The modules return a
dict with the scalar ``"loss"`` to optimise plus detached scalar diagnostics that a LitModule can log
as ``train/<key>``.

Sequences are ``(B, T, C, H, W)`` float tensors in [0, 1]; ``T`` may be any value ``>= 2`` unless
stated otherwise.

Every loss module takes the same call, ``loss(pred, sharp, step=None, canonicalizer=None)`` (see
:class:`DeblurLoss`): ``step`` is the global training step (for warm-ups), ``canonicalizer`` the
frozen ordering model, which the caller owns and passes on every call (a
:class:`~hypercut.lit.DeblurLitModule` is given it once). The losses that need it say so with
``needs_canonicalizer``. They are written against the small :class:`Canonicalizer` protocol
(``hypercut.ordering.OrderCanonicalizer`` satisfies it), so any object with its two methods works,
e.g. a stub in a test.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Canonicalizer",
    "DeblurLoss",
    "HyperCUTLoss",
    "HyperCUTReleasedLoss",
    "NaiveLoss",
    "OrderInvariantLoss",
    "alpha_schedule",
    "charbonnier",
    "hypercut_loss",
    "hypercut_released_loss",
    "naive_loss",
    "order_invariant_loss",
    "side_penalty",
]

Distance = Literal["l1", "mse"]
Penalty = Literal["hinge", "softplus"]


@runtime_checkable
class Canonicalizer(Protocol):
    """What the HyperCUT losses and :class:`~hypercut.lit.DeblurLitModule` need from a frozen ordering model.

    Two calls, each one forward pass of the ordering model: the ground truth is canonicalised (and
    scored) once, a prediction is scored once. ``hypercut.ordering.OrderCanonicalizer`` implements it.
    """

    def canonicalize(self, sharp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(canonical, flipped, u)``, without gradients.

        ``canonical`` is ``sharp`` with the flipped samples reversed in time, ``flipped`` says which,
        and ``u`` are the pair scores of ``canonical`` (positive = canonical side).

        Shape:
            - sharp: ``(B, T, C, H, W)``
            - canonical: ``(B, T, C, H, W)``
            - flipped: ``(B,)`` bool
            - u: ``(B, K)`` with ``K = T // 2``
        """
        ...

    def scores(self, pred: Tensor) -> tuple[Tensor, Tensor]:
        """Return the pair scores ``(u, v)`` of ``pred`` and of its reversed pairs, differentiable in ``pred``.

        ``u > 0``: the pair lies on the canonical side.

        Shape:
            - pred: ``(B, T, C, H, W)``
            - u, v: ``(B, K)`` with ``K = T // 2``
        """
        ...


class DeblurLoss(nn.Module):
    """Base of the deblurring loss modules: the one call they all take.

    ``forward(pred, sharp, step=None, canonicalizer=None)`` returns a dict with the scalar ``"loss"``
    and detached scalar diagnostics. ``step`` is the global training step (``None`` outside
    training), ``canonicalizer`` the frozen ordering model; a loss ignores what it does not use.
    ``needs_canonicalizer`` is True for the losses that cannot run without one.

    Shape:
        - forward(pred, sharp, step, canonicalizer): ``(B, T, C, H, W)`` each
        - output values: ``()``
    """

    needs_canonicalizer: ClassVar[bool] = False

    def forward(
        self, pred: Tensor, sharp: Tensor, step: int | None = None, canonicalizer: Canonicalizer | None = None
    ) -> dict[str, Tensor]:
        raise NotImplementedError


def _required(canonicalizer: Canonicalizer | None, loss: DeblurLoss) -> Canonicalizer:
    if canonicalizer is None:
        raise ValueError(f"{type(loss).__name__} needs the frozen ordering model: pass canonicalizer=")
    return canonicalizer


def _check_pair(pred: Tensor, sharp: Tensor) -> None:
    if pred.shape != sharp.shape:
        raise ValueError(
            f"pred and sharp must have the same shape, got {tuple(pred.shape)} and {tuple(sharp.shape)}"
        )
    if pred.dim() != 5:
        raise ValueError(f"expected (B, T, C, H, W) sequences, got shape {tuple(pred.shape)}")


# ----------------------------------------------------------------------------------------------------
# Charbonnier / naive
# ----------------------------------------------------------------------------------------------------
def charbonnier(x: Tensor, y: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean Charbonnier penalty ``mean(sqrt((x - y)^2 + eps^2))``, a smooth L1.

    Args:
        x: Prediction.
        y: Target, same shape as ``x``.
        eps: Smoothing constant; the penalty of a perfect prediction is ``eps``.

    Returns:
        Scalar tensor.

    Shape:
        - x, y: any shape, equal.
        - output: ``()``.

    Example:
        >>> x = torch.zeros(2, 3)
        >>> round(charbonnier(x, x + 1).item(), 4)
        1.0
    """
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} and {tuple(y.shape)}")
    diff = x - y
    return torch.sqrt(diff * diff + eps * eps).mean()


def naive_loss(pred: Tensor, sharp: Tensor, eps: float = 1e-3) -> Tensor:
    """Per-frame Charbonnier loss against the ground truth in its stored order.

    Args:
        pred: Predicted sequence.
        sharp: Ground-truth sequence.
        eps: Charbonnier smoothing constant.

    Returns:
        Scalar: the mean over batch, frames, channels and pixels.

    Shape:
        - pred, sharp: ``(B, T, C, H, W)``
        - output: ``()``
    """
    _check_pair(pred, sharp)
    return charbonnier(pred, sharp, eps)


class NaiveLoss(DeblurLoss):
    """Module form of :func:`naive_loss`.

    Args:
        eps: Charbonnier smoothing constant.

    Shape:
        - forward(pred, sharp, step=None, canonicalizer=None): ``(B, T, C, H, W)`` each; ``step`` and
          ``canonicalizer`` are ignored
        - output: ``{"loss": ()}``

    Example:
        >>> x = torch.rand(2, 5, 3, 8, 8)
        >>> NaiveLoss()(x, x)["loss"].item() < 2e-3
        True
    """

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(
        self, pred: Tensor, sharp: Tensor, step: int | None = None, canonicalizer: Canonicalizer | None = None
    ) -> dict[str, Tensor]:
        return {"loss": naive_loss(pred, sharp, self.eps)}


def best_direction_loss(
    pred: Tensor, sharp: Tensor, eps: float = 1e-3, frequency_weight: float = 0.0, centre_weight: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Charbonnier loss against whichever of ``sharp`` and its reverse is closer, per sample.

    The training counterpart of the p-metrics: the network may settle each sample's direction
    itself, and is never pulled towards both orders at once (which blurs the outer frames).

    With ``frequency_weight > 0`` each direction's loss adds that weight times the mean absolute value
    of the error's 2-D Fourier transform (real and imaginary parts; orthonormal, so the term does not
    grow with the image size): it weighs the missing high frequencies of a blurred edge like the low
    ones, which dominate a pixel loss. With ``centre_weight > 0`` it adds that weight times the
    Charbonnier loss of the middle frame ``T // 2`` alone (the same frame in both directions when
    ``T`` is odd).

    Args:
        pred: Predicted sequence.
        sharp: Ground-truth sequence.
        eps: Charbonnier smoothing constant.
        frequency_weight: Weight of the Fourier-domain L1 term (0 leaves it out).
        centre_weight: Weight of the extra middle-frame Charbonnier term (0 leaves it out).

    Returns:
        ``(loss, flipped)``: the scalar mean over the batch of the per-sample minimum, and a bool
        ``(B,)`` that is True where the reversed ground truth was the closer one.

    Shape:
        - pred, sharp: ``(B, T, C, H, W)``
        - output: ``()`` and ``(B,)``

    Example:
        >>> x = torch.rand(2, 5, 3, 8, 8)
        >>> loss, flipped = best_direction_loss(x.flip(1), x, frequency_weight=0.5)
        >>> loss.item() < 2e-3, flipped.tolist()
        (True, [True, True])
    """
    _check_pair(pred, sharp)
    _check_extra_weights(frequency_weight, centre_weight)
    dims = tuple(range(1, pred.dim()))

    def per_sample(target: Tensor) -> Tensor:
        diff = pred - target
        error = torch.sqrt(diff.square() + eps * eps)
        loss = error.mean(dims)
        if frequency_weight > 0:
            spectrum = torch.view_as_real(torch.fft.rfft2(diff.float(), norm="ortho"))
            loss = loss + frequency_weight * spectrum.abs().mean(tuple(range(1, spectrum.dim())))
        if centre_weight > 0:
            loss = loss + centre_weight * error[:, error.shape[1] // 2].mean(dims[:-1])
        return loss

    forward, backward = per_sample(sharp), per_sample(sharp.flip(1))
    flipped = backward < forward
    return torch.where(flipped, backward, forward).mean(), flipped


def _check_extra_weights(frequency_weight: float, centre_weight: float) -> None:
    for name, value in (("frequency_weight", frequency_weight), ("centre_weight", centre_weight)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


class BestDirectionLoss(DeblurLoss):
    """Module form of :func:`best_direction_loss`.

    Args:
        eps: Charbonnier smoothing constant.
        frequency_weight: Weight of the Fourier-domain L1 term (0 leaves it out).
        centre_weight: Weight of the extra middle-frame Charbonnier term (0 leaves it out).

    Shape:
        - forward(pred, sharp, step=None, canonicalizer=None): ``(B, T, C, H, W)`` each; ``step`` and
          ``canonicalizer`` are ignored
        - output: ``{"loss": (), "flipped": ()}`` (the fraction of samples matched reversed)
    """

    def __init__(self, eps: float = 1e-3, frequency_weight: float = 0.0, centre_weight: float = 0.0) -> None:
        super().__init__()
        _check_extra_weights(frequency_weight, centre_weight)
        self.eps = eps
        self.frequency_weight = frequency_weight
        self.centre_weight = centre_weight

    def forward(
        self, pred: Tensor, sharp: Tensor, step: int | None = None, canonicalizer: Canonicalizer | None = None
    ) -> dict[str, Tensor]:
        loss, flipped = best_direction_loss(pred, sharp, self.eps, self.frequency_weight, self.centre_weight)
        return {"loss": loss, "flipped": flipped.float().mean()}


# ----------------------------------------------------------------------------------------------------
# Order-invariant (Jin et al. 2018)
# ----------------------------------------------------------------------------------------------------
def order_invariant_loss(
    pred: Tensor,
    sharp: Tensor,
    distance: Distance = "l1",
    eps: float = 1e-3,
    supervise_middle: bool = True,
) -> Tensor:
    """Order-invariant loss of Jin et al. (CVPR 2018) on symmetric frame pairs.

    For every symmetric pair ``(i, j) = (1 + k, T - k)``, ``k < K = T // 2``, it compares the
    elementwise absolute sum and absolute difference of the two frames, which are both unchanged when
    the ground truth is reversed in time:

    ``a_k = D(|p_i + p_j|, |s_i + s_j|)`` and ``b_k = D(|p_i - p_j|, |s_i - s_j|)``

    with ``D`` the mean absolute error (``"l1"``, Jin's choice) or the mean squared error (``"mse"``,
    the released HyperCUT code) over batch, channels and pixels. When ``T`` is odd the middle frame is
    supervised directly with ``D_mid(p_m, s_m)``: Charbonnier for ``"l1"``, squared error for
    ``"mse"`` (the same scale as the pair terms, so the middle frame is neither drowned nor dominant).
    The released code forgets this term (``supervise_middle=False`` reproduces that).

    Weighting / normalisation::

        loss = (sum_k (a_k + b_k) / 2  +  D_mid) / T

    The ``/ 2`` and ``/ T`` make it a per-frame average on the same scale as :func:`naive_loss`: for
    ``"mse"`` and predictions without sign flips, ``(a_k + b_k) / 2 = mse(p_i, s_i) + mse(p_j, s_j)``
    exactly, so the loss equals the per-frame MSE when the prediction is in the stored order; for
    ``"l1"``, ``(|e_i + e_j| + |e_i - e_j|) / 2 = max(|e_i|, |e_j|)``, between the mean and the sum of
    the two frame errors. With ``supervise_middle=False`` the normaliser stays ``T``.

    Args:
        pred: Predicted sequence.
        sharp: Ground-truth sequence (either order gives the same value).
        distance: ``"l1"`` or ``"mse"``.
        eps: Charbonnier constant for the middle frame (``"l1"`` only).
        supervise_middle: Supervise the middle frame directly when ``T`` is odd.

    Returns:
        Scalar loss.

    Shape:
        - pred, sharp: ``(B, T, C, H, W)``, ``T >= 2``
        - output: ``()``

    Example:
        >>> p, s = torch.rand(2, 7, 3, 8, 8), torch.rand(2, 7, 3, 8, 8)
        >>> bool(order_invariant_loss(p, s) == order_invariant_loss(p, s.flip(1)))
        True
    """
    _check_pair(pred, sharp)
    if distance not in ("l1", "mse"):
        raise ValueError(f"distance must be 'l1' or 'mse', got {distance!r}")
    t = pred.shape[1]
    if t < 2:
        raise ValueError(f"order_invariant_loss needs T >= 2 frames, got {t}")
    k = t // 2

    def dist(a: Tensor, b: Tensor) -> Tensor:
        return (a - b).abs().mean() if distance == "l1" else F.mse_loss(a, b)

    # Pairs (1 + k, T - k) for k < K: the first K frames against the last K in reverse.
    p_i, p_j = pred[:, :k], pred.flip(1)[:, :k]
    s_i, s_j = sharp[:, :k], sharp.flip(1)[:, :k]
    # The mean over all K pairs times K is the sum over pairs of the per-pair means.
    a = dist((p_i + p_j).abs(), (s_i + s_j).abs())
    b = dist((p_i - p_j).abs(), (s_i - s_j).abs())
    total = 0.5 * (a + b) * k
    if t % 2 == 1 and supervise_middle:
        p_m, s_m = pred[:, k], sharp[:, k]
        total = total + (charbonnier(p_m, s_m, eps) if distance == "l1" else F.mse_loss(p_m, s_m))
    return total / t


class OrderInvariantLoss(DeblurLoss):
    """Module form of :func:`order_invariant_loss` (Jin et al. 2018).

    Args:
        distance: ``"l1"`` (Jin) or ``"mse"`` (released HyperCUT code).
        eps: Charbonnier constant for the middle frame.
        supervise_middle: Supervise the middle frame directly when ``T`` is odd.

    Shape:
        - forward(pred, sharp, step=None, canonicalizer=None): ``(B, T, C, H, W)`` each; ``step`` and
          ``canonicalizer`` are ignored
        - output: ``{"loss": ()}``
    """

    def __init__(self, distance: Distance = "l1", eps: float = 1e-3, supervise_middle: bool = True) -> None:
        super().__init__()
        if distance not in ("l1", "mse"):
            raise ValueError(f"distance must be 'l1' or 'mse', got {distance!r}")
        self.distance: Distance = distance
        self.eps = eps
        self.supervise_middle = supervise_middle

    def forward(
        self, pred: Tensor, sharp: Tensor, step: int | None = None, canonicalizer: Canonicalizer | None = None
    ) -> dict[str, Tensor]:
        loss = order_invariant_loss(pred, sharp, self.distance, self.eps, self.supervise_middle)
        return {"loss": loss}


# ----------------------------------------------------------------------------------------------------
# HyperCUT
# ----------------------------------------------------------------------------------------------------
def alpha_schedule(step: int | None, alpha: float, warmup_steps: int) -> float:
    """Linear warm-up of the regulariser weight: ``alpha * min(1, step / warmup_steps)``.

    Args:
        step: The global optimisation step (0-based); ``None`` means "after warm-up" (e.g. validation).
        alpha: The final weight.
        warmup_steps: Steps to reach ``alpha``; ``0`` disables the warm-up.

    Returns:
        The weight for this step.

    Example:
        >>> alpha_schedule(50, 0.2, 100), alpha_schedule(None, 0.2, 100)
        (0.1, 0.2)
    """
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if step is None or warmup_steps == 0:
        return float(alpha)
    return float(alpha) * min(1.0, max(0, int(step)) / warmup_steps)


def side_penalty(scores: Tensor, penalty: Penalty = "hinge") -> Tensor:
    """Mean penalty on pair scores that lie on the negative (non-canonical) side.

    - ``"hinge"``: ``mean relu(-u)`` — zero for every pair on the canonical side, so it never pushes a
      prediction further than the hyperplane and nothing rewards over-shooting the ordering model.
    - ``"softplus"``: ``mean softplus(-u)`` — the paper's ``R``; ``log 2`` at ``u = 0``, and it keeps
      pushing pairs that are already on the right side.

    Args:
        scores: Pair scores ``u``.
        penalty: ``"hinge"`` or ``"softplus"``.

    Returns:
        Scalar penalty (mean over batch and pairs).

    Shape:
        - scores: ``(B, K)``
        - output: ``()``

    Example:
        >>> side_penalty(torch.tensor([[1.0, -2.0]]), "hinge")
        tensor(1.)
    """
    if penalty == "hinge":
        return F.relu(-scores).mean()
    if penalty == "softplus":
        return F.softplus(-scores).mean()
    raise ValueError(f"penalty must be 'hinge' or 'softplus', got {penalty!r}")


def _scored_penalty(pred: Tensor, canonicalizer: Canonicalizer, penalty: Penalty) -> tuple[Tensor, Tensor]:
    """``(u, R)``: the prediction's pair scores (detached) and ``side_penalty(u, penalty)``,
    differentiable in ``pred``.

    The hinge is zero, with zero gradient, for every pair on the canonical side, and a pair's score
    depends on its own sequence only (the ordering model is frozen in eval mode). So the scores are
    taken without gradients first, and only the sequences with a pair on the wrong side go through the
    ordering model again with gradients: the same value and gradient as scoring the whole batch with
    gradients, at the cost of a forward pass when every pair is on its side (the usual case once the
    reconstruction has learned the canonical order).
    """
    if penalty != "hinge":
        u, _ = canonicalizer.scores(pred)
        return u.detach(), side_penalty(u, penalty)
    with torch.no_grad():
        u, _ = canonicalizer.scores(pred)
    wrong = (u < 0).any(dim=1)
    if not bool(wrong.any()):
        return u, pred.new_zeros(())
    u_wrong, _ = canonicalizer.scores(pred[wrong])
    return u, F.relu(-u_wrong).sum() / u.numel()


def hypercut_loss(
    pred: Tensor,
    sharp: Tensor,
    canonicalizer: Canonicalizer,
    alpha: float = 0.2,
    alpha_warmup_steps: int = 1000,
    step: int | None = None,
    penalty: Penalty = "hinge",
    max_reg_grad_ratio: float | None = 0.5,
    eps: float = 1e-3,
) -> dict[str, Tensor]:
    """HyperCUT deblurring loss: Charbonnier against the canonicalised ground truth + ordering regulariser.

    ``loss = charbonnier(pred, canonical) + w * R(pred)`` where ``canonical`` is ``sharp`` with the
    samples that the frozen ordering model puts on the negative side reversed in time, and
    ``R = side_penalty(u(pred), penalty)`` pushes the prediction's pairs to the canonical side.

    The gradient of ``R`` at ``pred`` goes through a frozen CNN and its size follows the ordering
    model's score scale, so no fixed ``alpha`` is safe (the measurements: ``docs/RESULTS.md``, "Why
    the HyperCUT loss defaults"). The defaults:

    1. cap the regulariser's gradient against the reconstruction's (``max_reg_grad_ratio=0.5``): the
       weight actually used is ``w = min(alpha_t, ratio * |dL_rec/dpred| / |dR/dpred|)`` (batch norms),
       so ``R`` can steer the prediction but never out-pull the images, whatever the ordering model.
       ``dR/dpred`` is computed once with ``torch.autograd.grad`` and applied through a linear
       surrogate, so the backward pass goes through the ordering model once, as without the cap,
       and only for the sequences with a pair on the wrong side (the others add nothing to ``R``);
    2. use ``penalty="hinge"`` (``relu(-u)``): only pairs on the wrong side are penalised; a prediction
       the reconstruction has already brought to the canonical side gets no gradient from ``R``, and
       nothing rewards pushing scores beyond the hyperplane (no exploiting the ordering model);
    3. warm ``alpha`` up linearly over ``alpha_warmup_steps=1000`` steps (the caller passes the global
       ``step``; ``step=None`` uses the full ``alpha``) so the network first learns to reconstruct.

    ``penalty="softplus", max_reg_grad_ratio=None, alpha_warmup_steps=0`` gives the paper's formula.
    Without gradients (validation, ``torch.no_grad``) the cap cannot be measured: ``w = alpha_t``.

    Args:
        pred: Predicted sequence.
        sharp: Ground truth in its stored order.
        canonicalizer: Frozen ordering model (see :class:`Canonicalizer`).
        alpha: Final regulariser weight (paper: 0.2).
        alpha_warmup_steps: Linear warm-up length of ``alpha`` in steps; 0 disables it.
        step: Global training step for the warm-up; ``None`` for the full ``alpha``.
        penalty: ``"hinge"`` (default, see above) or ``"softplus"`` (paper).
        max_reg_grad_ratio: Upper bound of ``|w dR/dpred| / |dL_rec/dpred|``; ``None`` disables the cap.
        eps: Charbonnier constant.

    Returns:
        Dict with ``loss`` (differentiable; its value is ``recon + w * reg``) and detached scalar
        diagnostics: ``recon`` (Charbonnier term), ``reg`` (``R`` before weighting), ``alpha`` (the
        weight ``w`` used), ``flipped`` (fraction of ground-truth samples reversed),
        ``pred_wrong_side`` (fraction of prediction pairs with ``u < 0``), ``pred_score`` and
        ``gt_score`` (mean ``u`` of the prediction and of the canonical ground truth; a ``pred_score``
        well above ``gt_score`` means the predictions chase the ordering model, not the images).

    Shape:
        - pred, sharp: ``(B, T, C, H, W)``, ``T >= 2``
        - output values: ``()``
    """
    _check_pair(pred, sharp)
    if max_reg_grad_ratio is not None and max_reg_grad_ratio < 0:
        raise ValueError(f"max_reg_grad_ratio must be >= 0 or None, got {max_reg_grad_ratio}")
    with torch.no_grad():
        canonical, flipped, u_gt = canonicalizer.canonicalize(sharp)
    recon = charbonnier(pred, canonical, eps)
    a = alpha_schedule(step, alpha, alpha_warmup_steps)
    track = torch.is_grad_enabled() and pred.requires_grad

    if a > 0 and track:
        u, reg = _scored_penalty(pred, canonicalizer, penalty)
        if not reg.requires_grad:  # no pair on the wrong side: R and its gradient are zero
            w = torch.tensor(a, device=pred.device)
            loss = recon
        elif max_reg_grad_ratio is None:
            w = torch.tensor(a, device=pred.device)
            loss = recon + a * reg
        else:
            (g_rec,) = torch.autograd.grad(recon, pred, retain_graph=True)
            # Only the ordering model's part of the graph is traversed (and freed): it ends at ``pred``.
            (g_reg,) = torch.autograd.grad(reg, pred)
            g_rec_norm, g_reg_norm = g_rec.double().norm(), g_reg.double().norm()
            w = torch.clamp(max_reg_grad_ratio * g_rec_norm / g_reg_norm.clamp_min(1e-30), max=a).float()
            step_dir = (w.to(g_reg.dtype) * g_reg).detach()
            surrogate = (pred * step_dir).sum()
            # Value recon + w * reg, gradient g_rec + w * g_reg, one pass through the ordering model.
            loss = recon + w * reg.detach() + (surrogate - surrogate.detach())
    else:
        # No regulariser gradient needed: skip the backward pass through the ordering model.
        with torch.no_grad():
            u, _ = canonicalizer.scores(pred)
            reg = side_penalty(u, penalty)
        w = torch.tensor(a, device=pred.device)
        loss = recon + a * reg if a > 0 else recon

    with torch.no_grad():
        diag = {
            "recon": recon.detach(),
            "reg": reg.detach(),
            "alpha": w.detach().float(),
            "flipped": flipped.float().mean(),
            "pred_wrong_side": (u < 0).float().mean(),
            "pred_score": u.detach().float().mean(),
            "gt_score": u_gt.float().mean(),
        }
    return {"loss": loss, **diag}


class HyperCUTLoss(DeblurLoss):
    """Module form of :func:`hypercut_loss` (the paper's claim, with stable defaults).

    ``forward`` needs the frozen ordering model (``canonicalizer=``, see :class:`Canonicalizer`);
    gradients flow through it to ``pred`` only when it is frozen (``OrderCanonicalizer`` and
    :class:`~hypercut.lit.DeblurLitModule` freeze it). Pass the global step for the ``alpha`` warm-up.

    Args:
        alpha: Final regulariser weight (paper: 0.2).
        alpha_warmup_steps: Linear warm-up length in steps; 0 disables it.
        penalty: ``"hinge"`` (default) or ``"softplus"`` (paper).
        max_reg_grad_ratio: Cap of the regulariser's gradient norm at ``pred`` relative to the
            reconstruction's; ``None`` disables it.
        eps: Charbonnier constant.

    Shape:
        - forward(pred, sharp, step=None, canonicalizer): ``(B, T, C, H, W)`` each
        - output: dict of scalars, see :func:`hypercut_loss`.
    """

    needs_canonicalizer = True

    def __init__(
        self,
        alpha: float = 0.2,
        alpha_warmup_steps: int = 1000,
        penalty: Penalty = "hinge",
        max_reg_grad_ratio: float | None = 0.5,
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        if penalty not in ("hinge", "softplus"):
            raise ValueError(f"penalty must be 'hinge' or 'softplus', got {penalty!r}")
        if alpha_warmup_steps < 0:
            raise ValueError(f"alpha_warmup_steps must be >= 0, got {alpha_warmup_steps}")
        if max_reg_grad_ratio is not None and max_reg_grad_ratio < 0:
            raise ValueError(f"max_reg_grad_ratio must be >= 0 or None, got {max_reg_grad_ratio}")
        self.alpha = alpha
        self.alpha_warmup_steps = alpha_warmup_steps
        self.penalty: Penalty = penalty
        self.max_reg_grad_ratio = max_reg_grad_ratio
        self.eps = eps

    def forward(
        self, pred: Tensor, sharp: Tensor, step: int | None = None, canonicalizer: Canonicalizer | None = None
    ) -> dict[str, Tensor]:
        return hypercut_loss(
            pred,
            sharp,
            _required(canonicalizer, self),
            alpha=self.alpha,
            alpha_warmup_steps=self.alpha_warmup_steps,
            step=step,
            penalty=self.penalty,
            max_reg_grad_ratio=self.max_reg_grad_ratio,
            eps=self.eps,
        )


def hypercut_released_loss(
    pred: Tensor,
    sharp: Tensor,
    canonicalizer: Canonicalizer,
    alpha: float = 0.2,
    distance: Distance = "mse",
    supervise_middle: bool = True,
) -> dict[str, Tensor]:
    """The loss the authors' released code trains: order-invariant + ``alpha * mean softplus(+u(pred))``.

    Kept only to compare with the released numbers. Its regulariser pushes the prediction's pairs to
    the NEGATIVE side, the opposite of the side the same code labels canonical, and the ground truth is
    not canonicalised (the order-invariant term does not need it). The released code also leaves the
    middle frame unsupervised; pass ``supervise_middle=False`` to reproduce that too.

    Args:
        pred: Predicted sequence.
        sharp: Ground truth (either order).
        canonicalizer: Frozen ordering model; only its ``scores`` are used.
        alpha: Regulariser weight (no warm-up, no normalisation, as released).
        distance: Distance of the order-invariant term (released: ``"mse"``).
        supervise_middle: Supervise the middle frame directly when ``T`` is odd.

    Returns:
        Dict with ``loss`` and detached ``recon`` (order-invariant term), ``reg`` (mean softplus(u)).

    Shape:
        - pred, sharp: ``(B, T, C, H, W)``
        - output values: ``()``
    """
    recon = order_invariant_loss(pred, sharp, distance, supervise_middle=supervise_middle)
    u, _ = canonicalizer.scores(pred)
    reg = F.softplus(u).mean()
    return {"loss": recon + alpha * reg, "recon": recon.detach(), "reg": reg.detach()}


class HyperCUTReleasedLoss(DeblurLoss):
    """Module form of :func:`hypercut_released_loss` — the released code's loss, for comparison only.

    Note the sign: it adds ``alpha * softplus(+u)``, pushing predictions to the side opposite to the
    one the released code's own labelling calls canonical. Use :class:`HyperCUTLoss` to train.

    ``forward`` needs the frozen ordering model (``canonicalizer=``); only its ``scores`` are used.

    Args:
        alpha: Regulariser weight.
        distance: Distance of the order-invariant term (released: ``"mse"``).
        supervise_middle: Supervise the middle frame directly when ``T`` is odd (released: no).

    Shape:
        - forward(pred, sharp, step=None, canonicalizer): ``(B, T, C, H, W)`` each; ``step`` is ignored
        - output: ``{"loss", "recon", "reg"}`` scalars.
    """

    needs_canonicalizer = True

    def __init__(
        self,
        alpha: float = 0.2,
        distance: Distance = "mse",
        supervise_middle: bool = True,
    ) -> None:
        super().__init__()
        if distance not in ("l1", "mse"):
            raise ValueError(f"distance must be 'l1' or 'mse', got {distance!r}")
        self.alpha = alpha
        self.distance: Distance = distance
        self.supervise_middle = supervise_middle

    def forward(
        self, pred: Tensor, sharp: Tensor, step: int | None = None, canonicalizer: Canonicalizer | None = None
    ) -> dict[str, Tensor]:
        return hypercut_released_loss(
            pred, sharp, _required(canonicalizer, self), self.alpha, self.distance, self.supervise_middle
        )
