"""CodeCarbon around a piece of work: a real measurement, or an error, never a silent zero."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from ml import emissions
from ml.errors import EmissionsError


def busy_work() -> int:
    return sum(i * i for i in range(200_000))


def test_a_measured_block_has_energy_emissions_and_a_mode(state_dir):
    tracker = emissions.new_tracker("FRA", "test", measure_power_secs=1)
    with emissions.track(tracker) as measured:
        busy_work()
    assert measured.emissions_kg > 0 and measured.energy_kwh > 0 and measured.duration_s > 0
    assert measured.mode.startswith(("measured (", "estimated ("))
    assert set(measured.as_mlflow_metrics()) == {"emissions_kg_co2eq", "energy_consumed_kwh",
                                                 "emissions_duration_s"}
    assert (state_dir / "emissions" / "codecarbon" / "emissions.csv").is_file()


def test_no_measurement_is_an_error_not_zero(state_dir):
    # CodeCarbon 3 swallows this constructor error (the option was removed) and stop() returns None
    tracker = emissions.new_tracker("FRA", "test", measure_power_secs=1, default_cpu_power=10)
    with pytest.raises(EmissionsError, match="no measurement"), emissions.track(tracker):
        busy_work()


def test_the_emissions_table_keeps_one_row_per_training(state_dir):
    assert emissions.read_table() == []
    for run_id in ("a", "b"):
        emissions.append(emissions.Measurement(1e-6, 2e-6, 0.5, 5.0, 20.0, "estimated (CPU:x)"),
                         run_id=run_id, model_name="m", country_iso_code="FRA",
                         estimator="random_forest", rows=100)
    rows = emissions.read_table()
    assert [r["run_id"] for r in rows] == ["a", "b"]
    assert float(rows[0]["emissions_kg"]) == pytest.approx(1e-6)
    assert rows[1]["mode"] == "estimated (CPU:x)"
    assert list(rows[0]) == emissions.TABLE_COLUMNS


def run_fresh(code: str, state_dir) -> list[str]:
    """Lines printed by `code` run in a new interpreter (its own set of imported modules)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, capture_output=True,
                          text=True, env={**os.environ, "OPCON_HOME": str(state_dir)}).stdout.split()


def test_the_hardware_probe_imports_only_codecarbon_modules(state_dir):
    # ml.stage.run_stage() runs the probe (ml.training.hardware_probe) in a thread beside the train
    # stage's imports; two threads importing shared modules at once can deadlock, so the probe may
    # import nothing else (`__mp_main__` is multiprocessing's alias of the main module, not an import)
    imported = run_fresh("""
        import sys
        import concurrent.futures.thread  # what `python -m ml.train` has when run_stage() starts the probe
        from ml.stage import run_stage
        from ml.training import STAGE
        from ml import emissions
        tracker = emissions.new_tracker("FRA", "test", measure_power_secs=1, probe=False)
        before = set(sys.modules)
        emissions.probe_hardware(tracker)
        print(*sorted(set(sys.modules) - before))
        print("probed", tracker._hardware_initialized)
    """, state_dir)
    assert imported[-2:] == ["probed", "True"]
    assert all(name.split(".")[0] in {"codecarbon", "cpuinfo", "__mp_main__"}
               for name in imported[:-2]), imported


def test_a_stage_freezes_what_it_imported(state_dir):
    frozen = run_fresh("""
        import gc
        from ml import process
        process.import_and_freeze(["fractions"])
        import sys
        print("fractions" in sys.modules, gc.get_freeze_count() > 0)
    """, state_dir)
    assert frozen == ["True", "True"]
