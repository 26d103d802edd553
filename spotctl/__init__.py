"""spotctl: the operator CLI of the Spot migration product, and its embedded runtime."""
