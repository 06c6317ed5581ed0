"""Test-only app for the differential conformance test (``tests/conformance``).

``PlainProduct`` has ``Product``'s fields and constraints and nothing else: no save()
override, no custom queryset, no receivers. It is what plain Django does. The two proxy
models let the test write through a proxy of each. The app is installed by the test settings
only. It has one migration because a proxy of a migrated model (``app.Product``) cannot live
in an app without migrations (Django then cannot resolve the proxy's base).
"""
