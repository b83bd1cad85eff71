"""batch-tracking.md, Real-World Example. Changed: the import; get_production_sessions()
and get_development_sessions() (the page's placeholders) -> local sessions; the two keys
come from PROD_AICM_API_KEY and DEV_AICM_API_KEY as the example reads them."""

from _harness import sessions


def get_production_sessions():
    return sessions("prod", 3)


def get_development_sessions():
    return sessions("dev", 2)


# --- the example ---
import os
from datetime import datetime, timezone
from aicm_manual import Tracker

def track_heygen_sessions(sessions, is_development=False):
    """Track HeyGen session costs in batch."""
    
    # Choose API key based on environment
    api_key_name = "DEV_AICM_API_KEY" if is_development else "PROD_AICM_API_KEY"
    api_key = os.getenv(api_key_name)
    
    if not api_key:
        print(f"No {api_key_name} found, skipping tracking")
        return
    
    # Build batch records
    records = []
    for session in sessions:
        record = {
            "service_key": "heygen::streaming-avatar",
            "usage": {"duration": session.duration_seconds},
            "response_id": str(session.session_id),
            "timestamp": session.created_at,
        }
        
        # Add customer info if available
        if session.customer_id:
            record["customer_key"] = str(session.customer_id)
            
        # Add context metadata
        if session.video_id or session.user_id:
            record["context"] = {}
            if session.video_id:
                record["context"]["video_id"] = str(session.video_id)
            if session.user_id:
                record["context"]["user_id"] = str(session.user_id)
                
        records.append(record)
    
    # Track the batch
    env_type = "development" if is_development else "production"
    print(f"Tracking {len(records)} {env_type} HeyGen sessions")
    
    try:
        with Tracker(aicm_api_key=api_key, delivery_type="immediate") as tracker:
            result = tracker.track_batch(records)
            print(f"Successfully tracked {len(records)} sessions")
            return result
            
    except Exception as e:
        print(f"Failed to track {env_type} sessions: {e}")
        raise

# Usage
production_sessions = get_production_sessions()
development_sessions = get_development_sessions()

# Track each environment separately with correct API key
if production_sessions:
    track_heygen_sessions(production_sessions, is_development=False)

if development_sessions:
    track_heygen_sessions(development_sessions, is_development=True)
