"""Argument parsing of the dreambooth command (no cluster, nothing run)."""

from __future__ import annotations

import pytest
from dreambooth_cli import _prog
from dreambooth_cli.args import DEFAULT_SECRET, parse_args


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["watch", "cloody"], {"command": "watch", "name": "cloody", "namespace": None, "timeout": None}),
        # kubectl-style global flags work before and after the subcommand
        (["-n", "team-a", "watch", "cloody"], {"namespace": "team-a"}),
        (["watch", "cloody", "-n", "team-b", "--context", "gpu"], {"namespace": "team-b", "context": "gpu"}),
        (["--kubeconfig", "/k", "artifacts", "list"], {"kubeconfig": "/k", "verb": "list", "all_namespaces": False}),
        (["artifacts", "list", "-A"], {"all_namespaces": True}),
        (["artifacts", "describe", "a", "-n", "x", "-o", "yaml"], {"name": "a", "namespace": "x", "output": "yaml"}),
        (["artifacts", "download", "a"], {"secret": DEFAULT_SECRET, "output_dir": None, "endpoint": None,
                                          "insecure": False}),
        (["artifacts", "download", "a", "-o", "out", "--secret", "s", "--endpoint", "h:9000", "--insecure"],
         {"output_dir": "out", "secret": "s", "endpoint": "h:9000", "insecure": True}),
        (["submit", "-f", "job.yaml", "-n", "t"], {"filename": "job.yaml", "namespace": "t", "dry_run": False}),
        (["submit", "--name", "c", "--instance-prompt", "p", "--data-uri", "s3://b/d/", "--steps", "10",
          "--validation-prompt", "x", "--validation-prompt", "y"],
         {"name": "c", "steps": 10, "validation_prompt": ["x", "y"], "filename": None}),
        # storage flags: the same on download and submit; keyless defaults from dreambooth_api.keyless
        (["artifacts", "download", "a", "--keyless"],
         {"keyless": True, "service_account": "dreambooth-workload", "audience": "sts.dreambooth.dev",
          "role_arn": None}),
        (["artifacts", "download", "a", "--keyless", "--service-account", "w", "--audience", "aud",
          "--role-arn", "arn:minio:iam:::role/x"],
         {"service_account": "w", "audience": "aud", "role_arn": "arn:minio:iam:::role/x"}),
        (["submit", "--name", "c", "--instance-prompt", "p", "--photos", "pics"],
         {"photos": "pics", "data_uri": None, "bucket": "dreambooth", "prefix": None, "prune": False,
          "keyless": False, "secret": DEFAULT_SECRET, "endpoint": None}),
        (["submit", "-f", "j.yaml", "--photos", "pics", "--keyless", "--bucket", "b", "--prefix", "p/q", "--prune",
          "--endpoint", "h:1", "--insecure"],
         {"photos": "pics", "keyless": True, "bucket": "b", "prefix": "p/q", "prune": True, "insecure": True}),
        (["admin", "minio-policy", "--operator-service-account", "sys/op"],
         {"bucket": "dreambooth", "operator_service_account": "sys/op", "workload_service_account":
          "dreambooth-workload", "env": False, "issuer": None, "policy_name": "dreambooth-tenant"}),
        (["run", "-f", "j.yaml"], {"mode": None, "workdir": None, "data": None, "steps": None}),
        (["run", "-f", "j.yaml", "--tiny", "--workdir", "w", "--steps", "3"], {"mode": "tiny", "workdir": "w",
                                                                               "steps": 3}),
        (["run", "-f", "j.yaml", "--real", "--data", "photos"], {"mode": "real", "data": "photos"}),
    ],
)
def test_parse(argv, expected):
    args = vars(parse_args(argv))
    assert {k: args[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["submit"], "submit needs -f FILE or --name, --instance-prompt, --data-uri/--photos"),
        (["submit", "--name", "c", "--instance-prompt", "p"], "submit needs -f FILE or --data-uri/--photos"),
        (["submit", "-f", "j.yaml", "--steps", "0"], "--steps must be at least 1"),
        (["run", "-f", "j.yaml", "--tiny", "--real"], "not allowed with argument"),
        (["run"], "the following arguments are required: -f/--filename"),
        (["artifacts"], "the following arguments are required"),
        (["artifacts", "describe", "a", "-o", "xml"], "invalid choice"),
        (["submit", "--name", "c", "--instance-prompt", "p", "--photos", "d", "--data-uri", "s3://b/d/"],
         "not allowed with argument"),
        (["admin", "minio-policy"], "the following arguments are required: --operator-service-account"),
        (["admin", "minio-policy", "--operator-service-account", "op"], "takes NAMESPACE/NAME"),
        (["admin", "minio-policy", "--operator-service-account", "a/b/c"], "takes NAMESPACE/NAME"),
        (["admin", "minio-policy", "--operator-service-account", "/b"], "takes NAMESPACE/NAME"),
    ],
)
def test_usage_errors_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_kubectl_plugin_name():
    assert _prog("/usr/local/bin/kubectl-dreambooth") == "kubectl dreambooth"
    assert _prog(".venv/bin/dreambooth") == "dreambooth"


def test_console_scripts_point_at_main():
    import tomllib
    from pathlib import Path

    import dreambooth_cli as cli

    root = Path(__file__).resolve().parents[3]
    project = tomllib.loads((root / "cli" / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"dreambooth": "dreambooth_cli:main", "kubectl-dreambooth": "dreambooth_cli:main"}
    assert callable(cli.main)
    # The operator's image ships no user tooling: no scripts, no progress bars.
    operator = tomllib.loads((root / "operator" / "pyproject.toml").read_text())["project"]
    assert "scripts" not in operator
    assert not [d for d in operator["dependencies"] if d.lower().startswith("tqdm")]


def test_the_cli_does_not_import_the_operator():
    from pathlib import Path

    import dreambooth_cli

    sources = sorted(Path(dreambooth_cli.__file__).parent.glob("*.py"))
    assert len(sources) > 5
    assert [p.name for p in sources if "dreambooth_operator" in p.read_text()] == []
