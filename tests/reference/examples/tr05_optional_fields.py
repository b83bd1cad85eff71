"""tracker.md, optional fields. Changed: the import; ``tracker`` and ``usage`` as the
page's earlier examples make them."""

from aicm_manual import Tracker

tracker = Tracker()
usage = {"input_tokens": 10, "output_tokens": 20}

# --- the example ---
tracker.track(
    "openai",
    "gpt-5-mini",
    usage,
    client_customer_key="acme_corp",
    context={"env": "prod"},
    response_id="external-session-id",
    timestamp="2024-01-01T00:00:00Z",
)
