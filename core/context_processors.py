"""Template context: the current user's roles, for navigation."""

from . import roles


def roles_context(request):
    names = roles.role_names(getattr(request, "user", None))
    user = getattr(request, "user", None)
    return {
        "user_roles": sorted(names),
        "is_engineer": roles.ENGINEER in names,
        "is_reviewer": roles.REVIEWER in names,
        "is_auditor": roles.AUDITOR in names,
        "is_admin_role": user is not None and roles.is_admin(user),
    }
