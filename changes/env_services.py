"""Writes for environments: configure, deploy into the live registry, start rollout stages,
roll back and rebase. Same recipe as ``changes.services``: one transaction, locks first,
rules from ``env_selectors``, one audit event per step. Design notes: docs/ENVIRONMENTS.md."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone

from core.errors import Conflict, NotAllowed, ValidationFailed

from . import (
    audit,
    checkpoints,
    content,
    env_selectors,
    environments,
    hooks,
    permissions,
    states,
)
from .env_models import DEFAULT_PATH, Environment, LiveVersion, RolloutStage
from .models import AISystem, ChangeRequest, Deployment, ProtocolVersion

CODE_PRIORITY = ("out_of_order", "stale_base", "blackout", "already_deployed")


@receiver(post_save, sender=AISystem, dispatch_uid="changes.default_environments")
def _default_environments(sender, instance, created, raw=False, **kwargs):
    """Every new system starts on the default path (staging, then production)."""
    if created and not raw:
        for name, order in DEFAULT_PATH:
            env = Environment.objects.create(system=instance, name=name, order=order)
            LiveVersion.objects.create(environment=env)


ENV_FIELDS = {
    "order",
    "required_approvals",
    "requires_previous",
    "blackout_windows",
    "time_zone",
    "requires_staged_rollout",
}


def _check_approvals_floor(system: AISystem) -> None:
    """Refuse a path whose final environment asks fewer approvals than the criticality
    floor (run after the write, inside its transaction, so a refusal leaves nothing)."""
    from .models import DEFAULT_REQUIRED_APPROVALS

    path = list(
        Environment.objects.filter(system=system)
        .order_by("order", "id")
        .values_list("name", "required_approvals")
    )
    floor = DEFAULT_REQUIRED_APPROVALS[system.criticality]
    problem = environments.approvals_floor_problem(path, system.criticality, floor)
    if problem:
        raise ValidationFailed(problem, fields={"required_approvals": [problem]})


@transaction.atomic
def environment_save(
    *, actor, system: AISystem, name: str, mode: str | None = None, **fields
) -> Environment:
    """Create or update one environment of ``system`` (admin). Writes ``environment.saved``.

    ``mode="create"`` refuses a name already on the path (409 ``exists``); ``mode="update"``
    refuses an unknown name (400 naming the known ones); ``None`` (admin form, seeding) does
    either. Every check runs before the audit event, in one transaction: a refusal writes
    nothing."""
    if not permissions.can_manage_systems(actor):
        raise NotAllowed("Only admins configure environments.")
    unknown = set(fields) - ENV_FIELDS
    if unknown:
        raise ValidationFailed(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    name = (name or "").strip() if isinstance(name, str) else ""
    from django.utils.text import slugify

    if not name or slugify(name) != name or len(name) > 50:
        raise ValidationFailed("name: a short lowercase slug such as 'staging'.")
    env = Environment.objects.select_for_update().filter(system=system, name=name).first()
    if mode == "create" and env is not None:
        raise Conflict(
            f"{system.name} already has an environment named '{name}'; edit it instead.",
            code="exists",
        )
    if mode == "update" and env is None:
        _environment(system, name)  # raises, naming the known environments
    if env is not None and all(getattr(env, k) == v for k, v in fields.items()):
        return env  # nothing changes: no write, no event (seed_demo re-runs)
    env = env or Environment(system=system, name=name, order=fields.get("order") or 0)
    for key, value in fields.items():
        setattr(env, key, value)
    try:
        environments.parse_windows(env.blackout_windows)
        environments.check_time_zone(env.time_zone)
    except ValueError as exc:
        raise ValidationFailed(str(exc), fields={"blackout_windows": [str(exc)]}) from None
    approvals = env.required_approvals
    if approvals is not None and (
        not isinstance(approvals, int) or isinstance(approvals, bool) or not 1 <= approvals <= 10
    ):
        raise ValidationFailed("required_approvals: must be between 1 and 10.")
    if not isinstance(env.order, int) or isinstance(env.order, bool) or env.order < 1:
        raise ValidationFailed("order: a positive whole number (the position on the path).")
    clash = Environment.objects.filter(system=system, order=env.order).exclude(pk=env.pk)
    if clash.exists():
        raise Conflict(
            f"order: {env.order} is already taken on {system.name}'s path "
            f"(by {clash.first().name}).",
            code="order_taken",
        )
    created = env.pk is None
    env.save()
    LiveVersion.objects.get_or_create(environment=env)
    _check_approvals_floor(system)
    audit.append(
        actor=actor,
        verb="environment.saved",
        obj=env,
        data={"system": system.pk, "name": name, "created": created, **fields},
    )
    return env


@transaction.atomic
def environment_delete(*, actor, system: AISystem, name: str) -> None:
    """Delete an environment nothing was ever deployed to (admin). The history names
    environments by name, so one with a deployment or a started stage stays (409
    ``deployed_here``); so does a system's last environment (409 ``last_environment``).
    Writes ``environment.deleted``."""
    if not permissions.can_manage_systems(actor):
        raise NotAllowed("Only admins configure environments.")
    env = _environment(system, name)
    env = Environment.objects.select_for_update().get(pk=env.pk)
    deployments = Deployment.objects.filter(change__system=system, environment=env.name)
    count = deployments.count()
    if count or RolloutStage.objects.filter(change__system=system, environment=env.name).exists():
        latest = deployments.select_related("change").order_by("-created_at", "-id").first()
        via = (
            f" (latest: {latest.change.reference}, {latest.created_at:%Y-%m-%d})" if latest else ""
        )
        raise Conflict(
            f"{count} deployment(s) went to {env.name}{via}: its history must stay, so it "
            "cannot be deleted. An environment is deleted only when nothing was ever "
            "deployed there.",
            code="deployed_here",
        )
    if Environment.objects.filter(system=system).count() == 1:
        raise Conflict(
            f"{env.name} is {system.name}'s only environment; add another before deleting it.",
            code="last_environment",
        )
    data = {
        "system": system.pk,
        "name": env.name,
        "order": env.order,
        "required_approvals": env.required_approvals,
        "requires_previous": env.requires_previous,
        "blackout_windows": env.blackout_windows,
        "time_zone": env.time_zone,
        "requires_staged_rollout": env.requires_staged_rollout,
    }
    pk = env.pk
    LiveVersion.objects.filter(environment=env).delete()
    env.delete()
    _check_approvals_floor(system)  # the new end of the path is held to the floor too
    audit.append(
        actor=actor,
        verb="environment.deleted",
        object_type=Environment._meta.label_lower,
        object_id=pk,
        data=data,
    )


def _environment(system, name) -> Environment:
    env = env_selectors.environment_named(system, name)
    if env is None:
        known = ", ".join(e.name for e in env_selectors.environments_of(system)) or "none"
        raise ValidationFailed(
            f"environment: '{str(name)[:50]}' is not an environment of {system.name} "
            f"(known: {known}).",
            fields={"environment": ["Unknown environment."]},
        )
    return env


def deploy(
    *, actor, change_id: int, environment: str, blackout_override: bool = False
) -> Deployment:
    """Deploy into one environment under two row locks: the change, then the environment's
    live-registry row. The stale-base check runs after the registry lock, so of two racing
    deploys from the same base exactly one wins. Called inside ``change_request_deploy``'s
    transaction."""
    from .selectors import valid_approvals
    from .services import _move, lock_change

    if not permissions.can_deploy(actor):
        raise NotAllowed("Only engineers and pipeline tokens deploy.")
    change = lock_change(change_id)
    envs = env_selectors.environments_of(change.system)
    if environment is None and envs:
        environment = envs[-1].name
    env = _environment(change.system, environment)
    locked = LiveVersion.objects.select_for_update().get_or_create(environment=env)[0]
    # Re-read after the lock: joined rows fetched with the locking statement can predate
    # the commit that the lock waited for (PostgreSQL re-checks only the locked row).
    live = LiveVersion.objects.select_related("protocol", "deployment__change").get(pk=locked.pk)
    approvals = len(valid_approvals(change))
    now = timezone.now()
    pairs = env_selectors.environment_reasons(
        change, env, envs, live, approvals=approvals, blackout_override=blackout_override, now=now
    )
    if pairs:
        codes = {c for c, _ in pairs}
        code = next((c for c in CODE_PRIORITY if c in codes), "gate_closed")
        raise Conflict(
            "The deploy gate is closed.",
            code=code,
            reasons=[r for _, r in pairs],
        )
    override = bool(blackout_override) and bool(
        environments.in_blackout(env.blackout_windows, env.time_zone, now)
    )
    previous = live.protocol
    deployment = Deployment.objects.create(
        change=change,
        environment=env.name,
        content_sha256=change.content_sha256,
        deployed_by=actor,
        previous_protocol=previous,
        protocol=change.proposed_protocol,
        blackout_override=override,
    )
    live.protocol, live.deployment, live.since = change.proposed_protocol, deployment, now
    live.save(update_fields=["protocol", "deployment", "since"])
    # Anchor the audit chain right after every deployment, not only on beat's schedule.
    transaction.on_commit(lambda: checkpoints.enqueue_publish("deploy"))
    event = {
        "environment": env.name,
        "deployment": deployment.pk,
        "content_sha256": change.content_sha256,
        "approvals": approvals,
        "previous_protocol": previous.version if previous else None,
        "protocol": change.proposed_protocol.version,
        "blackout_override": override,
    }
    if env.pk != envs[-1].pk:
        audit.append(actor=actor, verb="change.deployed_to_environment", obj=change, data=event)
        return deployment
    change.deployed_at = deployment.created_at
    change.retrospective_pending = approvals < change.system.approvals_required
    event["retrospective_pending"] = change.retrospective_pending
    _move(
        change,
        states.DEPLOYED,
        actor=actor,
        verb="change.deployed",
        data=event,
        fields=("deployed_at", "retrospective_pending"),
    )
    hooks.attestation().issue(change, reason="deployed")
    return deployment


# --- staged rollouts ----------------------------------------------------------------------


def stage_gate(change: ChangeRequest, environment: str, number: int) -> list[str]:
    """Why stage ``number`` (1-based) of ``change`` may not start in ``environment`` now."""
    env = _environment(change.system, environment)
    if not change.stages:
        return ["The change declares no rollout stages."]
    if not isinstance(number, int) or not 1 <= number <= len(change.stages):
        return [f"Stage {number} does not exist; the change declares {len(change.stages)}."]
    started = set(
        RolloutStage.objects.filter(change=change, environment=env.name).values_list(
            "number", flat=True
        )
    )
    if number in started:
        return [f"Stage {number} already started in {env.name}."]
    if number == 1:
        return env_selectors.environment_gate(change, env)["reasons"]
    if number - 1 not in started:
        return [f"Stage {number - 1} has not started in {env.name}; stages go in order."]
    live = env_selectors.live_row(env)
    if live.protocol_id != change.proposed_protocol_id:
        return [f"{env.name} no longer runs this change's version; the rollout is over."]
    window = environments.in_blackout(env.blackout_windows, env.time_zone, timezone.now())
    if window:  # a promotion is a deploy of more traffic: the same windows apply
        return [f"{env.name} is in a blackout window ({window['start']} - {window['end']})."]
    # Later apps' rules: the monitoring app holds the next stage while an incident is open
    # or the live evidence of the stage so far is too thin.
    return [r for rule in hooks.stage_rules() for r in rule(change, env.name, number)]


@transaction.atomic
def stage_start(*, actor, change_request: ChangeRequest, environment: str, number) -> RolloutStage:
    """Record "stage N started" (the deployment tool reports it). Stage 1 is the deploy
    itself, through the full gate. Writes ``change.stage_started``."""
    from .services import lock_change

    if not permissions.can_deploy(actor):
        raise NotAllowed("Only engineers and pipeline tokens start rollout stages.")
    change = lock_change(change_request.pk)
    if number == 1 and change.stages and not stage_gate(change, environment, 1):
        deploy(actor=actor, change_id=change.pk, environment=environment)
        change = lock_change(change.pk)
    else:
        reasons = stage_gate(change, environment, number)
        if reasons:
            raise Conflict("This stage may not start.", code="stage_refused", reasons=reasons)
    stage = RolloutStage.objects.create(
        change=change,
        environment=environment,
        number=number,
        percent=change.stages[number - 1],
        started_by=actor,
    )
    audit.append(
        actor=actor,
        verb="change.stage_started",
        obj=change,
        data={"environment": environment, "stage": number, "percent": stage.percent},
    )
    return stage


# --- rollback and rebase --------------------------------------------------------------------


@transaction.atomic
def change_request_rollback(*, actor, change_request: ChangeRequest, emergency: bool = False):
    """File the change that undoes a deployed one: base = the version live now, proposed =
    the version before, pre-filled from the backout plan. Writes ``change.rollback_filed``."""
    from .services import change_request_create, lock_change

    change = lock_change(change_request.pk)
    if not permissions.can_create_change(actor, change.system):
        raise NotAllowed("Only engineers file rollbacks.")
    if change.state not in {states.DEPLOYED, states.CLOSED}:
        raise Conflict(
            f"Only a deployed change can be rolled back; {change.reference} is "
            f"'{change.state_label}'.",
            code="not_deployed",
        )
    envs = env_selectors.environments_of(change.system)
    final = envs[-1]
    live = getattr(final, "live", None)
    if live is None or live.protocol_id != change.proposed_protocol_id:
        running = live.protocol.version if live and live.protocol_id else "nothing"
        raise Conflict(
            f"{final.name} runs {running}, not {change.proposed_protocol.version} from "
            f"{change.reference}: roll back the change that put it there.",
            code="not_live",
        )
    plan = change.backout_plan.strip() or "Redeploy the previous protocol version."
    rollback = change_request_create(
        actor=actor,
        system=change.system,
        base_protocol=change.proposed_protocol,
        proposed_protocol=change.base_protocol,
        suites=[s["id"] for s in hooks.evaluation().suite_refs(change) if "id" in s],
        title=f"Roll back {change.reference}: {change.title}"[:200],
        rationale=f"Rollback of {change.reference}.\n\nBackout plan:\n\n{plan}",
        test_plan=change.test_plan,
        risk=change.risk,
        change_type="emergency" if emergency else "normal",
        rollout_plan=plan,
        backout_plan=f"Redeploy {change.proposed_protocol.version} (re-file {change.reference}).",
    )
    rollback.rollback_of = change
    rollback.save(update_fields=["rollback_of"])
    audit.append(
        actor=actor,
        verb="change.rollback_filed",
        obj=rollback,
        data={"rollback_of": change.pk, "emergency": bool(emergency)},
    )
    return rollback


def rebase_preview(change: ChangeRequest, environment: str | None = None) -> dict:
    """The three-way merge of this change onto the version live in ``environment`` (default:
    the last environment whose live version differs from the base). 409 when not stale."""
    envs = env_selectors.environments_of(change.system)
    if environment:
        env = _environment(change.system, environment)
        envs = [e for e in envs if e.pk == env.pk]
    stale = [
        e
        for e in envs
        if getattr(e, "live", None) is not None
        and e.live.protocol_id not in (None, change.base_protocol_id)
        and e.name not in env_selectors.deployed_environments(change)
    ]
    if not stale:
        raise Conflict(
            f"{change.reference} is not stale: its base {change.base_protocol.version} is what "
            "runs (or nothing runs yet); there is nothing to rebase onto.",
            code="not_stale",
        )
    live = stale[-1].live.protocol
    base, ours = change.base_protocol, change.proposed_protocol
    prompt, c1 = environments.merge3(base.system_prompt, ours.system_prompt, live.system_prompt)
    body, c2 = environments.merge3(base.body, ours.body, live.body)
    return {
        "environment": stale[-1].name,
        "onto": live,
        "system_prompt": prompt,
        "body": body,
        "conflicts": c1 + c2,
    }


@transaction.atomic
def change_request_rebase(
    *,
    actor,
    change_request: ChangeRequest,
    environment: str | None = None,
    version: str | None = None,
    system_prompt: str | None = None,
    body: str | None = None,
) -> ChangeRequest:
    """Move ``change`` onto the live version: a new proposed version from the three-way merge
    (or the engineer's resolution of it), then an ordinary edit, so the content hash moves,
    approvals are voided and evaluations are redone. Writes ``change.rebased``."""
    from .services import change_request_update, lock_change, protocol_version_create

    change = lock_change(change_request.pk)
    if not permissions.can_edit_change(actor, change):
        raise NotAllowed("Only the author or an engineer on the owning team may rebase.")
    preview = rebase_preview(change, environment)
    prompt = preview["system_prompt"] if system_prompt is None else system_prompt
    new_body = preview["body"] if body is None else body
    if environments.has_markers(prompt) or environments.has_markers(new_body):
        raise Conflict(
            f"The merge onto {preview['onto'].version} has {preview['conflicts']} conflict(s): "
            "edit the merged text, remove the markers, and send it back.",
            code="merge_conflict",
            fields={"system_prompt": [preview["system_prompt"]], "body": [preview["body"]]},
        )
    onto = preview["onto"]
    name = version or f"{change.proposed_protocol.version}+{onto.version}"
    taken = set(
        ProtocolVersion.objects.filter(system=change.system).values_list("version", flat=True)
    )
    n = 2
    while name in taken and not version:
        name, n = f"{change.proposed_protocol.version}+{onto.version}.{n}", n + 1
    proposed = protocol_version_create(
        actor=actor, system=change.system, version=name, body=new_body, system_prompt=prompt
    )
    old = change.proposed_protocol.version
    change = change_request_update(
        actor=actor,
        change_request=change,
        data={"base_protocol": onto, "proposed_protocol": proposed},
    )
    audit.append(
        actor=actor,
        verb="change.rebased",
        obj=change,
        data={
            "environment": preview["environment"],
            "onto": onto.version,
            "old_proposed": old,
            "new_proposed": proposed.version,
            "conflicts_resolved": preview["conflicts"],
            "content_sha256": change.content_sha256,
        },
    )
    return change


@transaction.atomic
def change_request_set_stages(*, actor, change_request: ChangeRequest, stages) -> ChangeRequest:
    """Declare rollout stages (part of what reviewers sign). Writes ``change.stages_set``."""
    from .services import _void_approvals, lock_change

    change = lock_change(change_request.pk)
    if not permissions.can_edit_change(actor, change):
        raise NotAllowed("Only the author or an engineer on the owning team may set stages.")
    try:
        cleaned = environments.check_stages(stages)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None
    if change.state not in states.EDITABLE_IN_PLACE:
        raise Conflict(
            f"Stages are set before submission; {change.reference} is '{change.state_label}'.",
            code="not_editable",
        )
    change.stages = cleaned
    old = change.content_sha256
    change.content_sha256 = content.content_sha256(change)
    change.revision += 1
    change.save(update_fields=["stages", "content_sha256", "revision", "updated_at"])
    _void_approvals(change, actor=actor, reason="The rollout stages changed.")
    audit.append(
        actor=actor,
        verb="change.stages_set",
        obj=change,
        data={"stages": cleaned, "old_sha256": old, "new_sha256": change.content_sha256},
    )
    return change
