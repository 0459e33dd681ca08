"""Drift reports: the list, one report's summary, and its Evidently HTML page."""

from __future__ import annotations

from flask import Response
from flask_openapi3 import Tag

from control_api.errors import APIError
from control_api.identity.routing import SecuredBlueprint
from control_api.models import ErrorBody, PageQuery, ReportOut, ReportPage, ReportPath
from monitoring.reports import ReportStore

TAG = Tag(name="reports", description="Drift reports of the prediction log against the training data")


def blueprint(services) -> SecuredBlueprint:
    bp = SecuredBlueprint("reports", __name__, abp_tags=[TAG],
                      abp_responses={401: ErrorBody, 422: ErrorBody})
    settings = services.settings
    store = ReportStore(settings.reports_dir, settings.reports_keep_html)

    def unknown(report_id: str, what: str = "report") -> APIError:
        return APIError(404, f"no {what} `{report_id}`", [{"field": "report_id", "problem": "unknown"}])

    @bp.get("/reports", permission="read", responses={200: ReportPage})
    def list_reports(query: PageQuery):
        """Drift reports, newest first (`POST /jobs` with kind `drift_report` makes one)."""
        items, total = store.list(query.limit, query.offset)
        return {"items": items, "total": total, "limit": query.limit, "offset": query.offset}

    @bp.get("/reports/<report_id>", permission="read", responses={200: ReportOut, 404: ErrorBody})
    def get_report(path: ReportPath):
        """One report: window, reference, dataset drift, per-column tests, prediction drift,
        classification quality on the rows with feedback."""
        report = store.get(path.report_id)
        if report is None:
            raise unknown(path.report_id)
        return report

    @bp.get("/reports/<report_id>/html", permission="read",
            responses={200: {"content": {"text/html": {}}}, 404: ErrorBody})
    def get_report_html(path: ReportPath):
        """Evidently's HTML page of a report (only the newest OPCON_REPORTS_KEEP_HTML keep one)."""
        page = store.html_path(path.report_id)
        if page is None:
            raise unknown(path.report_id, "HTML page for report")
        # its scripts run in an opaque origin even when the page is opened directly
        return Response(page.read_bytes(), mimetype="text/html",
                        headers={"Content-Security-Policy": "sandbox allow-scripts",
                                 "X-Content-Type-Options": "nosniff"})

    return bp
