"""The simulator's HTTP server: Plivo's Message and Media API endpoints the dashboard uses.

It speaks the parts of Plivo's Message and Media APIs the dashboard uses, so
the real SDK runs end to end with no network, and it posts status callbacks
signed exactly as Plivo signs them (V3 and V2 headers). Magic destinations
trigger every failure path; see BEHAVIOURS and the README.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter, deque

from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

from webapp.gateway.simulator.behaviours import (
    ANSWERS,
    BEHAVIOUR_OF,
    DELIVERED,
    Behaviour,
    Chaos,
    SimulatedMessage,
)
from webapp.gateway.simulator.callbacks import StatusCallbacks
from webapp.gateway.simulator.pace import (
    PLIVO_DEFAULT_EXPIRY,
    CallbackClock,
    PlivoQueue,
    SimNumber,
)
from webapp.gateway.simulator.replies import InboundReplies

log = logging.getLogger(__name__)

class PlivoSimulator(StatusCallbacks, InboundReplies):
    def __init__(self, auth_id: str, auth_token: str, *, callback_delay: float = 0.3,
                 hang_seconds: float = 30.0, latency: float = 0.0,
                 rate_per_5s: int | None = None, deliver_to: str | None = None,
                 chaos: Chaos | None = None, mms_mps: float | None = None,
                 numbers: list[SimNumber] | None = None,
                 expiry_seconds: float = PLIVO_DEFAULT_EXPIRY, message_url: str | None = None,
                 reply_delay: float = 1.0) -> None:
        self.auth_id = auth_id
        self.auth_token = auth_token
        self.callback_delay = callback_delay
        self.hang_seconds = hang_seconds
        self.latency = latency
        self.rate_per_5s = rate_per_5s
        # Post callbacks to this base URL instead of the callback URL's own scheme
        # and host, as a TLS-terminating proxy in front of the dashboard would;
        # the signature still covers the URL the dashboard asked for.
        self.deliver_to = deliver_to.rstrip("/") if deliver_to else None
        # Customers' answers (replies.py): where they are posted, how long a magic
        # customer takes to answer, and this server's own address (for media URLs).
        self.message_url = message_url
        self.reply_delay = reply_delay
        self.base_url = "http://127.0.0.1"
        self._init_replies()
        self.requests: list[dict] = []  # every send request body, in arrival order
        self.accepted_at: list[float] = []  # wall-clock time of each 202
        self.throttled = 0  # 429s answered because of rate_per_5s
        self.messages: dict[str, SimulatedMessage] = {}
        self.media: dict[str, dict] = {}  # media id: what POST /Media/ received
        # (HTTP status, error text) answered to every API request while set: an account
        # Plivo refuses ("Insufficient Credit", a suspended account...). A wrong token
        # needs no switch: change auth_token.
        self.account_refusal: tuple[int, str] | None = None
        self.refused_for_auth = 0  # requests answered 401
        self.callback_results: list[tuple[str, str, int]] = []  # (uuid, status, http status)
        self.chaos = chaos or Chaos()
        self._random = random.Random(self.chaos.seed)  # noqa: S311 - chaos, not secrets
        self.chaos_counts: Counter[str] = Counter()  # dropped, duplicated, reordered
        self._seen_bodies: Counter[str] = Counter()
        self._window: deque[float] = deque()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        # Plivo's pace (pace.py): with `mms_mps`, what is accepted waits in Plivo's queue
        # and is dispatched at the account's MPS and each number's limit; without it (the
        # test suite's fast mode) every message is dispatched at once.
        self.numbers = {n.number: n for n in numbers or []}
        self._powerpack_sticky: dict[str, str] = {}  # dst -> the number Plivo chose
        self.expiry_seconds = expiry_seconds
        self.queue: PlivoQueue | None = None
        if mms_mps:
            self._later = CallbackClock(self._advance)
            self.queue = PlivoQueue(mms_mps, self.numbers, self._dispatched, self._expired)
        self.app = self._build_app()

    # ---- HTTP API --------------------------------------------------------------------
    def _build_app(self) -> Flask:
        app = Flask("plivo_simulator")
        prefix = "/v1/Account/<auth_id>"

        @app.before_request
        def check_auth():
            if request.path.startswith("/__sim/"):
                return None
            auth = request.authorization
            if (auth is None or auth.username != self.auth_id
                    or auth.password != self.auth_token
                    or (request.view_args or {}).get("auth_id") != self.auth_id):
                with self._lock:
                    self.refused_for_auth += 1
                return self._error(401, "Authentication failed")
            if self.account_refusal:
                return self._error(*self.account_refusal)
            if self.latency:
                time.sleep(self.latency)
            return None

        app.post(f"{prefix}/Message/")(self._send)
        app.get(f"{prefix}/Message/<message_uuid>/")(self._get_message)
        app.get(f"{prefix}/Message/")(self._list_messages)
        app.post(f"{prefix}/Media/")(self._upload_media)
        app.get(f"{prefix}/Media/<media_id>/")(self._get_media)
        app.get(f"{prefix}/Number/<number>/")(self._get_number)
        app.get(f"{prefix}/Message/<message_uuid>/Media/<media_id>/")(self.inbound_media_file)

        app.post("/__sim/reply")(self.inject_reply)

        @app.get("/__sim/requests")
        def recorded():
            queue = self.queue
            return jsonify(requests=self.requests, accepted_at=self.accepted_at,
                           throttled=self.throttled,
                           dispatched=queue.dispatched if queue else [],
                           expired=queue.expired if queue else 0,
                           callbacks=[list(c) for c in self.callback_results])

        @app.get("/__sim/truth")
        def truth():
            """Every message Plivo has, as it stands: the benchmark compares the
            dashboard with this."""
            with self._lock:
                messages = [{"uuid": m.uuid, "dst": m.dst, "state": m.state,
                             "error_code": m.error_code, "times": m.times}
                            for m in self.messages.values()]
                counts = dict(self.chaos_counts)
            return jsonify(messages=messages, chaos=counts)

        return app

    @staticmethod
    def _error(status: int, message: str, headers: dict | None = None) -> Response:
        body = json.dumps({"api_id": str(uuid.uuid4()), "error": message})
        return Response(body, status, headers or {}, content_type="application/json")

    def _throttled(self) -> bool:
        if not self.rate_per_5s:
            return False
        with self._lock:
            now = time.monotonic()
            while self._window and now - self._window[0] >= 5.0:
                self._window.popleft()
            if len(self._window) >= self.rate_per_5s:
                return True
            self._window.append(now)
            return False

    def _send(self, auth_id: str):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return self._error(400, "body must be JSON")
        if self._throttled():
            with self._lock:
                self.throttled += 1
            return self._error(429, "too many requests", {"Retry-After": "1"})
        with self._lock:
            self.requests.append(body)
            fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            self._seen_bodies[fingerprint] += 1
            first_attempt = self._seen_bodies[fingerprint] == 1
        dst = str(body.get("dst", ""))
        media_urls = body.get("media_urls") or []
        media_ids = body.get("media_ids") or []
        if body.get("src") and body.get("powerpack_uuid"):
            return self._error(400, "give either src or powerpack_uuid, not both")
        if body.get("powerpack_uuid") and dst:
            body = {**body, "src": self._powerpack_number(dst)}
        if not body.get("src") or not dst:
            return self._error(400, "src and dst are required")
        if "<" in dst or not dst.isdigit():
            return self._error(400, f"{dst} is not a valid phone number")
        if body.get("type") not in ("mms", "sms"):
            return self._error(400, "type must be sms or mms")
        if body.get("type") == "sms" and (media_urls or media_ids or not body.get("text")):
            return self._error(400, "an SMS carries text and no media")
        if len(media_urls) + len(media_ids) > 10:
            return self._error(400, "too many media attachments (at most 10)")
        expiry = body.get("message_expiry")
        if expiry is None:
            expiry = PLIVO_DEFAULT_EXPIRY
        elif type(expiry) is not int or not 5 <= expiry <= 10_799:
            return self._error(400, "message_expiry must be a whole number of seconds "
                                    "between 5 and 10799")
        behaviour = BEHAVIOUR_OF.get(dst, DELIVERED)
        if behaviour.answer and (first_attempt or not behaviour.answer_first_only):
            headers = {"Retry-After": "1"} if behaviour.answer == 429 else None
            return self._error(behaviour.answer, ANSWERS[behaviour.answer].format(dst=dst),
                               headers)
        if behaviour.hang:
            time.sleep(self.hang_seconds)
            return self._error(504, "gateway timeout")
        message = SimulatedMessage(
            uuid=str(uuid.uuid4()), src=str(body["src"]), dst=dst, text=body.get("text") or "",
            media_urls=list(media_urls), media_ids=list(media_ids), url=body.get("url"),
            method=(body.get("method") or "POST").upper(),
        )
        if self._refuses_opted_out(message):
            message.forced = ("failed", "200")
        with self._lock:
            self.messages[message.uuid] = message
            self.accepted_at.append(time.time())
        if self.queue is not None:
            message.times["queued"] = time.time()
            self._later.at(time.monotonic(), message, "queued", 1, "", behaviour)
            self.queue.put(message.src, message, min(expiry, self.expiry_seconds))
        elif message.url or behaviour.hang_after_accepting:
            if behaviour.callbacks_first:
                self._run_callbacks(message, delay=0)  # before we answer: the race
            else:
                threading.Thread(target=self._run_callbacks, args=(message,), daemon=True).start()
        if behaviour.hang_after_accepting:
            time.sleep(self.hang_seconds)
            return self._error(504, "gateway timeout")
        return jsonify(api_id=str(uuid.uuid4()), message="message(s) queued",
                       message_uuid=[message.uuid]), 202

    def _dispatched(self, message: SimulatedMessage, capped: bool) -> None:
        """Plivo's queue let it go: sent now, its delivery report a little later (a
        number past its daily cap: filtered by the carriers, error 30)."""
        behaviour = BEHAVIOUR_OF.get(message.dst, DELIVERED)
        final, code = (("undelivered", "30") if capped
                       else message.forced or self._outcome(behaviour))
        steps = [(final, code)] if final == "failed" else [("sent", ""), (final, code)]
        for sequence, (status, error_code) in enumerate(steps, start=2):
            due = time.monotonic() + (self.callback_delay if sequence == 3 else 0.0)
            self._later.at(due, message, status, sequence, error_code, behaviour)

    def _advance(self, message: SimulatedMessage, status: str, sequence: int, error_code: str,
                 behaviour: Behaviour) -> None:
        """The message reaches `status` at Plivo; its callback is posted (unless lost)."""
        if status != "queued" or message.state == "queued":  # else dispatched already
            message.state, message.error_code = status, error_code
        message.times.setdefault(status, time.time())
        if message.url and not behaviour.callbacks_lost:
            self._post_or_not(message, status, sequence, error_code)
        if status == "delivered":
            self.delivered(message, behaviour)

    def _expired(self, message: SimulatedMessage) -> None:
        """Still in Plivo's queue after its expiry: failed, error 420, not charged."""
        self._later.at(time.monotonic(), message, "failed", 2, "420",
                       BEHAVIOUR_OF.get(message.dst, DELIVERED))

    def _powerpack_number(self, dst: str) -> str:
        """A Powerpack's choice: the number this destination heard from before (sticky
        sender), else the account's next number in turn."""
        with self._lock:
            chosen = self._powerpack_sticky.get(dst)
            if chosen is None:
                pool = sorted(self.numbers) or ["14155550100"]
                chosen = pool[len(self._powerpack_sticky) % len(pool)]
                self._powerpack_sticky[dst] = chosen
            return chosen

    def _get_number(self, auth_id: str, number: str):
        """Plivo's Number API: one of the account's numbers, or 404."""
        found = self.numbers.get(number.lstrip("+"))
        if found is None:
            return self._error(404, "Number not found")
        return jsonify(api_id=str(uuid.uuid4()), **found.api_record())

    # Plivo's Media API (PLIVO.md section 2): the types it lists, 2 MB a file, 10 a call.
    MEDIA_TYPES = frozenset({
        "image/jpeg", "image/png", "image/gif", "audio/mp3", "audio/mpeg", "video/mp4",
        "audio/wav", "audio/ogg", "video/3gpp", "video/3gpp2", "text/vcard", "text/csv",
        "application/pdf", "application/vnd.ms-excel", "image/xcf", "text/plain"})

    def _upload_media(self, auth_id: str):
        files = request.files.getlist("file")
        if not files:
            return self._error(400, "no file uploaded (form field 'file')")
        if len(files) > 10:
            return self._error(400, "at most 10 files per request")
        objects = []
        for upload in files:
            data = upload.read()
            content_type = (upload.mimetype or "").lower()
            item = {"file_name": upload.filename, "content_type": content_type,
                    "size": len(data)}
            if content_type not in self.MEDIA_TYPES:
                item |= {"status": "unsupported content type", "status_code": 415}
            elif len(data) > 2 * 1024 * 1024:
                item |= {"status": "file too large (at most 2 MB)", "status_code": 413}
            else:
                media_id = str(uuid.uuid4())
                item |= {"media_id": media_id, "status": "success", "status_code": 201,
                         "upload_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "media_url": f"https://media.plivo.com/Account/{auth_id}/Media/"
                                      f"{media_id}"}
                with self._lock:
                    self.media[media_id] = {**item, "sha256": hashlib.sha256(data).hexdigest()}
            objects.append(item)
        return jsonify(api_id=str(uuid.uuid4()), objects=objects), 201

    def _get_media(self, auth_id: str, media_id: str):
        item = self.media.get(media_id)
        if item is None:
            return self._error(404, "not found")
        return jsonify(api_id=str(uuid.uuid4()),
                       **{k: v for k, v in item.items() if k != "sha256"})

    def _get_message(self, auth_id: str, message_uuid: str):
        """Plivo's Message API: the message's state now (the dashboard confirms V2-signed
        callbacks with it)."""
        message = self.messages.get(message_uuid)
        if message is None:
            return self._error(404, "not found")
        return jsonify(api_id=str(uuid.uuid4()), **self._record(message))

    @staticmethod
    def _record(message: SimulatedMessage) -> dict:
        return dict(
            message_uuid=message.uuid, message_state=message.state,
            message_type="mms", message_direction="outbound", from_number=message.src,
            to_number=message.dst, error_code=message.error_code or "000", units=1,
            total_amount="0.01600", total_rate="0.01600",
            message_time=time.strftime("%Y-%m-%d %H:%M:%S+00:00",
                                       time.gmtime(message.received_at)))

    def _list_messages(self, auth_id: str):
        """Plivo's message list: filters by direction, numbers and time (UTC,
        `YYYY-MM-DD HH:MM[:ss]`), newest first, `limit` 1-20 (PLIVO.md 1.8)."""
        args = request.args
        try:
            limit = int(args.get("limit", 20))
            offset = int(args.get("offset", 0))
            bounds = {name: calendar.timegm(time.strptime(args[name][:19], "%Y-%m-%d %H:%M:%S"))
                      for name in ("message_time__gte", "message_time__lte") if name in args}
        except ValueError:
            return self._error(400, "invalid parameter")
        if not 1 <= limit <= 20:
            return self._error(400, "limit must be between 1 and 20")
        with self._lock:
            found = [m for m in self.messages.values()
                     if args.get("message_direction", "outbound") == "outbound"
                     and args.get("to_number", m.dst) == m.dst
                     and args.get("from_number", m.src) == m.src
                     and int(m.received_at) >= bounds.get("message_time__gte", 0)
                     and int(m.received_at) <= bounds.get("message_time__lte", 2**40)]
        found.sort(key=lambda m: m.received_at, reverse=True)
        page = found[offset:offset + limit]
        return jsonify(api_id=str(uuid.uuid4()),
                       meta={"limit": limit, "offset": offset, "total_count": len(found),
                             "next": None, "previous": None},
                       objects=[self._record(m) for m in page])

    # ---- status callbacks ------------------------------------------------------------
    def _chance(self, share: float) -> bool:
        if not share:
            return False
        with self._lock:
            return self._random.random() < share

    def _outcome(self, behaviour: Behaviour) -> tuple[str, str]:
        if behaviour is DELIVERED and self._chance(self.chaos.failing):
            return ("failed", "900") if self._chance(1 / 3) else ("undelivered", "30")
        return behaviour.outcome

    # ---- serving ----------------------------------------------------------------------
    def serve_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
        server = make_server(host, port, self.app, threaded=True)
        self.base_url = f"http://{host}:{server.server_port}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def stop(self) -> None:
        """Stop sending callbacks (pending ones are dropped)."""
        self._stopped.set()
        if self.queue is not None:
            self.queue.stop()
