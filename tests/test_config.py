"""The config file: strict types, unknown keys named, secret from the environment, check-config CLI."""
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import SECRET_ENV, ConfigError, load_config
from harness import ROOT

GOOD = """
[gateway]
secret_key = "0123456789abcdef0123"
trusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"]
stats_tokens = ["s3cret"]
retention_days = 30

[sites.clientbox]
origins = ["https://www.clientbox.nl"]
policy_version = 2

[[sites.clientbox.vendors]]
name = "crm"
category = "marketing"
type = "webhook"
url = "https://hooks.example.com/x"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_good_config_loads_with_defaults(tmp_path):
    config = load_config(write(tmp_path, GOOD), env={})
    site = config.sites["clientbox"]
    assert site.policy_version == 2 and site.vendors[0].name == "crm"
    assert config.store == f"chdb://{tmp_path / 'consentgate-data' / 'chdb'}"
    assert config.retention_days == 30 and len(config.trusted_proxies) == 2


def test_every_problem_is_reported_with_its_key_path(tmp_path):
    bad = GOOD.replace("retention_days = 30", "retention_days = \"30\"\nsecert_key = 1") \
              .replace("policy_version = 2", "policy_version = 2\ncolour = \"red\"") \
              .replace('type = "webhook"', 'type = "carrier-pigeon"') \
              .replace('"10.0.0.0/8"', '"ten"')
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, bad), env={})
    text = "\n".join(exc.value.problems)
    for key in ("gateway.retention_days: expected int", "gateway.secert_key: unknown key",
                "sites.clientbox.colour: unknown key", "sites.clientbox.vendors[0].type",
                "gateway.trusted_proxies[1]"):
        assert key in text, text
    assert len(exc.value.problems) == 5


def test_secret_may_come_from_the_environment(tmp_path):
    text = GOOD.replace('secret_key = "0123456789abcdef0123"\n', "")
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), env={})
    assert SECRET_ENV in exc.value.problems[0]
    config = load_config(write(tmp_path, text), env={SECRET_ENV: "from-the-environment-123"})
    assert config.secret_keys[-1] == "from-the-environment-123"


def test_check_config_cli_lists_problems_and_exits_non_zero(tmp_path):
    path = write(tmp_path, GOOD.replace('origins = ["https://www.clientbox.nl"]', 'origins = ["www.clientbox.nl"]'))
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0
    assert "sites.clientbox.origins[0]" in out.stderr
    ok = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(write(tmp_path, GOOD))],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "OK" in ok.stdout


def test_example_config_is_valid():
    config = load_config(ROOT / "examples" / "consentgate.toml", env={})
    assert config.sites
