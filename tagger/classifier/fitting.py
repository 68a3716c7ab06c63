"""Fitting a head's learned residual to cached features, with L-BFGS in numpy.

The head's logits are prior + features @ W.T + b (tagger/classifier/head.py). With the prior fixed this
is a convex problem (multinomial logistic regression with an offset), so full-batch L-BFGS
reaches the optimum in a few dozen gradient evaluations: a fraction of a second for
thousands of photos, and the same answer every time, which SGD would not give.

numpy rather than torch: quick training then never imports torch, whose import alone costs
the GUI (which tags without torch, through the ONNX export) several seconds, and whose thread pool measured 5x
slower than one thread on these small matrices on a busy two-core machine.

Weight decay pulls W towards zero, i.e. towards the zero-shot prior: with few labels the head
stays close to what ImageNet already knows and only corrects it where the labels insist.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable

import numpy as np

from tagger.classifier.head import Head

# Per unit of the standardised features (rows scaled to unit mean norm). Chosen on the project's
# photos: 1e-4 beat 3e-4 and 1e-3 at 2 and 10 labels per class (bench/learning_curve.py); the
# prior keeps the fit sensible even though the decay is mild.
DEFAULT_WEIGHT_DECAY = 1e-4
DEFAULT_MAX_ITERATIONS = 200
# Iterations between two reports (and two looks at the cancel flag).
ITERATIONS_PER_STEP = 10
_HISTORY = 10  # L-BFGS memory: curvature pairs kept
_GRADIENT_TOLERANCE = 1e-6
_ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
_RELATIVE_TOLERANCE = 1e-6  # stop once a step lowers the loss by less than this fraction

StepCallback = Callable[[float], None]  # (loss) after each step; raising stops the fit
Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]  # parameters -> (loss, gradient)


def fit_steps(max_iterations: int = DEFAULT_MAX_ITERATIONS) -> int:
    """How many times `fit_residual` reports, at most: what a progress bar should count."""
    return max(1, -(-max_iterations // ITERATIONS_PER_STEP))


def fit_residual(
    head: Head,
    features: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    *,
    prior: np.ndarray | None = None,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    on_step: StepCallback | None = None,
) -> Head:
    """A copy of `head` whose residual minimises the weighted cross-entropy to `targets`.

    features [N, D] (raw, as cached), targets [N, C] (rows of class probabilities, one-hot for
    a label), weights [N] (how much each row counts; e.g. class balancing). `prior` may pass
    `head.prior_logits(features)` when the caller already has it. The copy has temperature 1
    and no class bias: calibration is a separate, later step.
    """
    features = np.asarray(features, dtype=np.float32)
    if prior is None:
        prior = head.prior_logits(features)
    # Centred and scaled so that one weight decay means the same for any backbone, and so
    # that L-BFGS starts well conditioned; folded back into raw-feature weights at the end.
    centre = features.mean(axis=0)
    scale = float(np.mean(np.linalg.norm(features - centre, axis=1))) or 1.0
    inputs = (features - centre) / scale
    objective = cross_entropy_objective(
        inputs,
        np.asarray(prior, dtype=np.float64),
        np.asarray(targets, dtype=np.float64),
        np.asarray(weights, dtype=np.float64),
        weight_decay,
    )
    n_classes = len(head.classes)
    dim = features.shape[1]
    solution = minimise_lbfgs(
        objective, np.zeros((dim + 1) * n_classes), max_iterations=max_iterations, on_step=on_step
    )
    weight = solution[: dim * n_classes].reshape(n_classes, dim) / scale  # raw-feature units
    bias = solution[dim * n_classes :] - weight @ centre
    return dataclasses.replace(
        head,
        residual_weight=weight.astype(np.float32),
        residual_bias=bias.astype(np.float32),
        class_bias=np.zeros(n_classes, dtype=np.float32),
        temperature=1.0,
        info=dict(head.info),
    )


def cross_entropy_objective(
    inputs: np.ndarray, prior: np.ndarray, targets: np.ndarray, weights: np.ndarray, decay: float
) -> Objective:
    """Loss and gradient of sum_i w_i CE(prior_i + x_i W.T + b, t_i) / sum w + decay |W|^2.

    Parameters are W [C, D] then b [C], flattened. Everything per class is kept as [C, N]:
    with a handful of classes, row-wise reductions over [N, C] arrays ran 3x slower, and
    `inputs @ W.T` / `R @ inputs` are the two BLAS shapes that measured fastest here.
    """
    weights = weights / max(float(weights.sum()), 1e-12)
    n_classes, dim = prior.shape[1], inputs.shape[1]
    prior_t = np.ascontiguousarray(prior.T, dtype=np.float64)
    targets_t = np.ascontiguousarray(targets.T, dtype=np.float64)
    # Rows whose targets do not sum to one (never, in practice) still get the right gradient.
    target_mass = targets_t.sum(axis=0)

    def evaluate(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        weight = parameters[: dim * n_classes].reshape(n_classes, dim)
        bias = parameters[dim * n_classes :]
        logits = np.einsum("nd,cd->cn", inputs, weight.astype(np.float32)) + prior_t + bias[:, None]
        logits -= logits.max(axis=0)
        exp = np.exp(logits)
        total = exp.sum(axis=0)
        log_probabilities = logits - np.log(total)
        loss = -float((targets_t * log_probabilities).sum(axis=0) @ weights)
        loss += decay * float(np.sum(weight * weight))
        residual = weights * (exp * (target_mass / total) - targets_t)  # [C, N]
        weight_gradient = np.einsum("cn,nd->cd", residual.astype(np.float32), inputs)
        weight_gradient = weight_gradient.astype(np.float64)
        weight_gradient += 2.0 * decay * weight
        return loss, np.concatenate([weight_gradient.ravel(), residual.sum(axis=1)])

    return evaluate


def minimise_lbfgs(
    objective: Objective,
    start: np.ndarray,
    *,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    on_step: StepCallback | None = None,
) -> np.ndarray:
    """Minimise a smooth convex function by L-BFGS (Nocedal & Wright, algorithm 7.4/7.5).

    The line search only backtracks (Armijo); on a convex objective every accepted step has
    positive curvature, so the inverse-Hessian estimate stays positive definite.
    """
    x = start.astype(np.float64)
    loss, gradient = objective(x)
    steps: deque[np.ndarray] = deque(maxlen=_HISTORY)
    changes: deque[np.ndarray] = deque(maxlen=_HISTORY)
    for iteration in range(1, max_iterations + 1):
        if np.max(np.abs(gradient)) < _GRADIENT_TOLERANCE:
            break
        direction = -_inverse_hessian_times(gradient, steps, changes)
        slope = float(gradient @ direction)
        if slope >= 0:  # lost descent (rounding): restart from steepest descent
            steps.clear()
            changes.clear()
            direction, slope = -gradient, -float(gradient @ gradient)
        step = 1.0 if steps else min(1.0, 1.0 / max(float(np.sum(np.abs(gradient))), 1e-12))
        while True:
            candidate = x + step * direction
            new_loss, new_gradient = objective(candidate)
            if new_loss <= loss + _ARMIJO * step * slope or step < 1e-10:
                break
            step *= 0.5
        change = new_gradient - gradient
        if float(change @ (candidate - x)) > 1e-12:
            steps.append(candidate - x)
            changes.append(change)
        converged = loss - new_loss <= _RELATIVE_TOLERANCE * max(1.0, abs(loss))
        x, loss, gradient = candidate, new_loss, new_gradient
        if on_step is not None and iteration % ITERATIONS_PER_STEP == 0:
            on_step(loss)
        if converged:
            break
    return x


def _inverse_hessian_times(gradient: np.ndarray, steps: deque[np.ndarray], changes: deque[np.ndarray]) -> np.ndarray:
    """The two-loop recursion: the L-BFGS estimate of H^-1 @ gradient."""
    q = gradient.copy()
    alphas = []
    for s, y in zip(reversed(steps), reversed(changes)):
        alpha = float(s @ q) / float(y @ s)
        alphas.append(alpha)
        q -= alpha * y
    if steps:
        q *= float(steps[-1] @ changes[-1]) / float(changes[-1] @ changes[-1])
    for (s, y), alpha in zip(zip(steps, changes), reversed(alphas)):
        beta = float(y @ q) / float(y @ s)
        q += (alpha - beta) * s
    return q


def balanced_weights(classes_of_rows: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-row weights that give every class present the same total weight (mean 1)."""
    counts = np.bincount(classes_of_rows, minlength=n_classes).astype(np.float64)
    present = int((counts > 0).sum())
    per_class = np.where(counts > 0, len(classes_of_rows) / (present * np.maximum(counts, 1)), 0.0)
    return per_class[classes_of_rows]
