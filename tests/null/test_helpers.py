"""The test helpers themselves: without PyTorch, using the `torch` stand-in skips only the test that uses it."""

from __future__ import annotations

import pytest

from tests.helpers import _TorchMissing


def test_torch_stand_in_skips_on_use_not_on_import():
    torch = _TorchMissing()
    table = {"relu": torch.relu, "F": torch.nn.functional}  # naming torch functions at import time is fine
    assert "torch.nn.functional" in repr(table["F"])

    def subclass():
        class Net(torch.nn.Module):
            pass

    for use in (lambda: table["relu"](1.0), lambda: table["F"].conv2d(1, 2), lambda: dir(torch.nn), subclass):
        with pytest.raises(pytest.skip.Exception, match="PyTorch is not installed"):
            use()
