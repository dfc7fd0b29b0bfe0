"""The layer's one Logger, Tracer and Metrics: handlers decorate with them, routes and services use them."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
# The template sets POWERTOOLS_METRICS_NAMESPACE; without it (an import before the environment is set,
# as in a test run) the metrics still flush, under the project's namespace.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "CompanyMail")
