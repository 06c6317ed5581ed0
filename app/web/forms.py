"""Forms of the back-office pages."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from ..core.inputs import (
    MAX_JSON_DEPTH,
    MAX_UPLOAD_BYTES,
    json_depth,
    json_depth_message,
    strip_bom,
)
from ..models import Product
from ..selectors import exports

__all__ = ["MAX_UPLOAD_BYTES", "ExportForm", "PipelineForm", "ProductForm", "csv_spec"]
SPEC_HELP = (
    'Paste a pipeline spec as JSON ({"name": ..., "steps": [...]}) or CSV rows with a header '
    "line sku,name,price[,stock,low_stock_threshold]. CSV becomes one upsert_products step."
)


def csv_spec(text: str, name: str) -> dict[str, Any]:
    """A CSV feed as a pipeline spec: a single ``upsert_products`` step."""
    return {"name": name or "CSV upload", "steps": [{"op": "upsert_products", "csv": text}]}


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
        label="…or upload a file", required=False, help_text=".json spec or .csv feed"
    )
    name = forms.CharField(label="Run name (for CSV)", required=False, max_length=200, strip=True)

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
        if upload:
            try:
                text = strip_bom(upload.read().decode("utf-8"))
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
        else:
            spec = csv_spec(text, data.get("name", ""))
        data["spec"] = spec
        return data


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
