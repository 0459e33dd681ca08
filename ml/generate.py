"""The default data set: milling-machine readings following the AI4I 2020 generation process.

Matzka, "Explainable Artificial Intelligence for Predictive Maintenance Applications", 2020.
Each row is one process on the machine; failure modes are computed from the readings, so the
rules hold exactly on every generated row. `Shift` moves the process for drifted production data.

    python -m ml.generate --rows 500 --seed 7 --air-shift 5 --out hot.csv
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

TYPES = ("L", "M", "H")
WEAR_PER_PROCESS = {"L": 2, "M": 3, "H": 5}
OVERSTRAIN_LIMIT = {"L": 11_000, "M": 12_000, "H": 13_000}  # min·Nm
RANDOM_FAILURE_RATE = 0.001
POWER_W = 2860.0
# The published speed range (≈1170–2890 rpm, mean ≈1540) sits on a constant-power curve
# rpm = BASE + SCALE·P/τ; these two constants put its mean at the published one.
SPEED_BASE_RPM = 1000.0
SPEED_SCALE = 7.0


@dataclasses.dataclass(frozen=True)
class Shift:
    """How production differs from the reference process (all zero/one: no drift)."""

    air_temperature_k: float = 0.0
    process_temperature_k: float = 0.0
    torque_nm: float = 0.0
    rotational_speed_rpm: float = 0.0
    type_mix: tuple[float, float, float] = (0.5, 0.3, 0.2)
    tool_life_factor: float = 1.0


def _normalised_walk(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    walk = np.cumsum(rng.normal(0.0, 1.0, n))
    spread = walk.std() or 1.0
    return (walk - walk.mean()) / spread * sigma


def _tool_wear(rng, types, life_factor) -> tuple[np.ndarray, np.ndarray]:
    """Wear accumulates per process; at a random 200–240 min the tool is replaced or fails."""
    wear = np.empty(len(types), dtype=np.int64)
    failed = np.zeros(len(types), dtype=bool)
    current = 0
    limit = rng.uniform(200, 240) * life_factor
    for i, kind in enumerate(types):
        current += WEAR_PER_PROCESS[kind]
        wear[i] = current
        if current >= limit:
            failed[i] = rng.random() < 0.5  # replaced in time or failed at this point
            current = 0
            limit = rng.uniform(200, 240) * life_factor
    return wear, failed


def generate(rows: int, seed: int, shift: Shift = Shift(), first_id: int = 1) -> pd.DataFrame:
    if rows <= 0:
        raise ValueError("rows must be positive")
    rng = np.random.default_rng(seed)
    mix = np.asarray(shift.type_mix, dtype=float)
    types = rng.choice(TYPES, size=rows, p=mix / mix.sum())

    air = 300.0 + _normalised_walk(rng, rows, 2.0) + shift.air_temperature_k
    process = air + 10.0 + _normalised_walk(rng, rows, 1.0) + shift.process_temperature_k
    torque = rng.normal(40.0, 10.0, rows)
    while (negative := torque <= 0).any():
        torque[negative] = rng.normal(40.0, 10.0, negative.sum())
    torque = np.round(torque + shift.torque_nm, 1).clip(0.1)
    speed = SPEED_BASE_RPM + SPEED_SCALE * POWER_W / torque * rng.normal(1.0, 0.03, rows)
    speed = np.round(speed + shift.rotational_speed_rpm).clip(1168, 2886).astype(np.int64)
    air, process = np.round(air, 1), np.round(process, 1)
    wear, twf = _tool_wear(rng, types, shift.tool_life_factor)

    power_w = torque * speed * 2 * np.pi / 60
    hdf = ((process - air) < 8.6) & (speed < 1380)
    pwf = (power_w < 3500) | (power_w > 9000)
    osf = wear * torque > np.vectorize(OVERSTRAIN_LIMIT.get)(types)
    rnf = rng.random(rows) < RANDOM_FAILURE_RATE
    failure = twf | hdf | pwf | osf | rnf

    ids = np.arange(first_id, first_id + rows)
    serials = first_id + 10_000 + rng.permutation(rows)  # unique, and disjoint across id ranges
    return pd.DataFrame({
        "udi": ids,
        "product_id": [f"{t}{s}" for t, s in zip(types, serials, strict=True)],
        "type": types,
        "air_temperature_k": air,
        "process_temperature_k": process,
        "rotational_speed_rpm": speed,
        "torque_nm": torque,
        "tool_wear_min": wear,
        "twf": twf.astype(int),
        "hdf": hdf.astype(int),
        "pwf": pwf.astype(int),
        "osf": osf.astype(int),
        "rnf": rnf.astype(int),
        "machine_failure": failure.astype(int),
    })


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate milling-machine data (AI4I 2020 process).")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--first-id", type=int, default=1)
    parser.add_argument("--air-shift", type=float, default=0.0, help="K added to air temperature")
    parser.add_argument("--process-shift", type=float, default=0.0, help="K added to process temp.")
    parser.add_argument("--torque-shift", type=float, default=0.0, help="Nm added to torque")
    parser.add_argument("--speed-shift", type=float, default=0.0, help="rpm added to speed")
    parser.add_argument("--type-mix", type=float, nargs=3, default=(0.5, 0.3, 0.2),
                        metavar=("L", "M", "H"))
    parser.add_argument("--tool-life", type=float, default=1.0, help="factor on tool life")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    shift = Shift(args.air_shift, args.process_shift, args.torque_shift, args.speed_shift,
                  tuple(args.type_mix), args.tool_life)
    write_csv(generate(args.rows, args.seed, shift, args.first_id), args.out)
    print(f"wrote {args.rows} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
