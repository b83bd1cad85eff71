"""manual-usage-tracker.md, FastAPI Example (on both halves of the page). Changed: the
import; "cfg"/"svc" -> the shipped heygen config. After it, the app is served on a loopback
port and called once, then shut down (which closes the tracker)."""

# --- the example ---
from fastapi import FastAPI
from aicm_manual import Tracker

app = FastAPI()

@app.on_event("startup")
async def startup() -> None:
    app.state.tracker = await Tracker.create_async("heygen", "heygen::streaming-avatar")

@app.on_event("shutdown")
def shutdown() -> None:
    app.state.tracker.close()

@app.post("/track")
async def track_usage(payload: dict) -> dict:
    app.state.tracker.track(payload)
    return {"status": "ok"}

# --- driving it ---
import requests
from _harness import serve

with serve(app) as url:
    answer = requests.post(f"{url}/track", json={"duration": 42.0}, timeout=30)
    assert answer.json() == {"status": "ok"}, answer.text
