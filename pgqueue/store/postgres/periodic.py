"""``periodic.sql``: declarations' rows, the round's one write, listings."""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.store.periodic_rows import PeriodicDeclaration, PeriodicFire, PeriodicFired, PeriodicRow

from .pool import StoreBase

__all__ = ["PeriodicMixin"]


class PeriodicMixin(StoreBase):
    """``periodic.sql``: one method per statement."""

    async def periodic_declare_many(self, rows: Sequence[PeriodicDeclaration]) -> None:
        """Insert the declarations' rows, or update what changed (last_tick stays)."""
        if not rows:
            return
        await self.pool.execute(
            self.q.periodic_declare_many,
            [r.name for r in rows],
            [r.schedule for r in rows],
            [r.type for r in rows],
            [r.queue for r in rows],
        )

    async def periodic_fire_many(self, fires: Sequence[PeriodicFire]) -> list[PeriodicFired]:
        """Consume the ticks newer than their rows' last ones and enqueue their jobs: one statement."""
        rows = await self.pool.fetch(self.q.periodic_fire_many, *self.fire_args(fires))
        return [PeriodicFired(r["name"], r["tick"], r["job_id"], r["note"]) for r in rows]

    def fire_args(self, fires: Sequence[PeriodicFire]) -> tuple[object, ...]:
        """``periodic_fire_many``'s parameters: one array per column, then the channel."""
        return (
            [f.name for f in fires],
            [f.tick for f in fires],
            [f.fresh for f in fires],
            [f.catch_up for f in fires],
            [f.overlap for f in fires],
            [f.jobs.type for f in fires],
            [f.jobs.queue for f in fires],
            [f.params for f in fires],
            [f.jobs.priority for f in fires],
            [f.jobs.timeout_s for f in fires],
            self.channel,
        )

    async def periodic_list(self) -> list[PeriodicRow]:
        """Every row, by name, with its last job's state."""
        rows = await self.pool.fetch(self.q.periodic_list)
        return [
            PeriodicRow(
                r["name"],
                r["schedule"],
                r["type"],
                r["queue"],
                r["last_tick"],
                r["last_job_id"],
                r["last_note"],
                r["last_state"],
            )
            for r in rows
        ]

    async def periodic_delete(self, name: str) -> bool:
        """Delete a declaration's row; False when there was none."""
        status: str = await self.pool.execute(self.q.periodic_delete, name)
        return status.rsplit(maxsplit=1)[-1] != "0"
