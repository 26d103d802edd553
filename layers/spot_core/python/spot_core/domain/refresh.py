"""An Auto Scaling instance refresh, as the group migration reads it: the group replaces the
members that do not match its configuration (launch before terminate), and says how far it got."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

RefreshStatus = Literal["Pending", "InProgress", "Successful", "Failed", "Cancelling", "Cancelled",
                        "RollbackInProgress", "RollbackFailed", "RollbackSuccessful", "Baking"]
RUNNING: tuple[RefreshStatus, ...] = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")
MIN_HEALTHY_PERCENTAGE = 100  # the group never runs below its desired healthy capacity
MAX_HEALTHY_PERCENTAGE = 200  # launches may double the group for a while: every batch launches before it terminates


class Refresh(BaseModel):
    refresh_id: str
    status: RefreshStatus
    percentage_complete: int = 0
    instances_to_update: int = 0
    reason: str | None = None

    @property
    def running(self) -> bool:
        return self.status in RUNNING

    @property
    def succeeded(self) -> bool:
        return self.status == "Successful"
