"""manual-usage-tracker.md, Delivery Behavior & Metrics. Changed: the import."""

# --- the example ---
from aicm_manual import get_global_delivery_health
print(get_global_delivery_health())
