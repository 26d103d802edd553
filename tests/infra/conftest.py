"""The app synthesised once per test session (jsii synthesis is slow), shared by the infra tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk.assertions import Template
from template_helpers import of_type

from infra.stack import SpotMigrationStack, create_app


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory):
    app, stack = create_app(outdir=str(tmp_path_factory.mktemp("cdk.out")))
    app.synth()  # raises with the cdk-nag report when an error is not acknowledged
    return app, stack


@pytest.fixture(scope="session")
def stack(synthesized) -> SpotMigrationStack:
    return synthesized[1]


@pytest.fixture(scope="session")
def template_file(synthesized) -> Path:
    """The template exactly as written to the cloud assembly (what `cdk deploy` uploads)."""
    app, stack = synthesized
    return Path(app.outdir) / stack.template_file


@pytest.fixture(scope="session")
def template(stack) -> Template:
    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def resources(template) -> dict[str, dict]:
    return template.to_json()["Resources"]


@pytest.fixture(scope="session")
def statements_by_role(resources) -> dict[str, list[dict]]:
    """Role logical id -> Allow statements of its policies (its default policy, and the managed
    policies CDK moves statements to when the default one would be too large)."""
    out: dict[str, list[dict]] = {}
    policies = [*of_type(resources, "AWS::IAM::Policy").values(),
                *of_type(resources, "AWS::IAM::ManagedPolicy").values()]
    for policy in (p for p in policies if p["Properties"].get("Roles")):
        for role in policy["Properties"]["Roles"]:
            out.setdefault(role["Ref"], []).extend(
                s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow")
    return out
