"""The migrations API behind API Gateway (REST, IAM authorisation); the routes are in
spot_core.entry.api. The event is never logged whole."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from spot_core.entry.api import app
from spot_core.entry.handler import handler


@handler(correlation=None, correlation_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
