"""The interruption hooks' IAM: only the replacement function runs checkpoints (on managed
instances, with AWS-RunShellScript or the account's spot-migration-* documents) and reads webhook
secrets (named spot-migration/* or under /spot-migration/), nothing more."""

from __future__ import annotations

from template_helpers import flatten, listify, logical_id

from spot_core.domain.tags import MANAGED_TAG
from spot_core.entry.catalog import FUNCTIONS

HOOK_ACTIONS = {"secretsmanager:GetSecretValue", "ssm:GetParameter"}


def own(stack, statements_by_role, name: str) -> list[dict]:
    return statements_by_role[logical_id(stack, stack.functions.functions[name].role)]


def resources_of(statements: list[dict], action: str) -> list[tuple[str, dict | None]]:
    return [(flatten(r), s.get("Condition")) for s in statements if action in listify(s["Action"])
            for r in listify(s["Resource"])]


def test_only_the_replacement_function_reads_webhook_secrets(stack, statements_by_role):
    readers = {spec.name for spec in FUNCTIONS
               if HOOK_ACTIONS & {a for s in own(stack, statements_by_role, spec.name) for a in listify(s["Action"])}}
    assert readers == {"replace_interrupted"}


def test_webhook_secrets_are_read_only_under_the_products_prefix(stack, statements_by_role):
    statements = own(stack, statements_by_role, "replace_interrupted")
    assert resources_of(statements, "secretsmanager:GetSecretValue") == [
        ("arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:spot-migration/*", None)]
    assert resources_of(statements, "ssm:GetParameter") == [
        ("arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/spot-migration/*", None)]
    decrypts = [flatten(r) for s in statements if "kms:Decrypt" in listify(s["Action"]) for r in listify(s["Resource"])]
    assert decrypts and not [r for r in decrypts if r.endswith("*")]  # the stack's own keys only, named


def test_checkpoints_run_only_on_managed_instances_with_the_shell_document_or_the_products_documents(
        stack, statements_by_role):
    sends = resources_of(own(stack, statements_by_role, "replace_interrupted"), "ssm:SendCommand")
    assert sorted(sends, key=lambda s: s[0]) == sorted([
        ("arn:<AWS::Partition>:ssm:<AWS::Region>::document/AWS-RunShellScript", None),
        ("arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:document/spot-migration-*", None),
        ("arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*",
         {"StringEquals": {f"ssm:resourceTag/{MANAGED_TAG}": "true"}}),
    ], key=lambda s: s[0])
