from django.urls import include, path

from .api import api
from .views import ExecutePipelineView

urlpatterns = [
    path("api/pipelines/execute", ExecutePipelineView.as_view(), name="execute-pipeline"),
    path("api/", api.urls),
    path("", include("app.web.urls")),
]
