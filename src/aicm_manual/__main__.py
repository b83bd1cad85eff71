"""``python -m aicm_manual`` runs the ``aicm-manual`` command line."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
