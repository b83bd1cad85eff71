"""LLM helpers: token usage read from OpenAI, Anthropic and Gemini responses and streams.

``usage`` maps a response (an SDK object or its dict) to canonical usage and imports no
SDK; ``streams`` wraps a stream so each event passes through unchanged while its usage is
recorded once; ``tracking`` sends either through any ``track`` callable.

May import ``_records``, ``_protocol`` and ``errors``; never ``_delivery``, ``_configs``
or ``server``.
"""
