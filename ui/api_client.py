"""The console's only way to the control API: HTTP with a bearer token, a timeout on every call.

Settings come from the environment: `OPCON_API_URL` (default http://127.0.0.1:8000), the token from
`OPCON_API_TOKEN` or the file `$OPCON_HOME/api_token` that the API writes (OPCON_HOME defaults to
`.opcon/` in the checkout). Failures are typed: `ApiUnavailableError` when nothing answers in time,
`ApiRejectedError` for a 4xx with the API's error body, `ApiFailedError` for a 5xx.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import requests

DEFAULT_URL = "http://127.0.0.1:8000"
REPO = Path(__file__).resolve().parents[1]
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


class ApiFailedError(ApiError):
    """5xx: the API answered with an error of its own."""


def state_dir() -> Path:
    return Path(os.environ.get("OPCON_HOME") or REPO / ".opcon")


def api_url() -> str:
    return (os.environ.get("OPCON_API_URL") or DEFAULT_URL).rstrip("/")


def api_token() -> str | None:
    if token := os.environ.get("OPCON_API_TOKEN"):
        return token
    path = state_dir() / "api_token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _problems(details) -> list[Problem]:
    if not isinstance(details, list):
        return []
    return [Problem(field=str(d.get("field", "")), problem=str(d.get("problem", "")),
                    count=d.get("count"), rows=d.get("rows"))
            for d in details if isinstance(d, dict)]


def _file_name(response: requests.Response, default: str) -> str:
    match = re.search(r'filename="([^"]+)"', response.headers.get("Content-Disposition", ""))
    return match.group(1) if match else default


@dataclasses.dataclass
class ScoredFile:
    content: bytes
    file_name: str
    request_id: str
    model_version: str


class ApiClient:
    def __init__(self, base_url: str | None = None, token: str | None = None):
        self.base_url = base_url or api_url()
        self.token = token if token is not None else api_token()
        self.session = requests.Session()
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
        if response.status_code == 401 and not self.token:
            message = ("no API token: set OPCON_API_TOKEN, or start the API (make run), which writes "
                       f"{state_dir() / 'api_token'}")
        kind = ApiRejectedError if response.status_code < 500 else ApiFailedError
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

    # -- predictions ---------------------------------------------------------------------------

    def schema(self) -> dict:
        return self._json("GET", "/api/v1/schema")

    def predict(self, records: list[dict]) -> dict:
        return self._json("POST", "/api/v1/predict", json={"records": records})

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

    def model_card(self, version: str | int) -> str:
        return self._json("GET", f"/api/v1/models/{version}/card")["markdown"]

    def promote(self, version: str | int, reason: str) -> dict:
        return self._json("POST", f"/api/v1/models/{version}/promote", json={"reason": reason},
                          timeout=(3.05, 90))

    def rollback(self) -> dict:
        return self._json("POST", "/api/v1/models/rollback", timeout=(3.05, 90))

    # -- data ----------------------------------------------------------------------------------

    def datasets(self) -> dict:
        return self._json("GET", "/api/v1/datasets")

    def upload_dataset(self, content: bytes, file_name: str) -> dict:
        return self._json("POST", "/api/v1/datasets", timeout=SLOW,
                          files={"file": (file_name, content, "text/csv")})

    # -- jobs ----------------------------------------------------------------------------------

    def start_job(self, kind: str, reason: str = "started from the console",
                  params: dict | None = None) -> tuple[dict, bool]:
        """(job, created): a 409 means one of this kind is already queued or running; that one."""
        body = {"kind": kind, "reason": reason, **({"params": params} if params else {})}
        try:
            return self._json("POST", "/api/v1/jobs", json=body), True
        except ApiRejectedError as error:
            if error.status == 409 and isinstance(error.body.get("job"), dict):
                return error.body["job"], False
            raise

    def jobs(self, kind: str | None = None, status: str | None = None, limit: int = 20,
             offset: int = 0) -> dict:
        query = {"kind": kind, "status": status, "limit": limit, "offset": offset}
        return self._json("GET", "/api/v1/jobs", params={k: v for k, v in query.items() if v is not None})

    def job_kinds(self) -> list[str]:
        """The kinds of job the API runs, as its OpenAPI spec lists them."""
        spec = self._json("GET", "/openapi.json")
        return list(spec["components"]["schemas"]["JobKind"]["properties"]["kind"].get("enum", []))

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
