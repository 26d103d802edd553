"""How a command prints its result: the JSON document with --json, the text otherwise."""

from __future__ import annotations

import argparse
import json
from typing import Any


def output(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)
