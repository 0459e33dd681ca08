"""The audit trail's parts: the chain check, filters as the API takes them, every selected event as CSV."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from ui.api_client import ApiClient
from ui.components.admin_tables import audit_csv
from ui.components.session import api

PAGE_SIZE = 50
CSV_BATCH = 1000  # the API's largest page
# the actions the API records (its endpoints, and what the job workers and the registry do); the filter
# takes any other name typed in
KNOWN_ACTIONS = ["auth.login", "auth.logout", "users.create_user", "users.change_user", "tokens.create_token",
                 "tokens.revoke_token", "models.promote", "models.rollback", "approvals.approve",
                 "approvals.reject", "jobs.start", "jobs.cancel", "datasets.upload", "predict.predict",
                 "predict.predict_batch", "feedback.give_feedback", "job.start", "job.end", "champion.move"]


def utc_text(moment: datetime | None) -> str | None:
    """A time picked on the page (read as UTC) in ISO 8601."""
    if moment is None:
        return None
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


def chain_status() -> None:
    check = api().audit_verify()
    if check["intact"]:
        st.success(f"Audit chain intact: all {check['rows']:,} events verified.", icon=":material/verified:")
    else:
        st.error(f"Audit chain broken at event {check.get('first_broken')}: {check.get('problem')}. "
                 f"{check['rows']:,} events checked.", icon=":material/gpp_bad:")


def every_event(client: ApiClient, filters: dict) -> list[dict]:
    events, offset = [], 0
    while True:
        answer = client.audit(limit=CSV_BATCH, offset=offset, **filters)
        events += answer["items"]
        offset += len(answer["items"])
        if not answer["items"] or offset >= answer["total"]:
            return events


def csv_of(client: ApiClient, filters: dict):
    """Made when the download is clicked (outside the page's run): a client of its own, same user."""
    base_url, token = client.base_url, client.token
    return lambda: audit_csv(every_event(ApiClient(base_url, token), filters))

