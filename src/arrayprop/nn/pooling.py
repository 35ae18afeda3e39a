"""``MaxPool2D`` and ``AvgPool2D`` on NCHW, over the windows of :func:`~arrayprop.nn.conv.im2col`.

No padding; the stride defaults to the kernel size (non-overlapping windows). The work is done
by :func:`arrayprop.kernels.max_pool`, :func:`~arrayprop.kernels.avg_pool` and their gradients:
the portable versions reduce over the windows and scatter the window gradients back with
col2im, Array API only (no in-place or boolean-mask writes); NumPy's fast paths reduce over
the kh·kw strided offset views (2x2 / stride 2 as three maxima) and write each offset's
gradient into its view. Equation numbers refer to docs/math.md.
"""

from __future__ import annotations

from typing import Any

from arrayprop import kernels
from arrayprop.errors import ShapeError
from arrayprop.nn.conv import check_nchw, check_window, output_size, pair
from arrayprop.nn.layer import Layer, check_grad
from arrayprop.nn.registry import register_layer

__all__ = ["AvgPool2D", "MaxPool2D"]


class _Pool2D(Layer):
    """Shared by the two pools: the arguments, the windows and the gradient's shape check."""

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None
    ) -> None:
        name = type(self).__name__
        self.kernel_size = pair(name, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else pair(name, "stride", stride)
        self._cache = None

    def __repr__(self) -> str:
        stride = "" if self.stride == self.kernel_size else f", stride={self.stride}"
        return f"{type(self).__name__}(kernel_size={self.kernel_size}{stride})"

    def config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}

    def _check_input(self, x: Any) -> Any:
        """The backend of x, once x is checked to be (N, C, H, W) and at least one window."""
        be = self.backend_for(x)
        check_nchw(self, x, None)
        check_window(self, tuple(x.shape), self.kernel_size, (0, 0))
        return be

    def _check_grad(self, grad: Any, in_shape: tuple[int, ...], dtype: Any) -> None:
        check_grad(self, grad, dtype)
        n, c, h, w = in_shape
        want = (
            n,
            c,
            output_size(h, self.kernel_size[0], self.stride[0], 0),
            output_size(w, self.kernel_size[1], self.stride[1], 0),
        )
        if tuple(grad.shape) != want:
            raise ShapeError(
                f"{self!r}: expected a gradient of shape {want}, got {tuple(grad.shape)}"
            )

    def clear_cache(self) -> None:
        self._cache = None


@register_layer
class MaxPool2D(_Pool2D):
    """The maximum of each kh×kw window.  (N, C, H, W) -> (N, C, H_out, W_out).

    Parameters
    ----------
    kernel_size : int or pair of int
    stride : int or pair of int, optional
        Default: ``kernel_size``.

    Notes
    -----
    The gradient of a window goes to one entry, its argmax; when several entries tie for the
    maximum, to the first in row-major order within the window (``xp.argmax``'s rule). An
    input with ties therefore has a one-sided derivative only (gradcheck needs inputs without
    ties).
    """

    def forward(self, x: Any) -> Any:
        """Y = max over each window.  x : (N, C, H, W) -> (N, C, H_out, W_out)."""
        be = self._check_input(x)
        y, arg = kernels.max_pool(be, x, self.kernel_size, self.stride)  # eq. 34
        self._cache = (arg, tuple(x.shape), x.dtype)
        return y

    def backward(self, grad: Any) -> Any:
        """∂C/∂x: each window's gradient routed to its argmax, scattered back (col2im)."""
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        arg, in_shape, dtype = self._cache
        self._check_grad(grad, in_shape, dtype)
        self._cache = None
        return kernels.max_pool_grad(  # eq. 35
            self.backend, grad, arg, in_shape, self.kernel_size, self.stride
        )


@register_layer
class AvgPool2D(_Pool2D):
    """The mean of each kh×kw window.  (N, C, H, W) -> (N, C, H_out, W_out).

    Parameters
    ----------
    kernel_size : int or pair of int
    stride : int or pair of int, optional
        Default: ``kernel_size``.
    """

    def forward(self, x: Any) -> Any:
        """Y = mean over each window.  x : (N, C, H, W) -> (N, C, H_out, W_out)."""
        be = self._check_input(x)
        self._cache = (tuple(x.shape), x.dtype)
        return kernels.avg_pool(be, x, self.kernel_size, self.stride)  # eq. 36

    def backward(self, grad: Any) -> Any:
        """∂C/∂x: each window's gradient shared equally by its kh·kw entries, scattered back."""
        if self._cache is None:
            raise RuntimeError(f"{self!r}: backward called before forward")
        in_shape, dtype = self._cache
        self._check_grad(grad, in_shape, dtype)
        self._cache = None
        return kernels.avg_pool_grad(  # eq. 36
            self.backend, grad, in_shape, self.kernel_size, self.stride
        )
