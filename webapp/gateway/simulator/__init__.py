"""A Plivo-compatible HTTP server for sandbox mode and the tests.

It speaks the parts of Plivo's Message and Media APIs the dashboard uses, so
the real SDK runs end to end with no network, and it posts status callbacks
signed exactly as Plivo signs them (V3 and V2 headers). Magic destinations
trigger every failure path; see behaviours.BEHAVIOURS and the README.
It imports nothing of the dashboard but the signatures it signs with.
"""

from webapp.gateway.simulator.behaviours import (
    BEHAVIOURS,
    Behaviour,
    Chaos,
    SimulatedMessage,
    display_number,
    readme_table,
)
from webapp.gateway.simulator.server import PlivoSimulator

__all__ = ["BEHAVIOURS", "Behaviour", "Chaos", "PlivoSimulator", "SimulatedMessage",
           "display_number", "readme_table"]
