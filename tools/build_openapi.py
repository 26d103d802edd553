"""Writes docs/openapi.json, the OpenAPI document of the migrations API (run: python tools/build_openapi.py).

The document is generated from the routes and models of spot_core.entry.api; the CDK stack
creates one API Gateway method per operation in it. A test checks the file is current.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "openapi.json"
sys.path.insert(0, str(ROOT / "layers" / "spot_core" / "python"))


def build() -> str:
    from spot_core.entry.api import openapi_json

    return openapi_json() + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(build())
    print(f"wrote {OUT.relative_to(ROOT)}")
