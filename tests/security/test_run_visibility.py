"""Finding 9 of issue 12: one rule for who reads which pipeline run, API and pages alike.

A non-staff user reads only their own runs; staff read every run. Checked for the list and
the detail of the API (``/api/pipelines/runs``) and of the pages (dashboard, its polling
JSON, the pipeline page's list and a run's page).
"""

from __future__ import annotations

import pytest
from django.test import Client

from app.models import PipelineRun
from app.services.tokens import create_token
from tests.api.conftest import ApiClient, user_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(db):
    return user_with("run_pipeline", username="alice")


@pytest.fixture
def bob(db):
    return user_with("run_pipeline", username="bob")


@pytest.fixture
def staff(db):
    return user_with(username="staffer", is_staff=True)


@pytest.fixture
def runs(alice, bob):
    def run(user, name):
        return PipelineRun.objects.create(name=name, spec={}, user=user, status="running")

    return {"alice": run(alice, "alice-run"), "bob": run(bob, "bob-run")}


def _api(user) -> ApiClient:
    return ApiClient(create_token(user, "t")[1])


def _page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_api_lists_only_own_runs(alice, runs):
    body = _api(alice).get("/api/pipelines/runs").json()
    assert [item["id"] for item in body["items"]] == [runs["alice"].pk]


def test_api_detail_of_anothers_run_is_404(alice, runs):
    client = _api(alice)
    assert client.get(f"/api/pipelines/runs/{runs['alice'].pk}").status_code == 200
    response = client.get(f"/api/pipelines/runs/{runs['bob'].pk}")
    assert response.status_code == 404, response.content
    assert "bob-run" not in response.content.decode()


def test_api_staff_read_every_run(staff, runs):
    client = _api(staff)
    body = client.get("/api/pipelines/runs").json()
    assert {item["id"] for item in body["items"]} == {r.pk for r in runs.values()}
    assert client.get(f"/api/pipelines/runs/{runs['bob'].pk}").status_code == 200


def test_pages_list_only_own_runs(alice, runs):
    client = _page_client(alice)
    for url in ("/", "/pipelines/"):
        page = client.get(url).content.decode()
        assert "alice-run" in page and "bob-run" not in page, url
    polled = client.get("/dashboard/runs.json").json()["runs"]
    assert [r["id"] for r in polled] == [runs["alice"].pk]
    polled = client.get(f"/dashboard/runs.json?ids={runs['alice'].pk},{runs['bob'].pk}")
    assert [r["id"] for r in polled.json()["runs"]] == [runs["alice"].pk]


def test_page_of_anothers_run_is_404(alice, runs):
    client = _page_client(alice)
    assert client.get(f"/pipelines/runs/{runs['alice'].pk}/").status_code == 200
    assert client.get(f"/pipelines/runs/{runs['bob'].pk}/").status_code == 404


def test_pages_staff_read_every_run(staff, runs):
    client = _page_client(staff)
    page = client.get("/").content.decode()
    assert "alice-run" in page and "bob-run" in page
    assert len(client.get("/dashboard/runs.json").json()["runs"]) == 2


def test_api_and_pages_agree(alice, bob, staff, runs):
    """The same rule: for each user, the API's list equals the dashboard's list."""
    for user in (alice, bob, staff):
        api_ids = {item["id"] for item in _api(user).get("/api/pipelines/runs").json()["items"]}
        page_ids = {r["id"] for r in _page_client(user).get("/dashboard/runs.json").json()["runs"]}
        assert api_ids == page_ids, user.username
