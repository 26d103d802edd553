"""The EventBridge rule patterns, as plain data: the CDK stack deploys them and the
embedded runtime matches events against them with moto's EventPattern, so the two
cannot drift."""

INTERRUPTION_WARNING = "EC2 Spot Instance Interruption Warning"
REBALANCE_RECOMMENDATION = "EC2 Instance Rebalance Recommendation"

RULES = {
    "SpotInterruptionWarning": {"source": ["aws.ec2"], "detail-type": [INTERRUPTION_WARNING]},
    "RebalanceRecommendation": {"source": ["aws.ec2"], "detail-type": [REBALANCE_RECOMMENDATION]},
}
