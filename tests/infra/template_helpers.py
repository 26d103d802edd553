"""Reading the synthesised template: resources by type, logical ids, ARN expressions as text."""

from __future__ import annotations

import json
from typing import Any


def of_type(resources: dict[str, dict], type_: str) -> dict[str, dict]:
    return {k: v for k, v in resources.items() if v["Type"] == type_}


def listify(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def flatten(value: Any) -> str:
    """An ARN expression as text, the way cdk-nag prints it (``<Ref>``, ``<Logical.Attr>``)."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(flatten(p) for p in parts)
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return f"<{value['Fn::GetAtt'][0]}.{value['Fn::GetAtt'][1]}>"
    return json.dumps(value)


def logical_id(stack, construct) -> str:
    cfn = getattr(construct.node, "default_child", None) or construct
    return stack.resolve(cfn.logical_id)
