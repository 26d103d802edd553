"""The migrations API: API Gateway (REST, regional) in front of the api function.

One method per operation of docs/openapi.json, the document the function's resolver
generates (a test keeps the file current), so the gateway and the handler cannot drift
and API Gateway itself answers any other route (403) without invoking the function.
Every migration route requires IAM (SigV4) authorisation. The Swagger UI route is public:
it shows the same document that is published in the repository, makes no AWS call, and
has a throttle of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import ArnFormat, RemovalPolicy, Size, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from . import nag
from .logs import LogGroups

STAGE = "v1"
SWAGGER_PATH = "swagger"
THROTTLE = {"rate": 50, "burst": 100}  # requests per second for the stage, per account and region
SWAGGER_THROTTLE = {"rate": 2, "burst": 5}  # the unauthenticated page
PARAMETER_LOCATION = {"path": "path", "query": "querystring", "header": "header"}

# $context variables of each access log line: who called what, and how it ended.
ACCESS_LOG_FIELDS = {
    "requestId": apigw.AccessLogField.context_request_id(),
    "requestTime": apigw.AccessLogField.context_request_time(),
    "httpMethod": apigw.AccessLogField.context_http_method(),
    "resourcePath": apigw.AccessLogField.context_resource_path(),
    "status": apigw.AccessLogField.context_status(),
    "responseLength": apigw.AccessLogField.context_response_length(),
    "responseLatency": apigw.AccessLogField.context_response_latency(),
    "userArn": apigw.AccessLogField.context_identity_user_arn(),
    "caller": apigw.AccessLogField.context_identity_caller(),
    "accountId": apigw.AccessLogField.context_identity_account_id(),
    "sourceIp": apigw.AccessLogField.context_identity_source_ip(),
    "userAgent": apigw.AccessLogField.context_identity_user_agent(),
    "errorMessage": apigw.AccessLogField.context_error_message(),
    "integrationError": apigw.AccessLogField.context_integration_error_message(),
}


class MigrationsApi(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *,
        handler: lambda_.IFunction, openapi_file: Path, log_groups: LogGroups,
        account_logging_role: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        self.logs_key = log_groups.key  # the stack's one key for logs
        self.access_logs = log_groups.log_group(self, "AccessLogs")

        self.api = apigw.RestApi(
            self, "Api",
            rest_api_name=f"{stack.stack_name}-migrations",
            description="Spot migration: the migrations API (IAM-authorised)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=False,  # the account-level role is managed below, without a managed policy
            min_compression_size=Size.kibibytes(8),  # the Swagger UI page is ~1.5 MB uncompressed
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request and response bodies stay out of the logs
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=THROTTLE["rate"], throttling_burst_limit=THROTTLE["burst"],
                method_options={f"/{SWAGGER_PATH}/GET": apigw.MethodDeploymentOptions(
                    throttling_rate_limit=SWAGGER_THROTTLE["rate"], throttling_burst_limit=SWAGGER_THROTTLE["burst"])},
            ),
        )
        self.api.node.try_remove_child("Endpoint")  # CDK's own URL output; the stack outputs ApiUrl
        stage = self.api.deployment_stage

        # API Gateway creates the execution log group on first use, without retention or key:
        # create it first, under the name it will use.
        self.execution_logs = log_groups.log_group(
            self, "ExecutionLogs", log_group_name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{STAGE}",
        )
        stage.node.add_dependency(self.execution_logs)
        if account_logging_role:
            stage.node.add_dependency(self._account_logging_role())

        # Basic validation at the gateway (required parameters, a JSON object body); the
        # function validates every field against the models.
        validator = self.api.add_request_validator("Validator", validate_request_body=True,
                                                   validate_request_parameters=True)
        json_object = self.api.add_model("JsonObject", content_type="application/json",
                                         description="Any JSON object (the function validates its fields)",
                                         schema=apigw.JsonSchema(schema=apigw.JsonSchemaVersion.DRAFT4,
                                                                 type=apigw.JsonSchemaType.OBJECT))
        integration = apigw.LambdaIntegration(handler, allow_test_invoke=False)
        self.methods: dict[tuple[str, str], apigw.Method] = {}
        for path, item in json.loads(openapi_file.read_text())["paths"].items():
            resource = self.api.root.resource_for_path(path)
            for verb, operation in item.items():
                body = operation.get("requestBody", {}).get("required", False)
                parameters = {f"method.request.{PARAMETER_LOCATION[p['in']]}.{p['name']}": p.get("required", False)
                              for p in operation.get("parameters", [])}
                self.methods[(verb.upper(), path)] = resource.add_method(
                    verb.upper(), integration,
                    operation_name=operation["operationId"],
                    request_validator=validator,
                    request_parameters=parameters or None,
                    request_models={"application/json": json_object} if body else None,
                )

        swagger = self.api.root.add_resource(SWAGGER_PATH).add_method(
            "GET", integration, operation_name="swaggerUi",
            authorization_type=apigw.AuthorizationType.NONE, request_validator=validator,
        )
        self.methods[("GET", f"/{SWAGGER_PATH}")] = swagger
        nag.acknowledge(swagger.node.default_child, "AwsSolutions-APIG4", (
            "The Swagger UI page is public on purpose, so the API's documentation opens in a browser: it shows the "
            "OpenAPI document that is published with the product (docs/openapi.json), makes no AWS call, and is "
            f"throttled to {SWAGGER_THROTTLE['rate']} requests/s. Every migration route requires IAM authorisation."))
        nag.acknowledge(self.api, "AwsSolutions-COG4", (
            "The migrations API is for operators and automation with AWS credentials: IAM (SigV4) authorisation lets "
            "IAM policies grant execute-api:Invoke per method and path (e.g. who may approve), without a separate "
            "user pool. The public Swagger UI page needs no authoriser."))
        nag.acknowledge(self.api, "AwsSolutions-APIG3", (
            "No WAF web ACL: every migration route requires SigV4, which API Gateway verifies before anything runs; "
            "the stage is throttled (and the public documentation page more so), and requests are validated."))

    def _account_logging_role(self) -> apigw.CfnAccount:
        """API Gateway writes execution and access logs with one role per account and region,
        set in the account settings (what CDK's ``cloud_watch_role`` does, minus its managed policy).
        Retained on deletion: other APIs of the account may log through it."""
        stack = Stack.of(self)
        log_groups = stack.format_arn(service="logs", resource="log-group", resource_name="*",
                                      arn_format=ArnFormat.COLON_RESOURCE_NAME)
        # An inline policy, so that it is retained with the role.
        role = iam.Role(
            self, "CloudWatchRole", assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway: CloudWatch logging of the REST APIs of this account and region",
            inline_policies={"ApiGatewayLogging": iam.PolicyDocument(statements=[
                iam.PolicyStatement(
                    sid="WriteApiGatewayLogs",
                    actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams",
                             "logs:PutLogEvents", "logs:GetLogEvents", "logs:FilterLogEvents"],
                    resources=[log_groups],
                ),
                iam.PolicyStatement(sid="DescribeLogGroups", actions=["logs:DescribeLogGroups"], resources=["*"]),
            ])},
        )
        role.apply_removal_policy(RemovalPolicy.RETAIN)
        nag.acknowledge_iam5(role, {
            f"Resource::{nag.scoped_arn('logs', 'log-group:*')}": (
                "The account-level API Gateway logging role serves every REST API of this account and region; "
                "API Gateway names execution log groups after each API id. Same actions as AWS's "
                "AmazonAPIGatewayPushToCloudWatchLogs policy, limited to this account's and region's log groups."),
            "Resource::*": "logs:DescribeLogGroups supports no resource-level permissions (the Service Authorization "
                           "Reference lists only '*').",
        })
        account = apigw.CfnAccount(self, "Account", cloud_watch_role_arn=role.role_arn)
        account.apply_removal_policy(RemovalPolicy.RETAIN)
        return account

