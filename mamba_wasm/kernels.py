"""Every projection (model.py's `_project`) on the browser's SIMD kernels, once the worker installed them.

The worker (web/kernels.js) instantiates web/kernels/matmul.wat on Pyodide's own WebAssembly memory
and calls `use(exports)`: from then on `project` hands the kernels the addresses of NumPy's arrays in
that memory, and they read x and W and write y in place. Natively, and in a browser where the
kernels did not start (no WebAssembly SIMD), nothing is installed: `project` returns None for a
float32 weight (the caller's NumPy formulation runs) and dequantizes a packed one (packed.py).

What one call costs, measured in Pyodide under Node: calling a JavaScript function ~7 us; reading an
array's address ~6.5 us through __array_interface__ (16 us through .ctypes). A token makes ~100
projections, so a weight's address is read once and kept (keyed by id, checked by a weak reference:
an id is reused once its array is gone), and x and y pass through two scratch buffers whose
addresses are read only when they grow.
"""

import weakref

import numpy as np

from .packed import Q8Matrix, project_dequantized

_kernels = None  # WasmKernels once the worker called use()


def use(exports):
    """Project through the kernel module's exports (a JsProxy of matmul.wasm's), or NumPy (None)."""
    global _kernels
    _kernels = None if exports is None else WasmKernels(exports)


def backend():
    """Which code multiplies: "wasm-simd128" (the kernels) or "numpy"."""
    return "numpy" if _kernels is None else "wasm-simd128"


def project(x, weight):
    """x (..., in) by weight (out, in): (..., out). None for a float32 weight no kernel takes."""
    if _kernels is not None:
        y = _kernels.project(x, weight)
        if y is not None:
            return y
    return None if type(weight) is np.ndarray else project_dequantized(x, weight)


def _address(array):
    return array.__array_interface__["data"][0]


class Scratch:
    """A float32 buffer used call after call, and its address in the WebAssembly memory (also
    shard_group.JsLink's, through which partial sums pass)."""

    def __init__(self):
        self.array = np.empty(0, np.float32)
        self.address = _address(self.array)

    def take(self, n):
        """Its first n numbers (a view; valid until the next take)."""
        if n > self.array.size:
            self.array = np.empty(max(n, 2 * self.array.size), np.float32)
            self.address = _address(self.array)
        return self.array[:n]


class _KnownWeight:
    """What a call needs of a weight, found once: the kernel for its type and its data's address."""

    __slots__ = ("ref", "kernel", "address", "out", "n_in")

    def __init__(self, ref, kernel, address, shape):
        self.ref = ref  # weak reference to the weight: its id may be another array's once it is gone
        self.kernel = kernel
        self.address = address
        self.out, self.n_in = shape


class WasmKernels:
    def __init__(self, exports):
        self._kernel = {Q8Matrix: exports.matmul_q8, np.ndarray: exports.matmul_f32}
        self._x = Scratch()
        self._y = Scratch()
        self._rounded = Scratch()  # matmul_q8's x rounded to 16 bits and its scales: 2.125 bytes a number
        self._weights = {}  # id(weight) -> _KnownWeight

    def project(self, x, weight):
        known = self._weights.get(id(weight))
        if known is None or known.ref() is not weight:
            known = self._remember(weight)
            if known is None:
                return None
        out, n_in = known.out, known.n_in
        if x.shape[-1] != n_in:
            return None  # NumPy's own message names the mismatch
        l = x.size // n_in
        np.copyto(self._x.take(x.size).reshape(x.shape), x)  # (..., in) float32, contiguous
        y = self._y.take(l * out)  # (l * out,)
        self._rounded.take(x.size)  # 4 bytes a number: room for matmul_q8's; the others take no scratch
        known.kernel(known.address, self._x.address, self._y.address, out, n_in, l, self._rounded.address)
        return y.reshape(x.shape[:-1] + (out,)).copy()  # (..., out): the scratch is reused

    def _remember(self, weight):
        """The _KnownWeight of a weight a kernel takes, or None (a float32 weight that is not
        C-contiguous 2-D float32: the sharded loaders make theirs contiguous, so none is expected)."""
        kind = type(weight)
        if kind is Q8Matrix:
            data = weight.blocks
        elif kind is np.ndarray and weight.dtype == np.float32 and weight.ndim == 2:
            data = weight
        else:
            return None
        if not data.flags.c_contiguous:
            return None
        key = id(weight)
        known = _KnownWeight(weakref.ref(weight, lambda ref: self._forget(key, ref)), self._kernel[kind],
                             _address(data), weight.shape)
        self._weights[key] = known
        return known

    def _forget(self, key, ref):
        known = self._weights.get(key)
        if known is not None and known.ref is ref:
            del self._weights[key]
