"""``{% open_incidents system %}``: the system page's incident panel, without its view
knowing about this app."""

from django import template

from ..selectors import open_incidents as _open

register = template.Library()


@register.inclusion_tag("monitoring/_open_incidents.html")
def open_incidents(system):
    return {"system": system, "incidents": list(_open(system)[:10])}
