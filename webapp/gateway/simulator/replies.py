"""The simulator's customers talk back: what a customer sends to one of the account's
numbers is posted to the Message URL, signed exactly as Plivo signs it (V3 and V2 over
that URL), retried like Plivo, with its pictures served behind the account's credentials
as Plivo's media API serves them. Magic customers answer a delivered message by
themselves (BEHAVIOURS); anyone can be made to answer through POST /__sim/reply (the
`flask sandbox reply` command). A customer who sent STOP is opted out at "Plivo" too:
later messages to them from that number fail with error 200, as Plivo's do."""

from __future__ import annotations

import base64
import binascii
import io
import logging
import secrets
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import requests

from webapp.gateway.signatures import signed_headers
from webapp.gateway.simulator.behaviours import Behaviour, SimulatedMessage

log = logging.getLogger(__name__)

OPT_OUT = frozenset({"stop", "stop all", "stopall", "unsubscribe", "unsub", "cancel", "end",
                     "quit", "revoke", "opt out", "optout"})
OPT_IN = frozenset({"start", "unstop"})
MESSAGE_PATH = "/webhooks/plivo/message"


def sample_picture(text: str = "Sandbox customer") -> bytes:
    """A small JPEG, made once per call: what the sandbox's customers photograph."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (240, 180), (234, 88, 12))
    draw = ImageDraw.Draw(image)
    draw.rectangle((16, 16, 224, 164), outline=(255, 255, 255), width=4)
    draw.text((32, 80), text[:28], fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


class InboundReplies:
    """Mixed into PlivoSimulator: uses auth_id, auth_token, deliver_to, base_url,
    message_url, _lock and _stopped."""

    def _init_replies(self) -> None:
        self.inbound_media: dict[str, tuple[bytes, str]] = {}  # "uuid/media id": bytes, type
        self.inbound_posted: list[dict] = []  # (params, http status) of every inbound post
        self.opted_out: dict[tuple[str, str], float] = {}  # (our number, customer): since
        self.confirmed: set[tuple[str, str]] = set()  # its one confirmation went out
        self._replies_sent = 0

    def _message_url(self, message: SimulatedMessage | None = None) -> str | None:
        """The Plivo Application's Message URL: set, or next to the status callback URL
        the dashboard gave (its public base)."""
        if self.message_url:
            return self.message_url
        if message is not None and message.url:
            parts = urlsplit(message.url)
            return urlunsplit((parts.scheme, parts.netloc, MESSAGE_PATH, "", ""))
        return None

    def is_opted_out(self, src: str, dst: str) -> bool:
        with self._lock:
            return (src, dst) in self.opted_out

    def post_inbound(self, *, customer: str, our_number: str, text: str,
                     pictures: list[tuple[bytes, str]] = (), url: str | None = None) -> dict:
        """Post one customer message to the Message URL; returns what was posted and the
        answer's status (0: never answered)."""
        target_url = url or self._message_url()
        if not target_url:
            raise ValueError("no Message URL: start the simulator with --message-url")
        message_uuid = str(uuid.uuid4())
        with self._lock:
            self._replies_sent += 1
            first = self._replies_sent % 2  # Plivo's pages disagree: Media0 or Media1
        params = {"From": customer.lstrip("+"), "To": our_number.lstrip("+"),
                  "Type": "mms" if pictures else "sms", "Text": text,
                  "MessageUUID": message_uuid, "Units": "1",
                  "TotalRate": "0.00800" if pictures else "0.00000",
                  "TotalAmount": "0.00800" if pictures else "0.00000",
                  "MediaCount": str(len(pictures)), "PowerpackUUID": ""}
        words = " ".join("".join(ch for ch in text.casefold() if ch.isalnum() or ch.isspace())
                         .split())
        if words in OPT_OUT:
            params["MessageIntent"] = "optout"
        elif words in OPT_IN:
            params["MessageIntent"] = "optin"
        elif words == "help":
            params["MessageIntent"] = "help"
        for index, (data, content_type) in enumerate(pictures):
            media_id = str(uuid.uuid4())
            with self._lock:
                self.inbound_media[f"{message_uuid}/{media_id}"] = (data, content_type)
            params[f"Media{index + first}"] = (f"{self.base_url}/v1/Account/{self.auth_id}/"
                                               f"Message/{message_uuid}/Media/{media_id}/")
        pair = (our_number.lstrip("+"), customer.lstrip("+"))
        with self._lock:
            if params.get("MessageIntent") == "optout":
                self.opted_out.setdefault(pair, time.time())
            elif params.get("MessageIntent") == "optin":
                self.opted_out.pop(pair, None)
                self.confirmed.discard(pair)
        code = self._post_signed(target_url, params)
        record = {"params": params, "status": code}
        with self._lock:
            self.inbound_posted.append(record)
        return record

    def inject_reply(self):
        """POST /__sim/reply: a customer sends something to one of our numbers (`flask
        sandbox reply`). JSON: from, to, text, and picture (true: a sample JPEG) or
        picture_b64 with content_type."""
        from flask import jsonify, request

        body = request.get_json(silent=True) or {}
        customer, ours = str(body.get("from", "")), str(body.get("to", ""))
        if not customer.lstrip("+").isdigit() or not ours.lstrip("+").isdigit():
            return self._error(400, "from and to must be phone numbers")
        pictures = []
        try:
            if body.get("picture_b64"):
                pictures = [(base64.b64decode(str(body["picture_b64"]), validate=True),
                             str(body.get("content_type") or "image/jpeg"))]
            elif body.get("picture"):
                pictures = [(sample_picture(), "image/jpeg")]
            self.base_url = request.host_url.rstrip("/")
            record = self.post_inbound(customer=customer, our_number=ours,
                                       text=str(body.get("text") or ""), pictures=pictures,
                                       url=body.get("url"))
        except (ValueError, binascii.Error) as exc:
            return self._error(400, str(exc))
        return jsonify(record)

    def delivered(self, message: SimulatedMessage, behaviour: Behaviour) -> None:
        """A magic customer answers a picture message that reached them; a text alone (a
        typed answer, the answer to HELP) gets no answer, so no two machines talk forever."""
        if behaviour.reply and (message.media_urls or message.media_ids):
            self.reply_later(message, behaviour.reply, behaviour.reply_picture,
                             self.reply_delay)

    # Plivo lets one confirmation through within 5 minutes of a STOP (PLIVO.md 7a.1).
    CONFIRMATION_WINDOW = 300.0

    def _refuses_opted_out(self, message: SimulatedMessage) -> bool:
        with self._lock:
            since = self.opted_out.get((message.src, message.dst))
            if since is None:
                return False
            pair = (message.src, message.dst)
            if time.time() - since <= self.CONFIRMATION_WINDOW and pair not in self.confirmed:
                self.confirmed.add(pair)
                return False
            return True


    def _post_signed(self, url: str, params: dict[str, str]) -> int:
        target = url
        if self.deliver_to:
            parts = urlsplit(url)
            target = self.deliver_to + urlunsplit(("", "", parts.path, parts.query, ""))
        code = 0
        for attempt in range(4):  # Plivo: the original plus 3 retries
            nonce = str(secrets.randbelow(10**20)).zfill(20)
            headers = signed_headers("POST", url, params, self.auth_token, nonce)
            try:
                code = requests.post(target, data=params, headers=headers, timeout=8).status_code
            except requests.RequestException as exc:
                log.warning("simulator: inbound message to %s failed: %s", target, exc)
                code = 0
            if 200 <= code < 300 or self._stopped.wait(min(0.5 * (attempt + 1), 2.0)):
                break
        return code

    def reply_later(self, message: SimulatedMessage, text: str, picture: bool,
                    delay: float) -> None:
        """A magic customer answers a delivered message, `delay` seconds later."""
        url = self._message_url(message)
        if not url:
            return

        def answer() -> None:
            if self._stopped.wait(delay):
                return
            pictures = [(sample_picture("Thanks, see you at 5!"), "image/jpeg")] if picture else []
            self.post_inbound(customer=message.dst, our_number=message.src, text=text,
                              pictures=pictures, url=url)

        threading.Thread(target=answer, daemon=True).start()

    def inbound_media_file(self, auth_id: str, message_uuid: str, media_id: str):
        from flask import Response

        with self._lock:
            found = self.inbound_media.get(f"{message_uuid}/{media_id}")
        if found is None:
            return self._error(404, "not found")
        data, content_type = found
        return Response(data, 200, content_type=content_type)
