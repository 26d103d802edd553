"""The Spot migration product's shared package, shipped as a Lambda layer.

domain/    pure rules and models (no boto3, no I/O)
services/  one use case per handler, written against the ports in ports.py
adapters/  the AWS side of the ports (boto3)
entry/     what the handlers and the CDK app stand on: event models, API routes,
           settings, wiring, observability, the function catalog, the event rules
"""
