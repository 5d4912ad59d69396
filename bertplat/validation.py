"""Validation gates: the checks that stand between two stages.

A gate is a list of named checks (pandera schema checks and statistics). A stage runs its gate on
what it has written into its temporary directory; if any check fails, the stage writes the report
to ``<data_dir>/reports/`` and raises :class:`GateError`, so the version is never committed and
nothing downstream runs.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class Check(BaseModel):
    """One named check with what was observed and what was expected."""

    name: str
    passed: bool
    observed: Any = None
    expected: Any = None
    detail: str = ""
    where: str | None = Field(default=None, description="the shard, file or record the check is about")


class GateReport(BaseModel):
    """All checks of one gate, plus statistics worth showing next to them."""

    stage: str
    dataset: str
    checks: list[Check] = Field(default_factory=list)
    stats: dict[str, Any] = Field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def add(self, name: str, passed: bool, observed: Any = None, expected: Any = None,
            detail: str = "", where: str | None = None) -> Check:
        check = Check(name=name, passed=bool(passed), observed=observed, expected=expected,
                      detail=detail, where=where)
        self.checks.append(check)
        return check

    def summary(self) -> str:
        status = "passed" if self.passed else f"FAILED ({len(self.failures)} of {len(self.checks)} checks)"
        return f"{self.stage} gate for {self.dataset}: {status}"

    def to_markdown(self) -> str:
        lines = [f"### {self.summary()}", "", "| check | result | observed | expected | where / detail |",
                 "|---|---|---|---|---|"]
        for c in self.checks:
            where = " ".join(x for x in (c.where or "", c.detail) if x).replace("|", "\\|")
            lines.append(f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {_fmt(c.observed)} | "
                         f"{_fmt(c.expected)} | {where} |")
        return "\n".join(lines)

    def write(self, reports_dir: Path) -> Path:
        """Save as JSON and Markdown under ``reports_dir``; returns the JSON path."""
        reports_dir.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        base = reports_dir / f"{self.stage}-{self.dataset.replace('/', '_').replace('@', '-')}-{stamp}"
        base.with_suffix(".json").write_text(json.dumps(self.model_dump(mode="json"), indent=2, default=str))
        base.with_suffix(".md").write_text(self.to_markdown() + "\n")
        return base.with_suffix(".json")


class GateError(RuntimeError):
    """A validation gate failed; the report says which checks and where."""

    def __init__(self, report: GateReport, report_path: Path | None = None):
        self.report = report
        self.report_path = report_path
        lines = [report.summary()]
        for c in report.failures[:20]:
            at = f" [{c.where}]" if c.where else ""
            lines.append(f"  - {c.name}{at}: observed {_fmt(c.observed)}, expected {_fmt(c.expected)}"
                         + (f"; {c.detail}" if c.detail else ""))
        if len(report.failures) > 20:
            lines.append(f"  ... and {len(report.failures) - 20} more")
        if report_path:
            lines.append(f"full report: {report_path}")
            # A stage that has rejects keeps them beside the report (the rejects_<name> view only
            # exists for committed versions, and this one was not committed).
            rejects = Path(report_path).with_name(Path(report_path).stem + "-rejects.parquet")
            if rejects.is_file():
                lines.append(f"rejected records, with the reason for each: {rejects}")
        lines.append("nothing was written to the lake; fix the input or the config and run again")
        super().__init__("\n".join(lines))


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
