"""The layer's one Logger, Tracer and Metrics: handlers decorate with them, routes and services use them."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
