"""The deployment's record of champion moves (table `model_switches`): for each move of a model's
`champion` alias, the version every API worker serves before and after it, and the instant they all
switch. The first worker to load a newly promoted version records its move; every worker, fresh or
long running, follows the newest record rather than the alias itself."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import sqlalchemy as sa

from control_api import db


@dataclasses.dataclass(frozen=True)
class Move:
    seq: int
    from_version: str | None  # None: the model's first version served (nothing to switch from)
    to_version: str
    switch_at: float  # seconds since the epoch

    def serving(self, now: float) -> str:
        """The version every worker serves at `now`."""
        return self.from_version if self.pending(now) else self.to_version

    def pending(self, now: float) -> bool:
        return self.from_version is not None and now < self.switch_at


class Moves:
    """The recorded moves of one model."""

    def __init__(self, engine: sa.Engine, model: str):
        self.engine, self.model = engine, model

    def latest(self) -> Move | None:
        table = db.model_switches
        query = (sa.select(table.c.seq, table.c.from_version, table.c.to_version, table.c.switch_at)
                 .where(table.c.model == self.model).order_by(table.c.seq.desc()).limit(1))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else Move(*row)

    def record(self, after: Move | None, from_version: str | None, to_version: str,
               switch_at: float) -> Move:
        """Record the move that follows `after`, and return the newest move: this one, or the one
        another worker recorded first (the same sequence number is taken only once)."""
        row = {"model": self.model, "seq": after.seq + 1 if after else 1, "from_version": from_version,
               "to_version": to_version, "switch_at": switch_at, "created_at": datetime.now(UTC)}
        try:
            with self.engine.begin() as connection:
                connection.execute(db.model_switches.insert().values(**row))
        except sa.exc.IntegrityError:
            pass  # another worker recorded this move first: everyone follows its row
        return self.latest()
