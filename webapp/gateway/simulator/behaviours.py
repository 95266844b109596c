"""What the simulator does for each magic destination number (the one table that decides
it, and describes it to the CLI, the compose page and the README), the chaos switches,
and a simulated message."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Behaviour:
    """What the simulator does for one magic destination. This table alone decides it,
    and describes it to the CLI, the compose page's sandbox hint and the README (a test
    checks the README's table against it)."""

    number: str  # E.164 without "+"
    happens: str  # for the README and the CLI
    hint: str | None = None  # a few words on the compose page, or None to leave it out
    answer: int | None = None  # the HTTP status the send request gets instead of a 202
    answer_first_only: bool = False  # ... on the first attempt only; the retry is accepted
    hang: bool = False  # the send request is never answered in time
    outcome: tuple[str, str] = ("delivered", "")  # final status and error code
    callbacks_first: bool = False  # the callbacks arrive before the send is answered
    callbacks_lost: bool = False  # the message moves on at Plivo; no callback is posted
    hang_after_accepting: bool = False  # Plivo has it, but the answer never comes
    reply: str | None = None  # once delivered, the customer answers this
    reply_picture: bool = False  # ... with a picture


BEHAVIOURS = (
    Behaviour("14155550400", 'Plivo answers 400 "not a valid phone number": the message is '
              "*Refused by Plivo*", hint="invalid number", answer=400),
    Behaviour("14155550030", "accepted, then *Not delivered: spam detected (30)*",
              hint="spam, undelivered", outcome=("undelivered", "30")),
    Behaviour("14155550900", "accepted, then *Failed: insufficient credit (900)*",
              hint="no credit", outcome=("failed", "900")),
    Behaviour("14155550500", "500 on the first attempt, sent on the retry (2 attempts)",
              answer=500, answer_first_only=True),
    Behaviour("14155550429", "429 with `Retry-After: 1` first, sent on the retry",
              answer=429, answer_first_only=True),
    Behaviour("14155550408", "never answers and never has it: after the read timeout the "
              "message is *Unknown*, then *Not sent — Plivo never received it* once the "
              "reconciler finds nothing in Plivo's message list",
              hint="no answer", hang=True),
    Behaviour("14155550001", "status callbacks arrive before the send request is answered",
              callbacks_first=True),
    Behaviour("14155550410", "delivered, but no status callback ever arrives: the dashboard "
              "learns it by asking Plivo (the reconciler)", hint="lost callbacks",
              callbacks_lost=True),
    Behaviour("14155550411", "accepted, but neither the answer nor any callback ever comes: "
              "*Unknown* until the reconciler finds it in Plivo's message list, then "
              "delivered", hint="lost answer", hang_after_accepting=True, callbacks_lost=True),
    Behaviour("14155550555", 'delivered, then the customer answers "Thanks, see you at 5!" '
              "with a picture", hint="answers with a picture",
              reply="Thanks, see you at 5!", reply_picture=True),
    Behaviour("14155550556", 'delivered, then the customer answers "STOP": opted out, and '
              "later messages to them fail with error 200", hint="answers STOP", reply="STOP"),
    Behaviour("14155550557", 'delivered, then the customer answers "HELP": the dashboard '
              "answers with HELP_REPLY_TEXT", hint="answers HELP", reply="HELP"),
)
BEHAVIOUR_OF = {behaviour.number: behaviour for behaviour in BEHAVIOURS}
DELIVERED = Behaviour("", "delivered")
ANSWERS = {400: "{dst} is not a valid phone number", 429: "too many requests",
            500: "internal server error"}


@dataclass(frozen=True)
class Chaos:
    """What goes wrong on the way back (the benchmark's chaos run): the share of callbacks
    never posted, of callbacks posted twice, of messages whose callbacks come in reverse
    order, and of ordinary messages that end undelivered (spam, 30) or failed (no credit,
    900) instead of delivered. Plivo's own state, which the Message API answers with,
    moves on regardless: that is the truth the dashboard must end up showing."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    failing: float = 0.0
    seed: int = 0


def display_number(number: str) -> str:
    """(415) 555-0400 for a magic number."""
    return f"({number[1:4]}) {number[4:7]}-{number[7:]}"


def readme_table() -> str:
    """The README's table of magic numbers, as this table says."""
    lines = ["| number | what happens |", "|---|---|"]
    lines += [f"| {display_number(b.number)} | {b.happens} |" for b in BEHAVIOURS]
    return "\n".join(lines) + "\n"


@dataclass
class SimulatedMessage:
    uuid: str
    src: str
    dst: str
    text: str
    media_urls: list[str]
    media_ids: list[str]
    url: str | None
    method: str
    state: str = "queued"
    error_code: str = ""
    callbacks: list[dict] = field(default_factory=list)
    received_at: float = field(default_factory=time.time)
    times: dict[str, float] = field(default_factory=dict)  # when it reached each state
    forced: tuple[str, str] | None = None  # its end whatever the destination (opted out)
