"""Pure rules and models of Spot migration: no boto3, no network, no clock but the one passed in."""
