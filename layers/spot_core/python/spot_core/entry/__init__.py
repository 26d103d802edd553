"""What the handlers and the CDK app stand on: event models, API routes, settings, the
dependency wiring, observability, the function catalog and the EventBridge rules."""
