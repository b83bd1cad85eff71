"""The collector's tests (a package, so that its conftest and helpers do not shadow the
top-level ones)."""
