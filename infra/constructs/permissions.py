"""What each catalog permission (``FunctionSpec.permissions``) grants, and why.

Every capability returns the cdk-nag IAM5 findings its grant produces, each with the
reason it is acceptable; the function's role acknowledges exactly those. A capability
not listed here fails synthesis, so the catalog cannot ask for something unreviewed.

Mutating EC2 calls are scoped by tags, as the product's code is:
* replacements are launched with ``spot-migration:managed=true`` (RunInstances on the
  instance and its volumes requires that request tag);
* start/stop only instances tagged opt-in or managed; terminate only managed ones;
* tags can be added at launch, on opted-in originals, or on managed replacements (their
  own tags after a launch of several) - but never the managed tag, which is what makes
  an instance terminable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn

from spot_core.domain.hooks import DOCUMENT_NAME_PREFIX, PARAMETER_PREFIX, SECRET_PREFIX
from spot_core.domain.retention import STOPPED_BY_TAG
from spot_core.domain.tags import GROUP_TAGS, MANAGED_TAG, OPT_IN_TAG, RETIRED_BY_TAG
from spot_core.entry.catalog import MIGRATION_MACHINE, REHOME_MACHINE

from .nag import arn_ref, attr_ref, scoped_arn
from .storage import Storage
from .windows import WindowScheduling

Findings = dict[str, str]

NO_RESOURCE_LEVEL = ("{actions} support no resource-level permissions "
                     "(the Service Authorization Reference lists only '*').")


@dataclass(frozen=True)
class GrantContext:
    stack: Stack
    storage: Storage
    # Set once the state machines exist (they need the task functions first), by catalog name;
    # only the functions that drive a workflow (workflow:* capabilities) are granted after that.
    state_machines: Mapping[str, sfn.StateMachine] = field(default_factory=dict)
    windows: WindowScheduling | None = None  # the on-demand windows' schedule group and Scheduler's role

    def workflow(self, name: str = MIGRATION_MACHINE) -> sfn.StateMachine:
        if name not in self.state_machines:
            raise ValueError(f"workflow:* permissions need the {name} state machine: grant them after it is created")
        return self.state_machines[name]

    def arn(self, service: str, resource: str, *, account: bool = True) -> str:
        return self.stack.format_arn(
            service=service, resource=resource, resource_name="*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME, account=None if account else "",
        )


def _ec2_read(ctx: GrantContext, role: iam.Role) -> Findings:
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="Ec2Read",
        # DescribeInstanceAttribute (userData of the original) is listed for the reader;
        # Describe* already covers it.
        actions=["ec2:Describe*", "ec2:DescribeInstanceAttribute"],
        resources=["*"],
    ))
    return {
        "Action::ec2:Describe*": "Read-only EC2 Describe actions (instances, types, Spot price history, AZs).",
        "Resource::*": NO_RESOURCE_LEVEL.format(actions="EC2 Describe* actions"),
    }


def _ec2_migrate(ctx: GrantContext, role: iam.Role) -> Findings:
    a = ctx.arn
    instance, volume = a("ec2", "instance"), a("ec2", "volume")
    eni, spot_request = a("ec2", "network-interface"), a("ec2", "spot-instances-request")
    supporting = [
        a("ec2", "image", account=False), a("ec2", "subnet"), a("ec2", "security-group"),
        a("ec2", "key-pair"), a("ec2", "launch-template"), eni, spot_request,
    ]
    managed_request = {"StringEquals": {f"aws:RequestTag/{MANAGED_TAG}": "true"}}
    opted_in = {"StringEquals": {f"aws:ResourceTag/{OPT_IN_TAG}": "true"}}
    managed = {"StringEquals": {f"aws:ResourceTag/{MANAGED_TAG}": "true"}}
    statements = [
        iam.PolicyStatement(sid="RunManagedInstances", actions=["ec2:RunInstances"],
                            resources=[instance, volume], conditions=managed_request),
        iam.PolicyStatement(sid="RunInstancesSupportingResources", actions=["ec2:RunInstances"],
                            resources=supporting),
        iam.PolicyStatement(sid="TagOnLaunch", actions=["ec2:CreateTags"],
                            resources=[instance, volume, eni, spot_request],
                            conditions={"StringEquals": {"ec2:CreateAction": "RunInstances"}}),
        iam.PolicyStatement(sid="TagOptedInOriginals", actions=["ec2:CreateTags"], resources=[instance],
                            conditions={**opted_in,
                                        "ForAllValues:StringNotEquals": {"aws:TagKeys": [MANAGED_TAG]}}),
        # A replacement launched with others in one RunInstances gets its own tags (the original it
        # replaces, its name) right after: only on instances the product launched.
        iam.PolicyStatement(sid="TagManagedReplacements", actions=["ec2:CreateTags"], resources=[instance],
                            conditions={**managed,
                                        "ForAllValues:StringNotEquals": {"aws:TagKeys": [MANAGED_TAG]}}),
        # A rollback of a revert: the Spot instances it brings back serve again (no longer retired).
        iam.PolicyStatement(sid="UntagRetiredManaged", actions=["ec2:DeleteTags"], resources=[instance],
                            conditions={**managed, "ForAllValues:StringEquals": {"aws:TagKeys": [RETIRED_BY_TAG]}}),
        iam.PolicyStatement(sid="StartStopOptedIn", actions=["ec2:StartInstances", "ec2:StopInstances"],
                            resources=[instance], conditions=opted_in),
        iam.PolicyStatement(sid="StartStopManaged", actions=["ec2:StartInstances", "ec2:StopInstances"],
                            resources=[instance], conditions=managed),
    ]
    for statement in statements:
        role.add_to_principal_policy(statement)

    def f(resource: str, account: bool = True) -> str:
        return f"Resource::{scoped_arn('ec2', resource, account=account)}"

    supporting_reason = (
        "RunInstances also authorises the resources a launch uses or creates alongside the instance "
        "(AMI, subnet, security groups, key pair, launch template, network interface, Spot request); "
        "they are the original's, copied to its replacement, and unknown at deploy time. The instance "
        "and its volumes themselves require the managed request tag."
    )
    return {
        f("instance/*"): (
            f"Instance IDs are not known at deploy time. Every statement on instance/* is tag-conditioned: "
            f"launch only with aws:RequestTag/{MANAGED_TAG}=true; tag at launch, opted-in originals or "
            f"managed replacements (never adding {MANAGED_TAG}); start/stop only {OPT_IN_TAG} or {MANAGED_TAG}."
        ),
        f("volume/*"): f"Volumes are created by RunInstances with aws:RequestTag/{MANAGED_TAG}=true required; "
                       "tagging is limited to ec2:CreateAction=RunInstances.",
        f("network-interface/*"): supporting_reason,
        f("spot-instances-request/*"): supporting_reason,
        f("image/*", account=False): (
            supporting_reason + " AMIs may be owned by another account (no account in the ARN)."
        ),
        f("subnet/*"): supporting_reason,
        f("security-group/*"): supporting_reason,
        f("key-pair/*"): supporting_reason,
        f("launch-template/*"): supporting_reason,
    }


def _ec2_terminate_managed(ctx: GrantContext, role: iam.Role) -> Findings:
    managed = {"StringEquals": {f"aws:ResourceTag/{MANAGED_TAG}": "true"}}
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="TerminateManagedOnly", actions=["ec2:TerminateInstances"],
        resources=[ctx.arn("ec2", "instance")], conditions=managed,
    ))
    # a stateful move's persistent Spot request would launch its instance again: cancelled first
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="CancelManagedSpotRequests", actions=["ec2:CancelSpotInstanceRequests"],
        resources=[ctx.arn("ec2", "spot-instances-request")], conditions=managed,
    ))
    return {
        f"Resource::{scoped_arn('ec2', 'instance/*')}": (
            f"Replacements to retire and orphans are found at run time; terminate only instances tagged "
            f"{MANAGED_TAG}=true (set only at launch; no role of the product can add it to an existing instance)."),
        f"Resource::{scoped_arn('ec2', 'spot-instances-request/*')}": (
            f"The persistent Spot requests of stateful moves are created at run time; cancel only those tagged "
            f"{MANAGED_TAG}=true (tagged at launch)."),
    }


def _ec2_carry(ctx: GrantContext, role: iam.Role) -> Findings:
    """What moves with an instance: its Elastic IPs (pointed only at opted-in originals or the
    product's replacements), the source/destination check of a replacement, and the KMS key of an
    encrypted root volume a replacement is launched with (through EC2 only)."""
    a = ctx.arn
    instance = a("ec2", "instance")
    for sid, tag in (("AssociateAddressWithOptedIn", OPT_IN_TAG), ("AssociateAddressWithManaged", MANAGED_TAG)):
        role.add_to_principal_policy(iam.PolicyStatement(
            sid=sid, actions=["ec2:AssociateAddress"], resources=[instance],
            conditions={"StringEquals": {f"aws:ResourceTag/{tag}": "true"}}))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="AssociateAddressResources", actions=["ec2:AssociateAddress"],
        resources=[a("ec2", "elastic-ip"), a("ec2", "network-interface")]))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="SourceDestCheckOfManaged", actions=["ec2:ModifyInstanceAttribute"], resources=[instance],
        conditions={"StringEquals": {f"aws:ResourceTag/{MANAGED_TAG}": "true"}}))
    # Stateful moves: volumes and interfaces go from an opted-in original to the product's Spot
    # instance and back; each call names the instance, whose tag is the condition.
    moving = ["ec2:AttachVolume", "ec2:DetachVolume", "ec2:AttachNetworkInterface", "ec2:DetachNetworkInterface"]
    for sid, tag in (("MoveDisksOfOptedIn", OPT_IN_TAG), ("MoveDisksOfManaged", MANAGED_TAG)):
        role.add_to_principal_policy(iam.PolicyStatement(
            sid=sid, actions=moving, resources=[instance],
            conditions={"StringEquals": {f"aws:ResourceTag/{tag}": "true"}}))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="MovedDisksAndInterfaces", actions=moving,
        resources=[a("ec2", "volume"), a("ec2", "network-interface")]))
    managed = {"StringEquals": {f"aws:ResourceTag/{MANAGED_TAG}": "true"}}
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="DeleteManagedSpareVolumes", actions=["ec2:DeleteVolume"], resources=[a("ec2", "volume")],
        conditions=managed))

    role.add_to_principal_policy(iam.PolicyStatement(
        sid="EncryptedVolumesThroughEc2",
        actions=["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext",
                 "kms:ReEncrypt*"],
        resources=[a("kms", "key")],
        conditions={"StringEquals": {"kms:ViaService": f"ec2.{ctx.stack.region}.amazonaws.com"}}))
    reason = ("An instance's Elastic IPs and interfaces are discovered at run time. AssociateAddress also "
              "authorises the address and the interface; the instance it points the address at must be tagged "
              f"{OPT_IN_TAG}=true or {MANAGED_TAG}=true.")
    kms = ("The keys of the fleet's encrypted volumes are the customer's and discovered at run time; usable only "
           "through EC2 (kms:ViaService) when a replacement's root volume is encrypted with its original's key.")
    moved = ("A stateful move's volumes and interfaces are the original's, discovered at run time; attach and "
             f"detach also name the instance, which must be tagged {OPT_IN_TAG}=true or {MANAGED_TAG}=true. Deleting "
             f"a volume and cancelling a Spot request are limited to resources tagged {MANAGED_TAG}=true (the "
             "Spot instance's own root volume and its persistent request, tagged at launch).")
    return {
        f"Resource::{scoped_arn('ec2', 'volume/*')}": moved,
        f"Resource::{scoped_arn('ec2', 'elastic-ip/*')}": reason,
        f"Resource::{scoped_arn('ec2', 'network-interface/*')}": reason,
        f"Resource::{scoped_arn('ec2', 'instance/*')}": reason,
        f"Resource::{scoped_arn('kms', 'key/*')}": kms,
        "Action::kms:ReEncrypt*": kms,
    }


def _ec2_retire_originals(ctx: GrantContext, role: iam.Role) -> Findings:
    """Retention over: snapshot the volumes of the originals a migration stopped, then terminate
    them; only instances still opted in and tagged with the migration that stopped them."""
    a = ctx.arn
    instance = a("ec2", "instance")
    stopped_by = {"StringEquals": {f"aws:ResourceTag/{OPT_IN_TAG}": "true"},
                  "StringLike": {f"aws:ResourceTag/{STOPPED_BY_TAG}": "*"}}
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="SnapshotStoppedOriginals", actions=["ec2:CreateSnapshots"], resources=[instance], conditions=stopped_by))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="SnapshotTheirVolumes", actions=["ec2:CreateSnapshots"], resources=[a("ec2", "volume")]))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="ManagedSnapshots", actions=["ec2:CreateSnapshots", "ec2:CreateTags"],
        resources=[a("ec2", "snapshot", account=False)],
        conditions={"StringEquals": {f"aws:RequestTag/{MANAGED_TAG}": "true"}}))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="TerminateStoppedOriginals", actions=["ec2:TerminateInstances"], resources=[instance],
        conditions=stopped_by))
    reason = (f"The originals are found at run time; snapshot and terminate only instances tagged {OPT_IN_TAG}=true "
              f"and {STOPPED_BY_TAG} (set when a migration stops them); snapshots are created with "
              f"{MANAGED_TAG}=true. CreateSnapshots also names the instance's volumes.")
    return {f"Resource::{scoped_arn('ec2', 'instance/*')}": reason,
            f"Resource::{scoped_arn('ec2', 'volume/*')}": reason,
            f"Resource::{scoped_arn('ec2', 'snapshot/*', account=False)}": reason}


def _ssm_probe(ctx: GrantContext, role: iam.Role) -> Findings:
    """Health probes: AWS-RunShellScript on the product's own replacements only."""
    document = ctx.stack.format_arn(service="ssm", account="", resource="document",
                                    resource_name="AWS-RunShellScript", arn_format=ArnFormat.SLASH_RESOURCE_NAME)
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="ProbeDocument", actions=["ssm:SendCommand"], resources=[document]))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="ProbeManagedInstances", actions=["ssm:SendCommand"], resources=[ctx.arn("ec2", "instance")],
        conditions={"StringEquals": {f"ssm:resourceTag/{MANAGED_TAG}": "true"}}))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="ProbeResults", actions=["ssm:GetCommandInvocation"], resources=["*"]))
    return {
        f"Resource::{scoped_arn('ec2', 'instance/*')}": (
            f"Replacements are launched at run time; Run Command only on instances tagged {MANAGED_TAG}=true."),
        "Resource::*": NO_RESOURCE_LEVEL.format(actions="ssm:GetCommandInvocation"),
    }


def _ssm_checkpoint(ctx: GrantContext, role: iam.Role) -> Findings:
    """Interruption checkpoints: AWS-RunShellScript, or the account's own documents named
    spot-migration-*, on the product's managed instances only."""
    documents = [ctx.stack.format_arn(service="ssm", account="", resource="document",
                                      resource_name="AWS-RunShellScript", arn_format=ArnFormat.SLASH_RESOURCE_NAME),
                 ctx.stack.format_arn(service="ssm", resource="document", resource_name=f"{DOCUMENT_NAME_PREFIX}*",
                                      arn_format=ArnFormat.SLASH_RESOURCE_NAME)]
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="CheckpointDocuments", actions=["ssm:SendCommand"], resources=documents))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="CheckpointManagedInstances", actions=["ssm:SendCommand"], resources=[ctx.arn("ec2", "instance")],
        conditions={"StringEquals": {f"ssm:resourceTag/{MANAGED_TAG}": "true"}}))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="CheckpointResults", actions=["ssm:GetCommandInvocation"], resources=["*"]))
    return {
        f"Resource::{scoped_arn('ec2', 'instance/*')}": (
            f"Interrupted instances are known at run time; Run Command only on instances tagged {MANAGED_TAG}=true."),
        f"Resource::{scoped_arn('ssm', f'document/{DOCUMENT_NAME_PREFIX}*')}": (
            f"Checkpoint documents are the customer's, named per instance at run time; only this account's "
            f"documents named {DOCUMENT_NAME_PREFIX}* (the request and tags accept no other name)."),
        "Resource::*": NO_RESOURCE_LEVEL.format(actions="ssm:GetCommandInvocation"),
    }


def _secrets_webhook(ctx: GrantContext, role: iam.Role) -> Findings:
    """Interruption webhooks: their URLs are read from secrets named spot-migration/* or SecureString
    parameters under /spot-migration/ (the request and tags accept no other name)."""
    secrets = ctx.stack.format_arn(service="secretsmanager", resource="secret", resource_name=f"{SECRET_PREFIX}*",
                                   arn_format=ArnFormat.COLON_RESOURCE_NAME)
    parameters = ctx.stack.format_arn(service="ssm", resource="parameter", resource_name=f"{PARAMETER_PREFIX[1:]}*",
                                      arn_format=ArnFormat.SLASH_RESOURCE_NAME)
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="ReadWebhookSecrets", actions=["secretsmanager:GetSecretValue"], resources=[secrets]))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="ReadWebhookParameters", actions=["ssm:GetParameter"], resources=[parameters]))
    reason = ("Webhook URLs are kept by the customer, one secret per webhook, named at run time; only secrets "
              f"named {SECRET_PREFIX}* and parameters under {PARAMETER_PREFIX} of this account and region. A "
              "customer-managed KMS key must allow the function's role in its key policy (no kms:Decrypt here).")
    return {f"Resource::{scoped_arn('secretsmanager', f'secret:{SECRET_PREFIX}*')}": reason,
            f"Resource::{scoped_arn('ssm', f'parameter{PARAMETER_PREFIX}*')}": reason}


def _autoscaling_read(ctx: GrantContext, role: iam.Role) -> Findings:
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="AutoScalingRead", actions=["autoscaling:Describe*"], resources=["*"]))
    return {
        "Action::autoscaling:Describe*": "Read-only Auto Scaling Describe actions (groups, launch configurations, "
                                         "lifecycle hooks, warm pools, policies, instance refreshes).",
        "Resource::*": NO_RESOURCE_LEVEL.format(actions="Auto Scaling Describe* actions"),
    }


def _autoscaling_migrate(ctx: GrantContext, role: iam.Role) -> Findings:
    """A group's configuration, refreshes and the migration's tag: only on opted-in groups; a launch
    template made from a launch configuration: only created tagged managed."""
    groups = ctx.stack.format_arn(service="autoscaling", resource="autoScalingGroup",
                                  resource_name="*:autoScalingGroupName/*", arn_format=ArnFormat.COLON_RESOURCE_NAME)
    opted_in = {"StringEquals": {f"aws:ResourceTag/{OPT_IN_TAG}": "true"}}
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="ConfigureAndRefreshOptedInGroups",
        actions=["autoscaling:UpdateAutoScalingGroup", "autoscaling:StartInstanceRefresh",
                 "autoscaling:CancelInstanceRefresh"],
        resources=[groups], conditions=opted_in))
    only_the_migration_tag = {"ForAllValues:StringEquals": {"aws:TagKeys": list(GROUP_TAGS)}}
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="TagOptedInGroupsWithTheMigration", actions=["autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"],
        resources=[groups], conditions={**opted_in, **only_the_migration_tag}))
    template = ctx.arn("ec2", "launch-template")
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="CreateManagedLaunchTemplates", actions=["ec2:CreateLaunchTemplate"], resources=[template],
        conditions={"StringEquals": {f"aws:RequestTag/{MANAGED_TAG}": "true"}}))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="TagLaunchTemplatesOnCreate", actions=["ec2:CreateTags"], resources=[template],
        conditions={"StringEquals": {"ec2:CreateAction": "CreateLaunchTemplate"}}))
    return {
        f"Resource::{scoped_arn('autoscaling', 'autoScalingGroup:*:autoScalingGroupName/*')}": (
            f"The groups are the fleet's, found at run time; every action is limited to groups tagged "
            f"{OPT_IN_TAG}=true, and tagging to the migration's own tags ({', '.join(GROUP_TAGS)})."),
        f"Resource::{scoped_arn('ec2', 'launch-template/*')}": (
            f"A launch template is made at run time from a group's launch configuration (a mixed instances "
            f"policy needs one); it must be created tagged {MANAGED_TAG}=true, and tags only at creation."),
    }


def _iam_pass(ctx: GrantContext, role: iam.Role) -> Findings:
    roles = ctx.stack.format_arn(service="iam", region="", resource="role", resource_name="*")
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="PassInstanceProfileRoleToEc2",
        actions=["iam:PassRole"],
        resources=[roles],
        conditions={"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
    ))
    return {
        "Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role/*": (
            "A replacement keeps its original's instance profile; the fleet's roles are not known at deploy "
            "time. PassRole is limited to this account's roles and to iam:PassedToService=ec2.amazonaws.com."
        ),
    }


def _elb_read(ctx: GrantContext, role: iam.Role) -> Findings:
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="ElbRead", actions=["elasticloadbalancing:Describe*"], resources=["*"],
    ))
    return {
        "Action::elasticloadbalancing:Describe*": "Read-only ELBv2 Describe actions (target groups, target health).",
        "Resource::*": NO_RESOURCE_LEVEL.format(actions="Elastic Load Balancing Describe* actions"),
    }


def _elb_write(ctx: GrantContext, role: iam.Role) -> Findings:
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="SwapTargets",
        actions=["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
        resources=[ctx.arn("elasticloadbalancing", "targetgroup")],
    ))
    return {
        f"Resource::{scoped_arn('elasticloadbalancing', 'targetgroup/*')}": (
            "The target groups the fleet's instances belong to are discovered at run time; "
            "only register/deregister, only target groups of this account and region."
        ),
    }


def _cloudwatch_read(ctx: GrantContext, role: iam.Role) -> Findings:
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="CloudWatchRead",
        actions=["cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:DescribeAlarms"],
        resources=["*"],
    ))
    return {"Resource::*": NO_RESOURCE_LEVEL.format(
        actions="cloudwatch:GetMetricData and GetMetricStatistics") + " The alarms checked are chosen per run."}


def _pricing_read(ctx: GrantContext, role: iam.Role) -> Findings:
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="PricingRead", actions=["pricing:GetProducts"], resources=["*"],
    ))
    return {"Resource::*": NO_RESOURCE_LEVEL.format(actions="pricing:GetProducts")}


def _table_findings(ctx: GrantContext, *, write: bool) -> Findings:
    findings = {
        f"Resource::{arn_ref(ctx.storage.table)}/index/*":
            "CDK's DynamoDB grant covers the table's own indexes (by_status) only.",
    }
    if write:
        reason = ("CDK's grant for a customer-managed table key: encrypting new items needs "
                  "kms:GenerateDataKey*/kms:ReEncrypt*, on this one key only.")
        findings.update({"Action::kms:GenerateDataKey*": reason, "Action::kms:ReEncrypt*": reason})
    return findings


def _table_read(ctx: GrantContext, role: iam.Role) -> Findings:
    ctx.storage.table.grant_read_data(role)
    return _table_findings(ctx, write=False)


def _table_write(ctx: GrantContext, role: iam.Role) -> Findings:
    ctx.storage.table.grant_read_write_data(role)
    return _table_findings(ctx, write=True)


def _sns_publish(ctx: GrantContext, role: iam.Role) -> Findings:
    ctx.storage.topic.grant_publish(role)
    return {"Action::kms:GenerateDataKey*": (
        "CDK's publish grant for a KMS-encrypted topic: publishing needs kms:GenerateDataKey* "
        "on the topic's key only.")}


def _workflow_start(ctx: GrantContext, role: iam.Role) -> Findings:
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="StartMigrations", actions=["states:StartExecution"], resources=[ctx.workflow().state_machine_arn],
    ))
    return {}


def _workflow_rehome(ctx: GrantContext, role: iam.Role) -> Findings:
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="StartRehomes", actions=["states:StartExecution"],
        resources=[ctx.workflow(REHOME_MACHINE).state_machine_arn],
    ))
    return {}


def _workflow_read(ctx: GrantContext, role: iam.Role) -> Findings:
    machine = ctx.workflow()
    executions = ctx.stack.format_arn(service="states", resource="execution",
                                      resource_name=f"{machine.state_machine_name}:*",
                                      arn_format=ArnFormat.COLON_RESOURCE_NAME)
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="ReadStateMachine", actions=["states:ListExecutions", "states:DescribeStateMachine"],
        resources=[machine.state_machine_arn],
    ))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="ReadMigrationExecutions", actions=["states:DescribeExecution", "states:GetExecutionHistory"],
        resources=[executions],
    ))
    return {f"Resource::{scoped_arn('states', 'execution:' + attr_ref(machine, 'Name') + ':*')}": (
        "Executions are named after migration ids chosen at run time; only executions of this state machine.")}


def _scheduler_windows(ctx: GrantContext, role: iam.Role) -> Findings:
    """The windows' schedules: made, changed and deleted in the stack's schedule group only (Scheduler
    schedules take no tags, so the group is their scope), invoking with the role made for it."""
    if ctx.windows is None:
        raise ValueError("scheduler:windows needs the window scheduling construct")
    arns = ctx.windows.schedule_arns()
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="WindowSchedules", actions=["scheduler:CreateSchedule", "scheduler:UpdateSchedule",
                                        "scheduler:DeleteSchedule", "scheduler:GetSchedule"],
        resources=[arns]))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="PassSchedulerRole", actions=["iam:PassRole"], resources=[ctx.windows.role.role_arn],
        conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}))
    return {f"Resource::{scoped_arn('scheduler', f'schedule/{ctx.windows.group_name}/*')}": (
                "Schedule names are made at run time (one per window side of each migration); every one is in "
                "the stack's own schedule group, and Scheduler schedules take no tags to condition on.")}


def _workflow_decide(ctx: GrantContext, role: iam.Role) -> Findings:
    role.add_to_principal_policy(iam.PolicyStatement(
        sid="CompleteApprovalTask", actions=["states:SendTaskSuccess"], resources=["*"],
    ))
    return {"Resource::*": (
        "states:SendTaskSuccess supports no resource-level permissions (the Service Authorization Reference lists "
        "no resource type; the task token itself is the capability). The function only sends tokens it takes "
        "from this stack's table, where the approval task stored them.")}


CAPABILITIES: dict[str, Callable[[GrantContext, iam.Role], Findings]] = {
    "ec2:read": _ec2_read,
    "ec2:migrate": _ec2_migrate,
    "ec2:terminate-managed": _ec2_terminate_managed,
    "ec2:carry": _ec2_carry,
    "ec2:retire-originals": _ec2_retire_originals,
    "ssm:probe": _ssm_probe,
    "ssm:checkpoint": _ssm_checkpoint,
    "secrets:webhook": _secrets_webhook,
    "iam:pass": _iam_pass,
    "autoscaling:read": _autoscaling_read,
    "autoscaling:migrate": _autoscaling_migrate,
    "elb:read": _elb_read,
    "elb:write": _elb_write,
    "cloudwatch:read": _cloudwatch_read,
    "pricing:read": _pricing_read,
    "table:read": _table_read,
    "table:write": _table_write,
    "sns:publish": _sns_publish,
    "workflow:start": _workflow_start,
    "workflow:rehome": _workflow_rehome,
    "workflow:read": _workflow_read,
    "workflow:decide": _workflow_decide,
    "scheduler:windows": _scheduler_windows,
}


def grant(ctx: GrantContext, role: iam.Role, permission: str) -> Findings:
    try:
        capability = CAPABILITIES[permission]
    except KeyError:
        raise ValueError(
            f"unknown permission {permission!r} in the function catalog; known: {sorted(CAPABILITIES)}"
        ) from None
    return capability(ctx, role)
