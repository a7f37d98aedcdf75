"""backends/numba/_layout.bind: a compiled call built for reuse (inside a kernel's ``specialize``, ``for_reuse``)
calls the overload for its arguments' types directly, skipping the dispatcher's typing on every call; one built
and run once goes through the dispatcher (typing its arguments up front would cost more). The same results
either way."""

from __future__ import annotations

import numpy as np
from numba import njit

from backends.numba._layout import bind, for_reuse


@njit(cache=False)
def _axpy(a, x, y):
    for i in range(x.shape[0]):
        y[i] += a * x[i]


def test_bound_call_runs_the_overload_for_its_arguments():
    x = np.arange(5, dtype=np.float32)
    y1, y2 = np.ones(5, np.float32), np.ones(5, np.float32)
    assert bind(_axpy, np.float32(2.0), x, y1).func is _axpy  # built outside a specialize: the dispatcher
    call = for_reuse(bind)(_axpy, np.float32(2.0), x, y1)
    assert call.func is not _axpy and call.func is _axpy.overloads[_axpy.signatures[-1]].entry_point
    call()
    call()
    _axpy(np.float32(2.0), x, y2)
    _axpy(np.float32(2.0), x, y2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, 1 + 4 * x)
    readonly = x.copy()
    readonly.setflags(write=False)  # a folded weight: its own overload (numba types read-only arrays apart)
    for_reuse(bind)(_axpy, np.float32(1.0), readonly, y1)()
    np.testing.assert_array_equal(y1, 1 + 5 * x)


def test_a_plain_function_is_bound_as_it_is():
    calls = []
    bind(calls.append, 3)()
    assert calls == [3]
