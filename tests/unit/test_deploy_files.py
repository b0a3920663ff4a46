"""The deployment files (Dockerfile, docker-compose.yml, README) agree with the settings.

Pure file checks: no Docker engine and no database needed.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from runtime.settings import Settings, env_names

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
PYPROJECT = ROOT / "pyproject.toml"
README = ROOT / "README.md"

# Environment variables the deployment files may set although they are not settings.
COMPOSE_ALLOWED = {"LANGGRAPH_STRICT_MSGPACK"}
DOCKERFILE_ALLOWED = {
    "LANGGRAPH_STRICT_MSGPACK",
    "PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "UV_COMPILE_BYTECODE",
    "UV_LINK_MODE",
    "UV_PYTHON_DOWNLOADS",
}

# `${VAR}`, `${VAR:-default}`, `${VAR-default}` (compose interpolation).
_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")
_URL = re.compile(r"https?://[^\s'\"]+")


# --- helpers -------------------------------------------------------------------------------


def _field_for_env() -> dict[str, str]:
    return {env: field for field, env in env_names().items()}


def _interpolate(value: str) -> str:
    """What compose makes of `value` when none of the variables it names are set."""
    value = _INTERPOLATION.sub(lambda m: m.group("default") or "", value)
    return value.replace("$$", "$")


def _validate(monkeypatch: pytest.MonkeyPatch, field: str, value: Any) -> Settings:
    """Settings built from `field=value` alone (ignoring this process's env and `.env`)."""
    for name in env_names().values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SESSIONGRAPH_DATABASE_URL", raising=False)
    return Settings(_env_file=None, **{field: value})  # type: ignore[call-arg]


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _service(name: str) -> dict[str, Any]:
    return _compose()["services"][name]


def _environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's `environment`, in either the mapping or the list syntax."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return {k: v for k, v in pairs}
    return {k: None if v is None else str(v) for k, v in env.items()}


def _api_env() -> dict[str, str | None]:
    return _environment(_service("api"))


def _healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


def _published_ports(service: dict[str, Any]) -> list[tuple[int | None, int]]:
    """(host port, container port) pairs from the short or the long `ports` syntax."""
    pairs: list[tuple[int | None, int]] = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published")
            pairs.append((int(published) if published else None, int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        container = int(parts[-1])
        host = int(parts[-2]) if len(parts) >= 2 and parts[-2] else None
        pairs.append((host, container))
    return pairs


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    instructions: list[tuple[str, str]] = []
    buffer = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, args = buffer.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        buffer = ""
    if buffer:
        keyword, _, args = buffer.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def _dockerfile_args(keyword: str) -> list[str]:
    return [args for kw, args in _dockerfile_instructions() if kw == keyword]


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _dockerfile_args("ENV"):
        tokens = shlex.split(args)
        if tokens and "=" not in tokens[0]:  # legacy `ENV KEY value with spaces`
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            key, _, value = token.partition("=")
            env[key] = value
    return env


def _exec_form(args: str) -> list[str]:
    """An exec-form (JSON array) instruction's argv; shell form is split like a shell would."""
    if args.startswith("["):
        return json.loads(args)
    return shlex.split(args)


def _pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text())


# --- (a) compose env names -----------------------------------------------------------------


class TestComposeEnvNames:
    """The compose `api` service sets only real settings (or allow-listed variables)."""

    def test_every_api_env_var_is_a_setting_or_allowed(self) -> None:
        """Each variable the api service sets is a setting's env name or allow-listed."""
        known = set(env_names().values()) | COMPOSE_ALLOWED
        unknown = sorted(set(_api_env()) - known)
        assert not unknown, f"docker-compose.yml api sets unknown variables: {unknown}"

    def test_api_sets_the_server_and_database_settings(self) -> None:
        """The api service sets DATABASE_URL and the host/port/workers `serve` reads."""
        required = {"DATABASE_URL", "SESSIONGRAPH_HOST", "SESSIONGRAPH_PORT"}
        required |= {"SESSIONGRAPH_WORKERS"}
        assert required <= set(_api_env())

    def test_interpolations_pass_through_the_same_name(self) -> None:
        """A `${VAR...}` in a value names the very variable it is the value of."""
        for key, value in _api_env().items():
            for match in _INTERPOLATION.finditer(value or ""):
                assert match.group("name") == key, f"{key} interpolates ${match.group('name')}"


# --- (b) compose env values ----------------------------------------------------------------


class TestComposeEnvValues:
    """Every value the compose `api` service sets validates as its setting."""

    def test_value_validates_through_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each literal value (or `${VAR:-default}` default) is a valid setting value.

        Allow-listed names and bare pass-throughs from the host carry no value to check.
        """
        fields = _field_for_env()
        checked = 0
        for name, raw in sorted(_api_env().items()):
            field = fields.get(name)
            if field is None or raw is None:
                continue
            _validate(monkeypatch, field, _interpolate(raw))
            checked += 1
        assert checked >= 4

    def test_no_value_resolves_to_empty(self) -> None:
        """No value is empty: pydantic-settings reads "" as a value, not as unset."""
        empty = sorted(k for k, v in _api_env().items() if v is not None and not _interpolate(v))
        assert not empty, f"use a real default or a bare pass-through for: {empty}"

    def test_defaults_match_the_settings_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A `${VAR:-default}` default equals the default in runtime/settings.py."""
        fields = _field_for_env()
        for key, value in _api_env().items():
            if value is None or key not in fields or not _INTERPOLATION.fullmatch(value):
                continue
            field = fields[key]
            parsed = getattr(_validate(monkeypatch, field, _interpolate(value)), field)
            assert parsed == Settings.model_fields[field].default, key

    def test_port_and_workers_parse_as_ints(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """SESSIONGRAPH_PORT and SESSIONGRAPH_WORKERS are integers."""
        env = _api_env()
        port = _validate(monkeypatch, "port", _interpolate(env["SESSIONGRAPH_PORT"] or "")).port
        workers = _validate(
            monkeypatch, "workers", _interpolate(env["SESSIONGRAPH_WORKERS"] or "")
        ).workers
        assert isinstance(port, int) and isinstance(workers, int)


# --- (c) database url ----------------------------------------------------------------------


class TestComposeDatabaseUrl:
    """The api's DATABASE_URL points at the postgres service with its credentials."""

    def test_url_matches_postgres_service(self) -> None:
        """Host, user, password, database and port agree with the postgres service."""
        url = urlsplit(_interpolate(_api_env()["DATABASE_URL"] or ""))
        pg_env = _environment(_service("postgres"))
        assert url.scheme in {"postgresql", "postgres"}
        assert url.hostname == "postgres" and url.hostname in _compose()["services"]
        assert url.username == pg_env["POSTGRES_USER"]
        assert url.password == pg_env["POSTGRES_PASSWORD"]
        assert url.path.lstrip("/") == pg_env["POSTGRES_DB"]
        assert (url.port or 5432) == int(pg_env.get("PGPORT") or 5432)


# --- (d) healthchecks and ports ------------------------------------------------------------


class TestComposeHealthAndPorts:
    """Both services have healthchecks, start in order, and publish the configured port."""

    @pytest.mark.parametrize("name", ["postgres", "api"])
    def test_service_has_healthcheck(self, name: str) -> None:
        """The service declares an enabled healthcheck with a test command."""
        healthcheck = _service(name).get("healthcheck") or {}
        assert healthcheck.get("test") and not healthcheck.get("disable")
        assert _healthcheck_text(_service(name)).split()[0] != "NONE"

    def test_postgres_healthcheck_uses_pg_isready_for_the_database(self) -> None:
        """postgres's healthcheck runs pg_isready for its own user and database."""
        text = _healthcheck_text(_service("postgres"))
        pg_env = _environment(_service("postgres"))
        assert "pg_isready" in text
        assert f"-U {pg_env['POSTGRES_USER']}" in text and f"-d {pg_env['POSTGRES_DB']}" in text

    def test_api_waits_for_healthy_postgres(self) -> None:
        """api depends_on postgres with condition service_healthy."""
        depends_on = _service("api")["depends_on"]
        assert isinstance(depends_on, dict), "use the long depends_on syntax with a condition"
        assert depends_on["postgres"]["condition"] == "service_healthy"

    def test_api_healthcheck_hits_readyz_on_the_server_port(self) -> None:
        """api's healthcheck requests /readyz on SESSIONGRAPH_PORT."""
        urls = _URL.findall(_healthcheck_text(_service("api")))
        assert len(urls) == 1, urls
        url = urlsplit(urls[0])
        assert url.path == "/readyz"
        assert url.port == int(_interpolate(_api_env()["SESSIONGRAPH_PORT"] or ""))

    def test_published_port_is_the_server_port(self) -> None:
        """api publishes SESSIONGRAPH_PORT (container side) on the same host port."""
        port = int(_interpolate(_api_env()["SESSIONGRAPH_PORT"] or ""))
        assert _published_ports(_service("api")) == [(port, port)]

    def test_api_restarts_unless_stopped(self) -> None:
        """api restarts unless stopped."""
        assert _service("api").get("restart") == "unless-stopped"


# --- (e) Dockerfile ------------------------------------------------------------------------


class TestDockerfile:
    """The Dockerfile sets real settings and serves on the port it exposes."""

    def test_env_names_are_settings_or_allowed(self) -> None:
        """Each ENV name is a setting's env name or allow-listed."""
        known = set(env_names().values()) | DOCKERFILE_ALLOWED
        unknown = sorted(set(_dockerfile_env()) - known)
        assert not unknown, f"Dockerfile sets unknown variables: {unknown}"

    def test_env_setting_values_validate(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each ENV value for a setting validates through Settings."""
        fields = _field_for_env()
        for name, value in _dockerfile_env().items():
            if name in fields:
                _validate(monkeypatch, fields[name], value)

    def test_binds_all_interfaces_with_strict_msgpack(self) -> None:
        """The image binds 0.0.0.0, keeps msgpack strict and puts the venv on PATH."""
        env = _dockerfile_env()
        assert env["SESSIONGRAPH_HOST"] == "0.0.0.0"
        assert env["LANGGRAPH_STRICT_MSGPACK"] == "true"
        assert env["PATH"].startswith("/app/.venv/bin:")

    def test_expose_equals_the_port_setting(self) -> None:
        """EXPOSE is exactly the SESSIONGRAPH_PORT the image sets (and compose uses)."""
        exposed = [p.split("/")[0] for args in _dockerfile_args("EXPOSE") for p in args.split()]
        port = _dockerfile_env()["SESSIONGRAPH_PORT"]
        assert exposed == [port]
        assert _interpolate(_api_env()["SESSIONGRAPH_PORT"] or "") == port

    def test_cmd_runs_sessiongraph_serve(self) -> None:
        """The last CMD is `sessiongraph serve`."""
        assert _exec_form(_dockerfile_args("CMD")[-1]) == ["sessiongraph", "serve"]

    def test_sessiongraph_script_is_declared(self) -> None:
        """pyproject's [project.scripts] declares the `sessiongraph` entry point."""
        assert _pyproject()["project"]["scripts"]["sessiongraph"] == "api.cli:main"

    def test_healthcheck_hits_healthz_on_the_port(self) -> None:
        """HEALTHCHECK requests /healthz on SESSIONGRAPH_PORT with python (no curl in slim)."""
        (healthcheck,) = _dockerfile_args("HEALTHCHECK")
        (url_text,) = _URL.findall(healthcheck)
        url = urlsplit(url_text)
        assert "python" in healthcheck and "urllib" in healthcheck
        assert url.path == "/healthz"
        assert str(url.port) == _dockerfile_env()["SESSIONGRAPH_PORT"]

    def test_runs_as_non_root(self) -> None:
        """The final USER is not root."""
        users = _dockerfile_args("USER")
        assert users and users[-1].split(":")[0] not in {"root", "0"}

    def test_installs_locked_dependencies_before_the_source(self) -> None:
        """uv.lock is synced (frozen, no dev, no project) before the source is copied."""
        runs = [(kw, args) for kw, args in _dockerfile_instructions() if kw in {"COPY", "RUN"}]
        first_sync = next(
            i for i, (kw, args) in enumerate(runs) if kw == "RUN" and "uv sync" in args
        )
        assert "--no-install-project" in runs[first_sync][1]
        assert "--frozen" in runs[first_sync][1] and "--no-dev" in runs[first_sync][1]
        copied_before = " ".join(args for kw, args in runs[:first_sync] if kw == "COPY")
        assert "pyproject.toml" in copied_before and "uv.lock" in copied_before
        for package in _pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
            assert package not in copied_before.split()

    def test_copies_every_wheel_package(self) -> None:
        """Every package the wheel ships, and the README it declares, is copied in."""
        sources = {
            Path(token).as_posix().rstrip("/")
            for args in _dockerfile_args("COPY")
            if not args.startswith("--from")
            for token in shlex.split(args)[:-1]
            if not token.startswith("--")
        }
        wheel = _pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        assert "." in sources or {*wheel, "README.md"} <= sources

    def test_dockerignore_excludes_local_state(self) -> None:
        """.dockerignore keeps the venv, git, caches, local data and secrets out of the image."""
        ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
        for entry in [".venv", ".git", ".env", ".sessiongraph", "bench/out", ".pytest_cache"]:
            assert entry in ignored, entry


# --- (f) README ----------------------------------------------------------------------------


def _readme_configuration_rows() -> list[str]:
    """Table rows in README.md's "Configuration" section (including its subsections)."""
    rows: list[str] = []
    level = 0
    for line in README.read_text().splitlines():
        heading = re.match(r"(#+)\s+(.*)", line)
        if heading:
            depth = len(heading.group(1))
            if level and depth <= level:
                break
            if not level and "configuration" in heading.group(2).lower():
                level = depth
            continue
        if level and line.lstrip().startswith("|"):
            rows.append(line)
    return rows


class TestReadme:
    """README.md's configuration table lists every setting."""

    def test_every_setting_is_in_the_configuration_table(self) -> None:
        """Every env name from env_names() appears in a row of the configuration table."""
        rows = "\n".join(_readme_configuration_rows())
        assert rows, "README.md has no table under a 'Configuration' heading"
        missing = [
            name
            for name in env_names().values()
            if not re.search(rf"(?<![A-Z0-9_]){re.escape(name)}(?![A-Z0-9_])", rows)
        ]
        assert not missing, f"README configuration table lacks: {missing}"
