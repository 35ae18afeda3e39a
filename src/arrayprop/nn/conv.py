"""``Conv2D``: 2-D convolution on NCHW as one GEMM over an im2col matrix, and its backward pass.

The layer calls :func:`arrayprop.kernels.conv2d` and :func:`~arrayprop.kernels.conv2d_grad`.
Without a fast pair they compose the im2col matrix and its adjoint (col2im) from
:func:`arrayprop.kernels.conv_cols` and :func:`~arrayprop.kernels.conv_col2im`, whose portable
versions are Array API only (strided slices, ``stack``, ``concat`` with zeros, sums; no
in-place writes, so they run on immutable arrays such as JAX's). NumPy's fast pair builds a
channel-major im2col matrix, runs each product as one GEMM and, for stride 1, forms the input
gradient by shifted GEMMs without col2im; it refills the layer's spent matrix (a workspace the
layer owns between steps). :mod:`.pooling` uses the same windowing. Equation numbers refer to
docs/math.md.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from arrayprop import kernels
from arrayprop.backends import Backend, get_backend
from arrayprop.errors import ShapeError
from arrayprop.kernels import portable
from arrayprop.kernels.portable import conv_output_size
from arrayprop.nn.init import INITIALIZERS, draw
from arrayprop.nn.layer import Layer, check_grad, check_input, config_dims, exact_array
from arrayprop.nn.parameter import Parameter
from arrayprop.nn.registry import register_layer
from arrayprop.random import host_rng
from arrayprop.validation import POSITIVE_INT, check

__all__ = ["Conv2D", "col2im", "im2col", "output_size", "pair"]


def pair(layer: str, name: str, value: Any, *, minimum: int = 1) -> tuple[int, int]:
    """``value`` (an int or a pair of ints, each at least ``minimum``) as a pair."""
    values = tuple(value) if isinstance(value, tuple | list) else (value, value)
    ok = len(values) == 2 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum for v in values
    )
    if not ok:
        raise ValueError(
            f"{layer}: {name} must be an int >= {minimum} or a pair of them, got {value!r}"
        )
    return int(values[0]), int(values[1])  # any Integral (a NumPy int64) as a Python int


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one axis: ⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return conv_output_size(size, kernel, stride, padding)


def im2col(xp: Any, x: Any, kernel, stride, padding=(0, 0)) -> Any:
    """The windows (N, C, kh·kw, H_out, W_out) of x (N, C, H, W): the portable Array API
    version (:func:`arrayprop.kernels.portable.im2col`), which the pools use."""
    return portable.im2col(xp, x, kernel, stride, padding)


def col2im(xp: Any, patches: Any, input_shape, kernel, stride, padding=(0, 0)) -> Any:
    """The adjoint of :func:`im2col` (:func:`arrayprop.kernels.portable.col2im`)."""
    return portable.col2im(xp, patches, input_shape, kernel, stride, padding)


def check_nchw(layer: Layer, x: Any, channels: int | None) -> None:
    """Refuse input that is not (N, C, H, W) of the backend's dtype (with ``channels`` C)."""
    be = layer.backend
    if not be.owns(x):
        be.check(x, f"{layer!r} input")
    shape = tuple(x.shape)
    if len(shape) != 4 or (channels is not None and shape[1] != channels):
        c = "C" if channels is None else channels
        raise ShapeError(f"{layer!r}: expected input of shape (N, {c}, H, W), got {shape}")
    check_input(layer, x)


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
        Exact initial weights, PyTorch's layout (exchange them with PyTorch's ``Conv2d``).
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

    speed_hints = True

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
        self._spare = None  # the last step's spent im2col matrix, for conv2d to refill

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

    def forward(self, x: Any, *, inplace: bool = False) -> Any:
        """Z = cols · W_matᵀ + b.  x : (N, C, H, W) -> (N, out_channels, H_out, W_out).

        ``inplace`` is accepted (a speed hint, see :class:`~arrayprop.nn.Layer`); x is only read.
        """
        check_nchw(self, x, self.in_channels)
        check_window(self, tuple(x.shape), self.kernel_size, self.padding)
        spare, self._spare = self._spare, None
        z, saved = kernels.conv2d(  # eqs. 29-30
            self.backend,
            x,
            self.weight.data,
            self.bias.data,
            self.kernel_size,
            self.stride,
            self.padding,
            spare,
        )
        self._cache = (saved, tuple(x.shape), x.dtype)
        return z

    def backward(self, grad_out: Any, *, inplace: bool = False, input_grad: bool = True) -> Any:
        """Given δ = ∂C/∂Z (N, out_channels, H_out, W_out): sets ∂C/∂W = δᵀ cols and
        ∂C/∂b = Σ δ; returns col2im(δ W_mat), shape (N, C, H, W), or None with
        ``input_grad=False`` (the first layer while training: no GEMM, no col2im)."""
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        saved, in_shape, dtype = self._cache
        check_grad(self, grad_out, dtype)
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
        grad_x, grad_w, grad_b = kernels.conv2d_grad(  # eqs. 31-33
            self.backend,
            grad_out,
            saved,
            self.weight.data,
            in_shape,
            self.kernel_size,
            self.stride,
            self.padding,
            input_grad,
        )
        self.weight.grad, self.bias.grad = grad_w, grad_b
        if kernels.conv2d_workspace(self.backend):
            self._spare = saved  # spent: nothing reads it again
        return grad_x

    def clear_cache(self) -> None:
        self._cache = None
        self._spare = None

    def gemm_flops(self, sample_shape: tuple[int, ...]) -> int:
        """FLOPs of the forward GEMM per sample whose output has ``sample_shape``
        (out_channels, H_out, W_out): 2·C·kh·kw·out_channels·H_out·W_out."""
        return 2 * self.in_channels * math.prod(self.kernel_size) * math.prod(sample_shape)

    @classmethod
    def state_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        (c_in,), (c_out,) = config_dims(config, "in_channels"), config_dims(config, "out_channels")
        kh, kw = config_dims(config, "kernel_size", 2)
        return {"weight": (c_out, c_in, kh, kw), "bias": (c_out,)}

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
