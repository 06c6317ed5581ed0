"""Create and change import profiles: every rule checked first, located errors otherwise."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..core.domain import label_problem
from ..core.feeds import profile_errors
from ..models import ImportProfile
from ..models.profiles import SETTINGS


class ProfileInvalid(Exception):
    """The profile breaks a rule; ``errors`` are ``{"loc": [field, ...], "msg": ...}``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(e["msg"] for e in errors))


def save_profile(profile: ImportProfile | None, **values: Any) -> ImportProfile:
    """Create (``profile`` None) or change a profile with ``values``; nothing is written
    unless the result is valid (``ProfileInvalid``)."""
    profile = profile or ImportProfile()
    for key, value in values.items():
        setattr(profile, key, value)
    settings = {name: getattr(profile, name) for name in SETTINGS}
    errors = profile_errors(settings)
    taken = ImportProfile.objects.filter(name=profile.name).exclude(pk=profile.pk).exists()
    if taken:
        errors.append({"loc": ["name"], "msg": f"a profile named {profile.name!r} exists"})
    if len(profile.description or "") > 200 or label_problem(profile.description or ""):
        errors.append(
            {"loc": ["description"], "msg": "at most 200 characters, no control characters"}
        )
    if errors:
        raise ProfileInvalid(errors)
    with transaction.atomic():
        profile.save()
    return profile
