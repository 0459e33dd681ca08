"""Jobs: what the workers ran and are running, filtered; the whole log of one of them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.components import formatting
from ui.components.access import can
from ui.components.errors import guarded
from ui.components.job_progress import STATUS_ICONS, is_active, statuses
from ui.components.session import api, job_kinds

PAGE_SIZE = 25
REFRESH_SECONDS = 5
COLOURS = {"succeeded": "#d3f2dc", "failed": "#f9d6d9", "running": "#d4e9fb", "queued": "#fdf1c7",
           "cancelled": "#e4e5e7", "interrupted": "#fde3cc"}


def jobs_table(items: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{
        "job": job["id"][:8],
        "kind": job["kind"],
        "status": job["status"],
        "step": job.get("step") or "",
        "progress": job.get("progress") or 0.0,
        "created": formatting.timestamp(job["created_at"]),
        "duration": formatting.job_duration(job),
        "reason": job.get("reason") or "",
        "error": job.get("error") or "",
    } for job in items])


def show_table(items: list[dict]) -> None:
    frame = jobs_table(items)
    styled = frame.style.map(lambda s: f"background-color: {COLOURS.get(s, 'transparent')}; color: #1f2430",
                             subset=["status"])
    st.dataframe(styled, hide_index=True, width="stretch", column_config={
        "progress": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
        "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss", timezone="UTC"),
        "duration": st.column_config.TextColumn(help="from start to finish, or until now while running"),
        "error": st.column_config.TextColumn(width="large")})


def job_details(job: dict) -> None:
    times = " · ".join(f"{what} {formatting.when(job.get(f'{what}_at'))}"
                       for what in ("created", "started", "finished"))
    st.markdown(f"**{STATUS_ICONS.get(job['status'], '')} {job['kind']} `{job['id']}` — {job['status']}**  \n"
                f"{times} · reason: {job.get('reason') or '—'}")
    if job.get("error"):
        st.error(job["error"], icon=":material/error:")
    if job.get("result"):
        with st.expander("Result"):
            st.json(job["result"])
    if is_active(job) and can("jobs:cancel") and st.button(
            "Cancel this job", icon=":material/cancel:",
            help="a queued job stops now, a running one at its next step"):
        api().cancel_job(job["id"])
        st.rerun()
    full = api().job_log(job["id"])
    st.caption("Log" if full is not None else "Log (the last 4,000 characters)")
    st.code(full if full is not None else (job.get("log_tail") or "(empty)"), language="text", height=420)


@st.fragment(run_every=REFRESH_SECONDS)
@guarded
def listing(kind: str | None, status: str | None, page: int) -> None:
    answer = api().jobs(kind=kind, status=status, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    if not answer["items"]:
        filtered = kind is not None or status is not None or page > 1
        st.info("No job matches these filters." if filtered else "No job has run yet.",
                icon=":material/info:")
        return
    first = (page - 1) * PAGE_SIZE + 1
    st.caption(f"Jobs {first}–{first + len(answer['items']) - 1} of {answer['total']}, newest first; "
               f"refreshed every {REFRESH_SECONDS} s.")
    show_table(answer["items"])
    by_label = {f"{j['id'][:8]} · {j['kind']} · {j['status']} · {formatting.when(j['created_at'])}": j
                for j in answer["items"]}
    chosen = st.selectbox("Job to inspect", list(by_label), key="job_to_inspect")
    job_details(by_label[chosen])


st.title("Jobs")
st.caption("Everything the job workers ran or are running — retrains, data pulls, validations, drift "
           "reports, dataset uploads — with their status, duration and log.")
kind_column, status_column, page_column = st.columns([2, 2, 1])
kind = kind_column.selectbox("Kind", [None, *job_kinds()], key="job_kind",
                             format_func=lambda k: k or "all kinds")
status = status_column.selectbox("Status", [None, *statuses()], key="job_status",
                                 format_func=lambda s: s or "any status")
page = page_column.number_input("Page", min_value=1, value=1, step=1, key="job_page")
listing(kind, status, int(page))
