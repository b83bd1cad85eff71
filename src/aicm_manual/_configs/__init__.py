"""Configs: what a ``schemas/*.json`` file or the collector's ``/configs`` route holds.

``model`` (``UsageConfig``: schema, services, pricing) and ``handling`` (which client
methods a CostManager tracks) are pure; ``sources`` reads configs from a directory or over
HTTP; ``routing`` holds the one rule, shared by the client and the collector, for which
config checks a record.

May import ``_typestring``, ``_llm.usage`` (API ids), ``_protocol``, ``_http``, ``_secret``,
``_records``, ``_logging`` and ``errors``; never ``_delivery`` or ``server``.
"""
