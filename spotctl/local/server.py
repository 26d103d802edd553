"""The embedded runtime as a long-lived local service, behind `spotctl --local`.

One process holds the runtime (moto, the in-process Lambdas, the simulated fleet and Spot
market) and serves, on 127.0.0.1 only:

- the AWS APIs (moto's server, sharing the runtime's state): spotctl --local reaches the
  state machine, table and fleet with boto3 exactly as it reaches a deployed stack, through
  the outputs of a `SpotMigration` CloudFormation stack;
- a control endpoint for what AWS does on its own: `POST /_local/ec2-events` delivers an
  EC2 Spot event through the deployed rule patterns, `GET /_local/notifications` lists
  what SNS sent;
- the migrations API: `/api/...` is handed to the API Lambda as an API Gateway proxy
  event, so the Swagger UI and the routes can be tried locally (no SigV4: the caller is
  the local operator).

    python -m spotctl.local.server --state-file ~/.spotctl/local.json [--instances 10] [--seed 7]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, urlsplit

from botocore.exceptions import ClientError

from .runtime import LocalRuntime

API_FUNCTION = "spot-migration-api"
LOCAL_OPERATOR = "arn:aws:iam::123456789012:user/local-operator"


def api_gateway_event(method: str, path: str, query: str, headers: dict, body: bytes | str | None) -> dict:
    """The REST API proxy event API Gateway would send for this request (a body that is not
    UTF-8 text base64-encoded, as API Gateway passes binary bodies)."""
    params = parse_qs(query, keep_blank_values=True)
    encoded = False
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            body, encoded = base64.b64encode(body).decode(), True
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in params.items()} or None,
        "multiValueQueryStringParameters": params or None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None, "body": body, "isBase64Encoded": encoded,
        "requestContext": {
            "resourcePath": "/{proxy+}", "httpMethod": method, "path": f"/api{path}", "stage": "api",
            "requestId": str(uuid.uuid4()), "requestTimeEpoch": int(time.time() * 1000), "accountId": "123456789012",
            "identity": {
                "userArn": LOCAL_OPERATOR, "caller": "local-operator", "accountId": "123456789012",
                "sourceIp": "127.0.0.1",
            },
        },
    }


class _Control(BaseHTTPRequestHandler):
    runtime: LocalRuntime

    def log_message(self, *args: object) -> None:  # quiet: the CLI prints what matters
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        try:
            return self._dispatch(method, url, body)
        except (ClientError, KeyError, ValueError) as exc:  # e.g. an unknown instance id: the caller's error
            return self._json(400, {"message": f"{type(exc).__name__}: {exc}"})
        except Exception as exc:  # noqa: BLE001 - report it to the CLI, keep serving
            return self._json(500, {"message": f"{type(exc).__name__}: {exc}"})

    def _dispatch(self, method: str, url: SplitResult, body: bytes | None) -> None:
        if url.path == "/_local/ec2-events" and method == "POST":
            return self._ec2_event(body.decode() if body else None)
        if url.path == "/_local/notifications":
            return self._json(200, self.runtime.notifications())
        if url.path == "/api" or url.path.startswith("/api/"):
            return self._api(method, url.path[len("/api"):] or "/", url.query, body)
        return self._json(404, {"message": f"no such local endpoint: {url.path}"})

    def _ec2_event(self, body: str | None) -> None:
        """EC2 sends an event for one of the fleet's instances, through the deployed rules."""
        request = json.loads(body or "{}")
        outcome = self.runtime.simulate(request["instance_id"], request.get("kind", "interruption"),
                                        reclaim=request.get("reclaim", True))
        return self._json(200, outcome)

    def _api(self, method: str, path: str, query: str, body: bytes | None) -> None:
        headers = dict(self.headers.items())
        event = api_gateway_event(method, path, query, headers, body)
        try:
            response = self.runtime.client("lambda").invoke(FunctionName=API_FUNCTION, Payload=json.dumps(event))
        except self.runtime.client("lambda").exceptions.ResourceNotFoundException:
            return self._json(501, {"message": "this build has no migrations API function"})
        result = json.loads(response["Payload"].read() or b"{}")
        if "FunctionError" in response:
            return self._json(502, {"message": "the API function failed", "error": result.get("errorType")})
        return self._proxy_response(result)

    def _proxy_response(self, result: dict) -> None:
        """The API function's proxy result as the HTTP response, as API Gateway sends it."""
        payload = (result.get("body") or "").encode()
        if result.get("isBase64Encoded"):
            payload = base64.b64decode(payload)
        self.send_response(int(result.get("statusCode", 200)))
        for name, value in _proxy_headers(result):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, status: int, body: object) -> None:
        payload = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _proxy_headers(result: dict) -> list[tuple[str, str]]:
    """The proxy result's headers, each value on its own; Content-Length is the server's."""
    headers = {k: [v] for k, v in (result.get("headers") or {}).items()}
    headers.update(result.get("multiValueHeaders") or {})  # the REST resolver answers with these
    return [(name, value) for name, values in headers.items() if name.lower() != "content-length" for value in values]


def serve(state_file: Path, instances: int, seed: int, region: str, port: int = 0) -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("moto").setLevel(logging.CRITICAL)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with LocalRuntime(region=region, seed=seed) as runtime:
        groups = runtime.fleet.seed_fleet(instances)
        outputs = runtime.publish_stack()
        aws = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        aws.start()
        _, aws_port = aws.get_host_and_port()
        handler = type("Control", (_Control,), {"runtime": runtime})
        control = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=control.serve_forever, daemon=True).start()
        state = {
            "pid": os.getpid(), "region": region, "stack": "SpotMigration", "outputs": outputs,
            "endpoint": f"http://127.0.0.1:{aws_port}", "control": f"http://127.0.0.1:{control.server_port}",
            "fleet": {"instances": instances, "seed": seed, **{k: len(v) for k, v in groups.items()}},
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        state_file.parent.mkdir(parents=True, exist_ok=True)
        partial = state_file.with_suffix(".tmp")
        partial.write_text(json.dumps(state, indent=2))
        partial.replace(state_file)  # readers never see half a file
        try:
            stop.wait()
        finally:
            if state_file.exists() and json.loads(state_file.read_text()).get("pid") == os.getpid():
                state_file.unlink()
            control.shutdown()
            aws.stop()


def main() -> None:
    p = argparse.ArgumentParser(description="the embedded runtime as a local service (spotctl --local)")
    p.add_argument("--state-file", type=Path, required=True)
    p.add_argument("--instances", type=int, default=10)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    serve(args.state_file, args.instances, args.seed, args.region, args.port)


if __name__ == "__main__":
    main()
