"""The secret registry and the registered judge models: every check and lookup in one place.

Design notes: docs/ENGINE_NOTES.md, section ``evaluations.registry``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from django.conf import settings

from core.errors import ValidationFailed

from .models import JudgeModel, RegisteredSecret
from .targets import TargetConfigError, validate_target_config
from .targets.secrets import (
    ENV_NAME,
    SECRET_NAME,
    SOURCES,
    SecretError,
    SecretResolver,
    leaked_values,
    read_secret,
    secret_refs,
    secret_shaped,
)

WILDCARD = "*"


def secrets_file() -> str | None:
    return getattr(settings, "EVAL_SECRETS_FILE", "") or None


# --- values that must never be stored --------------------------------------------------------


def protected_values() -> list[str]:
    """Every value no stored field may contain: each registered secret readable here, and the
    process's own keys (``SECRET_KEY``, the signing key) which are never registrable."""
    values = [getattr(settings, "SECRET_KEY", ""), getattr(settings, "ATTESTATION_SIGNING_KEY", "")]
    for row in RegisteredSecret.objects.all():
        with contextlib.suppress(SecretError):
            values.append(read_secret(row.source, row.source_key, secrets_file=secrets_file()))
    return [v for v in values if isinstance(v, str) and v]


def refuse_protected_values(value, field: str) -> None:
    """ValidationFailed naming each path of ``value`` that holds a protected value."""
    paths = leaked_values(value, protected_values())
    if paths:
        shown = ", ".join(f"{field}.{p}" if p != "document" else field for p in paths[:5])
        raise ValidationFailed(
            f"{shown}: holds the value of a registered secret or a server key; a config "
            "refers to secrets by their registered name and never contains one",
            fields={field: [f"{p}: holds a secret value" for p in paths[:5]]},
        )


def refuse_secret_text(fields: dict) -> None:
    """ValidationFailed for the first of ``fields`` (field name -> value) that holds a
    protected value (as ``refuse_protected_values``) or a string shaped like a well-known
    credential (as a target's free-form fields). Used for text every user reads back, such as
    an AI system's name and description (issue 16): a secret pasted there would leak to all."""
    for field, value in fields.items():
        if value in (None, ""):
            continue
        if leaked_values(value, protected_values()):
            raise ValidationFailed(
                f"{field}: holds the value of a registered secret or a server key; secrets "
                "are never stored in text that every user reads",
                fields={field: ["Holds a secret value."]},
            )
        if secret_shaped(value):
            raise ValidationFailed(
                f"{field}: looks like a credential (an API key, token or private key); "
                "secrets are never stored in text that every user reads",
                fields={field: ["Looks like a credential."]},
            )


# --- targets ---------------------------------------------------------------------------------


def target_validate(config: dict, *, field: str = "target") -> dict:
    """A system target (or judge model config) for storing: static checks, no ``*_env``, no
    secret inside, and every secret it names registered. Returns it normalised."""
    try:
        normalised = validate_target_config(config)
    except TargetConfigError as exc:
        raise ValidationFailed(f"{field}: {exc}", fields={field: list(exc.errors)}) from None
    unknown = sorted(
        set(secret_refs(normalised)) - set(RegisteredSecret.objects.values_list("name", flat=True))
    )
    if unknown:
        message = (
            f"{field}: no registered secret named {', '.join(map(repr, unknown))}; an admin "
            "registers secrets (Admin > Registered secrets) and grants them to systems"
        )
        raise ValidationFailed(message, fields={field: [message]})
    refuse_protected_values(config, field)
    return normalised


def _grant(names: Iterable[str], *, allowed: str, user: str) -> SecretResolver:
    """A resolver for ``names``, each checked against the row's allow-list ``allowed``
    (``allowed_systems`` or ``allowed_suites``) for ``user``; TargetConfigError otherwise."""
    names = list(dict.fromkeys(names))
    rows = {r.name: r for r in RegisteredSecret.objects.filter(name__in=names)}
    errors, sources = [], {}
    for name in names:
        row = rows.get(name)
        if row is None:
            errors.append(f"secret {name!r} is not registered")
            continue
        grantees = getattr(row, allowed) or []
        if user not in grantees and not (allowed == "allowed_suites" and WILDCARD in grantees):
            what = "system" if allowed == "allowed_systems" else "suite"
            errors.append(f"secret {name!r} is not granted to {what} {user!r}")
            continue
        sources[name] = (row.source, row.source_key)
    if errors:
        raise TargetConfigError(errors)
    return SecretResolver(sources, secrets_file=secrets_file())


def _upgrade_legacy_env(config: dict, system_name: str) -> dict:
    """A stored config's retired ``api_key_env`` / ``headers_env`` as registered-secret
    references: the variable must be registered (source env) and granted to this system (the
    migration registered the ones in use), so no stored text can name another variable."""
    config = dict(config)
    env_names = []
    if config.get("api_key_env"):
        env_names.append(config["api_key_env"])
    headers = config.get("headers_env") if isinstance(config.get("headers_env"), dict) else {}
    env_names += list(headers.values())
    if not env_names:
        return config
    rows = {}
    for row in RegisteredSecret.objects.filter(source="env", source_key__in=env_names):
        if system_name in (row.allowed_systems or []):
            rows[row.source_key] = row.name
    missing = [e for e in env_names if e not in rows]
    if missing:
        raise TargetConfigError(
            f"the target names the environment variable(s) {', '.join(missing)}, which configs "
            f"may no longer do: an admin must register each as a secret granted to system "
            f"{system_name!r} and the target must name it (api_key_secret / headers_secret)"
        )
    if config.get("api_key_env"):
        config["api_key_secret"] = rows[config.pop("api_key_env")]
    if headers:
        config["headers_secret"] = {h: rows[e] for h, e in headers.items()}
        config.pop("headers_env")
    return config


def target_for_system(config: dict, *, system_name: str) -> tuple[dict, SecretResolver]:
    """A stored system target, ready to build: (config naming only registered secrets,
    resolver for exactly the secrets granted to this system). TargetConfigError says why not.
    """
    validate_target_config(config, allow_env=True)  # shape first: clear messages
    config = _upgrade_legacy_env(config, system_name)
    normalised = validate_target_config(config)
    return normalised, _grant(secret_refs(normalised), allowed="allowed_systems", user=system_name)


# --- judges ----------------------------------------------------------------------------------


class JudgeUnavailable(Exception):
    """A suite's judge cannot be used; the message says why and what to do."""


def judge_name(document: dict) -> str | None:
    judge = document.get("judge")
    if isinstance(judge, dict):
        return judge.get("model") if isinstance(judge.get("model"), str) else None
    return judge if isinstance(judge, str) else None


def suite_judge_validate(document: dict) -> None:
    """Upload check: the judge a suite names is registered and enabled."""
    name = judge_name(document)
    if name is None:
        return
    if not JudgeModel.objects.filter(name=name, enabled=True).exists():
        names = list(JudgeModel.objects.filter(enabled=True).values_list("name", flat=True))
        known = f" (registered: {', '.join(names)})" if names else " (none is registered yet)"
        message = (
            f"judge: no enabled judge model named {name!r}{known}; an admin registers judge models"
        )
        raise ValidationFailed(message, fields={"judge": [message]})


def judge_for_suite(document: dict, *, suite_name: str) -> tuple[dict, SecretResolver] | None:
    """The judge config and resolver a suite's run uses; None when the suite names none.

    Raises :class:`JudgeUnavailable` with the reason (an inline config from before judges
    were registered, an unknown or disabled judge, a secret not granted to this suite).
    """
    raw = document.get("judge")
    if raw is None:
        return None
    if isinstance(raw, dict) and "kind" in raw:
        raise JudgeUnavailable(
            "this suite's judge is an inline model config (stored before judges were "
            "registered), which is no longer used: upload a new version whose judge names a "
            "judge model an admin registered"
        )
    name = judge_name(document)
    row = JudgeModel.objects.filter(name=name).first()
    if row is None or not row.enabled:
        state = "is disabled" if row is not None else "is not registered"
        raise JudgeUnavailable(f"the judge model {name!r} named by this suite {state}")
    try:
        config = validate_target_config(row.config)
        return config, _grant(secret_refs(config), allowed="allowed_suites", user=suite_name)
    except TargetConfigError as exc:
        raise JudgeUnavailable(f"judge model {name!r}: {exc}") from None


def judge_model_validate(config: dict) -> dict:
    """A judge model's config for storing (admin): an OpenAI-compatible target config under
    the same rules as a system's target, and its literal address checked against
    ``EVAL_ALLOWED_HOSTS`` now (host names are checked, and pinned, when it is called)."""
    if not isinstance(config, dict) or config.get("kind", "openai") != "openai":
        raise ValidationFailed('config: a judge model is {"kind": "openai", "base_url", "model"}')
    normalised = target_validate({"kind": "openai", **config}, field="config")
    allowed = list(getattr(settings, "EVAL_ALLOWED_HOSTS", []))
    try:
        validate_target_config(normalised, allowed_hosts=allowed)
    except TargetConfigError as exc:
        raise ValidationFailed(f"config: {exc}", fields={"config": list(exc.errors)}) from None
    return normalised


# --- the registry itself ---------------------------------------------------------------------


def secret_registration_errors(
    *, name: str, source: str, source_key: str, allowed_systems, allowed_suites
) -> dict[str, str]:
    """Field -> problem for a secret registration (the admin form)."""
    errors = {}
    if not SECRET_NAME.match(name or ""):
        errors["name"] = "Lower-case letters, digits, . _ - (at most 80), e.g. judge-key."
    if source not in SOURCES:
        errors["source"] = f"One of {', '.join(SOURCES)}."
    elif source == "env" and not ENV_NAME.match(source_key or ""):
        errors["source_key"] = "The NAME of an environment variable, like JUDGE_API_KEY."
    elif source == "env" and source_key in _SERVER_KEYS:
        errors["source_key"] = f"{source_key} is the server's own key and is never registrable."
    elif not (source_key or "").strip():
        errors["source_key"] = "The key of the value in the secrets file."
    for field, value in (("allowed_systems", allowed_systems), ("allowed_suites", allowed_suites)):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            errors[field] = 'A list of names, e.g. ["support-assistant"].'
    return errors


# Variables that hold the server's own keys: registering one would let a target send it out.
_SERVER_KEYS = frozenset(
    {"SECRET_KEY", "ATTESTATION_SIGNING_KEY", "DATABASE_URL", "CELERY_BROKER_URL"}
)


# --- writes (the admin forms call these) -------------------------------------------------------


def secret_save(*, actor, secret: RegisteredSecret, created: bool) -> RegisteredSecret:
    """Store a secret registration (admin only). Writes ``secret.registered`` or
    ``secret.changed`` with the name, source kind and grants: never a value (none is held)."""
    from django.db import transaction

    from changes import audit
    from core import roles

    if not roles.is_admin(actor):
        raise ValidationFailed("Only admins register secrets.")
    errors = secret_registration_errors(
        name=secret.name,
        source=secret.source,
        source_key=secret.source_key,
        allowed_systems=secret.allowed_systems,
        allowed_suites=secret.allowed_suites,
    )
    if errors:
        raise ValidationFailed("; ".join(f"{k}: {v}" for k, v in errors.items()), fields=errors)
    with transaction.atomic():
        secret.save()
        audit.append(
            actor=actor,
            verb="secret.registered" if created else "secret.changed",
            obj=secret,
            data={
                "name": secret.name,
                "source": secret.source,
                "allowed_systems": list(secret.allowed_systems),
                "allowed_suites": list(secret.allowed_suites),
            },
        )
    return secret


def judge_model_save(*, actor, judge: JudgeModel, created: bool) -> JudgeModel:
    """Store a judge model (admin only) after :func:`judge_model_validate`. Writes
    ``judge.registered`` or ``judge.changed`` with its name, model and host."""
    from django.db import transaction

    from changes import audit
    from core import roles

    if not roles.is_admin(actor):
        raise ValidationFailed("Only admins register judge models.")
    judge.config = judge_model_validate(judge.config)
    with transaction.atomic():
        judge.save()
        audit.append(
            actor=actor,
            verb="judge.registered" if created else "judge.changed",
            obj=judge,
            data={
                "name": judge.name,
                "model": judge.config.get("model"),
                "base_url": judge.config.get("base_url"),
                "enabled": judge.enabled,
            },
        )
    return judge
