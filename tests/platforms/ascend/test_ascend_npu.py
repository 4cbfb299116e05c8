"""The ``vendor.ascend`` backend on a REAL Ascend NPU: every op case of the conformance suite
against the reference backend, on the device (the ``ascend`` tox env of a vendor runner).

Not run here: no NPU. On CPU machines the ``npu`` marker is deselected; where it is selected
without an NPU the test skips, and the ``ascend`` env's ci/check_stack.py fails first.
"""

from __future__ import annotations

import pytest
import torch
from sglang_fl_ascend import BUNDLE
from sglang_fl_ascend.backend import AscendBackend

from sglang_fl.conformance.ops import check_backend
from sglang_fl.conformance.report import Status

pytestmark = pytest.mark.npu


@pytest.fixture(autouse=True)
def _needs_an_npu():
    # a fixture, not a module-level skip: deselected runs (CI) then report nothing at all
    if not BUNDLE.detect():
        pytest.skip("needs an Ascend NPU")


def test_every_op_case_conforms_on_the_npu():
    checks = check_backend(AscendBackend(), torch.device("npu"))
    failed = [f"{c.name}: {c.detail}" for c in checks if c.status is Status.FAIL]
    assert not failed, "\n".join(failed)
    assert sum(c.status is Status.PASS for c in checks) > 100
