"""Starting, finding and stopping the local service (`spotctl local up|down|status`).

The service writes its address to a state file (`$SPOTCTL_HOME/local.json`, by default
`~/.spotctl/local.json`) once it is ready, and removes it when it stops; a state file whose
process is gone is stale and ignored.

A service this process started is its child: it is reaped as soon as it exits (otherwise it
would linger as a zombie and still look alive). A service another spotctl process started
counts as gone once it has exited, even while its parent has not reaped it yet.
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
RESTART_HINT = "restart it: spotctl local down && spotctl local up"

# The services this process started and has not reaped yet, by pid.
_CHILDREN: dict[int, subprocess.Popen] = {}


class LocalServiceError(RuntimeError):
    """The local service is not running, or did not start."""


def home() -> Path:
    return Path(os.environ.get("SPOTCTL_HOME") or Path.home() / ".spotctl")


def state_file() -> Path:
    return home() / "local.json"


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:  # polling reaps it once it has exited
            return True
        _CHILDREN.pop(pid, None)
        return False
    if _exited_unreaped(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exited_unreaped(pid: int) -> bool:
    """Someone else's child that has exited but is not reaped yet: a zombie, which signal 0
    still reaches. Only Linux tells (/proc); elsewhere this says False."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return False
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold anything
    return bool(fields) and fields[0] in ("Z", "X")


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
    log_path = home() / "local.log"
    with open(log_path, "ab") as log:  # the service keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "spotctl.local.server", "--state-file", str(state_file()),
             "--instances", str(instances), "--seed", str(seed), "--region", region],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = running()
        if state and state["pid"] == process.pid:
            return state
        if process.poll() is not None:
            _CHILDREN.pop(process.pid, None)
            raise LocalServiceError(f"the local service exited with code {process.returncode}; see {log_path}")
        time.sleep(0.2)
    process.terminate()
    raise LocalServiceError(f"the local service did not start within {timeout:.0f} s; see {log_path}")


def stop(timeout: float = 20.0) -> bool:
    """Stop the running service; False if none was running."""
    state = running()
    if not state:
        return False
    pid = state["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
    state_file().unlink(missing_ok=True)
    return True


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Wait for a killed service of ours to be gone, so it leaves no zombie behind."""
    child = _CHILDREN.pop(pid, None)
    if child is None:
        return
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        _CHILDREN[pid] = child  # still dying: a later check reaps it


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
        raise LocalServiceError(f"the local service does not answer ({exc.reason}); {RESTART_HINT}") from None
