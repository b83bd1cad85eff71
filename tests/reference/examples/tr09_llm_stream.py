"""tracker.md, Streaming example. Changed: the import; ``from openai import OpenAI`` -> a local
client that answers with the OpenAI SDK's own response types."""

# --- the example ---
from aicm_manual import Tracker
from _harness import LocalOpenAI as OpenAI

client = OpenAI()

with Tracker() as tracker:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream a short poem."}],
        stream=True,
        stream_options={"include_usage": True},
    )

    for event in tracker.track_llm_stream_usage("openai_chat", stream):
        if event.type == "message.delta" and event.delta.get("content"):
            print(event.delta["content"], end="")
    print()
