"""Run one doc page's ```python blocks in order, in one namespace (used by test_docs_run).

Top-level ``await`` is allowed, as in the asyncio REPL: such a block runs in asyncio.run.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import sys
import types
from typing import Any


def main(path: str) -> None:
    from test_docs_run import runnable_blocks  # type: ignore[import-not-found]

    # A real module, so functions defined in the docs pickle (multiprocessing pools).
    module = types.ModuleType("__docs__")
    sys.modules["__docs__"] = module
    namespace: dict[str, Any] = module.__dict__
    for line, source in runnable_blocks(path):
        code = compile(
            "\n" * (line - 1) + source, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        if inspect.CO_COROUTINE & code.co_flags:
            asyncio.run(eval(code, namespace))  # noqa: S307 -- our own docs, on purpose
        else:
            exec(code, namespace)  # noqa: S102 -- our own docs, on purpose
    _check_delivery()


def _check_delivery() -> None:
    """What the page tracked reached the collector: none rejected, none discarded."""
    if "aicm_manual" not in sys.modules:
        return
    from aicm_manual import get_global_delivery, get_global_delivery_health

    get_global_delivery().flush(30)
    health = get_global_delivery_health()
    bad = {k: health[k] for k in ("queued", "total_rejected", "total_discarded") if health[k]}
    if bad:
        raise SystemExit(f"docs page left records undelivered: {bad}, last {health['last_error']}")


if __name__ == "__main__":
    main(sys.argv[1])
