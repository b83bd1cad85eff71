"""tracker.md, Non-streaming example. Changed: the import; ``from openai import OpenAI`` -> a local
client that answers with the OpenAI SDK's own response types."""

# --- the example ---
from aicm_manual import Tracker
from _harness import LocalOpenAI as OpenAI

client = OpenAI()

with Tracker() as tracker:
    resp = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Give me a haiku about snow."}],
    )
    tracker.track_llm_usage("openai_chat", resp)
    print(resp.choices[0].message.content)
