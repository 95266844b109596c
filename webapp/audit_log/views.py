"""The audit log, for admins: a filtered page of entries and the same entries as a CSV."""

from __future__ import annotations

from flask import Blueprint, Response, abort, render_template, request, stream_with_context

from webapp import audit
from webapp.messages import presentation
from webapp.models import utcnow
from webapp.security import admin_required

bp = Blueprint("audit_log", __name__)


@bp.get("/admin/audit")
@admin_required
def audit_log():
    zone = presentation.display_zone()
    filters, errors = audit.AuditFilter.from_args(request.args, zone)
    entries, after = audit.page(filters, audit.parse_cursor(request.args.get("before")))
    query = {key: value for key, value in request.args.items()
             if key in ("who", "what", "from", "to") and value}
    return render_template("audit_log/audit.html", entries=entries, errors=errors, query=query,
                           next_cursor=audit.cursor_text(after), actions=audit.actions(),
                           labels=audit.ACTIONS, describe=audit.describe,
                           paged="before" in request.args,
                           zone_name=getattr(zone, "key", str(zone))), (400 if errors else 200)


@bp.get("/admin/audit.csv")
@admin_required
def audit_export():
    filters, errors = audit.AuditFilter.from_args(request.args, presentation.display_zone())
    if errors:
        abort(400, " ".join(errors))
    audit.record_now("audit_exported", "audit log",
                     filter={k: v for k, v in request.args.items()
                             if k in ("who", "what", "from", "to") and v} or "none")
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return Response(stream_with_context(audit.export_rows(filters)), mimetype="text/csv",
                    headers={"Content-Disposition":
                             f'attachment; filename="audit-{stamp}.csv"'})

