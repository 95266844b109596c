"""Time to truth (issue 17): a thousand messages sent while Plivo's callbacks are dropped,
doubled and reordered and a queue worker is killed mid-dispatch. The simulator keeps
Plivo's own state, which its Message API answers with; the dashboard must end up showing
exactly that for every message, from callbacks when they come and from the reconciler's
lookups when they don't."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter

import requests
from sqlalchemy import bindparam, create_engine, text

from webapp.models import UTCDateTime

from .deployments import Deployment, seed_messages
from .measurements import Row

FINAL = {"delivered", "undelivered", "failed"}
CHAOS = {"--drop-callbacks": "0.10", "--duplicate-callbacks": "0.05",
         "--reorder-callbacks": "0.10", "--failing": "0.10"}
RECONCILE_AFTER_MINUTES = 1  # the shortest the setting accepts
SWEEP_SECONDS = 30  # QUEUE_SWEEP_SECONDS's default
LEASE_SECONDS = 180  # QUEUE_LEASE_SECONDS's default


def prepare(dep: Deployment) -> None:
    """Before anything starts: the settings the chaos run needs."""
    dep.env["RECONCILE_AFTER_MINUTES"] = str(RECONCILE_AFTER_MINUTES)


def simulator_options() -> list[str]:
    return [option for pair in CHAOS.items() for option in pair]


def code(error_code: str | None) -> str:
    """Plivo's error code, "" for none ("000" in its Message API)."""
    return (error_code or "").lstrip("0")


def p95(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def measure_chaos(dep: Deployment, rows: list[Row], count: int, kill: bool) -> None:
    database_url = dep.env["DATABASE_URL"]
    dep.login("chaos@example.com")
    seed_messages(database_url, "chaos@example.com", count, status="pending")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        user_id = conn.execute(text("SELECT id FROM users WHERE email = 'chaos@example.com'"
                                    )).scalar_one()
        conn.execute(text("UPDATE messages SET attempts = 0, plivo_uuid = NULL, created_at = :t"
                          " WHERE created_by_id = :u").bindparams(
                              bindparam("t", type_=UTCDateTime())),
                     {"t": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5), "u": user_id})
    dep.flask("messages", "recover", "--older-than", "1", check=True)  # queues them all
    started = time.time()
    killed_at = None
    in_flight = 0
    # Unknown messages need the lease, a first look at Plivo's list 2 minutes on and a
    # second one RECONCILE_AFTER_MINUTES later; the rest far less.
    deadline = started + (LEASE_SECONDS + 120 + 120 * RECONCILE_AFTER_MINUTES + 4 * SWEEP_SECONDS
                          if kill else 90 + 60 * RECONCILE_AFTER_MINUTES + 2 * SWEEP_SECONDS)
    shown_at: dict[str, float] = {}
    truth: dict[str, dict] = {}
    while time.time() < deadline:
        sim = requests.get(dep.sim_url + "/__sim/truth", timeout=30).json()
        truth = {m["dst"]: m for m in sim["messages"]}
        if kill and killed_at is None and len(truth) >= count * 2 // 5:
            dep.workers[0].kill()  # SIGKILL, mid-dispatch: in-flight sends are cut off
            dep.workers[0].wait()
            killed_at = time.time()
            with engine.connect() as conn:  # claimed, Plivo's answer never recorded
                in_flight = conn.execute(text(
                    "SELECT count(*) FROM messages WHERE created_by_id = :u AND status = "
                    "'pending' AND attempts > 0 AND plivo_uuid IS NULL"), {"u": user_id}
                ).scalar_one()
            time.sleep(1)
            dep.start_worker()  # as systemd would restart it
        with engine.connect() as conn:
            shown = conn.execute(text("SELECT recipient, status, error_code FROM messages "
                                      "WHERE created_by_id = :u"), {"u": user_id}).all()
        now = time.time()
        for recipient, status, error_code in shown:
            plivo = truth.get(recipient.lstrip("+"))
            if plivo is None:  # never reached Plivo (a killed worker's send)
                right = status == "not_sent" and killed_at is not None
            else:
                right = (plivo["state"] in FINAL and status == plivo["state"]
                         and code(error_code) == code(plivo["error_code"]))
            if right:
                shown_at.setdefault(recipient, now)
            else:
                shown_at.pop(recipient, None)
        if len(shown_at) == count:
            break
        time.sleep(0.5)
    sim = requests.get(dep.sim_url + "/__sim/requests", timeout=30).json()
    chaos = requests.get(dep.sim_url + "/__sim/truth", timeout=30).json()["chaos"]
    with engine.connect() as conn:
        lookups = conn.execute(text("SELECT count(*) FROM status_events "
                                    "WHERE signature_scheme = 'lookup'")).scalar_one()
        statuses = Counter(dict(conn.execute(text(
            "SELECT status, count(*) FROM messages WHERE created_by_id = :u GROUP BY status"),
            {"u": user_id}).all()))
    engine.dispose()
    # Which messages' final callback reached the dashboard (not dropped): their truth
    # came by callback; the others' by a lookup.
    answered = {(uuid, status) for uuid, status, code in sim["callbacks"] if 200 <= code < 300}
    by_callback, by_lookup, never_sent = [], [], []
    for recipient, moment in shown_at.items():
        plivo = truth.get(recipient.lstrip("+"))
        if plivo is None:
            never_sent.append(moment - killed_at)
            continue
        final_at = plivo["times"][plivo["state"]]
        if (plivo["uuid"], plivo["state"]) in answered:
            by_callback.append(moment - final_at)
        else:
            by_lookup.append(moment - final_at)
    sent_twice = sum(1 for n in Counter(r["dst"] for r in sim["requests"]).values() if n > 1)
    share = 100 * len(shown_at) / count
    name = dep.name
    rows.append(Row(name, f"chaos: {count:,} messages, callbacks 10% dropped, 5% doubled, "
                          f"10% reordered{', a worker SIGKILLed' if kill else ''}",
                    chaos.get("dropped", 0), "dropped",
                    f"{chaos.get('duplicated', 0)} doubled, {chaos.get('reordered', 0)} "
                    f"reordered"))
    rows.append(Row(name, "chaos: messages showing Plivo's truth", share, "%", "100 %", None,
                    len(shown_at) == count))
    rows.append(Row(name, "chaos: statuses shown at the end", statuses.pop("delivered", 0),
                    "delivered", " · ".join(f"{k} {v}" for k, v in sorted(statuses.items()))))
    rows.append(Row(name, "chaos: messages sent to Plivo twice", sent_twice, "", "0", None,
                    sent_twice == 0))
    rows.append(Row(name, f"chaos: time to truth by callback, p95 ({len(by_callback)})",
                    p95(by_callback), "s", "<= 30 s", None, p95(by_callback) <= 30))
    limit = 60 * RECONCILE_AFTER_MINUTES + 60
    rows.append(Row(name, f"chaos: time to truth by lookup, p95 ({len(by_lookup)}; "
                          f"{lookups} lookups)", p95(by_lookup), "s",
                    f"<= reconcile delay + 1 min = {limit} s", None, p95(by_lookup) <= limit))
    if kill:
        rows.append(Row(name, "chaos: sends cut off by the SIGKILL (claimed, no answer kept)",
                        in_flight, "messages", "killed" if killed_at else "NOT KILLED", None,
                        killed_at is not None))
        limit = LEASE_SECONDS + 120 + 60 * RECONCILE_AFTER_MINUTES + 2 * SWEEP_SECONDS
        worst = max(never_sent, default=0.0)
        rows.append(Row(name, f"chaos: killed mid-send, never reached Plivo: shown 'not sent' "
                              f"after the kill, max ({len(never_sent)})", worst, "s",
                        f"<= lease + list looks = {limit} s", None, worst <= limit))
