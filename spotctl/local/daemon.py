"""Starting, finding and stopping the local service (`spotctl local up|down|status`).

The service writes its address to a state file (`$SPOTCTL_HOME/local.json`, by default
`~/.spotctl/local.json`) once it is ready, and removes it when it stops; a state file whose
process is gone is stale and ignored.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class LocalServiceError(RuntimeError):
    """The local service is not running, or did not start."""


def home() -> Path:
    return Path(os.environ.get("SPOTCTL_HOME") or Path.home() / ".spotctl")


def state_file() -> Path:
    return home() / "local.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running() -> dict | None:
    """The running service's state, or None."""
    try:
        state = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None
    return state if _alive(int(state.get("pid", 0))) else None


def start(instances: int = 10, seed: int = 7, region: str = "us-east-1", timeout: float = 120.0) -> dict:
    """Start the service in the background (or return the one already running)."""
    state = running()
    if state:
        return state
    home().mkdir(parents=True, exist_ok=True)
    with open(home() / "local.log", "ab") as log:  # the service keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "spotctl.local.server", "--state-file", str(state_file()),
             "--instances", str(instances), "--seed", str(seed), "--region", region],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = running()
        if state and state["pid"] == process.pid:
            return state
        if process.poll() is not None:
            raise LocalServiceError(f"the local service exited with code {process.returncode}; see {home() / 'local.log'}")
        time.sleep(0.2)
    process.terminate()
    raise LocalServiceError(f"the local service did not start within {timeout:.0f} s; see {home() / 'local.log'}")


def stop(timeout: float = 20.0) -> bool:
    """Stop the running service; False if none was running."""
    state = running()
    if not state:
        return False
    os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(state["pid"]):
        time.sleep(0.1)
    if _alive(state["pid"]):
        os.kill(state["pid"], signal.SIGKILL)
    state_file().unlink(missing_ok=True)
    return True


def control(state: dict, path: str, body: dict | None = None, timeout: float = 120.0) -> object:
    """Call the service's control endpoint (POST with a JSON body, or GET)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(state["control"] + path, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("message", exc.reason)
        raise LocalServiceError(detail) from None
    except urllib.error.URLError as exc:
        raise LocalServiceError(f"the local service does not answer ({exc.reason}); restart it: spotctl local down && spotctl local up") from None
