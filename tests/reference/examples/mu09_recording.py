"""manual-usage-tracker.md, Recording Usage. Changed: ``tracker`` for the shipped llm config
(the usage is LLM tokens)."""

from aicm_manual import Tracker

tracker = Tracker("llm", "openai::gpt-4o-mini")

# --- the example ---
usage = {"tokens": 10, "model": "gpt"}
tracker.track(usage, client_customer_key="cust1", context={"task": "demo"})
