"""Delivery: records leave the process here, once the Tracker has checked them.

``settings`` (what a user tunes, per tracker or per process) and ``retry`` (which answers
are retried, how long to wait) are pure; ``spool`` (tables in ``spool_schema``) is the SQLite file
``persistent_queue`` writes through; ``queued`` holds what moves around (queued records,
routes, per-route state) and the transport seam; ``sender`` is one exchange with a
collector, ``senders`` the threads requests wait on; ``stores`` are where queued records
wait (memory or spool) and how each is settled; ``worker`` is the worker thread and its
cycle (``run_once``) and batching, ``outcomes`` how an answer is settled (retries, parking,
batch halving, poison isolation); ``health`` keeps the counters; ``immediate`` sends on
the caller's thread; ``on_full`` applies the on-full policies; ``engine`` is the one
engine per process (intake, flush, close); ``modes`` is what a Tracker holds;
``process`` keeps the engine for the process (created on first use, fresh after fork,
drained at exit and in ``multiprocessing`` children).

Knows records only as ``_records.UsageRecord`` and bytes from ``_protocol``; may import
those, ``_http``, ``_settings``, ``_secret``, ``_logging`` and ``errors``, never
``_typestring``, ``_configs``, ``_llm`` or ``server``.
"""
