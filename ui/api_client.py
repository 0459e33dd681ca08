"""The console's only way to the control API: HTTP with a timeout on every call, as the signed-in user.

The address comes from `OPCON_API_URL` (default http://127.0.0.1:8000). The client carries the session
token that `login()` returned (`Authorization: Bearer ocs_...`), never a server-side token: the API
decides what each user may do. Failures are typed: `ApiUnavailableError` when nothing answers in time,
`ApiRejectedError` for a 4xx with the API's error body (`ApiUnauthorizedError` for 401: no or an
ended session; `ApiForbiddenError` for 403: the role lacks the permission), `ApiFailedError` for a 5xx.
"""

from __future__ import annotations

import dataclasses
import os
import re

import requests

DEFAULT_URL = "http://127.0.0.1:8000"
QUICK = (3.05, 15)  # (connect, read) seconds: lookups and single predictions
SLOW = (3.05, 600)  # uploads: a large CSV takes a while to score or validate


@dataclasses.dataclass
class Problem:
    field: str
    problem: str
    count: int | None = None
    rows: list[int] | None = None


class ApiError(Exception):
    def __init__(self, message: str, status: int | None = None, details: list[Problem] | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.message, self.status, self.details, self.body = message, status, details or [], body or {}


class ApiUnavailableError(ApiError):
    """Nothing answered at the API's address, or not in time."""


class ApiRejectedError(ApiError):
    """4xx: the request was refused; `details` name the fields."""


class ApiUnauthorizedError(ApiRejectedError):
    """401: no credentials, wrong ones, or a session that ended (expired, signed out, revoked)."""


class ApiForbiddenError(ApiRejectedError):
    """403: the caller is known but its role lacks `permission` (or the action is refused to it)."""

    @property
    def permission(self) -> str | None:
        return self.body.get("permission")


class ApiFailedError(ApiError):
    """5xx: the API answered with an error of its own."""


def api_url() -> str:
    return (os.environ.get("OPCON_API_URL") or DEFAULT_URL).rstrip("/")


def _problems(details) -> list[Problem]:
    if not isinstance(details, list):
        return []
    return [Problem(field=str(d.get("field", "")), problem=str(d.get("problem", "")),
                    count=d.get("count"), rows=d.get("rows"))
            for d in details if isinstance(d, dict)]


def _file_name(response: requests.Response, default: str) -> str:
    match = re.search(r'filename="([^"]+)"', response.headers.get("Content-Disposition", ""))
    return match.group(1) if match else default


ERRORS = {401: ApiUnauthorizedError, 403: ApiForbiddenError}


@dataclasses.dataclass
class ScoredFile:
    content: bytes
    file_name: str
    request_id: str
    model_version: str


class ApiClient:
    def __init__(self, base_url: str | None = None, token: str | None = None):
        """`token`: the signed-in user's session token; None for signing in (and /ready, /metrics)."""
        self.base_url = base_url or api_url()
        self.token = token
        self.session = requests.Session()
        self._catalogue: dict | None = None  # GET /jobs/kinds, kept for the client's life
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    # -- transport ----------------------------------------------------------------------------

    def _send(self, method: str, path: str, timeout=QUICK, **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, self.base_url + path, timeout=timeout, **kwargs)
        except requests.Timeout:
            raise ApiUnavailableError(f"the control API at {self.base_url} did not answer in time") from None
        except requests.ConnectionError:
            raise ApiUnavailableError(f"the control API at {self.base_url} is not reachable") from None
        if response.status_code < 400:
            return response
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        message = str(body.get("error") or f"HTTP {response.status_code}")
        default = ApiRejectedError if response.status_code < 500 else ApiFailedError
        kind = ERRORS.get(response.status_code, default)
        raise kind(message, response.status_code, _problems(body.get("details")), body)

    def _json(self, method: str, path: str, **kwargs):
        return self._send(method, path, **kwargs).json()

    # -- health --------------------------------------------------------------------------------

    def ready(self) -> dict:
        """/ready's body whether or not the API is ready (503 still describes why)."""
        try:
            return self._json("GET", "/ready")
        except ApiError as error:
            if error.status == 503 and error.body.get("reasons") is not None:
                return error.body
            raise

    # -- signing in ----------------------------------------------------------------------------

    def login(self, username: str, password: str) -> dict:
        """{"token", "expires_at", "user", "permissions"}; 401 wrong username or password, 403 a
        disabled account, 429 too many failures (`retry_after` seconds in the body)."""
        return self._json("POST", "/api/v1/auth/login", json={"username": username, "password": password})

    def logout(self) -> dict:
        return self._json("POST", "/api/v1/auth/logout")

    def me(self) -> dict:
        """Who the token belongs to: username, display_name, role, kind, auth, permissions, expires_at."""
        return self._json("GET", "/api/v1/me")

    # -- predictions ---------------------------------------------------------------------------

    def schema(self) -> dict:
        return self._json("GET", "/api/v1/schema")

    def predict(self, records: list[dict], explain: bool = False) -> dict:
        path = "/api/v1/predict?explain=true" if explain else "/api/v1/predict"
        return self._json("POST", path, json={"records": records})

    def predict_batch(self, content: bytes, file_name: str) -> ScoredFile:
        response = self._send("POST", "/api/v1/predict/batch", timeout=SLOW,
                              files={"file": (file_name, content, "text/csv")})
        return ScoredFile(content=response.content,
                          file_name=_file_name(response, f"scored-{file_name}"),
                          request_id=response.headers.get("X-Request-Id", ""),
                          model_version=response.headers.get("X-Model-Version", ""))

    def feedback(self, request_id: str, label, row: int = 0) -> dict:
        items = [{"request_id": request_id, "row": row, "label": label}]
        return self._json("POST", "/api/v1/feedback", json={"items": items})

    # -- models --------------------------------------------------------------------------------

    def models(self) -> dict:
        return self._json("GET", "/api/v1/models")

    def compare(self, last: int = 5_000, top: int = 20) -> dict:
        """The champion against the challenger on the newest `last` shadowed live rows."""
        return self._json("GET", "/api/v1/models/compare", params={"last": last, "top": top})

    def disagreements_csv(self, last: int = 5_000) -> bytes:
        return self._send("GET", "/api/v1/models/compare/disagreements", params={"last": last},
                          timeout=SLOW).content

    def quality(self, window_minutes: int = 60, windows: int = 24) -> dict:
        return self._json("GET", "/api/v1/quality", timeout=SLOW,
                          params={"window_minutes": window_minutes, "windows": windows})

    def model_card(self, version: str | int) -> str:
        return self._json("GET", f"/api/v1/models/{version}/card")["markdown"]

    def promote(self, version: str | int, reason: str) -> dict:
        return self._json("POST", f"/api/v1/models/{version}/promote", json={"reason": reason},
                          timeout=(3.05, 90))

    def rollback(self) -> dict:
        return self._json("POST", "/api/v1/models/rollback", timeout=(3.05, 90))

    def champion_history(self) -> dict:
        """{"name", "periods": [{"version", "from", "to" (None: still serving), "moved_by", "reason",
        "job_id"}]}, oldest first."""
        return self._json("GET", "/api/v1/models/champion/history")

    def approvals(self, status: str | None = "pending") -> list[dict]:
        return self._json("GET", "/api/v1/approvals", params={"status": status} if status else {})["items"]

    def approve(self, version: str | int, comment: str) -> dict:
        return self._json("POST", f"/api/v1/models/{version}/approve", json={"comment": comment},
                          timeout=(3.05, 90))

    def reject(self, version: str | int, comment: str) -> dict:
        return self._json("POST", f"/api/v1/models/{version}/reject", json={"comment": comment})

    # -- data ----------------------------------------------------------------------------------

    def datasets(self) -> dict:
        return self._json("GET", "/api/v1/datasets")

    def upload_dataset(self, content: bytes, file_name: str) -> tuple[dict, bool]:
        """(job, created): the batch is validated at once (422 naming the fields, nothing changed),
        then a `dataset_upload` job adds it. A 409 means an upload job is already queued or
        running: that one (this batch was not kept)."""
        return self._job_started(lambda: self._json("POST", "/api/v1/datasets", timeout=SLOW,
                                                    files={"file": (file_name, content, "text/csv")}))

    # -- jobs ----------------------------------------------------------------------------------

    def start_job(self, kind: str, reason: str = "started from the console",
                  params: dict | None = None) -> tuple[dict, bool]:
        """(job, created): a 409 means one of this kind is already queued or running; that one."""
        body = {"kind": kind, "reason": reason, **({"params": params} if params else {})}
        return self._job_started(lambda: self._json("POST", "/api/v1/jobs", json=body))

    @staticmethod
    def _job_started(start) -> tuple[dict, bool]:
        try:
            return start(), True
        except ApiRejectedError as error:
            if error.status == 409 and isinstance(error.body.get("job"), dict):
                return error.body["job"], False
            raise

    def jobs(self, kind: str | None = None, status: str | None = None, limit: int = 20,
             offset: int = 0) -> dict:
        query = {"kind": kind, "status": status, "limit": limit, "offset": offset}
        return self._json("GET", "/api/v1/jobs", params={k: v for k, v in query.items() if v is not None})

    def job_catalogue(self, refresh: bool = False) -> dict:
        """GET /jobs/kinds, fetched once per client: {"kinds": [{"kind", "description",
        "started_by", "params", "steps"}], "states": {"active", "final"}}."""
        if refresh or self._catalogue is None:
            self._catalogue = self._json("GET", "/api/v1/jobs/kinds")
        return self._catalogue

    def job_steps(self, kind: str) -> list[str]:
        """The steps the worker runs for `kind`, in order (asked again for a kind not known yet)."""
        for refresh in (False, True):
            for entry in self.job_catalogue(refresh)["kinds"]:
                if entry["kind"] == kind:
                    return list(entry["steps"])
        return []

    def job_kinds(self) -> list[str]:
        """The kinds of job the API runs."""
        return [entry["kind"] for entry in self.job_catalogue()["kinds"]]

    def job(self, job_id: str) -> dict:
        return self._json("GET", f"/api/v1/jobs/{job_id}")

    def job_log(self, job_id: str) -> str | None:
        """The whole log where the API offers it (`/jobs/<id>/log`), else None: use the job's tail."""
        try:
            return self._send("GET", f"/api/v1/jobs/{job_id}/log").text
        except ApiRejectedError as error:
            if error.status == 404:
                return None
            raise

    def cancel_job(self, job_id: str) -> dict:
        return self._json("POST", f"/api/v1/jobs/{job_id}/cancel")

    # -- monitoring ----------------------------------------------------------------------------

    def reports(self, limit: int = 20, offset: int = 0) -> dict:
        """Drift reports (summaries), newest first."""
        return self._json("GET", "/api/v1/reports", params={"limit": limit, "offset": offset})

    def report(self, report_id: str) -> dict:
        return self._json("GET", f"/api/v1/reports/{report_id}")

    def report_html(self, report_id: str) -> str | None:
        """Evidently's page of a report; None when only its summary was kept."""
        try:
            return self._send("GET", f"/api/v1/reports/{report_id}/html", timeout=(3.05, 60)).text
        except ApiRejectedError as error:
            if error.status == 404:
                return None
            raise

    def emissions(self) -> dict:
        """CodeCarbon's record of every training run, oldest first."""
        return self._json("GET", "/api/v1/emissions")

    def predictions_summary(self, minutes: int = 60) -> dict:
        return self._json("GET", "/api/v1/predictions/summary", params={"minutes": minutes})

    def metrics_text(self) -> str:
        """The API's Prometheus exposition (GET /metrics, no token needed)."""
        return self._send("GET", "/metrics").text

    # -- users, tokens, audit (admin) ----------------------------------------------------------

    def users(self) -> list[dict]:
        return self._json("GET", "/api/v1/users")["items"]

    def create_user(self, username: str, role: str, display_name: str | None = None,
                    password: str | None = None, kind: str = "person") -> dict:
        body = {"username": username, "role": role, "kind": kind, "display_name": display_name,
                "password": password}
        return self._json("POST", "/api/v1/users", json={k: v for k, v in body.items() if v is not None})

    def change_user(self, username: str, **changes) -> dict:
        """Any of display_name, role, disabled, password; a role change, disabling or a new password
        ends that user's sessions."""
        return self._json("PATCH", f"/api/v1/users/{username}", json=changes)

    def tokens(self, owner: str | None = None) -> list[dict]:
        return self._json("GET", "/api/v1/tokens", params={"owner": owner} if owner else {})["items"]

    def create_token(self, owner: str, name: str, role: str, expires_days: int) -> dict:
        """The token's record plus `token`, the secret itself: the only time the API returns it."""
        return self._json("POST", "/api/v1/tokens", json={"owner": owner, "name": name, "role": role,
                                                          "expires_days": expires_days})

    def revoke_token(self, token_id: str) -> dict:
        return self._json("DELETE", f"/api/v1/tokens/{token_id}")

    def audit(self, limit: int = 100, offset: int = 0, **filters) -> dict:
        """{"items", "total", "limit", "offset"}, newest first; filters: actor, action, target (contains),
        since, until (ISO 8601)."""
        query = {k: v for k, v in filters.items() if v not in (None, "")}
        return self._json("GET", "/api/v1/audit", params={**query, "limit": limit, "offset": offset})

    def audit_verify(self) -> dict:
        """{"intact", "rows", "first_broken", "problem"}: the trail's hash chain checked end to end."""
        return self._json("GET", "/api/v1/audit/verify", timeout=(3.05, 60))
