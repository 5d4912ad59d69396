"""The promote flow: move a model's alias to a version through the alias's gate, so the promotion shows in
the Prefect UI with its gate report (passed, refused or forced) as an artifact."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from pydantic import BaseModel, Field

from flows.common import artifact_key, context


class PromoteParams(BaseModel):
    """Which version gets which alias; the Prefect UI shows this as the run form."""

    model: str = Field(description="The candidate: NAME@vN or NAME@VERSION_ID (NAME@ALIAS and NAME work too).")
    alias: str = Field(default="staging", description="The alias to point at it: staging, production or any name.")
    policy: str | None = Field(default=None, description="Policy YAML (default configs/registry/ALIAS.yaml).")
    force: bool = Field(default=False, description="Promote over a failing gate (never over changed files).")
    reason: str | None = Field(default=None, description="Why; required with force and kept in the alias history.")


@task(task_run_name="promote-{params.model}-{params.alias}")
def promote_version(params: PromoteParams) -> str:
    from prefect.artifacts import create_markdown_artifact

    from bertplat.registry.promotion import PromotionRefused, promote

    _, lake, catalog = context()
    key = artifact_key("promote", params.model.split("@")[0], params.alias)
    try:
        result = promote(params.model, params.alias, catalog, params.policy, force=params.force, reason=params.reason,
                         reports_dir=lake.data_dir / "reports")
    except PromotionRefused as exc:
        create_markdown_artifact(f"## promotion refused\n\n{exc.report.to_markdown()}\n\n```\n{exc}\n```", key=key,
                                 description=f"{params.model} -> {params.alias}: refused")
        raise
    create_markdown_artifact(f"## {result.summary()}\n\n{result.report.to_markdown()}", key=key,
                             description=f"{params.model} -> {params.alias}")
    get_run_logger().info(result.summary())
    return result.summary()


@flow(name="promote", description="Point a model alias (staging, production, ...) at a version through its gate.")
def promote_flow(params: PromoteParams) -> str:
    return promote_version(params)


if __name__ == "__main__":
    import sys

    promote_flow(PromoteParams(model=sys.argv[1], alias=sys.argv[2]))
