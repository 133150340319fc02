"""docker/: the compose file, env example, Dockerfile and entrypoint agree with the project.

No Docker engine is needed: the files are parsed, and every module, env var and URL they
name is checked against the code.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from celery import Celery
from django.urls import Resolver404, resolve

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = {name: s for name, s in SERVICES.items() if "build" in s}
ENV_LINE = re.compile(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
ENV_READERS = {"str", "bool", "int", "float", "list", "tuple", "dict", "json", "url", "db",
               "db_url", "cache", "cache_url", "email", "email_url", "search_url", "path",
               "parse_value", "get_value"}  # fmt: skip


def settings_env_vars() -> set[str]:
    """Names config/settings.py reads: env("X"), env.str("X"), Env().int("X"), Env(X=...),
    os.environ["X"], os.environ.get("X"), os.getenv("X")."""
    tree = ast.parse((ROOT / "config" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            if (isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ"
                    and isinstance(node.slice, ast.Constant)):  # fmt: skip
                names.add(node.slice.value)
            continue
        func = ast.unparse(node.func)
        first = node.args[0] if node.args else None
        literal = first.value if isinstance(first, ast.Constant) else None
        if func.endswith("Env") or func == "environ.Env":
            names.update(kw.arg for kw in node.keywords if kw.arg and kw.arg.isupper())
        is_reader = func == "env" or (
            isinstance(node.func, ast.Attribute)
            and node.func.attr in ENV_READERS
            and ("env" in ast.unparse(node.func.value).lower())
        )
        reads = is_reader or func in ("os.environ.get", "os.getenv", "os.environ.setdefault")
        if reads and isinstance(literal, str) and re.fullmatch(r"[A-Z][A-Z0-9_]*", literal):
            names.add(literal)
    return names


def env_example() -> dict[str, str]:
    """NAME -> value for every documented variable, commented-out defaults included."""
    found = {}
    for line in (DOCKER / "env.example").read_text().splitlines():
        match = ENV_LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def entrypoint_env_vars() -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (DOCKER / "entrypoint.sh").read_text()))


def argv(command) -> list[str]:
    return list(command) if isinstance(command, list) else shlex.split(command)


def env_files(service: dict) -> list[tuple[Path, bool]]:
    entries = service.get("env_file", [])
    entries = [entries] if isinstance(entries, str | dict) else entries
    files = []
    for entry in entries:
        path, required = (entry, True) if isinstance(entry, str) else (
            entry["path"], entry.get("required", True))  # fmt: skip
        files.append((DOCKER / path, required))
    return files


# --- services ------------------------------------------------------------------------------


def test_compose_has_the_five_services():
    assert {"web", "worker", "beat", "postgres", "redis"} <= set(SERVICES)
    assert set(APP_SERVICES) == {"web", "worker", "beat"}
    assert SERVICES["postgres"]["image"].startswith("postgres:16")
    assert SERVICES["redis"]["image"].startswith("redis:7")


def test_app_services_build_the_project_image():
    for name, service in APP_SERVICES.items():
        build = service["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == ROOT, name
        assert (context / build["dockerfile"]).is_file(), name


def test_web_runs_gunicorn_on_the_project_wsgi_app():
    args = argv(SERVICES["web"]["command"])
    assert args[0] == "gunicorn"
    targets = [a for a in args[1:] if re.fullmatch(r"[\w.]+:\w+", a)]
    assert targets, f"no module:attribute in {args}"
    module, attr = targets[0].split(":")
    assert module == "config.wsgi"
    assert callable(getattr(importlib.import_module(module), attr))


@pytest.mark.parametrize("service,subcommand", [("worker", "worker"), ("beat", "beat")])
def test_celery_services_use_the_project_app(service, subcommand):
    args = argv(SERVICES[service]["command"])
    assert args[0] == "celery" and subcommand in args
    app_module = args[args.index("-A") + 1]
    # `celery -A config` finds config.celery:app (Celery's own lookup order).
    module = importlib.import_module(app_module)
    app = getattr(module, "app", None) or importlib.import_module(f"{app_module}.celery").app
    assert isinstance(app, Celery)


def test_every_service_has_a_health_check():
    for name, service in SERVICES.items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name


def test_web_health_check_probes_healthz_and_readyz_which_exist():
    probe = " ".join(SERVICES["web"]["healthcheck"]["test"])
    for path in ("/healthz", "/readyz"):
        assert path in probe
        try:
            resolve(path)
        except Resolver404:
            pytest.fail(f"{path} is not routed in config/urls.py")


def test_health_checks_use_the_right_tools():
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert "redis-cli" in " ".join(SERVICES["redis"]["healthcheck"]["test"])
    assert "config" in " ".join(SERVICES["worker"]["healthcheck"]["test"])


def test_dependencies_and_volumes_are_declared():
    volumes = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for dep in service.get("depends_on", {}):
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0] if isinstance(mount, str) else mount["source"]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} mounts undeclared volume {source}"
    assert "/app/var" in " ".join(APP_SERVICES["web"]["volumes"])


def test_only_web_migrates_on_start():
    flag = "DJANGO_MIGRATE_ON_START"
    assert SERVICES["web"]["environment"][flag] == "true"
    for name in ("worker", "beat"):
        assert (SERVICES[name].get("environment") or {}).get(flag, "false") != "true"


# --- environment ---------------------------------------------------------------------------


def test_env_files_exist():
    for name, service in APP_SERVICES.items():
        files = env_files(service)
        assert files, f"{name} has no env_file"
        for path, required in files:
            assert path.is_file() or not required, f"{name}: missing {path}"


def test_every_env_var_in_compose_and_env_example_is_read_by_the_settings():
    known = settings_env_vars() | entrypoint_env_vars()
    used = set(env_example())
    for service in APP_SERVICES.values():
        used |= set(service.get("environment") or {})
    unknown = used - known
    assert not unknown, f"not read by config/settings.py or the entrypoint: {sorted(unknown)}"


def test_env_example_documents_every_env_var_the_settings_read():
    missing = settings_env_vars() - set(env_example())
    assert not missing, (
        f"add these to docker/env.example (commented out with the default if optional): "
        f"{sorted(missing)}"
    )


def test_settings_scanner_sees_the_known_names():
    # Guards the AST scan itself: these are read today in three different ways.
    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "VAR_DIR",
            "EVAL_ALLOWED_HOSTS", "ATTESTATION_SIGNING_KEY"} <= settings_env_vars()  # fmt: skip


def test_compose_uses_no_undefined_interpolation():
    text = (DOCKER / "compose.yaml").read_text()
    # $$ is a literal dollar for the container's shell; ${X} would need the host's env.
    assert not re.findall(r"(?<!\$)\$\{?[A-Za-z_]", text.replace("$$", ""))


def test_env_example_points_at_the_compose_services():
    env = env_example()
    db = urlsplit(env["DATABASE_URL"])
    pg = SERVICES["postgres"]["environment"]
    assert db.scheme.startswith("postgres") and db.hostname == "postgres"
    assert db.username == pg["POSTGRES_USER"] and db.password == pg["POSTGRES_PASSWORD"]
    assert db.path.lstrip("/") == pg["POSTGRES_DB"]
    broker = urlsplit(env["CELERY_BROKER_URL"])
    assert broker.scheme == "redis" and broker.hostname == "redis"
    assert env["DEBUG"] == "false"
    assert "127.0.0.1" in env["ALLOWED_HOSTS"].split(","), "the web health check uses 127.0.0.1"


# --- image ---------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_image_from_the_lock():
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert "COPY requirements.lock" in text and "-r requirements.lock" in text
    assert "libpango-1.0-0" in text and "collectstatic" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"', text, re.M).group(1)
    assert entry == "/app/docker/entrypoint.sh"


def test_entrypoint_is_executable_and_execs_the_command():
    path = DOCKER / "entrypoint.sh"
    assert os.access(path, os.X_OK)
    text = path.read_text()
    assert text.startswith("#!/bin/sh") and 'exec "$@"' in text
    assert "migrate" in text


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    for entry in (".venv", ".git", "var"):
        assert entry in ignored
