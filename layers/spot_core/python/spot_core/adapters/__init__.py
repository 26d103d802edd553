"""The AWS side of the ports: the only code that imports boto3."""
