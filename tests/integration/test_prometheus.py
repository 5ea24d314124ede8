"""The suite's Prometheus really scrapes targets that tests serve and answers PromQL."""

from __future__ import annotations

import uuid

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.support.processes import free_port


def test_scrapes_a_served_target_and_answers_promql(prometheus):
    registry = CollectorRegistry()
    run = uuid.uuid4().hex[:8]
    gauge = Gauge("dreambooth_test_answer", "A value only this test serves.", ["run"], registry=registry)
    gauge.labels(run=run).set(42.5)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prometheus.add_target(f"127.0.0.1:{port}", suite="prometheus-test")
        result = prometheus.wait_for(f'dreambooth_test_answer{{run="{run}",suite="prometheus-test"}}')
        assert float(result[0]["value"][1]) == 42.5
        gauge.labels(run=run).set(7)
        prometheus.wait_for(f'dreambooth_test_answer{{run="{run}"}} == 7')
        up = prometheus.query(f'up{{instance="127.0.0.1:{port}"}}')
        assert up and up[0]["value"][1] == "1"
    finally:
        prometheus.remove_target(f"127.0.0.1:{port}")
        server.shutdown()
