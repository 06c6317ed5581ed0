"""The pipeline page with import profiles, the profiles page and run_pipeline --profile."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client

from app.models import ImportProfile, PipelineRun, Product
from tests.factories import UserFactory
from tests.feeds import fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def op_client():
    user = UserFactory(username="feeder")
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=[
                "run_pipeline",
                "view_importprofile",
                "add_importprofile",
                "change_importprofile",
            ]
        )
    )
    client = Client()
    client.force_login(user)
    return client


def test_xlsx_upload_preview_rejected_apply_and_download(op_client):
    fixtures.xlsx_profile()
    Product.objects.create(sku="X-1", name="Kabel", price="4.00", stock=10)
    upload = SimpleUploadedFile("lager.xlsx", fixtures.mixed_xlsx())
    response = op_client.post(
        "/pipelines/",
        {
            "upload": upload,
            "profile": "lieferant-xlsx",
            "policy": "skip_invalid_rows",
            "action": "preview",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    preview = PipelineRun.objects.get()
    assert preview.status == "previewed"
    page = op_client.get(response["Location"]).content.decode()
    counts = re.search(r'<table id="preview-counts">(.*?)</table>', page, re.S).group(1)
    assert re.findall(r'<td class="num" id="count-(\w+)">(\d+)</td>', counts) == [
        ("new", "3"),
        ("changed", "1"),
        ("unchanged", "0"),
        ("rejected", "1"),
    ]
    rejected = re.search(r'<table id="rejected-rows">(.*?)</table>', page, re.S).group(1)
    assert '<td class="num">6</td><td>Preis</td><td><code>n/a</code></td>' in rejected
    assert "base64" in page and "UEsDB" not in page  # the XLSX is not dumped on the page
    assert not Product.objects.filter(sku="X-2").exists()

    applied = op_client.post(f"/pipelines/runs/{preview.pk}/run")
    run = PipelineRun.objects.exclude(pk=preview.pk).get()
    assert applied["Location"] == f"/pipelines/runs/{run.pk}/"
    assert run.status == "succeeded" and run.spec["fingerprint"] == preview.result["fingerprint"]
    assert Product.objects.get(sku="X-1").price == Decimal("4.50")
    body = b"".join(op_client.get(f"/pipelines/runs/{run.pk}/rejected.csv").streaming_content)
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[1][:4] == ["6", "Preis", "n/a", rows[1][3]] and "not a number" in rows[1][3]


def test_apply_of_a_stale_preview_previews_again(op_client):
    fixtures.xlsx_profile()
    Product.objects.create(sku="X-1", name="Kabel", price="4.00", stock=10)
    upload = SimpleUploadedFile("lager.xlsx", fixtures.mixed_xlsx())
    op_client.post(
        "/pipelines/",
        {
            "upload": upload,
            "profile": "lieferant-xlsx",
            "policy": "skip_invalid_rows",
            "action": "preview",
        },
    )
    preview = PipelineRun.objects.get()
    Product.objects.filter(sku="X-1").update(price=Decimal("5.00"))
    response = op_client.post(f"/pipelines/runs/{preview.pk}/run", follow=True)
    page = response.content.decode()
    assert "The catalogue changed since preview" in page
    statuses = sorted(PipelineRun.objects.values_list("status", flat=True))
    assert statuses == ["failed", "previewed", "previewed"]
    assert not Product.objects.filter(sku="X-2").exists()
    assert "5.00" in re.search(r'<table id="diff">(.*?)</table>', page, re.S).group(1)


def test_cp1252_upload_through_a_profile(op_client):
    fixtures.german_profile()
    upload = SimpleUploadedFile("preise.csv", fixtures.german_cp1252_bytes())
    response = op_client.post(
        "/pipelines/", {"upload": upload, "profile": "lieferant-de", "action": "run"}
    )
    run = PipelineRun.objects.get()
    assert run.status == "succeeded", run.error
    assert response["Location"] == f"/pipelines/runs/{run.pk}/"
    assert Product.objects.get(sku="DE-3").name == "Mutter Größe 5"


def test_xlsx_without_profile_is_a_form_error(op_client):
    upload = SimpleUploadedFile("lager.xlsx", fixtures.mixed_xlsx())
    response = op_client.post("/pipelines/", {"upload": upload, "action": "preview"})
    assert response.status_code == 400
    assert "An XLSX file needs an import profile." in response.content.decode()


def test_profiles_page_creates_and_reports_errors(op_client):
    data = {
        "name": "neu",
        "description": "",
        "columns": '{"Nr": "sku", "Text": "name", "Preis": "prize"}',
        "delimiter": ";",
        "quotechar": '"',
        "encoding": "cp1252",
        "decimal_separator": ",",
        "thousands_separator": "",
        "header_row": "1",
        "sheet": "",
        "defaults": "{}",
        "price_factor": "1",
        "price_round_to": "",
    }
    bad = op_client.post("/pipelines/profiles/", data)
    assert bad.status_code == 400
    assert "unknown target field &#x27;prize&#x27;" in bad.content.decode()
    assert not ImportProfile.objects.exists()
    ok = op_client.post(
        "/pipelines/profiles/", {**data, "columns": data["columns"].replace("prize", "price")}
    )
    assert ok.status_code == 302
    profile = ImportProfile.objects.get()
    assert profile.columns == {"Nr": "sku", "Text": "name", "Preis": "price"}
    listing = op_client.get("/pipelines/profiles/").content.decode()
    assert "neu" in listing and f"/pipelines/profiles/{profile.pk}/" in listing


def test_run_pipeline_command_with_profile(tmp_path, capsys):
    fixtures.german_profile()
    path = tmp_path / "preise.csv"
    path.write_bytes(fixtures.german_cp1252_bytes().replace(b"0,99", b"0,9x"))
    with pytest.raises(CommandError):
        call_command("run_pipeline", str(path), "--profile", "lieferant-de", "--no-progress")
    out = io.StringIO()
    call_command(
        "run_pipeline",
        str(path),
        "--profile",
        "lieferant-de",
        "--policy",
        "skip_invalid_rows",
        "--no-progress",
        stdout=out,
    )
    text = out.getvalue()
    assert "rejected rows: 1" in text and "row 5, column 'VK-Preis'" in text
    assert Product.objects.count() == 2
    xlsx = tmp_path / "lager.xlsx"
    xlsx.write_bytes(fixtures.mixed_xlsx())
    fixtures.xlsx_profile()
    call_command(
        "run_pipeline",
        str(xlsx),
        "--profile",
        "lieferant-xlsx",
        "--policy",
        "skip_invalid_rows",
        "--no-progress",
        stdout=io.StringIO(),
    )
    assert Product.objects.filter(sku="100234").exists()


def test_admin_refuses_a_broken_profile_on_its_field():
    admin = UserFactory(username="boss", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    data = {
        "name": "adm",
        "description": "",
        "columns": '{"Nr": "sku", "Text": "name", "P1": "price", "P2": "price"}',
        "delimiter": "",
        "quotechar": '"',
        "encoding": "utf-8",
        "decimal_separator": ".",
        "thousands_separator": "",
        "header_row": "1",
        "sheet": "",
        "defaults": "{}",
        "price_factor": "1",
        "price_round_to": "",
    }
    response = client.post("/admin/app/importprofile/add/", data)
    assert response.status_code == 200
    assert "duplicate mapping" in response.content.decode()
    assert not ImportProfile.objects.exists()
    data["columns"] = '{"Nr": "sku", "Text": "name", "P1": "price"}'
    assert client.post("/admin/app/importprofile/add/", data).status_code == 302
    assert ImportProfile.objects.get().columns == {"Nr": "sku", "Text": "name", "P1": "price"}
