"""The public namespace: explicit, sorted, and every name importable."""

from __future__ import annotations

import types

import aicm_manual
import aicm_manual.errors
import aicm_manual.testing


def test_all_is_sorted_and_complete() -> None:
    names = [n for n in aicm_manual.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in aicm_manual.__all__:
        assert hasattr(aicm_manual, name), name
    public = {
        name
        for name, value in vars(aicm_manual).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(aicm_manual.__all__), public - set(aicm_manual.__all__)


def test_every_error_derives_from_aicm_error_and_is_exported() -> None:
    for name in aicm_manual.errors.__all__:
        cls = getattr(aicm_manual.errors, name)
        assert issubclass(cls, aicm_manual.AicmError)
        assert getattr(aicm_manual, name) is cls


def test_validation_errors_are_value_errors() -> None:
    assert issubclass(aicm_manual.UsageValidationError, ValueError)
    assert issubclass(aicm_manual.TypeStringError, ValueError)


def test_testing_module_exports() -> None:
    assert aicm_manual.testing.__all__ == [
        "CapturingDelivery",
        "CollectorStub",
        "Scripted",
        "StubTransport",
    ]
