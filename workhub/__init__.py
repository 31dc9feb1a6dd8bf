"""The workhub runner: the real Pulumi engine on workhub's program, with the embedded local stack."""
