"""What a run would do: status of every version, and the plan for up/down.

Pure functions over files and tracking rows: no I/O, so every refusal rule is
easy to read and to test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from vezamig.errors import UsageError
from vezamig.files import Migration, SqlFile
from vezamig.state import AppliedRow

if TYPE_CHECKING:
    from vezamig.directives import Directives

APPLIED = "applied"
PENDING = "pending"
OUT_OF_ORDER = "out-of-order"
MODIFIED = "modified"
MISSING = "missing"
DIRTY = "dirty"


class StatusRow(NamedTuple):
    """One version's state; a NamedTuple, as there is one per version of the history."""

    version: int
    name: str
    state: str
    reversible: bool
    migration: Migration | None
    applied: AppliedRow | None


def status_rows(migrations: list[Migration], applied: dict[int, AppliedRow]) -> list[StatusRow]:
    by_version = {m.version: m for m in migrations}
    highest = max(applied, default=0)
    versions = by_version.keys() | applied.keys()
    rows: list[StatusRow] = []
    for version in sorted(versions):
        m = by_version.get(version)
        a = applied.get(version)
        if a is None:
            assert m is not None
            state = OUT_OF_ORDER if version < highest else PENDING
            rows.append(StatusRow(version, m.name, state, m.reversible, m, None))
        elif m is None:
            rows.append(StatusRow(version, a.name, DIRTY if a.dirty else MISSING, False, None, a))
        else:
            state = DIRTY if a.dirty else MODIFIED if a.checksum != m.up.checksum else APPLIED
            rows.append(StatusRow(version, m.name, state, m.reversible, m, a))
    return rows


@dataclass(frozen=True)
class Step:
    migration: Migration
    direction: str  # "up" | "down"

    @property
    def file(self) -> SqlFile:
        f = self.migration.up if self.direction == "up" else self.migration.down
        assert f is not None, "a down step always has a down file (planning refuses otherwise)"
        return f

    @property
    def directives(self) -> Directives:
        return self.file.directives

    @property
    def version(self) -> int:
        return self.migration.version

    @property
    def mode(self) -> str:
        return "no-transaction" if self.directives.no_transaction else "transaction"


@dataclass
class Plan:
    direction: str
    steps: list[Step]
    target: int | None
    current: int
    stays: int | None = None  # for down: the version that stays applied (0 = none)
    refusals: list[str] = field(default_factory=list)
    # for down: chosen versions with no down file (version, name); they refuse the plan,
    # and the plan shows them in place, so that it lists every version it would touch
    irreversible: list[tuple[int, str]] = field(default_factory=list)


def _vezamig(args: str) -> str:
    return f"vezamig {args}"


def _drift_refusals(rows: list[StatusRow], command: Callable[[str], str]) -> list[str]:
    """``command`` renders a vezamig command line with the run's options (Config.command)."""
    reasons: list[str] = []
    for r in rows:
        if r.state == DIRTY:
            v = r.version
            reasons.append(
                f"version {v} ({r.name}) is dirty: a non-transactional step did not "
                f"finish; check the database, then `{command(f'repair --applied {v}')}` if "
                f"the version's changes are in place, or `{command(f'repair --rolled-back {v}')}`"
                " if they are not"
            )
        elif r.state == MODIFIED:
            assert r.migration is not None and r.applied is not None
            renamed = (
                f", and was applied under another name, {r.applied.name} (are --dir/--up-dir "
                "pointing at the right folder and branch?)"
                if r.applied.name != r.migration.name
                else ""
            )
            reasons.append(
                f"version {r.version} ({r.name}) is modified: {r.migration.up.path} changed "
                f"since it was applied (checksum {r.applied.checksum[:12]}… → "
                f"{r.migration.checksum[:12]}…){renamed}; restore the file, or if the edit is "
                "intentional and already reflected in the database, "
                f"`{command('repair --checksums')}`"
            )
        elif r.state == MISSING:
            reasons.append(
                f"version {r.version} ({r.name}) is missing: applied in the database but no up "
                "file has that version; are --dir/--up-dir pointing at the right folder and "
                "branch?"
            )
    return reasons


def plan_up(
    rows: list[StatusRow],
    to: int | None,
    allow_out_of_order: bool,
    command: Callable[[str], str] = _vezamig,
) -> Plan:
    current = max((r.version for r in rows if r.applied is not None), default=0)
    refusals = _drift_refusals(rows, command)
    steps: list[Step] = []
    out_of_order = [r for r in rows if r.state == OUT_OF_ORDER and (to is None or r.version <= to)]
    if out_of_order and not allow_out_of_order:
        listed = ", ".join(str(r.version) for r in out_of_order)
        refusals.append(
            f"out-of-order: pending version(s) {listed} sit below the highest applied "
            f"version {current}; apply them anyway with --allow-out-of-order, or renumber them"
        )
    for r in rows:
        if r.state in (PENDING, OUT_OF_ORDER) and (to is None or r.version <= to):
            assert r.migration is not None
            steps.append(Step(r.migration, "up"))
    return Plan("up", steps, to, current, refusals=refusals)


def plan_down(
    rows: list[StatusRow], to: int | None, command: Callable[[str], str] = _vezamig
) -> Plan:
    applied = [r for r in rows if r.applied is not None]
    current = max((r.version for r in applied), default=0)
    if to is not None and to != 0 and not any(r.version == to for r in applied):
        raise UsageError(
            f"--to {to}: version {to} is not applied; give 0 (roll back everything) or an "
            "applied version (see `vezamig status`)"
        )
    # Without --to: only the latest applied version.
    chosen = applied[-1:] if to is None else [r for r in applied if r.version > to]
    chosen = sorted(chosen, key=lambda r: r.version, reverse=True)
    refusals = _drift_refusals(rows, command)
    irreversible = [r for r in chosen if r.migration is None or not r.migration.reversible]
    if irreversible:
        listed = ", ".join(f"{r.version} ({r.name})" for r in irreversible)
        refusals.append(f"irreversible: no down file for {listed}; nothing was rolled back")
    steps = [
        Step(r.migration, "down")
        for r in chosen
        if r.migration is not None and r.migration.reversible
    ]
    chosen_versions = {r.version for r in chosen}
    remaining = [r.version for r in applied if r.version not in chosen_versions]
    stays = max(remaining, default=0)
    blocked = [(r.version, r.name) for r in irreversible]
    return Plan("down", steps, to, current, stays=stays, refusals=refusals, irreversible=blocked)
