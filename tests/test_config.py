"""The config file: strict types, unknown keys named, secret from the environment, check-config CLI."""
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import SECRET_ENV, ConfigError, load_config
from harness import ROOT

FILE_SECRET = "file-secret-0123456789abcdef-0123456789"
ENV_SECRET = "env-secret-0123456789abcdef-0123456789"

GOOD = """
[gateway]
secret_key = "file-secret-0123456789abcdef-0123456789"
trusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"]
stats_tokens = ["stats-token-0123456789abcdef"]
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
    text = GOOD.replace(f'secret_key = "{FILE_SECRET}"\n', "")
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), env={})
    assert SECRET_ENV in exc.value.problems[0] and "token_urlsafe(32)" in exc.value.problems[0]
    config = load_config(write(tmp_path, text), env={SECRET_ENV: ENV_SECRET})
    assert config.secret_keys == (ENV_SECRET,) and config.secret_source == "env"


def test_the_environment_secret_wins_over_the_file(tmp_path):
    """Finding 1: with both set, the file's secret_key used to win (`file or env`)."""
    config = load_config(write(tmp_path, GOOD), env={SECRET_ENV: ENV_SECRET})
    assert config.secret_keys[-1] == ENV_SECRET and FILE_SECRET not in config.secret_keys
    assert config.secret_source == "env"
    assert load_config(write(tmp_path, GOOD), env={}).secret_keys[-1] == FILE_SECRET
    # the published placeholder in the file does not matter when the environment holds the secret
    placeholder = GOOD.replace(FILE_SECRET, "replace-me-with-the-output-of-secrets.token_urlsafe(32)")
    assert load_config(write(tmp_path, placeholder), env={SECRET_ENV: ENV_SECRET}).secret_keys[-1] == ENV_SECRET


@pytest.mark.parametrize("where", ["file", "env", "old"])
def test_a_secret_shorter_than_32_characters_is_refused(tmp_path, where):
    short = "x1" * 15 + "y"  # 31 characters
    text = GOOD if where != "old" else GOOD.replace("retention_days", f'old_secret_keys = ["{short}"]\nretention_days')
    if where == "file":
        text = GOOD.replace(FILE_SECRET, short)
    env = {SECRET_ENV: short} if where == "env" else {}
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), env=env)
    [problem] = exc.value.problems
    assert "31 characters" in problem and "at least 32" in problem and "secrets.token_urlsafe(32)" in problem
    key = {"file": "gateway.secret_key", "env": SECRET_ENV, "old": "gateway.old_secret_keys[0]"}[where]
    assert problem.startswith(key)
    longer = {k: v + "z" for k, v in env.items()}
    assert load_config(write(tmp_path, text.replace(short, short + "z")), env=longer)  # 32 is enough


def test_short_or_placeholder_stats_and_metrics_tokens_are_refused(tmp_path):
    text = GOOD.replace('stats_tokens = ["stats-token-0123456789abcdef"]',
                        'stats_tokens = ["23-characters-long-xxxx"]\nmetrics_token = "short"') \
               .replace("policy_version = 2", 'policy_version = 2\nstats_tokens = ["ok-site-token-0123456789", "tiny"]')
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), env={})
    text_problems = "\n".join(exc.value.problems)
    assert len(exc.value.problems) == 3, text_problems
    for key in ("gateway.stats_tokens[0]: too short (23 characters)", "gateway.metrics_token: too short (5",
                "sites.clientbox.stats_tokens[1]: too short (4"):
        assert key in text_problems
    placeholder = GOOD.replace("stats-token-0123456789abcdef", "replace-me-with-a-random-token")
    with pytest.raises(ConfigError, match="placeholder"):
        load_config(write(tmp_path, placeholder), env={})
    ok = load_config(write(tmp_path, GOOD.replace("policy_version = 2",
                                                  'policy_version = 2\nstats_tokens = ["ok-site-token-0123456789"]')), env={})
    assert ok.sites["clientbox"].stats_tokens == ("ok-site-token-0123456789",)


@pytest.mark.parametrize("url", ["javascript:alert(document.cookie)", " javascript:alert(1)", "JAVASCRIPT:alert(1)",
                                 "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)", "/privacy",
                                 "//evil.example/x", 'https://www.clientbox.nl/" onmouseover="alert(1)',
                                 "https://www.clientbox.nl/<script>", "ftp://www.clientbox.nl/privacy"])
def test_a_site_url_that_is_not_http_is_a_config_error(tmp_path, url):
    """Finding 8: policy_url went into the banner's href unchecked."""
    text = GOOD.replace("policy_version = 2", f"policy_version = 2\npolicy_url = {url!r}".replace("'", '"')
                        if '"' not in url else f"policy_version = 2\npolicy_url = '{url}'")
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), env={})
    assert exc.value.problems == [f"sites.clientbox.policy_url: expected an http or https URL without spaces, "
                                  f"quotes or angle brackets, got {url!r}"]


def test_other_config_urls_must_be_http_too(tmp_path):
    text = GOOD.replace("retention_days = 30", 'retention_days = 30\npublic_url = "javascript:alert(1)"') \
               .replace('url = "https://hooks.example.com/x"', 'url = "javascript:alert(1)"')
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), env={})
    assert {p.split(":")[0] for p in exc.value.problems} == {"gateway.public_url", "sites.clientbox.vendors[0].url"}
    good = GOOD.replace("policy_version = 2", 'policy_version = 2\npolicy_url = "https://www.clientbox.nl/privacy?lang=nl"')
    assert load_config(write(tmp_path, good), env={}).sites["clientbox"].policy_url.endswith("?lang=nl")


def test_consent_rate_per_minute_has_a_default_and_must_be_positive(tmp_path):
    assert load_config(write(tmp_path, GOOD), env={}).consent_rate_per_minute == 600
    with pytest.raises(ConfigError, match="consent_rate_per_minute: must be >= 1"):
        load_config(write(tmp_path, GOOD.replace("retention_days = 30", "retention_days = 30\nconsent_rate_per_minute = 0")), env={})


def test_check_config_cli_lists_problems_and_exits_non_zero(tmp_path):
    path = write(tmp_path, GOOD.replace('origins = ["https://www.clientbox.nl"]', 'origins = ["www.clientbox.nl"]'))
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0
    assert "sites.clientbox.origins[0]" in out.stderr
    ok = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(write(tmp_path, GOOD))],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "OK" in ok.stdout


def test_example_config_holds_only_refused_placeholders(tmp_path):
    """The example must not run as shipped (finding 1), and must run once its placeholders are replaced."""
    example = (ROOT / "examples" / "consentgate.toml").read_text()
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, example), env={})
    assert sorted(p.split(":")[0] for p in exc.value.problems) == ["gateway.secret_key", "gateway.stats_tokens[0]"]
    own = example.replace('"replace-me-with-the-output-of-secrets.token_urlsafe(32)"', f'"{secrets.token_urlsafe(32)}"') \
                 .replace('"replace-me-with-a-random-token"', f'"{secrets.token_urlsafe(24)}"')
    assert load_config(write(tmp_path, own), env={}).sites
