"""``Sequential``, a stack of layers run forward in order and backward in reverse, and
:func:`mlp`, which builds the usual one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from arrayprop.backends import Backend, get_backend
from arrayprop.errors import BackendMismatchError
from arrayprop.nn.activations import ACTIVATIONS
from arrayprop.nn.dense import WIDTH, Dense
from arrayprop.nn.layer import Layer, state_backend
from arrayprop.nn.mode import evaluating
from arrayprop.nn.registry import layer_config, layer_from_config, register_layer
from arrayprop.random import host_rng
from arrayprop.validation import POSITIVE_INT, check

__all__ = ["BATCH_SIZE", "Sequential", "mlp"]

#: What :meth:`Sequential.predict` takes as ``batch_size`` (or None: one batch).
BATCH_SIZE = POSITIVE_INT


@register_layer
class Sequential(Layer):
    """A stack of layers applied in order; backward runs them in reverse.

    All layers with parameters must share one backend (library, device and dtype); parameter-free
    layers adopt it. Parameters are named by position and attribute: ``"0.weight"``.
    """

    speed_hints = True
    # The output may be an inner layer's kept output, so an outer model must not overwrite it.
    retains_output = True

    def __init__(self, *layers: Layer) -> None:
        if len(layers) == 1 and isinstance(layers[0], list | tuple):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is {type(layer).__name__}, not a Layer")
        # Compared by value: equal backends reached by different get_backend calls are one.
        backends = {}
        for layer in layers:
            be = state_backend(layer)
            if be is not None:
                backends[str(be)] = be
        if len(backends) > 1:
            names = ", ".join(backends)
            raise BackendMismatchError(f"Sequential: layers live on different backends: {names}")
        self.layers = list(layers)
        self.backend = next(iter(backends.values()), None)
        if self.backend is not None:
            for _, layer in self.named_layers():
                layer.backend = self.backend
        self.assign_names()

    def named_children(self):
        for i, layer in enumerate(self.layers):
            yield str(i), layer

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

    @property
    def in_features(self) -> int | None:
        """The input width the model declares: its first layer's ``in_features``, looking past
        shape-preserving layers (activations); None when the first shape-changing layer declares
        none (a Flatten, a user's layer)."""
        for layer in self.layers:
            width = getattr(layer, "in_features", None)
            if width is not None or not layer.preserves_shape:
                return width
        return None

    @property
    def out_features(self) -> int | None:
        """The output width the model declares: its last shape-changing layer's
        ``out_features`` (None when that layer declares none)."""
        for layer in reversed(self.layers):
            width = getattr(layer, "out_features", None)
            if width is not None or not layer.preserves_shape:
                return width
        return None

    def forward(self, x: Any, *, inplace: bool = False) -> Any:
        """Apply every layer in order.  x : (batch, ...) -> the last layer's output."""
        owned = inplace
        for layer in self.layers:
            out = layer.forward(x, inplace=owned) if layer.speed_hints else layer.forward(x)
            # The next layer may overwrite this output unless the layer keeps it for backward
            # or passed its input through (Identity: then the buffer is still the caller's).
            owned = layer.speed_hints and not layer.retains_output and out is not x
            x = out
        return x

    def backward(self, grad_out: Any, *, inplace: bool = False, input_grad: bool = True) -> Any:
        """Backpropagate ∂C/∂output through the layers in reverse (eq. 3–6).

        With ``input_grad=False`` the first layer skips ∂C/∂input (not needed to train) and
        None is returned.
        """
        g = grad_out
        owned = inplace
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if layer.speed_hints:
                g_in = layer.backward(g, inplace=owned, input_grad=input_grad or i > 0)
            else:
                g_in = layer.backward(g)
                if i == 0 and not input_grad:
                    g_in = None
            # A new array is ours to overwrite; one passed through (Identity) may be the caller's.
            owned = (owned or g_in is not g) and layer.speed_hints
            g = g_in
        return g

    def clear_cache(self) -> None:
        for layer in self.layers:
            layer.clear_cache()

    def config(self) -> dict[str, Any]:
        return {"layers": [layer_config(layer) for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: Backend | None = None) -> Sequential:
        """Rebuild from :meth:`config` (fresh parameters): every layer through the registry."""
        layers = config.get("layers") if isinstance(config, dict) else None
        if not isinstance(layers, list):
            raise ValueError("Sequential config: expected a list under 'layers'")
        return cls(*(layer_from_config(c, backend=backend) for c in layers))

    def predict(self, x: Any, batch_size: int | None = None) -> Any:
        """The model's output for ``x`` (host or backend array), in batches, in evaluation mode;
        no gradient state is kept.

        x : (n, ..., in_features) -> array of shape (n, ..., out_features) on the model's backend.
        """
        # A model without parameters (only activations) runs wherever its input lives.
        be = self.backend if self.backend is not None else self.backend_for(x)
        # Host float data takes the model's dtype (on NumPy a host array is also a backend array).
        x = be.asarray(x, what="predict: x")
        if batch_size is not None:
            batch_size = check("predict", "batch_size", batch_size, BATCH_SIZE)
        n = x.shape[0] if x.ndim else 0
        step = n if batch_size is None or batch_size >= n else batch_size
        with evaluating(self):
            # Explicit trailing axes and an in-range stop: the standard specifies nothing else.
            outs = (
                [self.forward(x[i : min(i + step, n), ...]) for i in range(0, n, step)] if n else []
            )
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
    sizes = [check("mlp", f"sizes[{i}]", n, WIDTH) for i, n in enumerate(sizes)]
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
