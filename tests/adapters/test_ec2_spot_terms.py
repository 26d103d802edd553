"""RunInstances carries a replacement's Spot terms (max price, interruption behaviour, the
hibernation a hibernating one needs), and a terminated Spot instance's request is cancelled first
(adapters/ec2.py), checked on the exact calls botocore sends."""

from dataclasses import replace

import boto3
import pytest
from botocore.stub import ANY, Stubber

from spot_core.adapters.ec2 import Ec2Fleet
from spot_core.domain.errors import CapacityRefused
from spot_core.domain.instances import LaunchSettings, LaunchSpec
from spot_core.domain.spot_options import SpotTerms

SPEC = LaunchSpec(image_id="ami-0123456789abcdef0", instance_type="m5.large", subnet_id="subnet-0a1b2c3d",
                  settings=LaunchSettings(security_group_ids=("sg-0123456789abcdef0",)), tags={"Name": "web"})
LAUNCHED = {"Instances": [{"InstanceId": "i-0fedcba9876543210", "AmiLaunchIndex": 0}]}


@pytest.fixture
def ec2():
    client = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def expect_launch(stubber: Stubber, market_options: dict, **more) -> None:
    stubber.add_response("run_instances", LAUNCHED, {
        "ImageId": ANY, "InstanceType": ANY, "MinCount": 1, "MaxCount": 1, "SubnetId": ANY, "SecurityGroupIds": ANY,
        "TagSpecifications": ANY, "EbsOptimized": ANY, "Monitoring": ANY, "ClientToken": "token",
        "InstanceMarketOptions": market_options, **more})


@pytest.mark.parametrize(("terms", "spot_options"), [
    (SpotTerms(), {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}),
    (SpotTerms(max_price=0.0768), {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate",
                                   "MaxPrice": "0.0768"}),
    (SpotTerms(interruption_behavior="stop", max_price=0.05),
     {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop", "MaxPrice": "0.05"}),
])
def test_run_instances_carries_the_max_price_and_the_interruption_behavior(ec2, terms, spot_options):
    client, stubber = ec2
    expect_launch(stubber, {"MarketType": "spot", "SpotOptions": spot_options})
    spec = replace(SPEC, interruption_behavior=terms.interruption_behavior, max_price=terms.max_price)
    assert Ec2Fleet(client).launch(spec, "token") == "i-0fedcba9876543210"


def test_a_hibernating_replacement_is_launched_with_hibernation_configured_on_a_persistent_request(ec2):
    client, stubber = ec2
    expect_launch(stubber, {"MarketType": "spot", "SpotOptions": {
        "SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "hibernate"}},
        HibernationOptions={"Configured": True})
    Ec2Fleet(client).launch(replace(SPEC, interruption_behavior="hibernate"), "token")


def test_a_launch_of_several_carries_the_terms_too(ec2):
    client, stubber = ec2
    stubber.add_response("run_instances", LAUNCHED, {
        "ImageId": ANY, "InstanceType": ANY, "MinCount": 1, "MaxCount": 3, "SubnetId": ANY, "SecurityGroupIds": ANY,
        "TagSpecifications": ANY, "EbsOptimized": ANY, "Monitoring": ANY, "ClientToken": "token",
        "InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate", "MaxPrice": "0.04"}}})
    assert Ec2Fleet(client).launch_many(replace(SPEC, max_price=0.04), 3, "token") == ["i-0fedcba9876543210"]


def test_an_on_demand_launch_has_no_spot_terms(ec2):
    client, stubber = ec2
    stubber.add_response("run_instances", LAUNCHED, {
        "ImageId": ANY, "InstanceType": ANY, "MinCount": 1, "MaxCount": 1, "SubnetId": ANY, "SecurityGroupIds": ANY,
        "TagSpecifications": ANY, "EbsOptimized": ANY, "Monitoring": ANY, "ClientToken": "token"})
    Ec2Fleet(client).launch(replace(SPEC, market="on-demand", interruption_behavior="hibernate", max_price=0.04),
                            "token")


def test_an_on_demand_launch_keeps_the_hibernation_its_original_was_launched_with(ec2):
    client, stubber = ec2  # a revert's on-demand instance of an original launched with hibernation
    stubber.add_response("run_instances", LAUNCHED, {
        "ImageId": ANY, "InstanceType": ANY, "MinCount": 1, "MaxCount": 1, "SubnetId": ANY, "SecurityGroupIds": ANY,
        "TagSpecifications": ANY, "EbsOptimized": ANY, "Monitoring": ANY, "ClientToken": "token",
        "HibernationOptions": {"Configured": True}})
    hibernating = replace(SPEC.settings, hibernation=True)
    Ec2Fleet(client).launch(replace(SPEC, market="on-demand", settings=hibernating), "token")


def test_a_max_price_below_the_spot_price_is_a_capacity_refusal_so_the_next_pool_is_tried(ec2):
    client, stubber = ec2
    stubber.add_client_error("run_instances", "SpotMaxPriceTooLow", "Your Spot request price of 0.01 is lower than "
                             "the minimum required Spot request fulfillment price of 0.0336.", 400)
    with pytest.raises(CapacityRefused) as refused:
        Ec2Fleet(client).launch(replace(SPEC, max_price=0.01), "token")
    assert refused.value.code == "SpotMaxPriceTooLow"


def test_terminating_a_spot_instance_cancels_its_request_first(ec2):
    """A persistent request (stop or hibernate on interruption) would launch the instance again."""
    client, stubber = ec2
    described = {"Reservations": [{"Instances": [{
        "InstanceId": "i-0fedcba9876543210", "InstanceType": "m5.large", "State": {"Name": "running"},
        "Placement": {"AvailabilityZone": "us-east-1a"}, "InstanceLifecycle": "spot",
        "SpotInstanceRequestId": "sir-0123abcd", "Tags": [{"Key": "spot-migration:managed", "Value": "true"}]}]}]}
    stubber.add_response("describe_instances", described,
                         {"Filters": [{"Name": "instance-id", "Values": ["i-0fedcba9876543210"]}]})
    stubber.add_response("cancel_spot_instance_requests", {}, {"SpotInstanceRequestIds": ["sir-0123abcd"]})
    stubber.add_response("terminate_instances", {}, {"InstanceIds": ["i-0fedcba9876543210"]})
    Ec2Fleet(client).terminate(["i-0fedcba9876543210"])
