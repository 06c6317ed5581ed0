"""Forms of the back-office pages."""

from __future__ import annotations

import base64
import json
from typing import Any

from django import forms

from ..core.feeds import POLICIES
from ..core.inputs import (
    MAX_JSON_DEPTH,
    MAX_UPLOAD_BYTES,
    json_depth,
    json_depth_message,
    strip_bom,
)
from ..models import ImportProfile, Product
from ..models.profiles import SETTINGS as PROFILE_SETTINGS
from ..pipelines.feeds import FeedError, decode_bytes
from ..selectors import exports

__all__ = [
    "MAX_UPLOAD_BYTES",
    "ExportForm",
    "ImportProfileForm",
    "PipelineForm",
    "ProductForm",
    "csv_spec",
]
SPEC_HELP = (
    'Paste a pipeline spec as JSON ({"name": ..., "steps": [...]}) or CSV rows with a header '
    "line sku,name,price[,stock,low_stock_threshold]. CSV becomes one upsert_products step."
)


def csv_spec(text: str, name: str) -> dict[str, Any]:
    """A CSV feed as a pipeline spec: a single ``upsert_products`` step."""
    return {"name": name or "CSV upload", "steps": [{"op": "upsert_products", "csv": text}]}


def feed_spec(source: dict[str, Any], profile: str | None, name: str) -> dict[str, Any]:
    """A supplier file (``{"csv": ...}`` or ``{"xlsx": <base64>}``) read through a profile."""
    step = {"op": "upsert_products", **source}
    if profile:
        step["profile"] = profile
    return {"name": name or "Supplier feed", "steps": [step]}


class PipelineForm(forms.Form):
    """A spec pasted as JSON or CSV text, or uploaded as a .json or .csv file.

    ``cleaned_data["spec"]`` is the spec as a dict; the pipeline engine validates its
    content (steps, fields, rows) and reports errors with their location.
    """

    source = forms.CharField(
        label="Spec or CSV",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}),
        help_text=SPEC_HELP,
    )
    upload = forms.FileField(
        label="…or upload a file",
        required=False,
        help_text=".json spec, .csv feed or, with a profile, .xlsx",
    )
    name = forms.CharField(label="Run name (for CSV)", required=False, max_length=200, strip=True)
    profile = forms.ModelChoiceField(
        queryset=ImportProfile.objects.all(),
        to_field_name="name",
        required=False,
        label="Import profile",
        empty_label="none (columns sku,name,price[,stock,low_stock_threshold])",
        help_text="How to read a supplier's CSV or XLSX (columns, separators, encoding).",
    )
    policy = forms.ChoiceField(
        choices=[
            ("all_or_nothing", "all or nothing: one invalid row stops the run"),
            ("skip_invalid_rows", "skip invalid rows: apply the valid ones, list the others"),
        ],
        initial=POLICIES[0],
        required=False,
        label="Invalid rows",
    )

    def clean_upload(self):
        upload = self.cleaned_data.get("upload")
        if upload and upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes; the limit is {MAX_UPLOAD_BYTES:,}."
            )
        return upload

    def clean(self):
        data = super().clean()
        # A leading byte order mark (spreadsheets write one) is dropped, pasted or uploaded.
        text = strip_bom(data.get("source") or "")
        upload = data.get("upload")
        if self.errors:
            return data
        if text.strip() and upload:
            raise forms.ValidationError("Paste a spec or upload a file, not both.")
        profile = data.get("profile")
        policy = data.get("policy") or POLICIES[0]
        if upload and upload.name.lower().endswith(".xlsx"):
            if profile is None:
                self.add_error("profile", "An XLSX file needs an import profile.")
                return data
            source = {"xlsx": base64.b64encode(upload.read()).decode()}
            data["spec"] = {
                **feed_spec(source, profile.name, data.get("name", "")),
                "policy": policy,
            }
            return data
        if upload:
            raw = upload.read()
            try:
                if profile is not None and not upload.name.lower().endswith(".json"):
                    text = decode_bytes(raw, profile.encoding)
                else:
                    text = strip_bom(raw.decode("utf-8"))
            except FeedError as exc:
                self.add_error("upload", f"{exc}.")
                return data
            except UnicodeDecodeError as exc:
                self.add_error("upload", f"The file is not UTF-8 text (byte {exc.start}).")
                return data
            is_json = upload.name.lower().endswith(".json")
            field = "upload"
        elif text.strip():
            is_json = text.lstrip()[:1] in ("{", "[")
            field = "source"
        else:
            raise forms.ValidationError("Paste a spec or CSV, or upload a file.")
        if is_json:
            if json_depth(text) > MAX_JSON_DEPTH:
                self.add_error(field, json_depth_message() + ".")
                return data
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as exc:
                self.add_error(
                    field, f"Invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}."
                )
                return data
            if not isinstance(spec, dict):
                self.add_error(field, "The spec must be a JSON object with a 'steps' list.")
                return data
            if policy != POLICIES[0]:
                spec.setdefault("policy", policy)
        elif profile is not None:
            spec = feed_spec({"csv": text}, profile.name, data.get("name", ""))
        else:
            spec = csv_spec(text, data.get("name", ""))
        if not is_json and policy != POLICIES[0]:
            spec["policy"] = policy
        data["spec"] = spec
        return data


class ImportProfileForm(forms.ModelForm):
    """An import profile as the page edits it; the rules are ``ImportProfile.clean()``'s."""

    class Meta:
        model = ImportProfile
        fields = ["name", "description", *(f for f in PROFILE_SETTINGS if f != "name")]
        widgets = {
            "columns": forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
            "defaults": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
            "delimiter": forms.Select(
                choices=[("", "detect"), (",", ","), (";", ";"), ("\t", "tab"), ("|", "|")]
            ),
        }
        help_texts = {
            "columns": 'JSON: {"Artikelnummer": "sku", "Bezeichnung": "name", "VK-Preis": '
            '"price", "Bestand": "stock"}; unmapped columns are ignored.',
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["delimiter"].required = False
        self.fields["defaults"].required = False
        self.fields["thousands_separator"].required = False

    def clean_defaults(self):
        return self.cleaned_data.get("defaults") or {}


class ProductForm(forms.ModelForm):
    """A product as the admin edits it. SKU and name are validated as given (not stripped),
    by the model's field validators (``app.core.domain``), like every other entry point."""

    class Meta:
        model = Product
        fields = ["sku", "name", "price", "stock", "low_stock_threshold"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("sku", "name"):
            self.fields[name].strip = False


class ExportForm(forms.Form):
    """An export's parameters, validated by ``app.selectors.exports`` like the API's.

    ``forbidden`` is set (and the form invalid) when the user lacks the dataset's
    view permission: the view answers 403.
    """

    dataset = forms.ChoiceField(
        choices=[(d.name, d.title.capitalize()) for d in exports.DATASETS.values()]
    )
    format = forms.ChoiceField(
        choices=[("csv", "CSV"), ("xlsx", "XLSX")], initial="csv", required=False
    )
    sku_prefix = forms.CharField(label="SKU prefix", required=False, max_length=64, strip=False)
    since = forms.CharField(
        label="Since", required=False, max_length=40, help_text="YYYY-MM-DD or date-time (UTC)"
    )
    until = forms.CharField(
        label="Until", required=False, max_length=40, help_text="inclusive for a date"
    )

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.forbidden = ""
        for name in ("since", "until"):
            self.fields[name].widget.attrs["placeholder"] = "YYYY-MM-DD"

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        dataset = exports.DATASETS[data["dataset"]]
        data["format"] = data.get("format") or "csv"
        if self.user is not None and not self.user.has_perm(dataset.permission):
            self.forbidden = f"Exporting {dataset.title} needs the {dataset.permission} permission."
            raise forms.ValidationError(self.forbidden)
        try:
            data["filters"] = exports.parse_filters(
                data.get("sku_prefix"), data.get("since"), data.get("until")
            )
        except exports.InvalidExportParameter as exc:
            self.add_error(exc.param, exc.message)
            return data
        data["dataset"] = dataset
        return data
