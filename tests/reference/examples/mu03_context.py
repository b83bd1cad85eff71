"""manual-usage-tracker.md, Client Context. Changed: ``tracker`` for the shipped heygen
config."""

from aicm_manual import Tracker

tracker = Tracker("heygen", "heygen::streaming-avatar")

# --- the example ---
tracker.track(
    {"duration": 12.3},
    client_customer_key="acme_corp",
    context={"project": "chatbot_v2", "env": "prod"},
)
