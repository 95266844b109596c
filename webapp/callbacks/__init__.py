"""Plivo's status callbacks: the webhook blueprint, the guard in front of it (signatures,
nonces, refused traffic), the ledger that keeps each once and applies it by the state
machine, and the reconciler that asks Plivo when a callback never came."""
