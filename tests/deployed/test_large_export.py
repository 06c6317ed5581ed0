"""A large export reaches a slow client whole, and no gunicorn worker waits for that client.

nginx takes the whole response from gunicorn first (to memory, then its temporary files) and
sends it at the client's pace. With too small a temporary-file cap, a client reading slower
than the export is written would hold a sync worker until gunicorn's timeout killed it, and
the download would end cut short. Here the client stalls after the first kilobyte until
gunicorn has logged the request as finished, then reads the rest.
"""

from __future__ import annotations

import csv
import http.client
import io
import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.deployed.conftest import wait_for

# Well over the 64 MB of temporary files nginx was allowed before (about 130 bytes a row).
ROWS = 700_000

INSERT = """
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute(
        "INSERT INTO app_product (sku, name, price, stock, low_stock_threshold, created_at,"
        " updated_at) SELECT %s || lpad(n::text, 7, '0'), 'Export row ' || n, 10 + n %% 90,"
        " 100, 5, now(), now() FROM generate_series(1, %s) AS n",
        [{prefix!r}, {rows}],
    )
    # What autovacuum does after such a load; with no statistics yet, PostgreSQL plans each
    # keyset chunk as a sort of all matching rows (minutes for 700,000).
    cursor.execute("ANALYZE app_product")
"""
DELETE = """
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("DELETE FROM app_product WHERE sku LIKE %s", [{prefix!r} + "%%"])
"""


@pytest.fixture
def many_products(stack):
    """Rows written with SQL: this test is about the transport, not about writes."""
    prefix = f"E2E-EXP-{stack.run}-"
    stack.manage_shell(INSERT.format(prefix=prefix, rows=ROWS))
    yield prefix
    stack.manage_shell(DELETE.format(prefix=prefix))


def test_a_stalled_download_of_a_large_export_frees_its_worker(stack, accounts, many_products):
    url = urlparse(stack.url)
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=stack.tls, timeout=120)
    conn.request(
        "GET",
        f"/api/exports/products?format=csv&sku_prefix={many_products}",
        headers={"Authorization": f"Bearer {accounts['exporter']['token']}"},
    )
    response = conn.getresponse()
    assert response.status == 200, response.read(2000)
    request_id = response.getheader("X-Request-ID")
    first = response.read(1024)

    log = Path(os.environ["STOCKPIPE_DEPLOYED_ENV"]).parent / "deploy-run.log"
    wait_for(
        lambda: f"rid={request_id}" in log.read_text(errors="replace"),
        timeout=110,  # under gunicorn's 120 s, which would end a worker held by the client
        message="gunicorn to finish the export while the client reads nothing",
    )
    body = first + response.read()
    conn.close()

    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][0] == "sku"
    skus = [row[0] for row in rows[1:]]
    assert len(skus) == ROWS
    assert skus[0] == f"{many_products}0000001" and skus[-1] == f"{many_products}{ROWS:07d}"
