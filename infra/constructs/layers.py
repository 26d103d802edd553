"""Lambda layers: the shared ``spot_core`` package and the official Powertools layer."""

from __future__ import annotations

from aws_cdk import CfnParameter
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import LAYER_DIR

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64

# Must match aws-lambda-powertools in requirements.txt (what the tests and the embedded
# runtime import). Powertools publishes one public SSM parameter per release, runtime
# and architecture whose value is that release's layer ARN in the region, e.g.
#   /aws/service/powertools/python/arm64/python3.13/3.37.0
#   -> arn:aws:lambda:<region>:017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-arm64:<N>
# CloudFormation resolves it at deploy time (no lookup, no credentials at synth).
POWERTOOLS_VERSION = "3.37.0"
POWERTOOLS_SSM_PARAMETER = f"/aws/service/powertools/python/arm64/{RUNTIME.name}/{POWERTOOLS_VERSION}"
POWERTOOLS_PARAMETER_ID = "PowertoolsLayerArnParameter"

ASSET_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.hypothesis"]


class Layers(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)

        self.spot_core = lambda_.LayerVersion(
            self, "SpotCore",
            code=lambda_.Code.from_asset(str(LAYER_DIR), exclude=ASSET_EXCLUDES),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="spot_core: the shared domain package of the Spot migration product",
        )

        parameter = CfnParameter(
            self, "PowertoolsLayerArn",
            type="AWS::SSM::Parameter::Value<String>",
            default=POWERTOOLS_SSM_PARAMETER,
            description=(
                f"Public SSM parameter holding the Powertools for AWS Lambda (Python) {POWERTOOLS_VERSION} "
                f"layer ARN for {RUNTIME.name} arm64"
            ),
        )
        parameter.override_logical_id(POWERTOOLS_PARAMETER_ID)
        self.powertools = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", parameter.value_as_string,
        )

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        return [self.powertools, self.spot_core]
