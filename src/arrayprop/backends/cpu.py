"""What the host CPU offers for bfloat16 matrix products (see docs/precision.md).

:func:`bf16_units` reads the x86 feature flags of ``/proc/cpuinfo`` (Linux): AMX-BF16 (tile
matrix units, Sapphire Rapids and later) and AVX512-BF16 (``vdpbf16ps`` dot products, Cooper
Lake, Zen 4 and later). Without either, a bfloat16 GEMM is emulated: PyTorch's oneDNN path still
runs on AVX-512 (``avx512bw``/``avx512vl``/``avx512dq``) by converting to float32 in registers,
and on anything less PyTorch falls back to its own loops (see
:func:`arrayprop.backends.torch.kernels.bf16_gemm_path`). Nothing here imports an array library.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BF16_FLAGS", "bf16_units", "cpu_flags"]

#: The /proc/cpuinfo flags of bfloat16 matrix hardware, and what each is.
BF16_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}

#: The AVX-512 subset on which oneDNN (and so PyTorch) runs bfloat16 GEMMs by conversion.
AVX512_CORE = ("avx512f", "avx512bw", "avx512vl", "avx512dq")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The feature flags of the first processor in ``cpuinfo``, or None where it is unreadable
    (not Linux) or has no ``flags`` line (not x86)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def bf16_units(flags: frozenset[str] | None = None) -> dict[str, object]:
    """Which bfloat16 matrix units the CPU has.

    Returns ``{"known": bool, "units": [names], "avx512": bool}``: ``known`` is False where the
    flags cannot be read (then the other entries say nothing); ``units`` names the AMX-BF16 /
    AVX512-BF16 units present; ``avx512`` tells whether oneDNN's AVX-512 conversion path applies.
    ``flags`` defaults to :func:`cpu_flags`.
    """
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return {"known": False, "units": [], "avx512": False}
    return {
        "known": True,
        "units": [name for flag, name in BF16_FLAGS.items() if flag in flags],
        "avx512": all(f in flags for f in AVX512_CORE),
    }
