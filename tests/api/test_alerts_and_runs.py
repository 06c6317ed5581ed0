import pytest
from django.utils import timezone

from app.models import DeliveryStatus, PipelineRun, StockAlert
from tests.api.conftest import assert_error_shape

pytestmark = pytest.mark.django_db


def test_alerts_open_and_resolved_with_delivery_state(api, reader_api, product):
    api.post("/api/products/WIDGET-1/stock", {"delta": -8})  # 2 < 5: opens an alert
    api.post("/api/products/WIDGET-1/stock", {"delta": 20})  # restocked: resolves it
    api.post("/api/products/WIDGET-1/stock", {"delta": -21})  # low again: a new alert
    StockAlert.objects.filter(resolved_at__isnull=False).update(
        delivery_status=DeliveryStatus.SENT, sent_at=timezone.now()
    )

    open_ = reader_api.get("/api/alerts", {"state": "open"}).json()
    assert [(a["stock"], a["is_open"]) for a in open_["items"]] == [(1, True)]
    assert open_["items"][0]["delivery_status"] == "pending"
    resolved = reader_api.get("/api/alerts", {"state": "resolved"}).json()
    assert [(a["stock"], a["delivery_status"]) for a in resolved["items"]] == [(2, "sent")]
    assert reader_api.get("/api/alerts").json()["count"] == 2
    sent = reader_api.get("/api/alerts", {"delivery_status": "sent"}).json()
    assert sent["count"] == 1
    assert reader_api.get("/api/alerts", {"sku": "OTHER"}).json()["count"] == 0

    one = reader_api.get(f"/api/alerts/{open_['items'][0]['id']}").json()
    assert one["sku"] == "WIDGET-1"


def test_alert_errors(reader_api, anon):
    assert_error_shape(anon.get("/api/alerts"), 401)
    assert_error_shape(reader_api.get("/api/alerts", {"state": "closed"}), 422)
    assert_error_shape(reader_api.get("/api/alerts/999999"), 404)
    assert_error_shape(reader_api.get("/api/alerts/0"), 422)
    assert_error_shape(reader_api.get(f"/api/alerts/{2**70}"), 422)


def test_pipeline_runs_list_and_status(api, writer):
    """The user's own runs (others' runs: tests/security/test_run_visibility.py)."""
    done = PipelineRun.objects.create(
        name="import",
        spec={"steps": []},
        user=writer,
        status="succeeded",
        steps_total=2,
        steps_done=2,
        rows_total=10,
        rows_done=10,
        result={"updated": 10},
    )
    PipelineRun.objects.create(
        name="preview", spec={}, user=writer, status="previewed", dry_run=True
    )
    body = api.get("/api/pipelines/runs").json()
    assert body["count"] == 2
    assert [r["name"] for r in body["items"]] == ["preview", "import"]
    filtered = api.get("/api/pipelines/runs", {"status": "succeeded"}).json()
    assert [r["id"] for r in filtered["items"]] == [done.pk]

    run = api.get(f"/api/pipelines/runs/{done.pk}").json()
    assert run["status"] == "succeeded"
    assert (run["steps_done"], run["steps_total"], run["rows_done"]) == (2, 2, 10)
    assert run["result"] == {"updated": 10}
    assert run["user"] == writer.username


def test_pipeline_run_errors(reader_api, anon):
    assert_error_shape(anon.get("/api/pipelines/runs"), 401)
    assert_error_shape(reader_api.get("/api/pipelines/runs/12345"), 404)
    assert_error_shape(reader_api.get("/api/pipelines/runs", {"status": "bogus"}), 422)
