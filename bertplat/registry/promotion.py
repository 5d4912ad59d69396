"""Aliases and gated promotion.

An alias (``production``, ``staging``, any name) has one holder per model. Moving it is gated by the
alias's policy, ``configs/registry/<alias>.yaml`` (or a file given explicitly): the candidate's files must
still match their recorded hashes; it must have an evaluation of every metric the policy names on the
policy's split (and task, when it names one), each at least its threshold; and it must not be worse than
the current holder by more than ``margin`` on the *same task dataset version*. ``force`` overrides a
failing gate (never a changed file) and needs a reason, which the alias history keeps with the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from bertplat.catalog import Catalog
from bertplat.config import ConfigError, StageConfig
from bertplat.registry.refs import VersionRow, check_alias, find_version
from bertplat.registry.store import CARD, file_hashes, now, version_evaluations, who
from bertplat.validation import GateReport

POLICY_DIR = Path(__file__).resolve().parents[2] / "configs" / "registry"


class PromotionPolicy(StageConfig):
    """What a version needs to hold an alias."""

    alias: str = Field(description="The alias this policy gates (staging, production, ...).")
    description: str = Field("", description="What holding the alias means, for people.")
    split: str = Field("validation", description="The split whose evaluations count (validation, test, ...).")
    task: str | None = Field(None, description="The task dataset name the evaluations must be on; None: the "
                             "candidate's only evaluated task (refused when it has several).")
    metrics: dict[str, float] = Field(description="Metric -> lowest value allowed (every metric is higher-is-better, "
                                      "as all of bertplat's task metrics are).")
    margin: float = Field(0.0, ge=0.0, description="How much worse than the current holder, on each metric and on the "
                          "same task dataset version, the candidate may be.")

    @model_validator(mode="after")
    def _check(self) -> PromotionPolicy:
        check_alias(self.alias)
        if not self.metrics:
            raise ValueError("metrics must name at least one metric with its threshold")
        return self

    @classmethod
    def for_alias(cls, alias: str, policy: str | Path | None = None) -> PromotionPolicy:
        """``policy`` (a YAML path), else ``configs/registry/<alias>.yaml``; refused when neither exists."""
        path = Path(policy) if policy else POLICY_DIR / f"{check_alias(alias)}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in POLICY_DIR.glob("*.yaml"))) or "none"
            raise ConfigError(f"no promotion policy for alias {alias!r}: {path} does not exist (policies in "
                              f"{POLICY_DIR}: {known}). Write one (alias, split, metrics with thresholds, margin) "
                              "or pass --policy FILE")
        found = cls.from_yaml(path)
        if found.alias != alias:
            raise ConfigError(f"{path} is the policy of alias {found.alias!r}, not {alias!r}")
        return found


class PromotionRefused(ValueError):
    """The gate refused; the message says what is missing and what to do. ``report`` holds every check."""

    def __init__(self, message: str, report: GateReport):
        self.report = report
        super().__init__(message)


class PromotionResult(StageConfig):
    name: str
    alias: str
    version: str  # vN
    version_id: str
    previous: str | None
    forced: bool
    reason: str | None
    report: GateReport
    unchanged: bool = False

    def summary(self) -> str:
        if self.unchanged:
            return f"{self.name}@{self.alias} already is {self.version} ({self.version_id}); nothing changed"
        moved = f" (was {self.previous})" if self.previous else ""
        forced = f", FORCED: {self.reason}" if self.forced else ""
        return (f"{self.name}@{self.alias} -> {self.version} ({self.version_id}){moved}; "
                f"{self.report.summary()}{forced}")


def drifted_files(con: Any, v: VersionRow) -> list[str]:
    """Files of ``v`` that are missing, added or changed since registration."""
    recorded = dict(con.execute("SELECT file, sha256 FROM registry_files WHERE name = ? AND version_id = ?",
                                [v.name, v.version_id]).fetchall())
    if not v.path.is_dir():
        return sorted(recorded)
    found = {f: s for f, (_, s) in file_hashes(v.path).items()}
    return sorted(f for f in set(recorded) | set(found) if recorded.get(f) != found.get(f))


def _pick(evals: list[dict[str, Any]], policy: PromotionPolicy) -> tuple[str, str] | None | list[str]:
    """(task name, task fingerprint) of the candidate's evaluations the policy reads; a list of the task
    names when it is ambiguous; None when there are none on the split."""
    on_split = [e for e in evals if e["split"] == policy.split and (policy.task is None or e["task_name"] == policy.task)]
    tasks = sorted({(e["task_name"], e["task_fingerprint"]) for e in on_split}, key=lambda t: t[0])
    if not tasks:
        return None
    if len({t for t, _ in tasks}) > 1:
        return sorted({t for t, _ in tasks})
    newest = max((e for e in on_split), key=lambda e: e["evaluated_at"])  # several versions of one task: newest
    return newest["task_name"], newest["task_fingerprint"]


def gate(con: Any, candidate: VersionRow, alias: str, policy: PromotionPolicy) -> tuple[GateReport, list[str]]:
    """The promotion gate's report and, for each failure, what to do about it."""
    report = GateReport(stage="promote", dataset=f"model/{candidate.label}->{alias}")
    todo: list[str] = []
    drift = drifted_files(con, candidate)
    report.add("files match their recorded sha256", not drift, observed=drift[:5] or "all match", expected="no drift",
               detail="" if not drift else "a version whose files changed is never promoted, even with --force")
    if drift:
        todo.append(f"restore the files of {candidate.label} ({', '.join(drift[:3])}) or re-export and register "
                    "the changed model as a new version")
    evals = version_evaluations(con, candidate.name, candidate.version_id)
    picked = _pick(evals, policy)
    where = f"split {policy.split!r}" + (f" of task {policy.task!r}" if policy.task else "")
    if picked is None:
        report.add("evaluated", False, observed=f"{len(evals)} metrics, none on {where}", expected=where)
        todo.append(f"evaluate {candidate.label} on {where} first (`bertplat evaluate --model {candidate.label} "
                    f"--task TASK --split {policy.split}`), then promote again")
        return report, todo
    if isinstance(picked, list):
        report.add("one task", False, observed=picked, expected="one task dataset",
                   detail="the candidate is evaluated on several tasks; the policy must name one (task:)")
        todo.append(f"set `task:` in the {alias} policy to one of {', '.join(picked)}")
        return report, todo
    tname, tfp = picked
    mine = {e["metric"]: e["value"] for e in evals if (e["task_name"], e["task_fingerprint"], e["split"]) ==
            (tname, tfp, policy.split)}
    report.stats.update({"task": f"{tname}@{tfp}", "split": policy.split, "candidate": mine})
    for metric, floor in policy.metrics.items():
        value = mine.get(metric)
        ok = value is not None and value >= floor
        report.add(f"{metric} >= {floor}", ok, observed=value if value is not None else "missing", expected=floor,
                   where=f"tasks/{tname}@{tfp} {policy.split}")
        if value is None:
            todo.append(f"{candidate.label} has no {metric} on tasks/{tname}@{tfp} {policy.split} (it has "
                        f"{', '.join(sorted(mine)) or 'none'}): evaluate it with that metric or change the policy")
        elif not ok:
            todo.append(f"{metric} {value:.4f} is below the {alias} threshold {floor}: train a better model")
    holder = con.execute("SELECT version_id FROM registry_aliases WHERE name = ? AND alias = ?",
                         [candidate.name, alias]).fetchall()
    if holder and holder[0][0] != candidate.version_id:
        current = find_version(con, f"{candidate.name}@{holder[0][0]}")
        theirs_all = version_evaluations(con, current.name, current.version_id)
        theirs = {e["metric"]: e["value"] for e in theirs_all
                  if (e["task_name"], e["task_fingerprint"], e["split"]) == (tname, tfp, policy.split)}
        report.stats["holder"] = {"version": f"v{current.number}", **theirs}
        if not theirs:
            other = sorted({f"{e['task_name']}@{e['task_fingerprint']}" for e in theirs_all
                            if e["split"] == policy.split})
            report.add("holder evaluated on the same task version", False, observed=other or "none",
                       expected=f"{tname}@{tfp}", detail="evaluations on different task versions are not comparable")
            todo.append(f"the holder {current.label} is evaluated on {', '.join(other) or 'no task'}, the candidate "
                        f"on {tname}@{tfp}: evaluate both on the same task dataset version (`bertplat evaluate "
                        f"--model {current.label} --task {tname}@{tfp} --split {policy.split}`)")
        for metric in policy.metrics:
            if metric in theirs and metric in mine:
                ok = mine[metric] >= theirs[metric] - policy.margin
                report.add(f"{metric} not worse than {current.label} by more than {policy.margin}", ok,
                           observed=round(mine[metric] - theirs[metric], 6), expected=f">= {-policy.margin}",
                           where=f"tasks/{tname}@{tfp} {policy.split}")
                if not ok:
                    todo.append(f"{metric} {mine[metric]:.4f} is worse than the holder {current.label}'s "
                                f"{theirs[metric]:.4f} by more than {policy.margin}")
    return report, todo


def promote(ref: str, alias: str, catalog: Catalog, policy: PromotionPolicy | str | Path | None = None,
            force: bool = False, reason: str | None = None, by: str | None = None,
            reports_dir: Path | None = None) -> PromotionResult:
    """Point ``alias`` of the model at version ``ref`` (NAME@VERSION) through the alias's gate, in one
    transaction with its history row. Raises :class:`PromotionRefused` with what to do."""
    check_alias(alias)
    if force and not (reason and reason.strip()):
        raise ValueError("--force needs a reason (--reason TEXT): it is kept in the alias history")
    if not isinstance(policy, PromotionPolicy):
        policy = PromotionPolicy.for_alias(alias, policy)
    with catalog.transaction() as con:
        candidate = find_version(con, ref)
        report, todo = gate(con, candidate, alias, policy)
        drift = not report.checks[0].passed
        if reports_dir is not None:
            report.write(reports_dir)
        if drift or (not report.passed and not force):
            lines = [f"promotion of {candidate.label} to {alias!r} refused: {report.summary()}"]
            lines += [f"  - {c.name}: observed {c.observed}, expected {c.expected}" for c in report.failures]
            lines += ["what to do:", *[f"  - {t}" for t in todo]]
            if not drift:
                lines.append(f"  - or override with --force --reason TEXT (kept in the {alias} history)")
            raise PromotionRefused("\n".join(lines), report)
        held = con.execute("SELECT version_id FROM registry_aliases WHERE name = ? AND alias = ?",
                           [candidate.name, alias]).fetchall()
        previous = held[0][0] if held else None
        prev_label = f"v{find_version(con, f'{candidate.name}@{previous}').number}" if previous else None
        result = PromotionResult(name=candidate.name, alias=alias, version=f"v{candidate.number}",
                                 version_id=candidate.version_id, previous=prev_label, forced=force and not report.passed,
                                 reason=reason, report=report, unchanged=previous == candidate.version_id)
        if result.unchanged:
            return result
        at, by = now(), by or who()
        con.execute("INSERT OR REPLACE INTO registry_aliases VALUES (?, ?, ?, ?, ?)",
                    [candidate.name, alias, candidate.version_id, at, by])
        action = "forced" if result.forced else ("moved" if previous else "set")
        con.execute("INSERT INTO registry_alias_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [candidate.name, alias, candidate.version_id, previous, action, at, by, reason,
                     json.dumps(report.model_dump(mode="json"), default=str)])
        catalog.refresh_views(con)
    return result


def alias_history(catalog: Catalog, name: str) -> list[dict[str, Any]]:
    cols = ["alias", "version", "previous", "action", "at", "by", "reason"]
    with catalog.connect(read_only=True) as con:
        rows = con.execute("SELECT h.alias, 'v' || v.number, 'v' || p.number, h.action, h.changed_at, h.changed_by, h.reason "
                           "FROM registry_alias_history h JOIN registry_versions v ON v.name = h.name AND "
                           "v.version_id = h.version_id LEFT JOIN registry_versions p ON p.name = h.name AND "
                           "p.version_id = h.previous_version_id WHERE h.name = ? ORDER BY h.changed_at", [name]).fetchall()
    return [dict(zip(cols, r)) for r in rows]


__all__ = ["CARD", "PromotionPolicy", "PromotionRefused", "PromotionResult", "alias_history", "gate", "promote"]
