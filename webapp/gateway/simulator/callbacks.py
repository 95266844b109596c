"""The simulator's status callbacks: each message's path of statuses, posted signed exactly
as Plivo signs them (V3 and V2), retried like Plivo, and, with chaos on, dropped, doubled
or reordered."""

from __future__ import annotations

import logging
import secrets
import time
from urllib.parse import urlsplit, urlunsplit

import requests

from webapp.gateway.signatures import signed_headers
from webapp.gateway.simulator.behaviours import BEHAVIOUR_OF, DELIVERED, SimulatedMessage

log = logging.getLogger(__name__)


class StatusCallbacks:
    """Mixed into PlivoSimulator: uses its auth_token, chaos, callback_delay, deliver_to,
    _lock, _stopped and _chance."""

    def _run_callbacks(self, message: SimulatedMessage, delay: float | None = None) -> None:
        delay = self.callback_delay if delay is None else delay
        behaviour = BEHAVIOUR_OF.get(message.dst, DELIVERED)
        final, error_code = message.forced or self._outcome(behaviour)
        path = ["queued", final] if final == "failed" else ["queued", "sent", final]
        reverse = self._chance(self.chaos.reorder)
        held: list[tuple[str, int, str]] = []
        for sequence, status in enumerate(path, start=1):
            if self._stopped.wait(delay):
                return
            message.state, message.error_code = status, error_code if status == final else ""
            message.times[status] = time.time()
            if behaviour.callbacks_lost:
                continue
            held.append((status, sequence, message.error_code))
            if not reverse:
                self._post_or_not(message, *held.pop())
        if held:  # reordered: Plivo's callbacks overtake one another (Sequence still says)
            with self._lock:
                self.chaos_counts["reordered"] += 1
            for status, sequence, code in reversed(held):
                self._post_or_not(message, status, sequence, code)
        if final == "delivered":
            self.delivered(message, behaviour)

    def _post_or_not(self, message: SimulatedMessage, status: str, sequence: int,
                     error_code: str) -> None:
        if self._chance(self.chaos.drop):
            with self._lock:
                self.chaos_counts["dropped"] += 1
            return
        self.post_callback(message, status, sequence, error_code)
        if self._chance(self.chaos.duplicate):
            with self._lock:
                self.chaos_counts["duplicated"] += 1
            self.post_callback(message, status, sequence, error_code)

    def callback_params(self, message: SimulatedMessage, status: str, sequence: int,
                        error_code: str = "") -> dict[str, str]:
        def at(*states: str) -> str:  # when the message reached the first of `states`
            moment = next((message.times[s] for s in states if s in message.times), None)
            return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))

        now = at(status)
        return {
            "MessageUUID": message.uuid, "ParentMessageUUID": message.uuid,
            "To": message.dst, "From": message.src, "Type": "mms", "Status": status,
            "ErrorCode": error_code, "Sequence": str(sequence), "PartInfo": "1 of 1",
            "Units": "1", "TotalRate": "0.01600",
            "TotalAmount": "0.01600" if status in ("sent", "delivered", "undelivered") else "0",
            "MCC": "310", "MNC": "410", "MessageTime": now, "QueuedTime": at("queued"),
            "SentTime": at("sent", status) if status != "queued" else "",
            "DeliveryReportTime": now if status in ("delivered", "undelivered") else "",
            "PowerpackUUID": "", "requester_ip": "127.0.0.1",
        }

    def post_callback(self, message: SimulatedMessage, status: str, sequence: int,
                      error_code: str = "") -> int:
        """POST (or GET) one signed callback, retrying like Plivo on failure."""
        params = self.callback_params(message, status, sequence, error_code)
        message.callbacks.append(params)
        code = 0
        target = message.url
        if self.deliver_to:
            parts = urlsplit(message.url)
            target = self.deliver_to + urlunsplit(("", "", parts.path, parts.query, ""))
        for attempt in range(4):  # Plivo: the original plus 3 retries
            nonce = str(secrets.randbelow(10**20)).zfill(20)
            headers = signed_headers(message.method, message.url, params, self.auth_token, nonce)
            try:
                if message.method == "GET":
                    resp = requests.get(target, params=params, headers=headers, timeout=8)
                else:
                    resp = requests.post(target, data=params, headers=headers, timeout=8)
                code = resp.status_code
            except requests.RequestException as exc:
                log.warning("simulator: callback to %s failed: %s", target, exc)
                code = 0
            if 200 <= code < 300 or self._stopped.wait(min(0.5 * (attempt + 1), 2.0)):
                break
        with self._lock:
            self.callback_results.append((message.uuid, status, code))
        return code
