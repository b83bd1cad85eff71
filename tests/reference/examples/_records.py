"""The ``records`` the batch-tracking page defines in its first example and reuses later."""

records = [
    {
        "service_key": "openai::gpt-4",
        "usage": {"input_tokens": 100, "output_tokens": 50},
        "customer_key": "customer_1",
        "response_id": "request_1",
    },
    {
        "service_key": "anthropic::claude-3",
        "usage": {"input_tokens": 200, "output_tokens": 75},
        "customer_key": "customer_2",
        "context": {"session": "session_abc"},
        "timestamp": "2024-01-15T10:30:00Z",
    },
    {
        "service_key": "heygen::streaming-avatar",
        "usage": {"duration": 120.5},
        "customer_key": "customer_3",
        "context": {"video_id": "video_789"},
    },
]
