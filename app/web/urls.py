"""Server-rendered back-office pages (dashboard, product and pipeline pages)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from ..core import converters  # noqa: F401 (registers <anysku:...>)
from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("dashboard/runs.json", views.runs_json, name="dashboard-runs"),
    path("products/", views.product_list, name="product-list"),
    path("products/totals.json", views.product_totals, name="product-totals"),
    path("exports/", views.export_page, name="exports"),
    path("exports/download", views.export_download, name="export-download"),
    path("products/<anysku:sku>/", views.product_detail, name="product-detail"),
    path("pipelines/", views.pipeline, name="pipeline"),
    path("pipelines/runs/<int:pk>/", views.pipeline_run, name="pipeline-run"),
    path("pipelines/runs/<int:pk>/run", views.pipeline_commit, name="pipeline-commit"),
    path(
        "pipelines/runs/<int:pk>/rejected.csv",
        views.pipeline_rejected_csv,
        name="pipeline-rejected-csv",
    ),
    path("pipelines/profiles/", views.profiles, name="profiles"),
    path("pipelines/profiles/<int:pk>/", views.profiles, name="profile-edit"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            template_name="registration/login.html", next_page="dashboard"
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
]
