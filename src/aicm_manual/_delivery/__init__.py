"""Delivery: records leave the process here, once the Tracker has checked them.

``settings`` (what a user tunes) and ``retry`` (which answers are retried, how long to
wait) are pure; ``spool`` is the SQLite file ``persistent_queue`` writes through;
``queued`` holds what the engine moves around (queued records, per-key state) and the
transport seam; ``engine`` is the one worker thread per process; ``process`` keeps that
engine for the process (created on first use, fresh after fork, drained at exit).

Knows records only as ``_records.UsageRecord`` and bytes from ``_protocol``; may import
those, ``_http``, ``_settings``, ``_secret``, ``_logging`` and ``errors``, never
``_typestring``, ``_configs``, ``_llm`` or ``server``.
"""
