"""The settings page's forms: they parse input; the services enforce the rules."""

from __future__ import annotations

import zoneinfo

from django import forms

from projects.models import Membership, timezone_validate


class ProjectNameForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)


class ProjectSettingsForm(forms.Form):
    timezone = forms.CharField(max_length=64, strip=True, validators=[timezone_validate])
    price_discount_percent = forms.FloatField(min_value=0, max_value=100, label="Discount on list prices (%)")


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True, help_text="Where the key is used, e.g. 'support-bot prod'.")
    is_admin = forms.BooleanField(required=False, label="May also edit this project's prices (PUT /pricing)")


class ApiKeyRevokeForm(forms.Form):
    key_id = forms.IntegerField(min_value=1)


class MemberInviteForm(forms.Form):
    username = forms.CharField(max_length=150, strip=True)
    role = forms.ChoiceField(choices=Membership.ROLES, initial=Membership.MEMBER)


class MemberRemoveForm(forms.Form):
    membership_id = forms.IntegerField(min_value=1)


def timezone_names() -> list[str]:
    return sorted(zoneinfo.available_timezones())
