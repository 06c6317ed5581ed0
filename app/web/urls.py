"""Server-rendered back-office pages (dashboard, product and pipeline pages)."""

urlpatterns: list = []
