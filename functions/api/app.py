"""The migrations API behind API Gateway (REST, IAM authorisation); the routes are in
spot_core.api. The event is never logged whole."""

from aws_lambda_powertools.logging import correlation_paths
from spot_core.api import app
from spot_core.observability import logger


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True, log_event=False)
def lambda_handler(event, context):
    return app.resolve(event, context)
