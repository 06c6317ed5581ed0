"""The HTTP API (Django Ninja). Owned by the API work; this is the mount point."""

from ninja import NinjaAPI

api = NinjaAPI(title="stockpipe API", version="1.0.0", urls_namespace="api")
