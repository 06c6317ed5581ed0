from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("app.urls")),
]

handler400 = "app.api.errors.handler400"
handler403 = "app.api.errors.handler403"
handler404 = "app.api.errors.handler404"
handler500 = "app.api.errors.handler500"
