"""A real Prometheus (Debian's package) scraping targets that tests register at run time.

Targets go through file-based service discovery: a test writes `targets.json` and
Prometheus picks the change up without a restart.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from .processes import Process, free_port, http_ok
from .wait import TIMEOUT, wait_for

# Busy 2-core CI machines answer slowly: a 1 s timeout loses scrapes of training processes.
SCRAPE_INTERVAL = "2s"


def find_prometheus() -> Path:
    path = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(path).is_file():
        raise RuntimeError(
            "prometheus not found: install Debian's package (`apt-get install prometheus`, "
            "done by `make install`)"
        )
    return Path(path)


@dataclass
class PrometheusServer:
    workdir: Path
    detached: bool = False
    url: str = ""
    process: Process | None = None
    _targets: dict[str, dict] = field(default_factory=dict)

    @property
    def targets_file(self) -> Path:
        return self.workdir / "targets.json"

    def start(self) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.targets_file.write_text("[]")
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [{
                "job_name": "tests",
                # As the chart's monitors: the operator labels each job's own `namespace`.
                "honor_labels": True,
                "scrape_interval": SCRAPE_INTERVAL,
                "scrape_timeout": SCRAPE_INTERVAL,
                "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
            }],
        }
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = Process(
            "prometheus",
            [str(find_prometheus()),
             f"--config.file={config_path}",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"],
            self.workdir / "logs",
            detached=self.detached,
        )
        self.process.wait_until(lambda: http_ok(f"{self.url}/-/ready"), 60, "Prometheus ready")
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def add_target(self, address: str, **labels: str) -> None:
        """Scrape `address` (host:port serving /metrics) from now on, with extra labels."""
        self._targets[address] = labels
        self._write_targets()

    def remove_target(self, address: str) -> None:
        self._targets.pop(address, None)
        self._write_targets()

    def _write_targets(self) -> None:
        groups = [{"targets": [addr], "labels": lbls} for addr, lbls in self._targets.items()]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)  # atomic, so discovery never reads half a file

    def query(self, promql: str) -> list[dict]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        body = response.json()
        if body["status"] != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        return body["data"]["result"]

    def wait_for(self, promql: str, timeout: float = TIMEOUT) -> list[dict]:
        """Poll an instant query until it returns a non-empty result."""
        return wait_for(lambda: self.query(promql), timeout, lambda: (
            f"a result for {promql!r}; targets: {requests.get(f'{self.url}/api/v1/targets', timeout=10).text[:2000]}"
        ), interval=0.5)
