from django.apps import AppConfig


class PlainAppConfig(AppConfig):
    name = "tests.conformance.plainapp"
    label = "plainapp"
    default_auto_field = "django.db.models.BigAutoField"
