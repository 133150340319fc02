"""Reads for environments: the live registry, its history, the per-environment gate and the
other open changes on a system. Rules live here once; the deploy service re-runs them under
its row locks. Design notes: docs/ENVIRONMENTS.md."""

from __future__ import annotations

from django.db.models import Exists, OuterRef
from django.utils import timezone

from . import environments, gate_context, hooks, states
from .env_models import Environment, LiveVersion
from .models import ChangeRequest, Deployment

OPEN_STATES = frozenset(states.STATES) - states.TERMINAL - {states.DEPLOYED}


def environments_of(
    system, *, for_gate: bool = False, deployed: ChangeRequest | None = None
) -> list[Environment]:
    """The system's environments in path order, each with its live row and what put it there.

    ``for_gate`` joins only the live protocol: the gate needs the deployment and its change
    only to word a stale-base refusal (read then, lazily), and the four-table join costs
    more to build than the query costs to run (bench ``env_gate``). ``deployed`` marks each
    environment with whether that change is deployed there (``deployed_here``), in the same
    statement: the gate asks it for the order rule, and a query of its own costs more to
    build than to run."""
    if for_gate:  # the live protocol's version, not its (possibly long) texts
        rows = Environment.objects.select_related("live__protocol").defer(
            "live__protocol__body", "live__protocol__system_prompt"
        )
    else:
        rows = Environment.objects.select_related(
            "live__protocol", "live__deployment__change", "live__deployment__deployed_by"
        )
    if deployed is not None:
        rows = rows.annotate(
            deployed_here=Exists(
                Deployment.objects.filter(change_id=deployed.pk, environment=OuterRef("name"))
            )
        )
    return list(rows.filter(system=system).order_by("order", "id"))


def environment_named(system, name) -> Environment | None:
    if not isinstance(name, str):
        return None
    return Environment.objects.filter(system=system, name=name.strip()).first()


def live_row(env: Environment) -> LiveVersion:
    """The registry row (created with the environment; made here for rows lost to a restore)."""
    return LiveVersion.objects.select_related("protocol", "deployment__change").get_or_create(
        environment=env
    )[0]


def history(env: Environment):
    """Every deployment to ``env``, oldest first (each names the version it replaced)."""
    return (
        Deployment.objects.filter(change__system_id=env.system_id, environment=env.name)
        .select_related("change", "protocol", "previous_protocol", "deployed_by")
        .order_by("created_at", "id")
    )


def open_changes(change: ChangeRequest, user, limit: int = 50) -> list[dict]:
    """Other open (not deployed, not finished) changes on the same system that ``user`` may
    see: possible conflicts. No user, no list (a draft's title must not leak)."""
    from .selectors import visible_changes

    rows = (
        visible_changes(user)
        .filter(system_id=change.system_id, state__in=OPEN_STATES)
        .exclude(pk=change.pk)
        .order_by("-id")
        .values("id", "title", "state", "base_protocol__version", "author__username")[:limit]
    )
    return [
        {
            "id": r["id"],
            "reference": f"CR-{r['id']}",
            "title": r["title"],
            "state": r["state"],
            "base_version": r["base_protocol__version"],
            "author": r["author__username"],
        }
        for r in rows
    ]


def deployed_environments(change: ChangeRequest) -> dict[str, Deployment]:
    return {d.environment: d for d in change.deployments.all()}


def final_environment(envs: list[Environment]) -> Environment | None:
    """The end of the path: reaching it makes a change "deployed"; the default target."""
    return envs[-1] if envs else None


def stale_reason(change: ChangeRequest, env: Environment, live: LiveVersion) -> str | None:
    """Why ``change`` may not replace what runs in ``env``, or None when its base is live."""
    if live.protocol_id is None or live.protocol_id == change.base_protocol_id:
        return None
    dep = live.deployment
    via = (
        f" ({dep.change.reference}, deployed {dep.created_at:%Y-%m-%d})" if dep is not None else ""
    )
    return (
        f"{env.name} now runs {live.protocol.version}{via}; this change was written against "
        f"{change.base_protocol.version}: rebase."
    )


def environment_reasons(
    change: ChangeRequest,
    env: Environment,
    envs: list[Environment],
    live: LiveVersion,
    *,
    approvals: int,
    blackout_override: bool = False,
    now=None,
    done: set[str] | None = None,
) -> list[tuple[str, str]]:
    """Every unmet condition for deploying ``change`` to ``env`` now, as (code, words).
    ``done`` (the environments ``change`` is deployed to) is read here unless the caller
    read it with ``envs`` (``environments_of(deployed=change)``); the deploy service lets it
    be read here, under its locks."""
    from .permissions import required_approvals
    from .selectors import approval_standing_reasons

    reasons: list[tuple[str, str]] = []
    final = envs[-1].pk == env.pk
    early = env.required_approvals is not None and not final and not change.is_emergency
    needed = env.required_approvals if early else required_approvals(change)
    if env.required_approvals is not None and final and not change.is_emergency:
        needed = env.required_approvals
    allowed = {states.APPROVED} | ({states.AWAITING_REVIEW} if early else set())
    if change.state not in allowed:
        reasons.append(
            ("gate_closed", f"The change is '{change.state_label}'; only approved changes "
             f"can be deployed to {env.name}.")
        )  # fmt: skip
    if approvals < needed:
        reasons.append(
            ("gate_closed", f"{approvals} of {needed} required independent approval(s) for "
             f"{env.name} on the current content (hash {change.content_sha256[:12]}…).")
        )  # fmt: skip
        reasons += [("gate_closed", r) for r in approval_standing_reasons(change)]
    if change.state in allowed:
        reasons += [("gate_closed", r) for r in hooks.evaluation().gate_reasons(change)]
        # later apps' rules (reviewer rules, blocking discussions), as in gate_reasons
        reasons += [("gate_closed", r) for rule in hooks.gate_rules() for r in rule(change)]
    if done is None:
        done = set(change.deployments.values_list("environment", flat=True))
    if env.name in done:
        reasons.append(("already_deployed", f"This change is already deployed to {env.name}."))
    if env.requires_previous:
        missing = [e.name for e in envs if e.order < env.order and e.name not in done]
        if missing:
            reasons.append(
                ("out_of_order", f"{env.name} comes after {', '.join(missing)} on the promotion "
                 f"path: deploy to {missing[0]} first.")
            )  # fmt: skip
    stale = stale_reason(change, env, live)
    if stale:
        reasons.append(("stale_base", stale))
    if env.requires_staged_rollout and not change.stages:
        reasons.append(
            ("staged_rollout_required", f"{env.name} requires a staged rollout: declare stages "
             "(e.g. [5, 25, 100]) on the change.")
        )  # fmt: skip
    window = environments.in_blackout(env.blackout_windows, env.time_zone, now or timezone.now())
    if window and not blackout_override:
        reasons.append(
            ("blackout", f"{env.name} is in a blackout window ({window['start']} - "
             f"{window['end']}, {env.time_zone}); deploy with the emergency override, which "
             "needs one approval more than usual.")
        )  # fmt: skip
    elif window and approvals < needed + 1:
        reasons.append(
            ("blackout", f"The blackout override needs {needed + 1} approvals; "
             f"{approvals} given.")
        )  # fmt: skip
    return reasons


def environment_gate(
    change: ChangeRequest,
    env: Environment | None = None,
    user=None,
    approvals: int | None = None,
    blackout_override: bool = False,
) -> dict:
    """The gate for one environment (default: the last one on the path) plus conflicts."""
    from .selectors import valid_approvals

    envs = environments_of(change.system, for_gate=True, deployed=change)
    env = env or final_environment(envs)
    if env is None:
        return {"environment": None, "reasons": [], "codes": [], "open_changes": []}
    live = next((e.live for e in envs if e.pk == env.pk and hasattr(e, "live")), None)
    live = live or live_row(env)
    if approvals is None:
        approvals = len(valid_approvals(change))
    done = {e.name for e in envs if e.deployed_here}
    pairs = environment_reasons(
        change, env, envs, live, approvals=approvals, blackout_override=blackout_override,
        done=done,
    )  # fmt: skip
    return {
        "environment": env.name,
        "reasons": [r for _, r in pairs],
        "codes": sorted({c for c, _ in pairs}),
        "live_version": live.protocol.version if live.protocol_id else None,
        "open_changes": open_changes(change, user),
    }


def registry(system) -> list[dict]:
    """For each environment of ``system``: what is live, since when, through which change."""
    out = []
    for env in environments_of(system):
        live = getattr(env, "live", None)
        dep = live.deployment if live else None
        out.append(
            {
                "name": env.name,
                "order": env.order,
                "requires_previous": env.requires_previous,
                "required_approvals": env.required_approvals,
                "requires_staged_rollout": env.requires_staged_rollout,
                "blackout_windows": env.blackout_windows,
                "time_zone": env.time_zone,
                "live_protocol": live.protocol_id if live else None,
                "live_version": live.protocol.version if live and live.protocol_id else None,
                "since": live.since if live else None,
                "deployment": dep.pk if dep else None,
                "change": dep.change_id if dep else None,
                "change_reference": dep.change.reference if dep else None,
                "deployed_by": dep.deployed_by.username if dep else None,
            }
        )
    return out


def replay(system) -> dict[str, int | None]:
    """The live registry recomputed from the deployment events alone (the invariant's twin)."""
    live: dict[str, int | None] = {e.name: None for e in environments_of(system)}
    for dep in Deployment.objects.filter(change__system=system).order_by("created_at", "id"):
        live[dep.environment] = dep.protocol_id
    return live


def change_status(change: ChangeRequest) -> list[dict]:
    """Per environment, for the change page: deployed there (when, by whom) or why not yet.
    Every environment asks the same rules; they share their reads (``gate_context``)."""
    with gate_context.computing(change):
        return _change_status(change)


def _change_status(change: ChangeRequest) -> list[dict]:
    from .selectors import valid_approvals

    envs = environments_of(change.system)
    done = deployed_environments(change)
    approvals = len(valid_approvals(change))
    out = []
    for env in envs:
        live = getattr(env, "live", None) or live_row(env)
        pairs = [] if env.name in done else environment_reasons(
            change, env, envs, live, approvals=approvals
        )  # fmt: skip
        out.append(
            {
                "name": env.name,
                "deployment": done.get(env.name),
                "live_version": live.protocol.version if live.protocol_id else None,
                "deployable": env.name not in done and not pairs,
                # the gate card already lists state, approvals and evaluation
                "reasons": [r for c, r in pairs if c != "gate_closed"],
                "stale": any(c == "stale_base" for c, _ in pairs),
            }
        )
    return out


def system_timeline(system, limit: int = 30):
    """The newest deployments of ``system`` across its environments, for the system page."""
    return (
        Deployment.objects.filter(change__system=system)
        .select_related("change", "protocol", "previous_protocol", "deployed_by")
        .order_by("-created_at", "-id")[:limit]
    )
