"""What training cost, in units people read: one unit per quantity for a whole page (g or mg when kg
would need many zeros), and a distance driven by car for scale.

Rows come from GET /emissions: one per training run, oldest first.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from ui.components import formatting

# The order of magnitude of the UK government's GHG conversion factors for an average petrol car in
# recent years (roughly 0.16 to 0.18 kg CO2e per vehicle-km). An assumption for scale, said on the page.
CAR_KG_PER_KM = 0.17
CAR_FACTOR_SOURCE = ("an average petrol car emits about 0.17 kg CO₂eq per km (the order of the UK "
                     "government's GHG conversion factors for an average petrol car; for scale only)")
UNVERSIONED = "not registered"


@dataclasses.dataclass(frozen=True)
class Unit:
    symbol: str
    per_base: float  # how many of this unit make one base unit (kg, kWh, s)

    def of(self, value: float | None) -> float | None:
        return None if value is None else value * self.per_base

    def text(self, value: float | None) -> str:
        return "—" if value is None else f"{significant(self.of(value))} {self.symbol}"


MASS = (Unit("kg", 1), Unit("g", 1e3), Unit("mg", 1e6))  # of CO₂eq
ENERGY = (Unit("kWh", 1), Unit("Wh", 1e3), Unit("mWh", 1e6))
TIME = (Unit("h", 1 / 3600), Unit("min", 1 / 60), Unit("s", 1))
LENGTH = (Unit("km", 1), Unit("m", 1e3), Unit("cm", 1e5), Unit("mm", 1e6))


def significant(value: float) -> str:
    """Three significant digits, thousands separated: 0.122, 12.2, 1,220."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def unit_for(values, units: tuple[Unit, ...]) -> Unit:
    """The largest unit in which the largest value is at least 1 (the smallest unit otherwise)."""
    present = [abs(v) for v in values if v is not None and pd.notna(v)]
    largest = max(present, default=0.0)
    return next((u for u in units if largest * u.per_base >= 1), units[-1])


def units(frame: pd.DataFrame) -> dict[str, Unit]:
    """The unit each quantity of the runs is shown in, by column of `runs_frame`."""
    return {"emissions_kg_co2eq": unit_for(frame["emissions_kg_co2eq"], MASS),
            "energy_kwh": unit_for(frame["energy_kwh"], ENERGY),
            "duration_s": unit_for(frame["duration_s"], TIME)}


def car_distance(kilograms: float) -> str:
    kilometres = kilograms / CAR_KG_PER_KM
    return unit_for([kilometres], LENGTH).text(kilometres)


def comparison(total_kg: float, newest_kg: float | None, runs: int) -> str:
    """One sentence: the whole and the newest run, each as a distance driven by car."""
    mass = unit_for([total_kg], MASS)
    what = "The training run" if runs == 1 else f"The {runs} training runs together"
    text = (f"{what} emitted {mass.text(total_kg)} CO₂eq: as much as an average petrol car driving "
            f"**{car_distance(total_kg)}**")
    if runs > 1 and newest_kg is not None:
        newest = unit_for([newest_kg], MASS).text(newest_kg)
        text += f"; the newest run alone {newest} CO₂eq, {car_distance(newest_kg)}"
    return text + "."


def tracking_mode(runs: list[dict]) -> tuple[str, str]:
    """("measured" | "estimated" | "measured and estimated" | "unknown", how the newest run was read)."""
    modes = sorted({r["tracking_mode"] for r in runs if r["tracking_mode"] != "unknown"})
    mode = " and ".join(modes) if modes else "unknown"
    return mode, (runs[-1].get("tracking_detail") if runs else "") or "not recorded"


def runs_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per run, oldest first, with a label per run and the primary metric's gain over the best
    earlier run (None for the first)."""
    frame = pd.DataFrame(runs)
    frame["timestamp"] = frame["timestamp"].map(formatting.timestamp)
    frame["version"] = frame["model_version"].map(lambda v: f"v{v}" if v else UNVERSIONED)
    frame["run"] = [f"{stamp:%d %b %H:%M} · {version}" for stamp, version
                    in zip(frame["timestamp"], frame["version"], strict=True)]
    best_before = frame["primary_metric_value"].cummax().shift(1)
    frame["metric_gain"] = frame["primary_metric_value"] - best_before
    frame["cumulative_kg"] = frame["emissions_kg_co2eq"].fillna(0.0).cumsum()
    return frame


def by_version(frame: pd.DataFrame) -> pd.DataFrame:
    """Totals per model version (retrains that registered no version grouped together)."""
    totals = frame.groupby("version", sort=False).agg(
        emissions_kg_co2eq=("emissions_kg_co2eq", "sum"), energy_kwh=("energy_kwh", "sum"),
        duration_s=("duration_s", "sum"), runs=("run_id", "count")).reset_index()
    order = totals["version"].map(lambda v: int(v[1:]) if v != UNVERSIONED else 10**9)
    return totals.assign(_order=order).sort_values("_order").drop(columns="_order").reset_index(drop=True)
