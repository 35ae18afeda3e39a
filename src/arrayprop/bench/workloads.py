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
    gemm_flops,
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


def _arrayprop_workload(cfg, batch, backend, device, seed):
    """(a) arrayprop's own train step. Keep this the only place that uses its model API."""
    be = arrayprop_backend(backend, device)
    x_h, y_h = make_data(cfg, batch, seed)
    model = ap.mlp(list(cfg.sizes), activation=cfg.activation, seed=seed, backend=be)
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
    ops = []
    for i, (n_in, n_out) in enumerate(pairwise(cfg.sizes)):
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
        flops_per_step=gemm_flops(cfg.sizes, batch),
    )


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


def _torch_workload(cfg, batch, backend, device, seed):
    import torch

    ref = load_reference()
    dev = torch.device(torch_device_for(backend, device))
    params = ref.init_params(cfg.sizes, seed=seed, dtype=np.float32)
    _, tstep, _ = torch_peer(cfg, params, dev, DTYPE)
    x_h, y_h = make_data(cfg, batch, seed)
    x, y = torch.from_numpy(x_h).to(dev), torch.from_numpy(y_h).to(dev)
    del params, x_h, y_h

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


def _numpy_ref_workload(cfg, batch, backend, device, seed):
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
