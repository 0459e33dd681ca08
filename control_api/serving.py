"""The champion in memory: loaded once per worker, swapped whole when the registry alias moves.

A request takes one reference to the ServedModel at its start, so it is answered by one version
from start to end even when a promotion lands in the middle; the response names that version. The
workers of a deployment switch at one recorded instant (see Champion).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from control_api.errors import APIError
from control_api.model_switches import Move, Moves
from ml import config as ml_config
from ml import registry
from ml.schema import Schema

log = logging.getLogger(__name__)

MOVES_READ_SECONDS = 0.5  # how often a worker loading a new version reads the recorded moves
LOAD_GIVE_UP_SECONDS = 600.0  # a load that hangs (a stuck artifact store) frees the watcher


@dataclasses.dataclass
class ServedModel:
    name: str
    version: str
    schema: Schema
    pipeline: object
    classes: list
    threshold: float | None
    onnx: object | None = None
    onnx_max_rows: int = 2_000
    _explainer: object = dataclasses.field(default=None, repr=False)
    _explainer_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def explainer(self, background=None):
        """This version's own explainer (ml.explanations), built on first use; `background()` gives
        rows like the training data, for the explainers that need them (not a tree model's)."""
        with self._explainer_lock:
            if self._explainer is None:
                from ml.explanations import TREE_MODELS, Explainer

                model = self.pipeline.named_steps["model"]
                needs_rows = type(model).__name__ not in TREE_MODELS
                rows = background() if needs_rows and background else None
                self._explainer = Explainer(self.pipeline, self.schema, rows)
            return self._explainer

    def predict_proba(self, columns: dict[str, np.ndarray], rows: int) -> tuple[np.ndarray, str]:
        """Class probabilities, and which path computed them (`onnx` or `sklearn`)."""
        if self.onnx is not None and rows <= self.onnx_max_rows:
            return self.onnx.predict_proba(columns), "onnx"
        frame = pd.DataFrame({name: columns[name] for name in self.schema.feature_names})
        return self.pipeline.predict_proba(frame), "sklearn"

    def labels(self, proba: np.ndarray) -> np.ndarray:
        classes = np.asarray(self.classes, dtype=object)
        target = self.schema.target
        if self.threshold is None or not target.is_binary:
            return classes[np.argmax(proba, axis=1)]
        positive = self.classes.index(target.positive)
        return np.where(proba[:, positive] >= self.threshold, classes[positive], classes[1 - positive])

    def outputs(self, proba: np.ndarray) -> dict[str, np.ndarray]:
        """Per-row outputs as columns: label, text, and the probability (or one per class)."""
        labels = self.labels(proba)
        target = self.schema.target
        names = {c: target.label(c) for c in self.classes}  # a few classes, many rows
        out = {"label": labels,
               "label_text": np.array([names[v] for v in labels.tolist()], dtype=object)}
        if self.positive_index is not None:
            out["probability"] = proba[:, self.positive_index]
        else:
            for index, klass in enumerate(self.classes):
                out[f"probability_{klass}"] = proba[:, index]
        return out

    @property
    def positive_index(self) -> int | None:
        target = self.schema.target
        return self.classes.index(target.positive) if target.is_binary else None


def _load_onnx(client, version):
    if version.tags.get("onnx") != "ok":
        return None
    from ml.export import OnnxModel

    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(version.run_id, "onnx/model.onnx", tmp)
        return OnnxModel(Path(path).read_bytes())


def load(name: str, version: str, schema: Schema, onnx_max_rows: int = 2_000) -> ServedModel:
    client = registry.client()
    found = client.get_model_version(name, str(version))
    pipeline = registry.load_sklearn(name, version)
    threshold = found.tags.get("threshold") or None
    try:
        onnx = _load_onnx(client, found)
    except Exception:  # ONNX is an accelerator: without it scikit-learn serves
        log.exception("ONNX model of version %s could not be loaded; serving with scikit-learn",
                      version)
        onnx = None
    return ServedModel(name=name, version=str(version), schema=schema, pipeline=pipeline,
                       classes=pipeline.classes_.tolist(),
                       threshold=float(threshold) if threshold else None, onnx=onnx,
                       onnx_max_rows=onnx_max_rows)


class Switch:
    """A version this worker serves from `at` (seconds since the epoch) on. Until it has loaded, the
    requests due to get it wait for it rather than get the version it replaces."""

    def __init__(self, version: str, at: float):
        self.version, self.at = version, at
        self.model: ServedModel | None = None
        self.error: str | None = None
        self.settled = threading.Event()  # loaded, or failed to
        # a due switch it replaced before that one had loaded here: until `at`, requests wait for
        # it (then 503) as they did, never get the version it replaced
        self.held_back: Switch | None = None

    def loaded(self, model: ServedModel) -> None:
        self.model = model
        self.settled.set()

    def failed(self, error: str) -> None:
        self.error = error
        self.settled.set()


def _not_served(switch: Switch) -> APIError:
    problem = switch.error or "it is still loading"
    return APIError(503, f"version {switch.version} of the model is not served yet ({problem}): "
                    "try again shortly", headers={"Retry-After": "5"}, reason="model loading")


class Champion:
    """Holds the served model; a daemon thread follows the registry's `champion` alias.

    With the database (`engine`), all the workers of a deployment switch to a newly promoted version
    at one instant, recorded in its table `model_switches`: the first worker to have loaded the new
    version records the move `lead_seconds` ahead, the others load it meanwhile, and each request
    picks its version by the clock (no I/O). So once a response has named the new version, no later
    request gets the version it replaced. A worker that has not loaded it in time (it reads the moves
    while it loads) makes the requests due to get it wait (`wait_seconds` at most, then 503) rather
    than answer with the old one; one whose watcher has not read the moves for half the lead reads
    them in the request.
    Without the database a worker switches as soon as it has loaded the new version.
    """

    def __init__(self, name: str, schema: Schema, poll_seconds: float, onnx_max_rows: int = 2_000,
                 *, engine: sa.Engine | None = None, lead_seconds: float = 5.0,
                 wait_seconds: float = 30.0):
        self.name, self.schema = name, schema
        self.poll_seconds, self.onnx_max_rows = poll_seconds, onnx_max_rows
        self.lead_seconds, self.wait_seconds = lead_seconds, wait_seconds
        self.moves = Moves(engine, name) if engine is not None else None
        self.last_error: str | None = None
        self._serving: ServedModel | None = None
        self._next: Switch | None = None
        self._refresh_lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._moves_unreadable = False
        self._moves_read_at = 0.0  # time.time() when the last read of the moves that answered began
        self._catch_up_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- per request: no I/O ---------------------------------------------------------------------
    def get(self) -> ServedModel:
        """The model one request is answered with, from start to end."""
        self._catch_up()
        upcoming = self._next
        if upcoming is not None and time.time() >= upcoming.at:
            return self._take(upcoming)
        if upcoming is not None and upcoming.held_back is not None:
            return self._take(upcoming.held_back)
        served = self._serving
        if served is None:  # the first request of a worker whose watcher has not loaded it yet
            self.refresh()
            upcoming, served = self._next, self._serving
            if upcoming is not None and time.time() >= upcoming.at:
                return self._take(upcoming)
        if served is None:
            raise APIError(503, self.last_error or "no champion model is loaded")
        return served

    def ready(self) -> ServedModel | None:
        """What get() returns when that needs no wait and no load; None when it would need either
        (no model yet, or a switch that is due but still loading)."""
        self._catch_up()
        upcoming = self._next
        if upcoming is not None and time.time() >= upcoming.at:
            return self._take(upcoming) if upcoming.model is not None else None
        if upcoming is not None and upcoming.held_back is not None:
            return upcoming.held_back.model
        return self._serving

    @property
    def current(self) -> ServedModel | None:
        """The model a request would be answered with now (None before the first load)."""
        upcoming = self._next
        if upcoming is not None and upcoming.model is not None and time.time() >= upcoming.at:
            return upcoming.model
        if upcoming is not None and upcoming.held_back is not None:
            return upcoming.held_back.model
        return self._serving

    def _catch_up(self) -> None:
        """A move another worker records is due `lead_seconds` after it; a worker whose watcher has
        not read the moves for half of that (blocked on the registry, or starved of CPU) may have
        missed one, so the request reads them itself: one query, and only then."""
        if self.moves is None or time.time() - self._moves_read_at < self.lead_seconds / 2:
            return
        with self._catch_up_lock:
            if time.time() - self._moves_read_at < self.lead_seconds / 2:
                return  # another request just read them
            try:
                move = self._read_moves()
            except sa.exc.SQLAlchemyError:
                self._moves_read_at = time.time()  # unreadable: the watcher says so; not per request
                return
            if move is None or (self._serving is None and self._next is None):
                return  # nothing served yet: the first request loads what the moves say
            upcoming, now = self._next, time.time()
            if move.pending(now):
                if upcoming is None or (upcoming.version, upcoming.at) != (move.to_version, move.switch_at):
                    self._load_in_background(move.to_version, move.switch_at)
            elif self._version_at(now) != move.to_version and not (
                    upcoming is not None and upcoming.version == move.to_version and not upcoming.error):
                log.warning("%s: version %s is due and this worker had not read its move: "
                            "requests wait for its load", self.name, move.to_version)
                self._load_in_background(move.to_version, move.switch_at)

    def _load_in_background(self, version: str, at: float) -> None:
        loading = Switch(version, float("inf"))
        self._publish(loading, at)
        ml_config.thread(self._load_into, loading, name="champion-loader").start()

    def _read_moves(self) -> Move | None:
        asked = time.time()
        move = self.moves.latest()
        self._moves_read_at = asked
        return move

    def _take(self, upcoming: Switch) -> ServedModel:
        if not upcoming.settled.wait(self.wait_seconds) or upcoming.model is None:
            raise _not_served(upcoming)
        with self._swap_lock:
            if self._next is upcoming:
                self._serving, self._next = upcoming.model, None
                log.info("serving %s version %s", self.name, upcoming.version)
        return upcoming.model

    # -- following the alias (the watcher thread, and the routes that move it) --------------------
    def refresh(self) -> bool:
        """Follow the alias; True when this worker loaded a version to serve, now or at the instant
        recorded for its move."""
        with self._refresh_lock:
            try:
                found = registry.champion(self.name)
                if found is None:
                    self.last_error = f"model `{self.name}` has no champion yet"
                    return False
                changed = self._follow(str(found.version))
            except Exception as error:  # keep serving the model we have
                self.last_error = f"could not load the champion: {error}"
                log.exception("champion refresh failed")
                return False
            self.last_error = None
            return changed

    def _follow(self, alias: str) -> bool:
        if self.moves is None:
            return self._serve_at_once(alias)
        try:
            move = self._read_moves()
        except sa.exc.SQLAlchemyError as error:
            return self._without_moves(alias, error)
        self._moves_unreadable = False
        preloaded, adopted = None, False
        if move is None or (alias != move.to_version and not move.pending(time.time())):
            # a move no worker has recorded yet (one made while another is pending waits for it):
            # load the new version while the current one serves, then record the switch
            seen = move
            preloaded, move = self._load_watching_moves(alias, move)
            adopted = move != seen and move.to_version == alias  # recorded by another meanwhile
            if move == seen:
                deployed = move.to_version if move else None
                lead = self.lead_seconds if deployed is not None else 0.0
                move = self.moves.record(move, deployed, alias, time.time() + lead)
                log.info("%s: version %s follows %s; every worker serves it in %.1f s", self.name,
                         move.to_version, move.from_version, move.switch_at - time.time())
        return self._apply(move, preloaded) or adopted

    def _load_watching_moves(self, version: str, seen: Move | None) -> tuple[ServedModel, Move | None]:
        """Load `version`, reading the recorded moves meanwhile: a load can outlast the lead of the
        move another worker records for it, so as soon as that move is read, the requests due to
        get `version` wait for this load instead of getting the version it replaces."""
        loading = Switch(version, float("inf"))
        loader = ml_config.thread(self._load_into, loading, name="champion-loader")
        loader.start()
        latest, deadline = seen, time.monotonic() + LOAD_GIVE_UP_SECONDS
        while not loading.settled.wait(MOVES_READ_SECONDS) and time.monotonic() < deadline:
            with contextlib.suppress(sa.exc.SQLAlchemyError):  # read again at the next turn
                latest = self._read_moves()
            if latest != seen and latest.to_version == version:
                self._publish(loading, latest.switch_at)
                break
        if not loading.settled.wait(max(0.0, deadline - time.monotonic())):
            loading.failed(f"still loading after {LOAD_GIVE_UP_SECONDS:.0f} s")  # the next turn retries
        if loading.model is None:
            raise RuntimeError(loading.error)
        return loading.model, latest

    def _publish(self, loading: Switch, at: float) -> None:
        """Requests from `at` on get `loading`'s model (waiting for it while it loads)."""
        loading.at = at
        self._replace_next(loading)

    def _replace_next(self, switch: Switch) -> None:
        """`switch` is the next one; an earlier one already due is served until its instant (or,
        not loaded here, still waited for: never the version that one replaced)."""
        upcoming, now = self._next, time.time()
        if upcoming is not None and now >= upcoming.at:
            if upcoming.model is not None:
                self._take(upcoming)
            elif switch.at > now and upcoming.version != switch.version:
                upcoming.held_back, switch.held_back = None, upcoming
        with self._swap_lock:
            self._next = switch

    def _load_into(self, switch: Switch) -> None:
        try:
            switch.loaded(self._load(switch.version))
        except Exception as error:
            switch.failed(str(error) or type(error).__name__)

    def _apply(self, move: Move, preloaded: ServedModel | None) -> bool:
        now, changed = time.time(), False
        upcoming = self._next
        if upcoming is not None and upcoming.model is not None and now >= upcoming.at:
            self._take(upcoming)
        upcoming = self._next
        next_in_hand = move.pending(now) and upcoming is not None and not upcoming.error and \
            (upcoming.version, upcoming.at) == (move.to_version, move.switch_at)
        if not next_in_hand and self._version_at(now) != move.serving(now):
            # a fresh worker, or one that missed a move: its requests wait for the version the
            # others serve, never get an older one
            changed = self._prepare(move.serving(now), 0.0, preloaded)
        upcoming = self._next
        if move.pending(now) and (upcoming is None or upcoming.error or
                                  (upcoming.version, upcoming.at) != (move.to_version, move.switch_at)):
            changed = self._prepare(move.to_version, move.switch_at, preloaded) or changed
        return changed

    def _version_at(self, now: float) -> str | None:
        upcoming = self._next
        if upcoming is not None and now >= upcoming.at:
            return None if upcoming.error else upcoming.version
        if upcoming is not None and upcoming.held_back is not None:
            return None if upcoming.held_back.error else upcoming.held_back.version
        return self._serving.version if self._serving else None

    def _prepare(self, version: str, at: float, preloaded: ServedModel | None = None) -> bool:
        upcoming = Switch(version, at)
        self._replace_next(upcoming)
        try:
            model = preloaded if preloaded is not None and preloaded.version == version else \
                self._load(version)
        except Exception as error:
            upcoming.failed(str(error))
            raise
        upcoming.loaded(model)
        if time.time() >= at:
            self._take(upcoming)
        else:
            log.info("%s version %s loaded; served in %.1f s", self.name, version, at - time.time())
        return True

    def _serve_at_once(self, alias: str) -> bool:
        served = self.current
        if served is not None and served.version == alias:
            return False
        return self._prepare(alias, 0.0, self._load(alias))  # the old one serves while it loads

    def _without_moves(self, alias: str, error: Exception) -> bool:
        """The database is unreachable: keep serving (predictions do not need it); a worker with
        nothing loaded yet serves the registry's champion."""
        if not self._moves_unreadable:
            log.warning("the recorded champion moves cannot be read (%s): %s", type(error).__name__,
                        "no switch until they can" if self.current else f"serving version {alias}")
            self._moves_unreadable = True
        return False if self.current is not None else self._serve_at_once(alias)

    def _load(self, version: str) -> ServedModel:
        return load(self.name, version, self.schema, self.onnx_max_rows)

    def start(self) -> None:
        if self._thread is None and self.poll_seconds > 0:
            self._thread = ml_config.thread(self._watch, name="champion-watcher")
            self._thread.start()

    def _watch(self) -> None:
        while True:
            self.refresh()
            time.sleep(self.poll_seconds)
