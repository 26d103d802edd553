"""State and notifications: the DynamoDB table and the SNS topic, each with its own CMK."""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from spot_core.adapters.dynamodb import schema


class Storage(Construct):
    """The migration table (plans, per-instance records, tokens, dedupe keys) and the topic."""

    def __init__(self, scope: Construct, construct_id: str, *, notification_email: str | None = None) -> None:
        super().__init__(scope, construct_id)

        self.table_key = kms.Key(
            self, "TableKey",
            description="Encrypts the Spot migration table (plans, instance records, approval tokens)",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.table = dynamodb.Table(
            self, "Table",
            partition_key=dynamodb.Attribute(name=schema.PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=schema.SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True,
            ),
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.table_key,
            time_to_live_attribute=schema.TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.table.add_global_secondary_index(
            index_name=schema.STATUS_INDEX,
            partition_key=dynamodb.Attribute(name=schema.INDEX_PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=schema.INDEX_SORT_KEY, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )

        self.topic_key = kms.Key(
            self, "TopicKey",
            description="Encrypts the Spot migration notification topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.topic = sns.Topic(
            self, "Topic",
            display_name="Spot migration",
            master_key=self.topic_key,
            enforce_ssl=True,
        )
        self._restrict_topic_to_account()
        if notification_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(notification_email))

    def _restrict_topic_to_account(self) -> None:
        """Only principals of this account may use the topic (besides the enforceSSL deny)."""
        account = Stack.of(self).account
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowThisAccountOnly",
            effect=iam.Effect.ALLOW,
            principals=[iam.AccountRootPrincipal()],
            actions=["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic"],
            resources=[self.topic.topic_arn],
        ))
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="DenyOtherAccounts",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic"],
            resources=[self.topic.topic_arn],
            conditions={
                "StringNotEquals": {"aws:PrincipalAccount": account},
                "Bool": {"aws:PrincipalIsAWSService": "false"},
            },
        ))

    def allow_alarm_notifications(self) -> None:
        """CloudWatch alarms of this account publish to the topic (alarm and OK actions). They
        publish as the CloudWatch service, which needs the topic's key too; SNS encrypts with the
        topic's ARN as encryption context (a topic of this account: the key cannot name the topic
        that names it)."""
        stack = Stack.of(self)
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowAlarmsOfThisAccount",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"],
            resources=[self.topic.topic_arn],
            conditions={
                "ArnLike": {"aws:SourceArn": stack.format_arn(service="cloudwatch", resource="alarm", resource_name="*",
                                                              arn_format=ArnFormat.COLON_RESOURCE_NAME)},
                "StringEquals": {"aws:SourceAccount": stack.account},
            },
        ))
        self.topic_key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowAlarmNotifications",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:sns:topicArn": stack.format_arn(
                service="sns", resource="*", arn_format=ArnFormat.NO_RESOURCE_NAME)}},
        ))
