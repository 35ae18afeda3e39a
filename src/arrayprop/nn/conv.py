"""``Conv2D``: 2-D convolution on NCHW as one GEMM over an im2col matrix, and its backward pass.

im2col and col2im are Array API only (strided slices, ``stack``, ``concat`` with zeros, sums):
no in-place writes, so they run on immutable arrays (JAX) too. :mod:`.pooling` uses the same
windowing. Equation numbers refer to docs/math.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from arrayprop import kernels
from arrayprop.backends import Backend, get_backend
from arrayprop.errors import DTypeError, ShapeError
from arrayprop.nn.init import INITIALIZERS, draw
from arrayprop.nn.layer import Layer, check_grad, exact_array
from arrayprop.nn.parameter import Parameter
from arrayprop.nn.registry import register_layer
from arrayprop.random import host_rng
from arrayprop.validation import POSITIVE_INT, check

__all__ = ["Conv2D", "col2im", "im2col", "output_size", "pair"]


def pair(layer: str, name: str, value: Any, *, minimum: int = 1) -> tuple[int, int]:
    """``value`` (an int or a pair of ints, each at least ``minimum``) as a pair."""
    values = tuple(value) if isinstance(value, tuple | list) else (value, value)
    ok = len(values) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values
    )
    if not ok:
        raise ValueError(
            f"{layer}: {name} must be an int >= {minimum} or a pair of them, got {value!r}"
        )
    return values  # type: ignore[return-value]


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one axis: ⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def _zeros_like_axis(xp: Any, x: Any, axis: int, n: int) -> Any:
    shape = list(x.shape)
    shape[axis] = n
    return xp.zeros(tuple(shape), dtype=x.dtype, device=x.device)


def _pad_axis(xp: Any, x: Any, axis: int, before: int, after: int) -> Any:
    """``x`` with ``before`` and ``after`` zeros along ``axis`` (the standard has no ``pad``)."""
    parts = [_zeros_like_axis(xp, x, axis, before)] if before else []
    parts.append(x)
    if after:
        parts.append(_zeros_like_axis(xp, x, axis, after))
    return x if len(parts) == 1 else xp.concat(parts, axis=axis)


def im2col(
    xp: Any,
    x: Any,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int] = (0, 0),
) -> Any:
    """The windows of ``x``, one strided slice per kernel offset.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel, stride, padding : pairs of int
        (kh, kw), (sh, sw), (ph, pw).

    Returns
    -------
    array, shape (N, C, kh·kw, H_out, W_out)
        Entry ``[n, c, i·kw + j, p, q]`` is the zero-padded input at
        ``[n, c, i + sh·p, j + sw·q]``. :class:`Conv2D` permutes it to the im2col matrix.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp_ = _pad_axis(xp, _pad_axis(xp, x, 2, ph, ph), 3, pw, pw)
    h_out = output_size(x.shape[2], kh, sh, ph)
    w_out = output_size(x.shape[3], kw, sw, pw)
    # The slice for offset (i, j) starts there and takes every stride-th row and column.
    slices = [
        xp_[:, :, i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]
    return xp.stack(slices, axis=2)


def _dilate(xp: Any, g: Any, axis: int, step: int) -> Any:
    """``g`` with ``step − 1`` zeros after each entry along ``axis`` (the last ones dropped):
    length n -> step·(n − 1) + 1. Interleaves by stacking with zeros and reshaping."""
    if step == 1:
        return g
    n = g.shape[axis]
    zeros = xp.zeros_like(g)
    woven = xp.stack([g] + [zeros] * (step - 1), axis=axis + 1)
    shape = (*g.shape[:axis], n * step, *g.shape[axis + 1 :])
    woven = xp.reshape(woven, shape)
    index = (slice(None),) * axis + (slice(0, step * (n - 1) + 1), Ellipsis)
    return woven[index]


def col2im(
    xp: Any,
    patches: Any,
    input_shape: tuple[int, int, int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int] = (0, 0),
) -> Any:
    """The adjoint of :func:`im2col`: scatter-add every window back onto the input.

    Parameters
    ----------
    patches : array, shape (N, C, kh·kw, H_out, W_out)
        Gradients of :func:`im2col`'s output.
    input_shape : (N, C, H, W)

    Returns
    -------
    array, shape (N, C, H, W)
        Σ over kernel offsets of each offset's slice placed where :func:`im2col` read it
        (a zero-padded placement per offset, summed), with the padding cut off.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    _, _, h, w = input_shape
    hp, wp = h + 2 * ph, w + 2 * pw
    # Spread each output position to its stride-th place once, for every offset together.
    spread = _dilate(xp, _dilate(xp, patches, 3, sh), 4, sw)
    rows, cols = spread.shape[3], spread.shape[4]
    total = None
    for i in range(kh):
        for j in range(kw):
            g = spread[:, :, i * kw + j, ...]
            g = _pad_axis(xp, _pad_axis(xp, g, 2, i, hp - i - rows), 3, j, wp - j - cols)
            total = g if total is None else total + g  # eq. 33
    return total[:, :, ph : ph + h, pw : pw + w]  # eq. 33


def check_nchw(layer: Layer, x: Any, channels: int | None) -> None:
    """Refuse input that is not (N, C, H, W) of the backend's dtype (with ``channels`` C)."""
    be = layer.backend
    if not be.owns(x):
        be.check(x, f"{layer!r} input")
    shape = tuple(x.shape)
    if len(shape) != 4 or (channels is not None and shape[1] != channels):
        c = "C" if channels is None else channels
        raise ShapeError(f"{layer!r}: expected input of shape (N, {c}, H, W), got {shape}")
    if x.dtype != be.dtype:
        raise DTypeError(
            f"{layer!r}: expected input of dtype {be.dtype_name}, got {x.dtype}; convert the "
            "data with backend.asarray (integer data must be cast to float explicitly)"
        )


def check_window(layer: Layer, shape: tuple[int, ...], kernel, padding) -> None:
    """Refuse input smaller than one window (after padding)."""
    h, w = shape[2] + 2 * padding[0], shape[3] + 2 * padding[1]
    if h < kernel[0] or w < kernel[1]:
        raise ShapeError(
            f"{layer!r}: input of shape {shape} (padded {h}x{w}) is smaller than the "
            f"{kernel[0]}x{kernel[1]} kernel"
        )


@register_layer
class Conv2D(Layer):
    """2-D convolution (cross-correlation, as PyTorch's ``conv2d``) on NCHW input.

    Forward is one GEMM, Z = cols · W_matᵀ + b, over the im2col matrix cols of shape
    (N·H_out·W_out, C·kh·kw); H_out = ⌊(H + 2·ph − kh) / sh⌋ + 1, likewise W_out.

    Parameters
    ----------
    in_channels, out_channels : int
        C and the number of filters.
    kernel_size, stride, padding : int or pair of int
        (kh, kw), (sh, sw) and the zeros (ph, pw) added on each side; stride 1, padding 0 by
        default.
    weight : array-like, shape (out_channels, in_channels, kh, kw), optional
        Exact initial weights, PyTorch's layout (exchange them with ``torch.nn.Conv2d``).
        Default: drawn by ``init`` with fan-in C·kh·kw.
    bias : array-like, shape (out_channels,), optional
        Exact initial bias. Default: zeros.
    init : str or callable
        As :class:`~arrayprop.nn.Dense`'s; drawn as the (C·kh·kw, out_channels) matrix.
    seed : int or numpy.random.Generator, optional
    backend : str or Backend, optional
    dtype : str, optional

    Attributes
    ----------
    weight : Parameter, shape (out_channels, in_channels, kh, kw)
    bias : Parameter, shape (out_channels,)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        *,
        weight: Any = None,
        bias: Any = None,
        init: str | Callable = "he",
        seed: Any = None,
        backend: str | Backend | None = None,
        dtype: Any = None,
    ) -> None:
        self.in_channels = check("Conv2D", "in_channels", in_channels, POSITIVE_INT)
        self.out_channels = check("Conv2D", "out_channels", out_channels, POSITIVE_INT)
        self.kernel_size = pair("Conv2D", "kernel_size", kernel_size)
        self.stride = pair("Conv2D", "stride", stride)
        self.padding = pair("Conv2D", "padding", padding, minimum=0)
        self.backend = be = get_backend(backend, dtype=dtype)
        self.init = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        kh, kw = self.kernel_size
        shape = (out_channels, in_channels, kh, kw)
        if weight is None:
            # Drawn as the GEMM's (fan_in, out) matrix so the initialisers see the right fans.
            gemm = (in_channels * kh * kw, out_channels)
            host_w = draw(init, gemm, host_rng(seed), "Conv2D")
            w = be.xp.reshape(be.asarray(host_w.T.copy(), dtype=be.dtype), shape)
        else:
            w = exact_array(self, weight, shape, "weight")
        b = (
            be.zeros((out_channels,))
            if bias is None
            else exact_array(self, bias, (out_channels,), "bias")
        )
        self.weight = Parameter(w, "weight")
        self.bias = Parameter(b, "bias")
        self._cache = None

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={value}"
            for name, value, default in (
                ("stride", self.stride, (1, 1)),
                ("padding", self.padding, (0, 0)),
            )
            if value != default
        )
        return (
            f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
            f"{extra})"
        )

    def _w_mat(self) -> Any:
        """W as the GEMM's (out_channels, C·kh·kw) matrix."""
        return self.backend.xp.reshape(self.weight.data, (self.out_channels, -1))

    def forward(self, x: Any) -> Any:
        """Z = cols · W_matᵀ + b.  x : (N, C, H, W) -> (N, out_channels, H_out, W_out)."""
        check_nchw(self, x, self.in_channels)
        check_window(self, tuple(x.shape), self.kernel_size, self.padding)
        be = self.backend
        xp = be.xp
        windows = im2col(xp, x, self.kernel_size, self.stride, self.padding)
        n, c, k, h_out, w_out = windows.shape
        # Rows (n, p, q), columns (c, i, j): the order of W's (C, kh, kw) axes.
        cols = xp.reshape(xp.permute_dims(windows, (0, 3, 4, 1, 2)), (-1, c * k))  # eq. 29
        z = kernels.matmul(be, cols, self._w_mat().T) + self.bias.data  # eq. 30
        self._cache = (cols, tuple(x.shape))
        z = xp.reshape(z, (n, h_out, w_out, self.out_channels))
        return xp.permute_dims(z, (0, 3, 1, 2))

    def backward(self, grad_out: Any) -> Any:
        """Given δ = ∂C/∂Z (N, out_channels, H_out, W_out): sets ∂C/∂W = δᵀ cols and
        ∂C/∂b = Σ δ; returns col2im(δ W_mat), shape (N, C, H, W)."""
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        cols, in_shape = self._cache
        check_grad(self, grad_out, cols.dtype)
        be = self.backend
        xp = be.xp
        n, _, h, w = in_shape
        kh, kw = self.kernel_size
        h_out = output_size(h, kh, self.stride[0], self.padding[0])
        w_out = output_size(w, kw, self.stride[1], self.padding[1])
        want = (n, self.out_channels, h_out, w_out)
        if tuple(grad_out.shape) != want:
            raise ShapeError(
                f"{self!r}: expected a gradient of shape {want}, got {tuple(grad_out.shape)}"
            )
        self._cache = None
        delta = xp.reshape(xp.permute_dims(grad_out, (0, 2, 3, 1)), (-1, self.out_channels))
        grad_w = kernels.matmul(be, delta.T, cols)  # eq. 31
        self.weight.grad = xp.reshape(grad_w, tuple(self.weight.data.shape))
        self.bias.grad = kernels.bias_grad(be, delta)  # eq. 31
        grad_cols = kernels.matmul(be, delta, self._w_mat())  # eq. 32
        patches = xp.reshape(grad_cols, (n, h_out, w_out, self.in_channels, kh * kw))
        patches = xp.permute_dims(patches, (0, 3, 4, 1, 2))
        return col2im(xp, patches, in_shape, self.kernel_size, self.stride, self.padding)

    def clear_cache(self) -> None:
        self._cache = None

    def gemm_flops(self, sample_shape: tuple[int, ...]) -> int:
        """FLOPs of the forward GEMM per sample whose output has ``sample_shape``
        (out_channels, H_out, W_out): 2·C·kh·kw·out_channels·H_out·W_out."""
        return 2 * self.in_channels * math.prod(self.kernel_size) * math.prod(sample_shape)

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
        }
        if self.init in INITIALIZERS:  # a custom initialiser cannot be named in a file
            config["init"] = self.init
        return config
