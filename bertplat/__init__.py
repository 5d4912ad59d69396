"""bertplat: a workflow-orchestrated data-to-model platform for BERT-family language models.

The library computes; `flows/` orchestrates. Each stage is `run_<stage>(config, inputs, ...)` and
returns a result holding dataset handles, metrics and its validation report. Nothing in this
package imports Prefect.
"""

__version__ = "0.1.0"
