"""tracker.md, Background tracking. Changed: the import; ``tracker`` as the page's first
example makes it."""

from aicm_manual import Tracker

tracker = Tracker()

# --- the example ---
usage = {"input_tokens": 10, "output_tokens": 20}
tracker.track("openai", "gpt-5-mini", usage)
