"""Layers: ``Parameter``, ``Dense``, activations and ``Sequential``.

Everything here speaks the Array API standard through ``backend.xp``; backend-specific speed
lives behind :mod:`arrayprop.kernels`. Data is batch-first (rows are samples) and weights are
``(in_features, out_features)``, so the equations of docs/math.md read directly:

- forward (eq. 1–2):  Z = A_prev W + b,  A = f(Z)
- backward (eq. 3–6): δ = ∂C/∂A ⊙ f'(Z),  ∂C/∂W = A_prevᵀ δ,  ∂C/∂b = Σ_rows δ,
  ∂C/∂A_prev = δ Wᵀ

A layer's ``forward`` keeps only what its ``backward`` needs (Dense: its input; an activation:
its output). ``backward`` returns ∂C/∂input and stores each parameter's gradient in ``.grad``,
computed for the whole mini-batch at once as matrix products.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from arrayprop import kernels
from arrayprop.backends.core import Backend, backend_of, get_backend
from arrayprop.errors import BackendMismatchError, DTypeError, ShapeError
from arrayprop.nn.init import get_initializer
from arrayprop.random import host_rng

__all__ = [
    "Dense",
    "Identity",
    "Layer",
    "LeakyReLU",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "layer_from_config",
    "mlp",
]


class Parameter:
    """A trainable array and its gradient.

    Attributes
    ----------
    data : array
        The current value, on the owning layer's backend.
    grad : array or None
        ∂C/∂data from the last ``backward``, same shape and dtype as ``data``.
    name : str
        A dotted name such as ``"0.weight"`` (set by :class:`Sequential`).
    """

    __slots__ = ("data", "grad", "name")

    def __init__(self, data: Any, name: str = "") -> None:
        self.data = data
        self.grad = None
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def __repr__(self) -> str:
        return f"Parameter({self.name or '?'}, shape={self.shape})"


class Layer:
    """The layer protocol.

    ``forward(x)`` caches what ``backward`` needs and returns the output; ``backward(grad_out)``
    returns ∂C/∂x and sets the ``.grad`` of each parameter. ``inplace=True`` tells a layer that
    the caller owns the argument's buffer and will not read it again, so a fast path may reuse
    it (the portable path never does); :class:`Sequential` uses this for its intermediates.

    ``backward(..., sgd_lr=η)`` asks every layer with parameters to apply plain SGD itself,
    W ← W − η ∂C/∂W, as it computes the gradient, and to leave ``.grad`` None (eq. 7a of
    docs/math.md: on NumPy one GEMM with β = 1, the gradient never written). Only layers whose
    ``fuses_sgd`` is True take that argument; :func:`~arrayprop.train_step` checks it.
    """

    #: Whether ``forward`` keeps a reference to its own output (so it must not be overwritten).
    caches_output = False
    #: Whether ``backward`` takes ``sgd_lr`` (layers without parameters just ignore it).
    fuses_sgd = False
    backend: Backend | None = None

    def forward(self, x: Any, *, inplace: bool = False) -> Any:
        raise NotImplementedError

    def backward(
        self,
        grad_out: Any,
        *,
        inplace: bool = False,
        input_grad: bool = True,
        sgd_lr: float | None = None,
    ) -> Any:
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def parameters(self) -> list[Parameter]:
        return []

    def config(self) -> dict[str, Any]:
        """A JSON-serialisable description from which :func:`layer_from_config` rebuilds it."""
        return {"type": type(self).__name__}

    def to(self, backend: Backend) -> Layer:
        """A copy of this layer on ``backend`` (weights copied through the host)."""
        return layer_from_config(self.config(), backend=backend)

    def clear_cache(self) -> None:
        """Drop what ``forward`` kept for ``backward`` (inference needs none of it)."""

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def _backend_for(self, x: Any) -> Backend:
        """The backend of a parameter-free layer: set by Sequential, or taken from the input."""
        be = self.backend
        if be is None or not isinstance(x, be.array_type):
            be = backend_of(x, dtype=x.dtype if _is_float_array(x) else None)
            self.backend = be
        return be


def _is_float_array(x: Any) -> bool:
    return "float" in str(getattr(x, "dtype", ""))


def _check_grad(layer: Layer, grad_out: Any, like: Any) -> None:
    """∂C/∂output must be an array of the forward pass's backend, device and dtype."""
    be = layer.backend
    if be is not None and not be.owns(grad_out):
        be.check(grad_out, f"{layer!r} gradient")
    if getattr(grad_out, "dtype", None) != like.dtype:
        raise DTypeError(
            f"{layer!r}: expected a gradient of dtype {like.dtype}, got "
            f"{getattr(grad_out, 'dtype', type(grad_out).__name__)}"
        )


def _check_2d(layer: Layer, x: Any, width: int | None, what: str) -> None:
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 2 or (width is not None and shape[1] != width):
        expected = f"(batch, {width})" if width is not None else "(batch, features)"
        raise ShapeError(f"{layer!r}: expected {what} of shape {expected}, got {shape}")


class Dense(Layer):
    """Fully connected layer, Z = X W + b.

    Parameters
    ----------
    in_features, out_features : int
        Widths of the input and the output.
    weight : array-like, shape (in_features, out_features), optional
        Exact initial weights (any array-like; copied onto the backend). Default: drawn by
        ``init``.
    bias : array-like, shape (out_features,), optional
        Exact initial bias. Default: zeros.
    init : str or callable
        ``"he"`` (default), ``"he_uniform"``, ``"glorot"``, ``"glorot_uniform"``, ``"normal"``,
        ``"zeros"``, or ``f(shape, rng) -> ndarray``.
    seed : int or numpy.random.Generator, optional
        Seed of the host generator the weights are drawn from.
    backend : str or Backend, optional
        Where the parameters live (default: :func:`~arrayprop.get_backend`).
    dtype : str, optional
        Overrides the backend's float dtype.

    Attributes
    ----------
    weight : Parameter, shape (in_features, out_features)
    bias : Parameter, shape (out_features,)
    """

    fuses_sgd = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        weight: Any = None,
        bias: Any = None,
        init: str | Callable = "he",
        seed: Any = None,
        backend: str | Backend | None = None,
        dtype: Any = None,
    ) -> None:
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Dense: {name} must be a positive int, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.backend = be = get_backend(backend, dtype=dtype)
        self.init = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        if weight is None:
            host_w = get_initializer(init)((in_features, out_features), host_rng(seed))
            w = be.asarray(host_w, dtype=be.dtype)
        else:
            w = self._exact(weight, (in_features, out_features), "weight")
        b = (
            be.zeros((out_features,))
            if bias is None
            else self._exact(bias, (out_features,), "bias")
        )
        self.weight = Parameter(w, "weight")
        self.bias = Parameter(b, "bias")
        self._x = None

    def _exact(self, value: Any, shape: tuple[int, ...], what: str) -> Any:
        arr = self.backend.asarray(value, dtype=self.backend.dtype, what=f"{self!r}: {what}")
        if tuple(arr.shape) != shape:
            raise ShapeError(f"{self!r}: {what} must have shape {shape}, got {tuple(arr.shape)}")
        # asarray may return the caller's buffer (NumPy, and torch's from_numpy); the optimizers
        # update parameters in place, so the layer must own its copy.
        return self.backend.xp.asarray(arr, copy=True)

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features})"

    def forward(self, x: Any, *, inplace: bool = False) -> Any:
        """Z = X W + b.  x : (batch, in_features) -> (batch, out_features)."""
        be = self.backend
        if not be.owns(x):
            be.check(x, f"{self!r} input")
        _check_2d(self, x, self.in_features, "input")
        if x.dtype != self.weight.data.dtype:
            raise DTypeError(
                f"{self!r}: expected input of dtype {be.dtype_name}, got {x.dtype}; convert the "
                "data with backend.asarray (integer data must be cast to float explicitly)"
            )
        self._x = x
        return kernels.linear(be, x, self.weight.data, self.bias.data)

    def backward(
        self,
        grad_out: Any,
        *,
        inplace: bool = False,
        input_grad: bool = True,
        sgd_lr: float | None = None,
    ) -> Any:
        """Given δ = ∂C/∂Z (batch, out_features): ∂C/∂W = Xᵀ δ, ∂C/∂b = Σ_rows δ; returns δ Wᵀ."""
        x = self._x
        if x is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        _check_grad(self, grad_out, x)
        _check_2d(self, grad_out, self.out_features, "gradient")
        if grad_out.shape[0] != x.shape[0]:
            raise ShapeError(
                f"{self!r}: gradient has {grad_out.shape[0]} rows but the input had {x.shape[0]}"
            )
        be = self.backend
        self._x = None
        if sgd_lr is not None:
            # δ Wᵀ needs the weights before the update, so it goes first (eq. 7a).
            g_in = kernels.matmul(be, grad_out, self.weight.data.T) if input_grad else None
            w, b = kernels.sgd_linear_update(
                be, self.weight.data, self.bias.data, x, grad_out, sgd_lr
            )
            self.weight.data, self.bias.data = w, b
            self.weight.grad = self.bias.grad = None
            return g_in
        self.weight.grad = kernels.matmul(be, x.T, grad_out)
        self.bias.grad = kernels.bias_grad(be, grad_out)
        return kernels.matmul(be, grad_out, self.weight.data.T) if input_grad else None

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    def clear_cache(self) -> None:
        self._x = None

    def config(self) -> dict[str, Any]:
        return {
            "type": "Dense",
            "in_features": self.in_features,
            "out_features": self.out_features,
            "init": self.init,
        }

    def to(self, backend: Backend) -> Dense:
        src = self.backend
        return Dense(
            self.in_features,
            self.out_features,
            weight=src.to_host(self.weight.data),
            bias=src.to_host(self.bias.data),
            backend=backend,
        )


class _Activation(Layer):
    """An elementwise A = f(Z) whose derivative is computed from the cached output A."""

    kind = "identity"
    caches_output = True
    fuses_sgd = True

    def __init__(self) -> None:
        self._a = None

    def clear_cache(self) -> None:
        self._a = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @property
    def _alpha(self) -> float:
        return 0.0

    def forward(self, x: Any, *, inplace: bool = False) -> Any:
        be = self._backend_for(x)
        _check_2d(self, x, None, "input")
        a = kernels.activation(be, self.kind, x, self._alpha, inplace=inplace)
        self._a = a
        return a

    def backward(
        self,
        grad_out: Any,
        *,
        inplace: bool = False,
        input_grad: bool = True,
        sgd_lr: float | None = None,
    ) -> Any:
        a = self._a
        if a is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        _check_grad(self, grad_out, a)
        if tuple(grad_out.shape) != tuple(a.shape):
            raise ShapeError(
                f"{self!r}: gradient of shape {tuple(grad_out.shape)} does not match the output "
                f"shape {tuple(a.shape)}"
            )
        self._a = None
        if not input_grad:
            return None
        return kernels.activation_grad(
            self.backend, self.kind, a, grad_out, self._alpha, inplace=inplace
        )


class Identity(_Activation):
    """f(z) = z, f'(z) = 1."""

    kind = "identity"
    caches_output = False


class ReLU(_Activation):
    """f(z) = max(z, 0), f'(z) = [z > 0]  (read off the output: [a > 0])."""

    kind = "relu"


class Sigmoid(_Activation):
    """f(z) = 1 / (1 + e^{−z}), f'(z) = a (1 − a). Stable for any |z| (no overflow)."""

    kind = "sigmoid"


class Tanh(_Activation):
    """f(z) = tanh z, f'(z) = 1 − a²."""

    kind = "tanh"


class LeakyReLU(_Activation):
    """f(z) = z for z > 0, else alpha·z; f'(z) = 1 or alpha (alpha > 0)."""

    kind = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        if not 0 < float(alpha) < 1:
            raise ValueError(f"LeakyReLU: alpha must be in (0, 1), got {alpha!r}")
        super().__init__()
        self.alpha = float(alpha)

    @property
    def _alpha(self) -> float:
        return self.alpha

    def __repr__(self) -> str:
        return f"LeakyReLU(alpha={self.alpha})"

    def config(self) -> dict[str, Any]:
        return {"type": "LeakyReLU", "alpha": self.alpha}


class Softmax(Layer):
    """Row-wise softmax, a_i = e^{z_i} / Σ_j e^{z_j} (max-shifted: no overflow).

    Backward: ∂C/∂z = a ⊙ (g − Σ_j g_j a_j) (eq. 10). With a cross-entropy loss prefer
    :class:`~arrayprop.losses.SoftmaxCrossEntropy` on the logits, which fuses both.
    """

    caches_output = True
    fuses_sgd = True

    def __init__(self) -> None:
        self._a = None

    def __repr__(self) -> str:
        return "Softmax()"

    def clear_cache(self) -> None:
        self._a = None

    def forward(self, x: Any, *, inplace: bool = False) -> Any:
        be = self._backend_for(x)
        _check_2d(self, x, None, "input")
        self._a = kernels.softmax(be, x)
        return self._a

    def backward(
        self,
        grad_out: Any,
        *,
        inplace: bool = False,
        input_grad: bool = True,
        sgd_lr: float | None = None,
    ) -> Any:
        a = self._a
        if a is None:
            raise RuntimeError("Softmax(): backward called before forward")
        _check_grad(self, grad_out, a)
        if tuple(grad_out.shape) != tuple(a.shape):
            raise ShapeError(
                f"Softmax(): gradient of shape {tuple(grad_out.shape)} does not match the output "
                f"shape {tuple(a.shape)}"
            )
        self._a = None
        xp = self.backend.xp
        return a * (grad_out - xp.sum(grad_out * a, axis=1, keepdims=True))


_LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (Dense, Identity, ReLU, Sigmoid, Tanh, LeakyReLU, Softmax)
}

#: Activation names accepted by :func:`mlp` and the CLI.
ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "identity": Identity,
    "softmax": Softmax,
}


def layer_from_config(config: dict[str, Any], backend: Backend | None = None) -> Layer:
    """Rebuild a layer from :meth:`Layer.config` (Dense gets freshly initialised weights)."""
    kind = config.get("type")
    cls = _LAYER_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown layer type {kind!r}; valid: {', '.join(_LAYER_TYPES)}")
    if cls is Dense:
        return Dense(config["in_features"], config["out_features"], backend=backend)
    layer = cls(alpha=config["alpha"]) if cls is LeakyReLU else cls()
    layer.backend = backend
    return layer


class Sequential(Layer):
    """A stack of layers applied in order; backward runs them in reverse.

    All layers with parameters must share one backend (library, device and dtype); parameter-free
    layers adopt it.
    """

    # The output may be an inner layer's cached output, so an outer model must not overwrite it.
    caches_output = True

    @property
    def fuses_sgd(self) -> bool:  # type: ignore[override]
        return all(layer.fuses_sgd for layer in self.layers)

    def __init__(self, *layers: Layer) -> None:
        if len(layers) == 1 and isinstance(layers[0], list | tuple):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is {type(layer).__name__}, not a Layer")
        # Compared by value: equal backends reached by different get_backend calls are one.
        backends = {str(layer.backend): layer.backend for layer in layers if layer.parameters()}
        if len(backends) > 1:
            names = ", ".join(backends)
            raise BackendMismatchError(f"Sequential: layers live on different backends: {names}")
        self.layers = list(layers)
        self.backend = next(iter(backends.values()), None)
        if self.backend is not None:
            for layer in self.layers:
                layer.backend = self.backend
        self._name_parameters()

    def _name_parameters(self) -> None:
        for i, layer in enumerate(self.layers):
            for attr in ("weight", "bias"):
                p = getattr(layer, attr, None)
                if isinstance(p, Parameter):
                    p.name = f"{i}.{attr}"

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential({inner})"

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    @property
    def dtype(self) -> Any:
        return None if self.backend is None else self.backend.dtype

    def forward(self, x: Any, *, inplace: bool = False) -> Any:
        """Apply every layer in order.  x : (batch, in_features) -> (batch, out_features)."""
        owned = inplace
        for layer in self.layers:
            out = layer.forward(x, inplace=owned)
            # The next layer may overwrite this output unless the layer keeps it for backward
            # or passed its input through (Identity: then the buffer is still the caller's).
            owned = not layer.caches_output and out is not x
            x = out
        return x

    def backward(
        self,
        grad_out: Any,
        *,
        inplace: bool = False,
        input_grad: bool = True,
        sgd_lr: float | None = None,
    ) -> Any:
        """Backpropagate ∂C/∂output through the layers in reverse (eq. 3–6).

        With ``input_grad=False`` the first layer skips ∂C/∂input (not needed to train) and
        None is returned. ``sgd_lr`` is passed to every layer (see :class:`Layer`).
        """
        g = grad_out
        owned = inplace
        fused = {} if sgd_lr is None else {"sgd_lr": sgd_lr}
        for i in range(len(self.layers) - 1, -1, -1):
            g_in = self.layers[i].backward(
                g, inplace=owned, input_grad=input_grad or i > 0, **fused
            )
            # A new array is ours to overwrite; one passed through (Identity) may be the caller's.
            owned = owned or g_in is not g
            g = g_in
        return g

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def clear_cache(self) -> None:
        for layer in self.layers:
            layer.clear_cache()

    def config(self) -> dict[str, Any]:
        return {"type": "Sequential", "layers": [layer.config() for layer in self.layers]}

    def to(self, backend: str | Backend, device: Any = None, dtype: Any = None) -> Sequential:
        """A copy of the model on another backend / device / dtype; this model is unchanged.

        A backend given by name keeps the model's dtype unless ``dtype`` is given.
        """
        if dtype is None and self.backend is not None and not isinstance(backend, Backend):
            dtype = self.backend.dtype_name
        target = get_backend(backend, device=device, dtype=dtype)
        return Sequential(*(layer.to(target) for layer in self.layers))

    def predict(self, x: Any, batch_size: int | None = None) -> Any:
        """The model's output for ``x`` (host or backend array), in batches; no gradient state.

        x : (n, in_features) -> array of shape (n, out_features) on the model's backend.
        """
        # A model without parameters (only activations) runs wherever its input lives.
        be = self.backend if self.backend is not None else self._backend_for(x)
        # Host float data takes the model's dtype (on NumPy a host array is also a backend array).
        x = be.asarray(x, what="predict: x")
        if batch_size is not None and batch_size <= 0:
            raise ValueError(f"predict: batch_size must be positive, got {batch_size}")
        n = x.shape[0] if x.ndim else 0
        step = n if batch_size is None or batch_size >= n else batch_size
        # Explicit trailing axes and an in-range stop: the standard specifies nothing else.
        outs = [self.forward(x[i : min(i + step, n), ...]) for i in range(0, n, step)] if n else []
        self.clear_cache()
        if not outs:
            return self.forward(x)
        return outs[0] if len(outs) == 1 else be.xp.concat(outs, axis=0)


def mlp(
    sizes: Sequence[int],
    activation: str = "relu",
    *,
    output_activation: str | None = None,
    init: str | Callable | None = None,
    seed: Any = None,
    backend: str | Backend | None = None,
    dtype: Any = None,
) -> Sequential:
    """A multi-layer perceptron: Dense layers of the given sizes with ``activation`` between them.

    ``mlp([784, 128, 10])`` is Dense(784, 128), ReLU, Dense(128, 10): the last layer is linear
    (logits) unless ``output_activation`` names one. ``init`` defaults to He for the ReLU family
    and Glorot for sigmoid / tanh. One ``seed`` seeds the host generator all layers draw from.
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp: need at least an input and an output size, got {sizes}")
    for name in (activation, output_activation):
        if name is not None and name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    if init is None:
        init = "he" if activation in ("relu", "leaky_relu") else "glorot"
    be = get_backend(backend, dtype=dtype)
    rng = host_rng(seed)
    layers: list[Layer] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(Dense(n_in, n_out, init=init, seed=rng, backend=be))
        is_last = i == len(sizes) - 2
        name = output_activation if is_last else activation
        if name is not None:
            layers.append(ACTIVATIONS[name]())
    return Sequential(*layers)


def sequential_from_config(config: dict[str, Any], backend: Backend | None = None) -> Sequential:
    """Rebuild a :class:`Sequential` (fresh weights) from :meth:`Sequential.config`."""
    if config.get("type") != "Sequential":
        raise ValueError(f"expected a Sequential config, got type {config.get('type')!r}")
    layers: Iterable[dict[str, Any]] = config["layers"]
    return Sequential(*(layer_from_config(c, backend=backend) for c in layers))
