"""Airflow: one training DAG per installed app (``train_<app>``), built by the core's DAG factory.

All logic lives in ``solutions_core`` (the same pipeline as ``solutions train``); this file only asks the
factory for the DAGs. Config: ``orchestration.yaml`` beside this file, or $SOLUTIONS_ORCHESTRATION_CONFIG.
"""

import os
from pathlib import Path

from solutions_core.orchestration.airflow_dags import training_dags

globals().update(training_dags(os.environ.get("SOLUTIONS_ORCHESTRATION_CONFIG") or Path(__file__).with_name("orchestration.yaml")))
