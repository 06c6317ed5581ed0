"""HTTP views of the app. ExecutePipelineView is implemented by the pipeline work."""

from django.http import HttpRequest, JsonResponse
from django.views import View


class ExecutePipelineView(View):
    def post(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse(
            {"detail": "Pipelines are not available yet.", "errors": []}, status=501
        )
