"""Airflow: one batch DAG per installed app with batch work (``batch_<app>``; e.g. fraud daily scoring,
recommendation candidate refresh), built by the core's DAG factory over ``Solution.batch``.

Config: ``orchestration.yaml`` beside this file, or $SOLUTIONS_ORCHESTRATION_CONFIG.
"""

import os
from pathlib import Path

from solutions_core.orchestration.airflow_dags import batch_dags

globals().update(batch_dags(os.environ.get("SOLUTIONS_ORCHESTRATION_CONFIG") or Path(__file__).with_name("orchestration.yaml")))
