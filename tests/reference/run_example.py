"""Run one reference example as a script, then wait for its records and report delivery.

The last line printed is the delivery health as JSON, so the test can see what was
rejected or discarded without parsing logs.
"""

from __future__ import annotations

import json
import runpy
import sys


def main(path: str) -> None:
    try:
        runpy.run_path(path, run_name="__main__")
    finally:
        if "aicm_manual" in sys.modules:
            from aicm_manual import get_global_delivery, get_global_delivery_health

            get_global_delivery().flush(30)
            health = get_global_delivery_health()
            keep = ("queued", "total_delivered", "total_rejected", "total_discarded")
            print("\nHEALTH " + json.dumps({k: health[k] for k in keep}))


if __name__ == "__main__":
    main(sys.argv[1])
