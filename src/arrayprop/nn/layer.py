"""The layer protocol (:class:`Layer`) and the checks every layer shares.

What a layer must write: ``forward(self, x)``, ``backward(self, grad)`` and its
:class:`~arrayprop.nn.Parameter` (and :class:`~arrayprop.nn.Buffer`) attributes. Everything
else — naming its state, ``state_dict()``, ``.to()``, ``train()`` / ``eval()``, rebuilding from
a checkpoint — the base class derives from those attributes. See docs/layers.md.

Data is batch-first (rows are samples) and weights are ``(in_features, out_features)``, so the
equations of docs/math.md read directly:

- forward (eq. 1–2):  Z = A_prev W + b,  A = f(Z)
- backward (eq. 3–6): δ = ∂C/∂A ⊙ f'(Z),  ∂C/∂W = A_prevᵀ δ,  ∂C/∂b = Σ_rows δ,
  ∂C/∂A_prev = δ Wᵀ
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Iterator
from typing import Any, ClassVar

from arrayprop.backends import Backend, backend_of, get_backend
from arrayprop.errors import CheckpointError, DTypeError, ShapeError
from arrayprop.nn.parameter import Buffer, Parameter
from arrayprop.nn.summary import summarize
from arrayprop.random import current_step, step_rng

__all__ = ["Layer", "check_grad", "check_last_axis", "exact_array", "state_backend"]


class Layer:
    """Base class of every layer; subclass it and write ``forward`` and ``backward``.

    ``forward(x)`` keeps what ``backward`` needs and returns the output; ``backward(grad)``
    receives ∂C/∂output, sets the ``.grad`` of each of the layer's parameters and returns
    ∂C/∂x. Parameters and buffers are found by walking the layer's attributes (also inside
    attributes holding layers, or lists / tuples of layers), and named by their attribute path.

    Built-in layers also accept two optional speed hints, declared by ``speed_hints = True``
    and never required of a user's layer: ``forward(x, *, inplace=False)`` and
    ``backward(grad, *, inplace=False, input_grad=True)``. ``inplace=True`` donates the
    argument's buffer (the caller will not read it again, so a fast path may overwrite it);
    ``input_grad=False`` says ∂C/∂x is not needed (the first layer of a model while training).
    A layer that keeps its own output for ``backward`` declares ``retains_output = True``, so
    that nobody overwrites it.

    Attributes
    ----------
    backend : Backend or None
        Where the layer's arrays live (set by the layer, or by :class:`Sequential`).
    training : bool
        True in training mode (the default), False after :meth:`eval`.
    """

    #: Whether forward / backward take the optional ``inplace`` and ``input_grad`` hints.
    speed_hints: ClassVar[bool] = False
    #: Whether ``forward`` keeps a reference to its own output for ``backward``.
    retains_output: ClassVar[bool] = False
    #: Whether the output always has the input's shape (activations), so a model's declared
    #: input and output widths can be read past it.
    preserves_shape: ClassVar[bool] = False
    backend: Backend | None = None
    training: bool = True

    def forward(self, x: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward(self, x)")

    def backward(self, grad: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define backward(self, grad)")

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    # -- structure -------------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Layer]]:
        """The layers held by this one's attributes, with their names (``"block"``,
        ``"blocks.0"`` for a list), in attribute order."""
        for attr, value in vars(self).items():
            if isinstance(value, Layer):
                yield attr, value
            elif isinstance(value, list | tuple):
                for i, item in enumerate(value):
                    if isinstance(item, Layer):
                        yield f"{attr}.{i}", item

    def named_layers(self, prefix: str = "") -> Iterator[tuple[str, Layer]]:
        """This layer (named ``prefix``) and every layer inside it, depth first."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_layers(_join(prefix, name))

    def _named_state(self, kind: type, prefix: str) -> Iterator[tuple[str, Any]]:
        seen: set[int] = set()
        for path, layer in self.named_layers(prefix):
            for attr, value in vars(layer).items():
                if isinstance(value, kind) and id(value) not in seen:
                    seen.add(id(value))
                    yield _join(path, attr), value

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter of this layer and the layers inside it, by dotted attribute path
        (``"0.weight"``, ``"2.gamma"``)."""
        return self._named_state(Parameter, prefix)

    def parameters(self) -> list[Parameter]:
        """The trainable parameters, in :meth:`named_parameters` order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Buffer]]:
        """Every non-trainable :class:`Buffer`, by dotted attribute path."""
        return self._named_state(Buffer, prefix)

    def buffers(self) -> list[Buffer]:
        return [b for _, b in self.named_buffers()]

    def assign_names(self) -> None:
        """Set each parameter's and buffer's ``.name`` to its dotted path from this layer (what
        error messages show), and each inner layer's :attr:`path`; containers do it when
        built, ``train_step`` and ``fit`` before training."""
        for path, layer in self.named_layers():
            layer.path = path
        for name, item in [*self.named_parameters(), *self.named_buffers()]:
            item.name = name

    #: The layer's dotted path in the model that named it last (``""`` for the model itself).
    path: str = ""

    def step_rng(self) -> Any:
        """The host NumPy Generator of this layer for the running training step.

        Draw random numbers here (e.g. a dropout mask: ``self.step_rng().random(shape)``) and
        move them to the device with ``self.backend.asarray``: one seed then gives the same
        numbers on every backend, and a resumed run continues them exactly (the stream is keyed
        by ``fit``'s / ``train_step``'s seed, the optimizer's step count and :attr:`path`).
        Outside a training step (a direct ``forward`` call) the layer's own stream, seeded 0,
        is used.
        """
        key = current_step()
        if key is not None:
            return step_rng(key[0], key[1], self.path)
        own = self.__dict__.get("_own_rng")
        if own is None:
            own = self._own_rng = step_rng(0, -1 & 0xFFFFFFFF, self.path)
        return own

    # -- mode ------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Layer:
        """Training mode (``mode=True``) or evaluation mode for this layer and all inside it."""
        for _, layer in self.named_layers():
            layer.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Evaluation mode: what ``predict`` and ``evaluate`` run in (e.g. no dropout)."""
        return self.train(False)

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Host NumPy copies of every parameter and buffer, keyed by dotted name."""
        out = {}
        for name, item in [*self.named_parameters(), *self.named_buffers()]:
            out[name] = _host(item.data).copy()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Set every parameter and buffer from host arrays keyed by dotted name.

        Each array keeps the dtype and backend of the value it replaces. Nothing is changed
        unless every name is present, no name is unknown and every shape matches.

        Raises
        ------
        CheckpointError
            Naming the missing or unexpected keys, or the first array of the wrong shape or kind.
        """
        ours = dict([*self.named_parameters(), *self.named_buffers()])
        missing = sorted(set(ours) - set(state))
        unexpected = sorted(set(state) - set(ours))
        if missing or unexpected:
            raise CheckpointError(
                f"{type(self).__name__}.load_state_dict: missing keys {missing}, unexpected "
                f"keys {unexpected}"
            )
        new = {}
        for name, item in ours.items():
            host = _host(state[name])
            if tuple(host.shape) != item.shape:
                raise CheckpointError(
                    f"{type(self).__name__}.load_state_dict: {name} has shape "
                    f"{tuple(host.shape)}, the model's has {item.shape}"
                )
            if _kind(host.dtype) != _kind(item.data.dtype):
                raise CheckpointError(
                    f"{type(self).__name__}.load_state_dict: {name} has dtype {host.dtype}, the "
                    f"model's has {item.data.dtype}"
                )
            new[name] = _to_device(backend_of(item.data), host, item.data.dtype)
        for name, item in ours.items():
            item.data = new[name]
            if isinstance(item, Parameter):
                item.grad = None

    def to(self, backend: str | Backend | None = None, device: Any = None, dtype: Any = None):
        """A copy of this layer (and everything inside it) on another backend, device or dtype.

        The copy is made through the layer's state, not its config: every parameter, buffer and
        other array attribute is copied through the host (floating arrays take the target
        dtype), every other attribute is copied, and what ``forward`` kept is dropped. The
        layer itself is unchanged. A backend given by name keeps the layer's float dtype unless
        ``dtype`` is given.
        """
        source = self.backend if self.backend is not None else state_backend(self)
        if backend is None:
            backend = source if source is not None else get_backend()
        if dtype is None and source is not None and not isinstance(backend, Backend):
            dtype = source.dtype_name
        target = get_backend(backend, device=device, dtype=dtype)
        clone = _clone(self, target, {})
        for _, layer in clone.named_layers():
            layer.clear_cache()
        return clone

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer, JSON-able (``{}`` by default).

        Override it when ``__init__`` takes arguments: ``{"features": self.features}``. With
        :func:`~arrayprop.register_layer`, checkpoints rebuild the layer as
        ``type(self)(**config)`` and then load its state.
        """
        return {}

    @classmethod
    def state_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]] | None:
        """The shapes of the parameters and buffers (by attribute name) that a layer built from
        ``config`` holds, or None when the class does not say (the default).

        :func:`arrayprop.checkpoint.load` compares them with the arrays a file stores *before*
        it builds the layer, so that a crafted config (a ``Conv2D`` of 10⁵ channels) cannot make
        it allocate more than the file holds. The built-in layers say; a layer of your own may
        (raise ``ValueError`` or ``TypeError`` for a config that builds nothing).
        """
        return None

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: Backend | None = None) -> Layer:
        """A new layer of this class from :meth:`config` (a ``"type"`` key is ignored) on
        ``backend``: passed to the constructor when it takes ``backend=``, else the new layer is
        moved there. Parameters get their constructor's values."""
        args = {k: v for k, v in config.items() if k != "type"}
        takes_backend = "backend" in inspect.signature(cls).parameters
        if backend is not None and takes_backend:
            args["backend"] = backend
        layer = cls(**args)
        if backend is None or takes_backend:
            return layer
        if state_backend(layer) is not None and not _same(state_backend(layer), backend):
            return layer.to(backend)
        layer.backend = backend
        return layer

    def summary(self, input_shape: tuple[int, ...] | None = None) -> Any:
        """A table of the layers inside this one: name, output shape, parameter count, and the
        totals (parameters, trainable, GEMM FLOPs per sample); ``print(model.summary())``.

        ``input_shape`` is one sample's shape (default: ``(in_features,)`` when declared).
        """
        return summarize(self, input_shape)

    def clear_cache(self) -> None:
        """Drop what ``forward`` kept for ``backward`` (inference needs none of it)."""

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def backend_for(self, x: Any) -> Backend:
        """The backend of a layer without its own parameters: the one :class:`Sequential` set,
        or the input's."""
        be = self.backend
        if be is None or not isinstance(x, be.array_type):
            be = backend_of(x, dtype=x.dtype if _is_float_array(x) else None)
            self.backend = be
        return be


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _is_float_array(x: Any) -> bool:
    return "float" in str(getattr(x, "dtype", ""))


def _kind(dtype: Any) -> str:
    text = str(dtype)
    return "float" if "float" in text else ("int" if "int" in text else text)


def _host(a: Any) -> Any:
    """A host NumPy array of an array of any backend (NumPy arrays included)."""
    if type(a).__module__.split(".")[0] == "numpy":
        return get_backend("numpy").to_host(a)
    return backend_of(a).to_host(a)


def _is_array(value: Any) -> bool:
    """An array of a supported library (cupy and older torch arrays have no
    ``__array_namespace__``; a NumPy scalar is a number, not an array)."""
    root = type(value).__module__.split(".")[0]
    if root == "numpy":
        return type(value).__name__ == "ndarray"
    return root in ("cupy", "torch") or hasattr(value, "__array_namespace__")


def _to_device(be: Backend, host: Any, dtype: Any) -> Any:
    """A copy of a host array on ``be`` with ``dtype``, owned by the caller (never an alias of
    ``host``: optimizers update parameters in place)."""
    arr = be.asarray(host, dtype=dtype, check_range=False)
    return be.xp.asarray(arr, copy=True)


def state_backend(layer: Layer) -> Backend | None:
    """The backend of the first parameter or buffer inside ``layer`` (None when it has none)."""
    for _, item in [*layer.named_parameters(), *layer.named_buffers()]:
        return backend_of(item.data, dtype=item.data.dtype)
    return None


def _same(a: Backend, b: Backend) -> bool:
    return str(a) == str(b)


def _clone(obj: Layer, target: Backend, memo: dict[int, Any]) -> Layer:
    new = copy.copy(obj)
    memo[id(obj)] = new
    for attr, value in vars(obj).items():
        setattr(new, attr, _convert(value, target, memo))
    new.backend = target
    return new


def _convert(value: Any, target: Backend, memo: dict[int, Any]) -> Any:
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, Layer):
        return _clone(value, target, memo)
    if isinstance(value, Parameter | Buffer):
        out = type(value)(_move(value.data, target), value.name)
    elif isinstance(value, Backend):
        return target
    elif isinstance(value, list | tuple):
        out = type(value)(_convert(v, target, memo) for v in value)
    elif isinstance(value, dict):
        out = {k: _convert(v, target, memo) for k, v in value.items()}
    elif _is_array(value):
        out = _move(value, target)
    else:
        try:
            out = copy.deepcopy(value)
        except Exception:  # an object that cannot be copied (a lock, a file) is shared
            out = value
    memo[id(value)] = out
    return out


def _move(a: Any, target: Backend) -> Any:
    """``a`` on ``target``: floating arrays take its dtype, others keep their own."""
    host = _host(a)
    dtype = target.dtype if host.dtype.kind == "f" else None
    return _to_device(target, host, dtype)


def exact_array(layer: Layer, value: Any, shape: tuple[int, ...], what: str) -> Any:
    """Exact initial values given to a layer (``weight=``, ``bias=``): copied onto
    ``layer.backend`` in its float dtype and checked to have ``shape``.

    Raises
    ------
    ShapeError
        Naming the layer, ``what``, the expected and the actual shape.
    """
    be = layer.backend
    arr = be.asarray(value, dtype=be.dtype, what=f"{layer!r}: {what}")
    if tuple(arr.shape) != shape:
        raise ShapeError(f"{layer!r}: {what} must have shape {shape}, got {tuple(arr.shape)}")
    # asarray may return the caller's buffer (NumPy, and torch's from_numpy); the optimizers
    # update parameters in place, so the layer must own its copy.
    return be.xp.asarray(arr, copy=True)


def check_grad(layer: Layer, grad_out: Any, dtype: Any) -> None:
    """∂C/∂output must be an array of the forward pass's backend, device and dtype.

    Raises
    ------
    BackendMismatchError
        When ``grad_out`` lives on another library or device than ``layer.backend``.
    DTypeError
        When its dtype differs from ``dtype`` (that of what the forward pass produced or kept).
    """
    be = layer.backend
    if be is not None and not be.owns(grad_out):
        be.check(grad_out, f"{layer!r} gradient")
    if getattr(grad_out, "dtype", None) != dtype:
        raise DTypeError(
            f"{layer!r}: expected a gradient of dtype {dtype}, got "
            f"{getattr(grad_out, 'dtype', type(grad_out).__name__)}"
        )


def check_input(layer: Layer, x: Any, dtype: Any = None) -> None:
    """Refuse an input of another library or device (``BackendMismatchError``) or of another
    dtype than ``dtype`` (default: the backend's) with a ``DTypeError`` that says how to convert
    it: the first check of every built-in layer's forward."""
    be = layer.backend
    if not be.owns(x):
        be.check(x, f"{layer!r} input")
    if x.dtype != (be.dtype if dtype is None else dtype):
        raise DTypeError(
            f"{layer!r}: expected input of dtype {be.dtype_name}, got {x.dtype}; convert the "
            "data with backend.asarray (integer data must be cast to float explicitly)"
        )


def config_dims(config: dict[str, Any], key: str, count: int | None = None) -> tuple[int, ...]:
    """``config[key]`` (an int >= 1, or with ``count`` a list of ``count`` of them) as a tuple:
    the sizes :meth:`Layer.state_shapes` reads (``ValueError`` for anything else)."""
    value = config.get(key)
    values = value if isinstance(value, list | tuple) else [value]
    if (count is not None and len(values) != count) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values
    ):
        raise ValueError(f"{key} must be an int >= 1 (or a list of them), got {value!r}")
    return tuple(values)


def check_last_axis(layer: Layer, x: Any, width: int | None, what: str) -> None:
    """``x`` must have shape (..., width) with at least one axis before it (the batch), or
    (batch, ...) with at least two axes for ``width=None``.

    Raises
    ------
    ShapeError
        Naming ``layer`` and ``what`` (``"input"``, ``"gradient"``).
    """
    shape = tuple(getattr(x, "shape", ()))
    if width is None:
        if len(shape) < 2:
            raise ShapeError(f"{layer!r}: expected {what} of shape (batch, ...), got {shape}")
        return
    if len(shape) < 2 or shape[-1] != width:
        raise ShapeError(f"{layer!r}: expected {what} of shape (..., {width}), got {shape}")


def prod(shape: tuple[int, ...]) -> int:
    """The number of elements of ``shape`` (1 for ())."""
    return math.prod(shape)
