"""The API of the deployed stack, with tokens of ordinary users holding only the permissions
each call needs. Every call is repeated: with the shared Redis cache a permission bug showed
only from the second request on (issue 12, finding 1)."""

from __future__ import annotations

import http.client
import re

REPEAT = 4


def test_least_privilege_tokens_read_and_write_again_and_again(stack, accounts):
    editor, reader = accounts["editor"]["token"], accounts["reader"]["token"]
    sku = f"E2E-API-{stack.run}"

    for _ in range(REPEAT):
        me = stack.request("GET", "/api/auth/me", editor)
        assert me.status == 200, me.body
        assert me.json()["username"] == accounts["editor"]["username"]

    created = stack.request(
        "POST",
        "/api/products",
        editor,
        {"sku": sku, "name": "E2E api", "price": "10.00", "stock": 50},
    )
    assert created.status == 201, created.body

    for i in range(REPEAT):
        price = f"{11 + i}.00"
        patched = stack.request("PATCH", f"/api/products/{sku}", editor, {"price": price})
        assert patched.status == 200, (i, patched.status, patched.body)
        moved = stack.request(
            "POST", f"/api/products/{sku}/stock", editor, {"delta": -1, "reason": f"e2e {i}"}
        )
        assert moved.status == 201, (i, moved.status, moved.body)
        for token in (editor, reader):
            read = stack.request("GET", f"/api/products/{sku}", token)
            assert read.status == 200, (i, read.status, read.body)
            assert read.json()["price"] == price
            assert read.json()["stock"] == 50 - (i + 1)

    history = stack.request("GET", f"/api/products/{sku}/price-history", reader)
    assert history.status == 200, history.body

    for i in range(REPEAT):
        listed = stack.request("GET", f"/api/products?sku_prefix={sku}", reader)
        assert listed.status == 200, (i, listed.body)
        refused = stack.request("PATCH", f"/api/products/{sku}", reader, {"price": "1.00"})
        assert refused.status == 403, (i, refused.status, refused.body)
        unauthenticated = stack.request("GET", f"/api/products/{sku}")
        assert unauthenticated.status == 401, (i, unauthenticated.status)


def test_every_response_carries_nginx_request_id(stack, accounts):
    ids = set()
    for path, token in (
        ("/api/products?sku_prefix=NONE", accounts["reader"]["token"]),
        ("/api/products/NO-SUCH-SKU", accounts["reader"]["token"]),
        ("/accounts/login/", None),
    ):
        response = stack.request("GET", path, token)
        request_id = response.headers.get("X-Request-ID", "")
        assert re.fullmatch(r"[0-9a-f]{32}", request_id), (path, response.headers)
        ids.add(request_id)
    assert len(ids) == 3
    missing = stack.request("GET", "/api/products/NO-SUCH-SKU", accounts["reader"]["token"])
    assert missing.status == 404 and missing.json()["detail"] == "Not found."


def test_plain_http_redirects_to_https(stack):
    http_port = stack.env["STOCKPIPE_HTTP_PORT"]
    conn = http.client.HTTPConnection("127.0.0.1", int(http_port), timeout=10)
    conn.request("GET", "/products/?q=1")
    response = conn.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"{stack.url}/products/?q=1"


def test_a_body_over_the_limit_is_refused_by_nginx_with_413(stack, accounts):
    too_big = b"x" * (23 * 1024 * 1024)
    response = stack.request(
        "POST",
        "/api/products",
        accounts["editor"]["token"],
        too_big,
        {"Content-Type": "text/plain"},
    )
    assert response.status == 413
    assert response.headers.get("X-Request-ID")
