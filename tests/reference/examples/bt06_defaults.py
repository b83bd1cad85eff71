"""batch-tracking.md, Using Tracker Defaults. Changed: the import."""

from aicm_manual import Tracker

# --- the example ---
with Tracker() as tracker:
    # Set defaults
    tracker.set_customer_key("default_customer")
    tracker.set_context({"environment": "production"})
    
    records = [
        {
            "service_key": "openai::gpt-4",
            "usage": {"input_tokens": 100},
            # Uses default customer_key and context
        },
        {
            "service_key": "anthropic::claude-3",
            "usage": {"input_tokens": 200},
            "customer_key": "special_customer",  # Overrides default
            "context": {"environment": "staging"},  # Overrides default
        },
    ]
    
    tracker.track_batch(records)
