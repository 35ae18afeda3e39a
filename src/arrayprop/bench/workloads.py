"""Ready-to-time train steps of the four implementations (see :mod:`arrayprop.bench`).

:func:`make_workload` builds a :class:`Workload` for ``arrayprop``, ``gemm`` (the GEMM
ceiling), ``torch-eager`` (the PyTorch peer) or ``numpy-ref`` (the hand-written NumPy loop
of :mod:`arrayprop.bench.reference`), with the weights and data already on the device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from itertools import pairwise
from types import ModuleType
from typing import Any

import numpy as np

import arrayprop as ap
from arrayprop.bench import reference
from arrayprop.bench.configs import (
    BACKENDS,
    DTYPE,
    IMPLS,
    LR,
    BenchConfig,
    ConvBenchConfig,
    get_configs,
    make_data,
    parse_names,
)


def load_reference() -> ModuleType:
    """The hand-written NumPy loop the ``numpy-ref`` rows time: :mod:`arrayprop.bench.reference`.

    Part of the installed package, so that ``arrayprop bench`` finds it outside a checkout.
    """
    return reference


@dataclasses.dataclass
class Workload:
    """A ready-to-time step: ``out = step(); sync(out)`` runs one synchronised step."""

    impl: str
    config: BenchConfig
    backend: str
    device: str
    batch: int
    step: Callable[[], Any]
    sync: Callable[[Any], None]
    flops_per_step: int | None = None
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def pool(self) -> str:
        """The library whose worker threads run this workload (numpy, torch, cupy, jax)."""
        return thread_pool(self.impl, self.backend)


def thread_pool(impl: str, backend: str) -> str:
    """The library whose worker threads run ``impl`` on ``backend``: numpy, torch, cupy or jax.

    The runner groups workloads by it, so that interleaved timing switches pools rarely
    (each switch lets the idle pool's threads settle first).
    """
    if impl == "torch-eager":
        return "torch"
    if impl == "numpy-ref" or backend == "array_api_strict":
        return "numpy"
    return backend


def _block(outs) -> None:
    # JAX dispatch is asynchronous per array: wait on every result of the step.
    for out in outs or ():
        fn = getattr(out, "block_until_ready", None)
        if fn is not None:
            fn()


def _noop_sync(out) -> None:
    return None


#: Backends whose arrays always live on the host, whatever ``--device`` says.
HOST_ONLY = ("numpy", "array_api_strict")


def arrayprop_backend(name: str, device: str | None, dtype: str = DTYPE) -> Any:
    """The arrayprop backend ``name`` a benchmark runs on, ``device`` applied to accelerators.

    Raises
    ------
    ValueError
        If the backend's array library cannot be imported here.
    """
    if name in HOST_ONLY:
        # --device names the accelerator for cupy / torch / jax; the CPU backends stay on the
        # host, so that `--backends numpy,cupy --device cuda` compares BLAS with CUDA.
        device = None
    try:
        return ap.get_backend(name, device=device, dtype=dtype)
    except ImportError as exc:
        raise ValueError(f"backend {name!r} is not available here: {exc}") from exc


def _device_str(be) -> str:
    """The device as results name it, and as :func:`torch_device_for` names the peer's.

    CuPy's device prints as ``<CUDA Device 0>``: it is named ``cuda:N`` like PyTorch's, so
    that a CuPy row is compared with the CUDA peer and ``--memory`` measures device memory.
    """
    dev = getattr(be, "device", None)
    if dev is None:
        return "cpu"
    if be.name == "cupy":
        return f"cuda:{dev.id}"
    return str(dev)


def build_model(cfg: BenchConfig | ConvBenchConfig, backend: Any, seed: int = 0) -> Any:
    """arrayprop's model of ``cfg`` on ``backend``: ``ap.mlp`` for an MLP; for a CNN a
    Sequential of the layer list (Conv2D, MaxPool2D, ReLU, Flatten, Dense), layer i seeded
    ``seed + i``."""
    if not isinstance(cfg, ConvBenchConfig):
        return ap.mlp(list(cfg.sizes), activation=cfg.activation, seed=seed, backend=backend)
    layers = []
    for i, (layer, before, after) in enumerate(cfg.plan()):
        kind = layer[0]
        if kind == "conv":
            _, o, k, s, p = layer
            layers.append(ap.Conv2D(before[0], o, k, s, p, seed=seed + i, backend=backend))
        elif kind == "maxpool":
            layers.append(ap.MaxPool2D(layer[1]))
        elif kind == "dense":
            layers.append(ap.Dense(before[0], after[0], seed=seed + i, backend=backend))
        elif kind == "flatten":
            layers.append(ap.Flatten())
        else:
            layers.append(ap.ReLU())
    return ap.Sequential(*layers)


def torch_twin(cfg: ConvBenchConfig, model: Any, device: Any = "cpu", dtype: str = DTYPE) -> Any:
    """The PyTorch ``nn.Sequential`` of ``cfg``'s CNN with the weights of the arrayprop
    ``model`` (:func:`build_model`): Conv2d weights share the (O, C, kh, kw) layout, Linear
    weights are Dense's transposed."""
    import torch

    nn = torch.nn
    tdtype = getattr(torch, dtype)
    be = model.backend
    params = iter(model.layers)
    layers = []
    for layer, before, after in cfg.plan():
        ours = next(params)
        kind = layer[0]
        if kind in ("conv", "dense"):
            w = np.asarray(be.to_host(ours.weight.data), dtype=np.float64)
            b = np.asarray(be.to_host(ours.bias.data), dtype=np.float64)
            if kind == "conv":
                _, o, k, s, p = layer
                t = nn.Conv2d(before[0], o, k, s, p, device=device, dtype=tdtype)
            else:
                t = nn.Linear(before[0], after[0], device=device, dtype=tdtype)
                w = w.T
            with torch.no_grad():
                t.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
                t.bias.copy_(torch.from_numpy(b))
            layers.append(t)
        elif kind == "maxpool":
            layers.append(nn.MaxPool2d(layer[1]))
        elif kind == "flatten":
            layers.append(nn.Flatten())
        else:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _arrayprop_workload(cfg, batch, backend, device, seed):
    """(a) arrayprop's own train step. Keep this the only place that uses its model API."""
    be = arrayprop_backend(backend, device)
    x_h, y_h = make_data(cfg, batch, seed)
    model = build_model(cfg, be, seed)
    loss = ap.SoftmaxCrossEntropy() if cfg.loss == "softmax-ce" else ap.MSE()
    opt = ap.SGD(model.parameters(), lr=LR)
    x, y = be.asarray(x_h), be.asarray(y_h)
    del x_h, y_h

    def step():
        return ap.train_step(model, loss, opt, x, y)

    params = model.parameters()

    def sync(out):
        be.sync(out)
        if be.name == "jax":  # dispatch is asynchronous per array: wait for the updates too
            for p in params:
                p.data.block_until_ready()

    return Workload("arrayprop", cfg, backend, _device_str(be), batch, step, sync)


def gemm_workload(
    cfg: BenchConfig,
    batch: int,
    backend: str,
    device: str | None,
    seed: int,
    xp: Any = None,
    asarray: Callable[[Any], Any] | None = None,
    sync: Callable[[Any], None] | None = None,
) -> Workload:
    """(b) the GEMM ceiling on an arrayprop backend's namespace.

    Given ``xp`` (with ``asarray`` and optionally ``sync``), the products run on that
    namespace instead: the tests count them with a namespace that only records shapes.
    """
    dev = "cpu"
    if xp is None:
        be = arrayprop_backend(backend, device)
        xp, asarray, dev = be.xp, be.asarray, _device_str(be)

        def sync(out):
            _block(out)
            be.sync()

    rng = np.random.default_rng(seed)
    ops = [] if not isinstance(cfg, ConvBenchConfig) else _conv_gemm_ops(cfg, batch, rng, asarray)
    for i, (n_in, n_out) in enumerate(pairwise(getattr(cfg, "sizes", ()))):
        a = asarray(rng.standard_normal((batch, n_in), dtype=np.float32))
        w = asarray(rng.standard_normal((n_in, n_out), dtype=np.float32))
        d = asarray(rng.standard_normal((batch, n_out), dtype=np.float32))
        ops.append((a, w))  # forward        Z = A @ W
        ops.append((a.T, d))  # weight grad  dW = A.T @ D
        if i > 0:
            ops.append((d, w.T))  # input grad  dA = D @ W.T (not for the data layer)
    matmul = xp.matmul

    def step():
        return [matmul(lhs, rhs) for lhs, rhs in ops]

    return Workload(
        "gemm",
        cfg,
        backend,
        dev,
        batch,
        step,
        sync or _noop_sync,
        flops_per_step=sum(2 * m * k * n for _, m, k, n in cfg.gemm_shapes(batch)),
    )


def _conv_gemm_ops(cfg, batch, rng, asarray):
    """The operand pairs of :meth:`ConvBenchConfig.gemm_shapes`, laid out as Conv2D's and
    Dense's steps lay them out (transposes are views)."""

    def rand(*shape):
        return asarray(rng.standard_normal(shape, dtype=np.float32))

    ops = []
    for i, (layer, before, after) in enumerate(cfg.plan()):
        if layer[0] == "conv":
            m, k, o = batch * after[1] * after[2], before[0] * layer[2] ** 2, after[0]
            cols, w_mat, delta = rand(m, k), rand(o, k), rand(m, o)
            ops += [(cols, w_mat.T), (delta.T, cols)]  # eq. 30, eq. 31
            if i > 0:
                ops.append((delta, w_mat))  # eq. 32
        elif layer[0] == "dense":
            a, w, d = rand(batch, before[0]), rand(before[0], after[0]), rand(batch, after[0])
            ops += [(a, w), (a.T, d)]
            if i > 0:
                ops.append((d, w.T))
    return ops


def torch_device_for(backend: str, device: str | None) -> str:
    """The device the PyTorch peer runs on for a given arrayprop backend/device: the device
    that backend's arrays are on, named as results name it (``"cpu"``, ``"cuda:N"``)."""
    if backend in HOST_ONLY:
        return "cpu"  # --device does not move the host backends (see _arrayprop_backend)
    if device:
        d = str(device)
        if d.startswith(("cuda", "gpu")):
            return "cuda:" + (d.split(":", 1)[1] if ":" in d else "0")
        if d.isdigit() and backend == "cupy":
            return f"cuda:{d}"
        return d if backend == "torch" else "cpu"
    return "cuda:0" if backend == "cupy" else "cpu"


def _torch_model(sizes, params, device, dtype):
    import torch

    layers = []
    for i, (w, b) in enumerate(params):
        lin = torch.nn.Linear(w.shape[0], w.shape[1], device=device, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(params) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def torch_peer(cfg, params, device="cpu", dtype="float32", lr=LR):
    """(c) the PyTorch-eager peer built from host ``params`` ``[(W (in,out), b), ...]``.

    Returns ``(model, step, loss_fn)`` where ``step(x, y)`` does zero_grad/forward/
    loss/backward/SGD step and returns the loss tensor (no host sync).
    """
    import torch
    import torch.nn.functional as F

    tdtype = getattr(torch, dtype)
    model = _torch_model(cfg.sizes, params, torch.device(device), tdtype)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = F.cross_entropy if cfg.loss == "softmax-ce" else F.mse_loss

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return model, step, loss_fn


def _torch_conv_step(cfg, device, seed, lr=LR):
    """The PyTorch-eager step of a CNN: the twin of arrayprop's model (same weights)."""
    import torch
    import torch.nn.functional as F

    model = torch_twin(cfg, build_model(cfg, arrayprop_backend("numpy", None), seed), device)
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _torch_workload(cfg, batch, backend, device, seed):
    import torch

    dev = torch.device(torch_device_for(backend, device))
    if isinstance(cfg, ConvBenchConfig):
        tstep = _torch_conv_step(cfg, dev, seed)
    else:
        ref = load_reference()
        params = ref.init_params(cfg.sizes, seed=seed, dtype=np.float32)
        _, tstep, _ = torch_peer(cfg, params, dev, DTYPE)
        del params
    x_h, y_h = make_data(cfg, batch, seed)
    x, y = torch.from_numpy(x_h).to(dev), torch.from_numpy(y_h).to(dev)
    del x_h, y_h

    if dev.type == "cuda":

        def sync(out):
            torch.cuda.synchronize(dev)
    else:
        sync = _noop_sync

    return Workload(
        "torch-eager",
        cfg,
        "torch",
        str(dev),
        batch,
        lambda: tstep(x, y),
        sync,
        info={"num_threads": torch.get_num_threads()},
    )


def has_reference(cfg: BenchConfig | ConvBenchConfig) -> bool:
    """Whether ``numpy-ref`` (the hand-written MLP loop) exists for ``cfg``: MLPs only."""
    return not isinstance(cfg, ConvBenchConfig)


def _numpy_ref_workload(cfg, batch, backend, device, seed):
    if not has_reference(cfg):
        raise ValueError(f"numpy-ref is an MLP loop: there is none for the CNN {cfg.name!r}")
    ref = load_reference()
    net = ref.NumpyReferenceMLP(ref.init_params(cfg.sizes, seed=seed), lr=LR, loss=cfg.loss)
    x, y = make_data(cfg, batch, seed)
    return Workload("numpy-ref", cfg, "numpy", "cpu", batch, lambda: net.step(x, y), _noop_sync)


_BUILDERS = {
    "arrayprop": _arrayprop_workload,
    "gemm": gemm_workload,
    "torch-eager": _torch_workload,
    "numpy-ref": _numpy_ref_workload,
}


def make_workload(
    impl: str,
    cfg: BenchConfig | str,
    backend: str = "numpy",
    device: str | None = None,
    batch: int | None = None,
    seed: int = 0,
) -> Workload:
    """Build one timed step: model/weights and data already on the device."""
    impl = parse_names([impl], IMPLS, "implementation")[0]
    backend = parse_names([backend], BACKENDS, "backend")[0]
    if isinstance(cfg, str):
        cfg = get_configs([cfg])[0]
    batch = cfg.batch if batch is None else int(batch)
    return _BUILDERS[impl](cfg, batch, backend, device, seed)
