""".env.example and the README's configuration table against what config/settings.py really reads."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.servers import BASE_DIR, django_process

# os.environ.get("NAME", ...), os.environ["NAME"], env_bool("NAME", ...), env_list("NAME", ...)
ENV_READ_RE = re.compile(
    r"""(?:os\.environ(?:\.get)?\(|os\.environ\[|env_bool\(|env_list\()\s*["']([A-Z][A-Z0-9_]*)["']"""
)
EXAMPLE_LINE_RE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
SHOWN = ["DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "TIME_ZONE", "CHANNEL_LAYERS", "LOGGING", "DATABASES"]
SHOWN += ["SESSION_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "CHAT_RATE_LIMIT_MESSAGES"]


def variables_read_by_settings() -> set[str]:
    source = (BASE_DIR / "config" / "settings.py").read_text()
    # dj_database_url.config() reads DATABASE_URL without naming it.
    return set(ENV_READ_RE.findall(source)) | ({"DATABASE_URL"} if "dj_database_url.config(" in source else set())


def env_example() -> dict[str, str | None]:
    """Every variable .env.example lists: its value, or None when the line is commented out."""
    listed: dict[str, str | None] = {}
    for line in (BASE_DIR / ".env.example").read_text().splitlines():
        match = EXAMPLE_LINE_RE.match(line)
        if match:
            listed[match[1]] = None if line.startswith("#") else match[2]
    return listed


def settings_seen_with(env: dict[str, str]) -> dict:
    shown = f"{{n: getattr(s, n) for n in {SHOWN}}}"
    code = f"import json; from django.conf import settings as s; print(json.dumps({shown}, default=str))"
    result = django_process(code, env)
    return json.loads(result.stdout.splitlines()[-1])


def test_the_settings_read_the_variables_this_test_expects():
    # Guards the pattern above: if it stopped matching, the next tests would pass on nothing.
    assert {
        "SECRET_KEY",
        "DEBUG",
        "DATABASE_URL",
        "REDIS_URL",
        "LOG_LEVEL",
        "LOG_FORMAT",
    } <= variables_read_by_settings()


def test_env_example_lists_every_variable_the_settings_read():
    missing = variables_read_by_settings() - set(env_example())
    assert not missing, f"add these to .env.example (and README, Configuration): {sorted(missing)}"


def test_the_readme_configuration_table_names_every_variable_of_env_example():
    readme = (BASE_DIR / "README.md").read_text()
    table = readme[readme.index("## Configuration") :].split("\n## ", 1)[0]
    # A row may shorten its neighbours: `SECURE_HSTS_SECONDS` (+ `_INCLUDE_SUBDOMAINS`, `_PRELOAD`).
    suffixes = re.findall(r"`(_[A-Z0-9_]+)`", table)
    missing = [
        name for name in env_example() if f"`{name}`" not in table and not any(name.endswith(s) for s in suffixes)
    ]
    assert not missing, f"add these to the README's configuration table: {missing}"


@pytest.mark.parametrize("name", ["DATABASE_URL", "SECRET_KEY", "REDIS_URL"])
def test_variables_without_a_literal_default_are_commented_out(name):
    # DATABASE_URL= (empty) would mean "no database", not the SQLite default.
    assert env_example()[name] is None


def test_sourcing_env_example_as_is_changes_nothing():
    values = {name: value for name, value in env_example().items() if value is not None}

    assert settings_seen_with(values) == settings_seen_with({})


def test_attachments_go_to_media_root_by_default_and_to_an_s3_bucket_when_configured(tmp_path):
    code = "import json; from django.conf import settings as s; print(json.dumps(s.STORAGES['default'], default=str))"
    local = json.loads(django_process(code, {"MEDIA_ROOT": str(tmp_path)}).stdout.splitlines()[-1])
    assert local == {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    env = {"ATTACHMENT_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": "files", "AWS_S3_ENDPOINT_URL": "http://s3.test"}
    s3 = json.loads(django_process(code, env).stdout.splitlines()[-1])
    assert s3["BACKEND"] == "storages.backends.s3.S3Storage"
    assert s3["OPTIONS"]["bucket_name"] == "files"
    assert s3["OPTIONS"]["endpoint_url"] == "http://s3.test"
    assert s3["OPTIONS"]["default_acl"] == "private"
    refused = django_process("pass", {"ATTACHMENT_STORAGE": "ftp"}, check=False)
    assert refused.returncode != 0
    assert "use local (the default) or s3" in refused.stderr
