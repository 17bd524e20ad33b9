"""REST errors as `{"error": "..."}` with a 4xx status, as the contract says."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from .errors import NotFound, ServiceError, flatten


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response({"error": f"request body is larger than {limit} bytes"},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, SuspiciousOperation):
        return Response({"error": f"request refused: {exc}"}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (NotFound, Http404)):
        return Response({"error": str(exc) or "not found"}, status=status.HTTP_404_NOT_FOUND)
    response = drf_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        response.data = {"error": flatten(exc.detail)}
    return response
