"""Web pages of the review-collaboration app: the inbox and notification preferences."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.errors import DomainError
from core.ui import requires

from . import models as m
from . import selectors, services
from .permissions import may_manage_rules, may_manage_webhooks


@login_required
@require_GET
def inbox(request):
    rows = selectors.inbox(request.user)
    if request.GET.get("unread") == "1":
        rows = rows.filter(read_at__isnull=True)
    page = Paginator(rows, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "reviews/inbox.html",
        {"page": page, "only_unread": request.GET.get("unread") == "1"},
    )


@login_required
@require_POST
def inbox_mark_read(request):
    ids = request.POST.getlist("id") or None
    try:
        services.notifications_mark_read(actor=request.user, ids=ids)
    except DomainError as exc:
        messages.error(request, exc.detail)
    target = request.POST.get("next") or ""
    if target.startswith("/") and not target.startswith("//"):
        return redirect(target)
    return redirect("inbox")


@login_required
@require_http_methods(["GET", "POST"])
def preferences(request):
    if request.method == "POST":
        choices = {
            kind: {
                "in_app": request.POST.get(f"{kind}:in_app") == "on",
                "email": request.POST.get(f"{kind}:email") == "on",
            }
            for kind, _ in m.EVENT_TYPES
        }
        services.preferences_set(actor=request.user, choices=choices)
        messages.success(request, "Notification preferences saved.")
        return redirect("notification-preferences")
    prefs = services.preferences_for(request.user)
    rows = [(kind, label, prefs[kind]) for kind, label in m.EVENT_TYPES]
    return render(request, "reviews/preferences.html", {"rows": rows})


@login_required
@require_POST
def request_review(request, pk):
    """The change page's "Request review" / "Re-request review" buttons."""
    from changes import selectors as change_selectors
    from changes.models import ChangeRequest

    from . import requests as review_requests

    try:
        change = change_selectors.change_for(request.user, pk)
    except ChangeRequest.DoesNotExist:
        raise Http404("No such change.") from None
    names = [n for n in request.POST.getlist("reviewer") if n]
    try:
        review_requests.review_request(actor=request.user, change_request=change, reviewers=names)
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Review requested from {', '.join(names)}.")
    return redirect(reverse("change-detail", args=[change.pk]) + "#requested-reviewers")


def _change_for(request, pk):
    from changes import selectors as change_selectors
    from changes.models import ChangeRequest

    try:
        return change_selectors.change_for(request.user, pk)
    except ChangeRequest.DoesNotExist:
        raise Http404("No such change.") from None


def _back(change, anchor="discussion"):
    return redirect(reverse("change-detail", args=[change.pk]) + f"#{anchor}")


@login_required
@require_POST
def thread_open(request, pk):
    """New thread on the change or on a diff line (part/side/line from the form)."""
    from . import discussion

    change = _change_for(request, pk)
    try:
        discussion.thread_open(
            actor=request.user,
            change=change,
            body=request.POST.get("body", ""),
            part=request.POST.get("part", ""),
            side=request.POST.get("side", ""),
            line=request.POST.get("line") or None,
            blocking=request.POST.get("blocking") == "on",
        )
    except DomainError as exc:
        messages.error(request, exc.detail)
    return _back(change)


@login_required
@require_POST
def thread_reply(request, pk, thread_pk):
    from . import discussion
    from .models import Thread

    change = _change_for(request, pk)
    thread = Thread.objects.filter(pk=thread_pk, change=change).first()
    if thread is None:
        raise Http404("No such thread.")
    try:
        if "resolve" in request.POST:
            discussion.thread_resolve(
                actor=request.user, thread=thread, resolved=request.POST["resolve"] == "1"
            )
        else:
            discussion.comment_add(
                actor=request.user, thread=thread, body=request.POST.get("body", "")
            )
    except DomainError as exc:
        messages.error(request, exc.detail)
    return _back(change, f"thread-{thread.pk}")


WEBHOOKS_DENIED = "Only admins manage webhook endpoints."
RULES_DENIED = "Only admins edit reviewer rules."


@login_required
@require_http_methods(["GET", "POST"])
@requires(may_manage_webhooks, WEBHOOKS_DENIED)
def webhook_list(request):
    """Admins register endpoints; the secret is shown once, right after creation."""
    from changes.models import AISystem

    from . import webhooks
    from .models import WebhookEndpoint

    created, status = None, 200
    if request.method == "POST":
        system_id = request.POST.get("system") or None
        try:
            created = webhooks.endpoint_create(
                actor=request.user,
                name=request.POST.get("name", ""),
                url=request.POST.get("url", ""),
                events=request.POST.getlist("events"),
                system=AISystem.objects.filter(pk=system_id).first()
                if (system_id or "").isdigit()
                else None,
            )
        except DomainError as exc:
            messages.error(request, exc.detail)
            status = exc.status_code
    context = {
        "endpoints": WebhookEndpoint.objects.select_related("system"),
        "systems": AISystem.objects.all(),
        "event_types": m.EVENT_TYPES,
        "created": created,
    }
    return render(request, "reviews/webhooks.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
@requires(may_manage_webhooks, WEBHOOKS_DENIED)
def webhook_detail(request, pk):
    """The delivery log of one endpoint, with a redeliver button per delivery."""
    from . import webhooks
    from .models import WebhookDelivery, WebhookEndpoint

    endpoint = WebhookEndpoint.objects.filter(pk=pk).first()
    if endpoint is None:
        raise Http404("No such endpoint.")
    if request.method == "POST":
        delivery = WebhookDelivery.objects.filter(
            pk=request.POST.get("delivery") or 0, endpoint=endpoint
        ).first()
        if delivery is None:
            raise Http404("No such delivery.")
        webhooks.redeliver(actor=request.user, delivery=delivery)
        messages.success(request, f"Delivery {delivery.msg_id} queued again.")
        return redirect("webhook-detail", pk=endpoint.pk)
    deliveries = endpoint.deliveries.prefetch_related("log")[:100]
    return render(
        request, "reviews/webhook_detail.html", {"endpoint": endpoint, "deliveries": deliveries}
    )


# --- reviewer rule sets (issue 14, item 1: the admins' web editor) ---------------------------

RULE_ROWS_BLANK = 2


def _rule_rows_from_post(post) -> tuple[list[dict], list[dict]]:
    """(rules for the service, rows to show again). A row with no kind, or ticked "remove",
    is dropped: that is how a rule is removed; filling a blank row adds one. Values are passed
    on as typed so the service's own validation names what is wrong."""
    from . import rules as rule_sets

    try:
        total = min(int(post.get("rows", "0")), rule_sets.MAX_RULES + RULE_ROWS_BLANK)
    except ValueError:
        total = 0
    out, shown = [], []
    for i in range(max(total, 0)):
        p = f"rule-{i}-"
        row = {
            "name": post.get(p + "name", "").strip(),
            "kind": post.get(p + "kind", ""),
            "team": post.get(p + "team", ""),
            "users": [u for u in post.getlist(p + "users") if u],
            "count": post.get(p + "count", "1").strip(),
            "remove": post.get(p + "remove") == "on",
        }
        shown.append(row)
        if not row["kind"] or row["remove"]:
            continue
        rule = {"kind": row["kind"], "count": _int_or_text(row["count"])}
        if row["name"]:
            rule["name"] = row["name"]
        if row["kind"] == "team":
            rule["team"] = row["team"]
        if row["kind"] == "users":
            rule["users"] = [_int_or_text(u) for u in row["users"]]
        out.append(rule)
    return out, shown


def _int_or_text(value):
    return int(value) if str(value).isdigit() else value


def _rule_rows_from_set(ruleset) -> list[dict]:
    rows = [
        {
            "name": r.get("name", ""),
            "kind": r["kind"],
            "team": str(r.get("team", "")),
            "users": [str(u) for u in r.get("users", [])],
            "count": str(r["count"]),
            "remove": False,
        }
        for r in (ruleset.rules if ruleset else [])
    ]
    return rows


@login_required
@require_GET
@requires(may_manage_rules, RULES_DENIED)
def ruleset_systems(request):
    """Admins pick a system whose reviewer rules to view or edit."""
    from changes.models import AISystem

    from .models import ReviewerRuleSet

    versions = {}
    for row in ReviewerRuleSet.objects.order_by("system_id", "-version"):
        versions.setdefault(row.system_id, row)
    systems = [(s, versions.get(s.pk)) for s in AISystem.objects.select_related("owner_team")]
    return render(request, "reviews/rulesets.html", {"systems": systems})


@login_required
@require_http_methods(["GET", "POST"])
@requires(may_manage_rules, RULES_DENIED)
def ruleset_edit(request, pk):
    """The current version and its history; saving adds a version through ``ruleset_save``
    (audited as ``reviewer_rules.saved``). An unsatisfiable set is refused with its reasons
    and the form comes back as typed (400)."""
    from django.contrib.auth import get_user_model

    from changes.models import AISystem, Team
    from core import roles

    from . import rules as rule_sets
    from .models import ReviewerRuleSet

    system = AISystem.objects.select_related("owner_team").filter(pk=pk).first()
    if system is None:
        raise Http404("No such AI system.")
    current = rule_sets.current(system.pk)
    rows = _rule_rows_from_set(current)
    author_team_counts = current.author_team_counts if current else True
    error, status = None, 200
    if request.method == "POST":
        submitted, rows = _rule_rows_from_post(request.POST)
        author_team_counts = request.POST.get("author_team_counts") == "on"
        try:
            saved = rule_sets.ruleset_save(
                actor=request.user,
                system=system,
                rules=submitted,
                author_team_counts=author_team_counts,
            )
        except DomainError as exc:
            error, status = exc, exc.status_code
        else:
            messages.success(request, f"Reviewer rules v{saved.version} of {system.name} saved.")
            return redirect("ruleset-edit", pk=system.pk)
    rows = [r for r in rows if not r["remove"] and (r["kind"] or r["name"])]
    rows += [
        {"name": "", "kind": "", "team": "", "users": [], "count": "1", "remove": False}
        for _ in range(RULE_ROWS_BLANK)
    ]
    history = [
        (row, [rule_sets.describe(r) for r in row.rules])
        for row in ReviewerRuleSet.objects.filter(system=system)
        .select_related("created_by")
        .order_by("-version")
    ]
    reviewers = (
        get_user_model()
        .objects.filter(groups__name=roles.REVIEWER, is_active=True)
        .distinct()
        .order_by("username")
    )
    context = {
        "system": system,
        "current": current,
        "current_rules": [rule_sets.describe(r) for r in current.rules] if current else [],
        "rows": rows,
        "author_team_counts": author_team_counts,
        "kinds": [("team", "A team"), ("users", "Named people"), ("any", "Any reviewer")],
        "teams": Team.objects.order_by("name"),
        "reviewers": reviewers,
        "history": history,
        "error": error,
    }
    return render(request, "reviews/ruleset_edit.html", context, status=status)
