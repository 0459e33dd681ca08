"""A job as it runs: its steps, a progress bar and the log tail, polled without blocking the page.

The steps of each kind, and which states are active, are the API's (GET /jobs/kinds, fetched once
per session by the client): a new kind or step shows without a console change.
"""

from __future__ import annotations

import streamlit as st

from ui.api_client import ApiRejectedError
from ui.components import formatting
from ui.components.errors import guarded
from ui.components.session import api

POLL_SECONDS = 1.0
LOG_LINES = 10  # what fits the panel without scrolling
STATUS_ICONS = {  # Markdown (material icons render without emoji fonts)
    "queued": ":orange[:material/schedule:]", "running": ":blue[:material/autorenew:]",
    "succeeded": ":green[:material/check_circle:]", "failed": ":red[:material/cancel:]",
    "cancelled": ":gray[:material/block:]", "interrupted": ":orange[:material/warning:]",
}
PENDING_ICON = ":gray[:material/radio_button_unchecked:]"


def remembered_job(state_key: str) -> dict | None:
    """The job whose id this session keeps under `state_key`; forgotten when the API does not know it
    (another API, or its record is gone)."""
    job_id = st.session_state.get(state_key)
    if not job_id:
        return None
    try:
        return api().job(job_id)
    except ApiRejectedError:
        st.session_state.pop(state_key, None)
        return None


def steps_of(kind: str) -> list[str]:
    """The steps the worker runs for `kind`, in order, as the API publishes them."""
    return api().job_steps(kind)


def statuses() -> list[str]:
    states = api().job_catalogue()["states"]
    return [*states["active"], *states["final"]]


def is_active(job: dict | None) -> bool:
    return bool(job) and job["status"] in api().job_catalogue()["states"]["active"]


def log_tail(job: dict, lines: int = LOG_LINES) -> str:
    return "\n".join((job.get("log_tail") or "").rstrip().splitlines()[-lines:]) or "(no output yet)"


def step_tracker(job: dict) -> str:
    """Markdown: each step with a done / current / pending mark, in order."""
    steps = steps_of(job["kind"]) or ([job["step"]] if job.get("step") else [])
    current = steps.index(job["step"]) if job.get("step") in steps else -1
    finished = job["status"] == "succeeded"
    marks = []
    for index, name in enumerate(steps):
        if finished or index < current:
            mark = STATUS_ICONS["succeeded"]
        elif index == current:
            mark = STATUS_ICONS[job["status"]]
        else:
            mark = PENDING_ICON
        marks.append(f"{mark} {name}")
    return " → ".join(marks)


def progress_panel(job: dict) -> None:
    elapsed = formatting.seconds_between(job.get("started_at"), job.get("finished_at"))
    if job["status"] == "queued":
        text = "waiting for a worker to take it"
    else:
        text = f"step “{job.get('step') or '…'}”, {formatting.duration(elapsed)} so far"
    started = formatting.when(job.get("started_at") or job["created_at"])
    st.markdown(f"**{STATUS_ICONS.get(job['status'], '')} {job['kind']} job `{job['id'][:8]}` "
                f"is {job['status']}** — started {started}")
    st.markdown(step_tracker(job))
    st.progress(min(max(float(job.get("progress") or 0.0), 0.0), 1.0), text=text)
    st.code(log_tail(job), language="text")


@st.fragment(run_every=POLL_SECONDS)
@guarded
def follow_job(state_key: str) -> None:
    """Polls the job whose id is in st.session_state[state_key]; reruns the page when it ends."""
    job_id = st.session_state.get(state_key)
    if not job_id:
        return
    job = api().job(job_id)
    if not is_active(job):
        st.rerun()  # the page shows the outcome, and stops polling
    progress_panel(job)


def job_outcome(state_key: str, what: str, succeeded, failed_note: str = "") -> None:
    """The job whose id is in st.session_state[state_key]: followed while it runs, then its outcome,
    `succeeded(job)` in words or, for any other end, why (`what`: "upload", "pull", ...)."""
    job = remembered_job(state_key)
    if job is None:
        return
    if is_active(job):
        follow_job(state_key)
    elif job["status"] == "succeeded":
        st.success(succeeded(job), icon=":material/check_circle:")
    else:
        st.error(f"The {what} {job['status']}: {job.get('error') or 'no reason given'}.{failed_note}",
                 icon=":material/error:")
