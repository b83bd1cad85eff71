"""tracker.md, FastAPI integration. Changed: the import. After it, the app is served on a
loopback port and called once, then shut down (which closes the tracker)."""

# --- the example ---
from fastapi import FastAPI
from aicm_manual import Tracker

app = FastAPI()
tracker = Tracker()

@app.on_event("shutdown")
def shutdown() -> None:
    tracker.close()

@app.post("/track")
async def track(payload: dict) -> dict:
    await tracker.track_async("openai", "gpt-5-mini", payload)
    return {"status": "queued"}

# --- driving it ---
import requests
from _harness import serve

with serve(app) as url:
    answer = requests.post(f"{url}/track", json={"input_tokens": 7, "output_tokens": 3}, timeout=30)
    assert answer.json() == {"status": "queued"}, answer.text
