"""Airflow: one monitor DAG per installed app (``monitor_<app>``): the day's request log against the
champion's training statistics; a drifted day triggers ``train_<app>`` and fails the monitor run.

Config: ``orchestration.yaml`` beside this file, or $SOLUTIONS_ORCHESTRATION_CONFIG.
"""

import os
from pathlib import Path

from solutions_core.orchestration.airflow_dags import monitor_dags

globals().update(monitor_dags(os.environ.get("SOLUTIONS_ORCHESTRATION_CONFIG") or Path(__file__).with_name("orchestration.yaml")))
