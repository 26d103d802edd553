#!/usr/bin/env python3
"""CDK entry point: ``python3 app.py`` (or ``npx cdk synth``) writes cdk.out/.

Makes no AWS calls and needs no credentials: the stack is environment-agnostic and
the Powertools layer ARN is resolved by CloudFormation at deploy time.
"""

from infra.stack import create_app

app, _stack = create_app()
app.synth()
