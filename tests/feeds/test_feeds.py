"""Import profiles end to end through the pipeline engine (real database, real files)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from app.core.feeds import profile_errors
from app.models import ImportProfile, PipelineRun, Product, StockMovement
from app.pipelines.service import process_pipeline
from tests.feeds import fixtures

pytestmark = pytest.mark.django_db


def upsert(source: dict, profile: str | None = None, **spec) -> dict:
    step = {"op": "upsert_products", **source}
    if profile:
        step["profile"] = profile
    return process_pipeline({"name": "feed", "steps": [step], **spec}, allow_files=True)


def test_cp1252_file_with_bom_junk_rows_decimal_commas_and_quoted_newlines(tmp_path):
    fixtures.german_profile()
    path = tmp_path / "preisliste.csv"
    path.write_bytes(fixtures.german_cp1252_bytes(bom=True))
    result = upsert({"csv_file": str(path)}, "lieferant-de")
    assert result["error"] is None, result["error"]
    assert result["totals"]["created"] == 3
    products = {p.sku: p for p in Product.objects.all()}
    assert products["DE-1"].name == "Schraube M4"
    assert products["DE-1"].price == Decimal("1234.50")
    assert products["DE-1"].stock == 1000
    # a quoted line break and the delimiter inside quotes; the name is made one line
    assert products["DE-2"].name == "Dübel 8 mm; grau"
    assert products["DE-2"].price == Decimal("0.99")
    assert products["DE-3"].name == "Mutter Größe 5"
    # the existing upsert path ran: history and ledger rows exist
    assert StockMovement.objects.filter(product__sku="DE-1").count() == 1


def test_cp1252_without_bom_and_utf8_with_bom_both_work(tmp_path):
    fixtures.german_profile()
    fixtures.german_profile(name="lieferant-utf8", encoding="utf-8")
    plain = tmp_path / "a.csv"
    plain.write_bytes(fixtures.german_cp1252_bytes(bom=False))
    assert upsert({"csv_file": str(plain)}, "lieferant-de")["error"] is None
    utf8 = tmp_path / "b.csv"
    utf8.write_bytes(fixtures.BOM + fixtures.german_csv_text().encode("utf-8"))
    result = upsert({"csv_file": str(utf8)}, "lieferant-utf8")
    assert result["error"] is None
    assert Product.objects.get(sku="DE-3").name == "Mutter Größe 5"


def test_utf8_file_read_with_a_cp1252_profile_is_refused_not_garbled(tmp_path):
    fixtures.german_profile()
    path = tmp_path / "utf8.csv"
    path.write_bytes(fixtures.BOM + fixtures.german_csv_text().encode("utf-8"))
    result = upsert({"csv_file": str(path)}, "lieferant-de")
    assert result["error"]["kind"] == "invalid"
    assert "set the profile's encoding to utf-8" in result["error"]["detail"]
    assert not Product.objects.exists()


def test_pasted_csv_with_detected_delimiter():
    fixtures.german_profile(delimiter="")
    result = upsert({"csv": fixtures.german_csv_text()}, "lieferant-de")
    assert result["error"] is None, result["error"]
    assert Product.objects.get(sku="DE-1").price == Decimal("1234.50")


def test_error_names_file_row_supplier_column_and_value():
    fixtures.german_profile()
    text = fixtures.german_csv_text().replace("0,99", "0,9x")
    result = upsert({"csv": text}, "lieferant-de")
    error = result["error"]
    assert error["kind"] == "invalid"
    # the record starts on line 5 of the supplier's file
    assert error["errors"][0]["loc"] == ["steps", 0, "csv", 5, "VK-Preis"]
    assert "row 5, column 'VK-Preis'" in error["detail"]
    assert "'0,9x'" in error["detail"]
    assert not Product.objects.exists()  # all_or_nothing: nothing applied


def test_missing_mapped_column_is_reported_with_the_header_found():
    fixtures.german_profile()
    text = fixtures.german_csv_text().replace("VK-Preis", "Preis")
    error = upsert({"csv": text}, "lieferant-de")["error"]
    assert error["errors"][0]["loc"][:3] == ["steps", 0, "csv"]
    assert "'VK-Preis' (-> price)" in error["detail"]
    assert "'Preis'" in error["detail"]


def test_xlsx_title_row_mixed_cell_types_and_skip_invalid_rows():
    fixtures.xlsx_profile()
    result = upsert(
        {"xlsx": fixtures.b64(fixtures.mixed_xlsx())},
        "lieferant-xlsx",
        policy="skip_invalid_rows",
    )
    assert result["error"] is None, result["error"]
    assert result["totals"]["created"] == 4
    assert result["totals"]["rejected"] == 1
    products = {p.sku: p for p in Product.objects.all()}
    assert products["X-1"].price == Decimal("4.50") and products["X-1"].stock == 10
    assert products["X-2"].price == Decimal("3.20") and products["X-2"].stock == 7
    assert products["100234"].price == Decimal("12.00") and products["100234"].stock == 0
    assert products["X-5"].stock == 4
    (rejected,) = result["rejected"]
    assert rejected["row"] == 6 and rejected["column"] == "Preis" and rejected["value"] == "n/a"
    assert "not a number" in rejected["message"]
    assert rejected["values"]["Art.-Nr."] == "X-4"
    run = PipelineRun.objects.get(pk=result["run_id"])
    assert run.result["rejected"][0]["row"] == 6


def test_xlsx_all_or_nothing_fails_at_the_bad_row():
    fixtures.xlsx_profile()
    result = upsert({"xlsx": fixtures.b64(fixtures.mixed_xlsx())}, "lieferant-xlsx")
    assert result["error"]["errors"][0]["loc"] == ["steps", 0, "xlsx", 6, "Preis"]
    assert not Product.objects.exists()


def test_xlsx_named_sheet_and_unknown_sheet():
    fixtures.xlsx_profile(sheet="Artikel")
    ok = upsert(
        {"xlsx": fixtures.b64(fixtures.mixed_xlsx())}, "lieferant-xlsx", policy="skip_invalid_rows"
    )
    assert ok["error"] is None
    bad = upsert({"xlsx": fixtures.b64(fixtures.mixed_xlsx()), "sheet": "Nope"}, "lieferant-xlsx")
    assert "no sheet 'Nope'" in bad["error"]["detail"]


def test_three_bad_rows_among_a_thousand_skipped_with_reasons():
    text, bad_rows = fixtures.thousand_rows_with_three_bad()
    ImportProfile.objects.create(
        name="plain", columns={"sku": "sku", "name": "name", "price": "price", "stock": "stock"}
    )
    result = upsert({"csv": text}, "plain", policy="skip_invalid_rows")
    assert result["error"] is None
    assert result["totals"]["created"] == 997
    assert [r["row"] for r in result["rejected"]] == bad_rows
    assert [r["column"] for r in result["rejected"]] == ["price", "stock", "sku"]
    assert Product.objects.count() == 997
    assert StockMovement.objects.count() == 997  # the ledger saw each created product


def test_three_bad_rows_without_a_profile_skip_too():
    text, bad_rows = fixtures.thousand_rows_with_three_bad()
    result = upsert({"csv": text}, policy="skip_invalid_rows")
    assert result["error"] is None, result["error"]
    assert result["totals"]["created"] == 997
    assert [r["row"] for r in result["rejected"]] == bad_rows
    default = upsert({"csv": text})  # all_or_nothing
    assert default["error"]["errors"][0]["loc"][:4] == ["steps", 0, "csv", 101]


def test_transforms_factor_rounding_clamp_and_defaults():
    ImportProfile.objects.create(
        name="t",
        columns={"id": "sku", "title": "name", "net": "price", "qty": "stock"},
        defaults={"low_stock_threshold": 2},
        price_factor=Decimal("1.19"),
        price_round_to=Decimal("0.05"),
        clamp_stock=True,
    )
    text = "id,title,net,qty\nA,Alpha,10.00,-4\nB,Beta,1.01,\n"
    assert upsert({"csv": text}, "t")["error"] is None
    a, b = Product.objects.get(sku="A"), Product.objects.get(sku="B")
    assert a.price == Decimal("11.90") and a.stock == 0 and a.low_stock_threshold == 2
    assert b.price == Decimal("1.20")  # 1.2019 -> nearest 0.05


def test_profile_defaults_fill_unmapped_required_fields():
    ImportProfile.objects.create(
        name="d", columns={"id": "sku", "p": "price"}, defaults={"name": "Unnamed part"}
    )
    assert upsert({"csv": "id,p\nZ-1,2.50\n"}, "d")["error"] is None
    assert Product.objects.get(sku="Z-1").name == "Unnamed part"


def test_unknown_profile_and_xlsx_without_profile_are_spec_errors():
    result = upsert({"csv": "a\n1\n"}, "nope")
    assert result["error"]["errors"][0]["loc"] == ["steps", 0, "profile"]
    assert "no import profile named 'nope'" in result["error"]["errors"][0]["msg"]
    result = upsert({"xlsx": fixtures.b64(fixtures.mixed_xlsx())})
    assert "needs a 'profile'" in result["error"]["errors"][0]["msg"]


def test_without_a_profile_the_current_format_keeps_working():
    result = upsert({"csv": "sku,name,price,stock\nMOU-1,Mouse,19.90,40\n"})
    assert result["error"] is None
    assert Product.objects.get(sku="MOU-1").stock == 40


@pytest.mark.parametrize(
    ("change", "loc", "text"),
    [
        ({"columns": {"A": "sku", "B": "name", "C": "prize"}}, ["columns", "C"], "unknown target"),
        (
            {"columns": {"A": "sku", "B": "name", "C": "price", "D": "price"}},
            ["columns", "D"],
            "duplicate mapping",
        ),
        ({"price_factor": Decimal(0)}, ["price_factor"], "bad factor"),
        ({"price_round_to": Decimal("0.005")}, ["price_round_to"], "multiple of 0.01"),
        ({"columns": {"A": "sku", "B": "name"}}, ["columns"], "'price' and it has no default"),
        ({"decimal_separator": ",", "thousands_separator": ","}, ["thousands_separator"], "differ"),
        ({"defaults": {"sku": "X"}}, ["defaults", "sku"], "cannot have a default"),
        ({"defaults": {"price": "-1"}}, ["defaults", "price"], "got '-1'"),
        ({"header_row": 0}, ["header_row"], "between 1"),
        ({"delimiter": "x"}, ["delimiter"], "delimiter must be one of"),
    ],
)
def test_profile_validation_names_the_field(change, loc, text):
    data = {"name": "p", "columns": {"A": "sku", "B": "name", "C": "price"}, **change}
    errors = profile_errors(data)
    assert any(e["loc"] == loc and text in e["msg"] for e in errors), errors
    with pytest.raises(ValidationError):
        ImportProfile(**data).full_clean()


def test_valid_profile_has_no_errors():
    assert profile_errors({**fixtures.GERMAN}) == []
    json.dumps(fixtures.GERMAN)


def test_bytes_that_are_not_the_profiles_encoding_name_their_row(tmp_path):
    fixtures.german_profile()
    data = fixtures.german_cp1252_bytes(bom=False).replace(b"Mutter", b"Mu\x81ter")  # line 7
    path = tmp_path / "kaputt.csv"
    path.write_bytes(data)
    error = upsert({"csv_file": str(path)}, "lieferant-de", policy="skip_invalid_rows")["error"]
    assert error["kind"] == "invalid" and "not cp1252 text" in error["detail"]
    assert error["errors"][0]["loc"][:4] == ["steps", 0, "csv_file", 7]
    assert not Product.objects.exists()  # not skippable: the rest of the file is unreadable


def test_header_row_beyond_the_file():
    fixtures.german_profile(header_row=40)
    error = upsert({"csv": fixtures.german_csv_text()}, "lieferant-de")["error"]
    assert "the file has no row 40" in error["detail"]
