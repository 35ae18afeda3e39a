"""A NumPy reference for fit / evaluate / predict, and helpers shared by the tests of training.

``Ref`` is plain NumPy float64 forward and backward passes of an MLP with a softmax
cross-entropy head, and plain mini-batch SGD over the orders that fit documents
(``numpy.random.default_rng(seed).permutation(n)`` per epoch). Nothing here calls arrayprop to
produce an expected value; arrayprop is used only to read a model's weights and to load data.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

import numpy as np

import arrayprop as ap
from arrayprop.training.metrics import Metric


def _act(kind, z):
    return np.maximum(z, 0) if kind == "relu" else 1 / (1 + np.exp(-z))


def _act_grad(kind, a):
    return (a > 0).astype(a.dtype) if kind == "relu" else a * (1 - a)


class Ref:
    """An MLP in NumPy float64: weights Ws (in, out), biases bs; softmax-CE on integer labels."""

    def __init__(self, model, act="relu"):
        be = model.backend
        dense = [layer for layer in model.layers if hasattr(layer, "in_features")]
        self.Ws = [be.to_host(d.weight.data).astype(np.float64) for d in dense]
        self.bs = [be.to_host(d.bias.data).astype(np.float64) for d in dense]
        self.act = act

    def forward(self, x):
        a = [x]
        for i, (W, b) in enumerate(zip(self.Ws, self.bs, strict=True)):
            z = a[-1] @ W + b
            a.append(_act(self.act, z) if i < len(self.Ws) - 1 else z)
        return a

    def loss_and_grads(self, x, y):
        a = self.forward(x)
        logits = a[-1]
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        n = x.shape[0]
        loss = -logp[np.arange(n), y].mean()
        delta = np.exp(logp)
        delta[np.arange(n), y] -= 1
        delta /= n
        gW, gb = [None] * len(self.Ws), [None] * len(self.Ws)
        for i in range(len(self.Ws) - 1, -1, -1):
            gW[i] = a[i].T @ delta
            gb[i] = delta.sum(axis=0)
            if i:
                delta = (delta @ self.Ws[i].T) * _act_grad(self.act, a[i])
        correct = np.sum(logits.argmax(axis=1) == y)
        return loss, correct, gW, gb

    def sgd(self, x, y, *, lr, epochs, batch, shuffle, seed, steps=None):
        """Plain SGD; returns per-epoch (mean loss, accuracy). ``steps`` stops early."""
        rng = np.random.default_rng(seed)
        n = x.shape[0]
        B = n if batch is None else min(batch, n)
        logs, done = [], 0
        for _ in range(epochs):
            order = rng.permutation(n) if shuffle and B < n else np.arange(n)
            total = correct = 0.0
            for s in range(0, n, B):
                if steps is not None and done == steps:
                    return logs
                idx = order[s : s + B]
                loss, c, gW, gb = self.loss_and_grads(x[idx], y[idx])
                total += loss * len(idx)
                correct += c
                for W, g in zip(self.Ws, gW, strict=True):
                    W -= lr * g
                for b, g in zip(self.bs, gb, strict=True):
                    b -= lr * g
                done += 1
            logs.append((total / n, correct / n))
        return logs


def model_weights(model):
    """Host copies of the model's parameters, in ``model.parameters()`` order."""
    return [model.backend.to_host(p.data).copy() for p in model.parameters()]


def ref_weights(ref):
    """The reference's weights and biases in the order of ``model_weights``."""
    out = []
    for W, b in zip(ref.Ws, ref.bs, strict=True):
        out += [W, b]
    return out


def assert_weights(got, want, exact=False, rtol=1e-10):
    """Each pair of arrays equal (``exact``) or close to ``rtol``."""
    for g, w in zip(got, want, strict=True):
        if exact:
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-12)


def interrupting_step(opt, at, *, before):
    """Patch opt.step: on call ``at`` raise KeyboardInterrupt before the update, or send
    SIGINT to this process after it."""
    original = opt.step
    calls = {"n": 0}

    def step():
        calls["n"] += 1
        if before and calls["n"] == at:
            raise KeyboardInterrupt
        original()
        if not before and calls["n"] == at:
            signal.raise_signal(signal.SIGINT)

    opt.step = step


def small_classification(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """23 samples of 5 features, 3 classes: batches of 4 leave a partial last batch."""
    x = rng.standard_normal((23, 5))
    y = rng.integers(0, 3, size=23)
    return x, y


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The bundled digits: train x, y and test x, y (split with seed 0)."""
    (x, y), (xt, yt) = ap.data.load_digits(seed=0)
    return x, y, xt, yt


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny matrices: torch's intra-op threads only contend for the cores (10x slower here)."""
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class CtrlCAt(Metric):
    """A metric that presses Ctrl-C (SIGINT to this process) during global step ``at``: fit
    finishes that step and stops (saving mid-epoch when it has a checkpoint); 0: never."""

    name = "ctrl_c"

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def batch_sum(self, xp, pred, target, dtype):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return xp.zeros((), dtype=dtype, device=pred.device)
