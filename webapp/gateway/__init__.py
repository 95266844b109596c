"""Talking to Plivo: the SDK client (the only importer of `plivo`), webhook signatures,
the request budget every process shares (pace), the circuit that pauses sending while
Plivo refuses the account, and the simulator that stands in for Plivo in sandbox mode.

Nothing is imported here, so `webapp.gateway.signatures` costs the simulator nothing else."""
