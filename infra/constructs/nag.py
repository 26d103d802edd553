"""cdk-nag (v3) wiring and acknowledgements.

cdk-nag 3 is a CDK policy-validation plugin: ``Validations.of(app).add_plugins(...)``
runs the AwsSolutions pack at synthesis, and an unacknowledged error fails synthesis.
Acknowledgements use CDK's ``Validations.of(construct).acknowledge(...)``; a rule that
reports several findings (IAM5) is acknowledged finding by finding, e.g.
``AwsSolutions-IAM5[Resource::*]`` (v3's equivalent of v2's ``applies_to``).
Every acknowledgement here carries the reason it is acceptable.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import Construct, IConstruct

IAM5 = "AwsSolutions-IAM5"


def enable_checks(app: Construct) -> AwsSolutionsChecks:
    """Run the AwsSolutions pack on every stack of ``app`` at synthesis.

    Acknowledgements are also written into the template metadata (``cdk_nag``),
    so the audit trail travels with the deployed template.
    """
    pack = AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True)
    Validations.of(app).add_plugins(pack)
    return pack


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one rule (or one finding, ``Rule[finding]``) on ``scope`` and below."""
    if len(reason.strip()) < 20:
        raise ValueError(f"acknowledgement of {rule_id} needs a specific reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def acknowledge_iam5(scope: IConstruct, findings: Mapping[str, str]) -> None:
    """Acknowledge IAM5 wildcard findings, each named exactly (``Resource::...``/``Action::...``)."""
    for finding, reason in sorted(findings.items()):
        acknowledge(scope, f"{IAM5}[{finding}]", reason)


def arn_ref(resource: Construct) -> str:
    """How cdk-nag prints ``Fn::GetAtt [<resource>, Arn]`` in a finding: ``<LogicalId.Arn>``."""
    return attr_ref(resource, "Arn")


def attr_ref(resource: Construct, attribute: str) -> str:
    """How cdk-nag prints ``Fn::GetAtt [<resource>, <attribute>]``: ``<LogicalId.Attribute>``."""
    cfn = resource if isinstance(resource, CfnElement) else resource.node.default_child
    logical_id = Stack.of(resource).resolve(cfn.logical_id)
    return f"<{logical_id}.{attribute}>"


def scoped_arn(service: str, resource: str, *, account: bool = True) -> str:
    """How cdk-nag prints an ARN built with ``Stack.format_arn`` (pseudo parameters in <>)."""
    return f"arn:<AWS::Partition>:{service}:<AWS::Region>:{'<AWS::AccountId>' if account else ''}:{resource}"


def merge_findings(*groups: Mapping[str, str]) -> dict[str, str]:
    """Combine finding -> reason maps; one finding needed by several grants keeps every reason."""
    merged: dict[str, list[str]] = {}
    for group in groups:
        for finding, reason in group.items():
            reasons = merged.setdefault(finding, [])
            if reason not in reasons:
                reasons.append(reason)
    return {finding: " ".join(reasons) for finding, reasons in merged.items()}
