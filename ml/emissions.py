"""CodeCarbon around training, offline, and the emissions table the dashboards read."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from ml import config
from ml.errors import EmissionsError

TABLE_COLUMNS = ["timestamp", "run_id", "model_name", "duration_s", "energy_kwh", "emissions_kg",
                 "cpu_power_w", "ram_power_w", "mode", "country_iso_code", "estimator", "rows"]


@dataclasses.dataclass
class Measurement:
    emissions_kg: float = float("nan")
    energy_kwh: float = float("nan")
    duration_s: float = float("nan")
    cpu_power_w: float = float("nan")
    ram_power_w: float = float("nan")
    mode: str = "unknown"

    def as_mlflow_metrics(self) -> dict[str, float]:
        return {"emissions_kg_co2eq": self.emissions_kg, "energy_consumed_kwh": self.energy_kwh,
                "emissions_duration_s": self.duration_s}


def _tracking_mode(tracker) -> str:
    """`measured (...)` when CodeCarbon read power counters (RAPL, NVML), else `estimated (...)`."""
    modes = []
    for device in getattr(tracker, "_hardware", []):
        mode = getattr(device, "_mode", None) or type(device).__name__
        modes.append(f"{type(device).__name__}:{mode}")
    measured = any(("rapl" in m.lower() or "GPU" in m) for m in modes)
    return f"{'measured' if measured else 'estimated'} ({', '.join(modes) or 'no hardware found'})"


def new_tracker(country_iso_code: str, project_name: str, measure_power_secs: float = 15, *,
                probe: bool = True, **tracker_options):
    """CodeCarbon's offline tracker; with `probe`, its hardware detected too (see probe_hardware)."""
    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    output = config.emissions_dir() / "codecarbon"
    output.mkdir(parents=True, exist_ok=True)
    tracker = OfflineEmissionsTracker(country_iso_code=country_iso_code, output_dir=str(output),
                                      project_name=project_name, log_level="error",
                                      measure_power_secs=measure_power_secs, save_to_file=True,
                                      **tracker_options)
    if probe:
        probe_hardware(tracker)
    return tracker


def probe_hardware(tracker) -> None:
    """Detect the hardware, once per process (later trackers reuse the result): about a second,
    mostly waiting on a child process that times the CPU clock.

    CodeCarbon 3.3 does this lazily in start(), inside the measured block; calling it ahead lets the
    caller overlap it with other work. It imports nothing beyond CodeCarbon's own modules, so it
    may run in a thread beside another import. A tracker whose constructor failed lacks the flag;
    track() reports it when stop() returns None.
    """
    if hasattr(tracker, "_hardware_initialized"):
        tracker._ensure_hardware_ready()


@contextlib.contextmanager
def track(tracker):
    """Measure the block; yields a Measurement filled in when the block ends.

    CodeCarbon swallows its own errors and then returns None from stop(): that is an
    EmissionsError here, never zero emissions.
    """
    measurement = Measurement()
    started = time.perf_counter()
    tracker.start()
    try:
        yield measurement
    finally:
        emissions = tracker.stop()
    if emissions is None:
        raise EmissionsError("CodeCarbon returned no measurement (see its log above)")
    data = tracker.final_emissions_data
    measurement.emissions_kg = float(emissions)
    measurement.energy_kwh = float(data.energy_consumed)
    measurement.duration_s = float(getattr(data, "duration", time.perf_counter() - started))
    measurement.cpu_power_w = float(data.cpu_power)
    measurement.ram_power_w = float(data.ram_power)
    measurement.mode = _tracking_mode(tracker)


def table_path() -> Path:
    return config.emissions_dir() / "training_runs.csv"


def append(measurement: Measurement, *, run_id: str, model_name: str, country_iso_code: str,
           estimator: str, rows: int) -> None:
    path = table_path()
    new = not path.exists()
    row = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"), "run_id": run_id,
           "model_name": model_name, "country_iso_code": country_iso_code, "estimator": estimator,
           "rows": rows, **dataclasses.asdict(measurement)}
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_table() -> list[dict]:
    path = table_path()
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
