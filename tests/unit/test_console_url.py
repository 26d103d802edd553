"""The console link an approval notification carries."""

import pytest

from spot_core.services.approval import console_url


def test_an_execution_links_to_its_page_in_its_region():
    arn = "arn:aws:states:eu-west-1:123456789012:execution:SpotMigrationStateMachine:mig-1"
    assert console_url(arn) == f"https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/{arn}"


@pytest.mark.parametrize("arn", [
    "", "not-an-arn", "arn:aws:states:us-east-1:123456789012:stateMachine:SpotMigrationStateMachine",
    "arn:aws-cn:states:cn-north-1:123456789012:execution:SpotMigrationStateMachine:mig-1",
])
def test_no_link_when_the_console_is_not_known(arn):
    assert console_url(arn) is None
