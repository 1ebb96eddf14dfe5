"""``405 Method Not Allowed`` in JSON, as every other error of the API (docs/api.md, "Errors").

django-ninja answers a method no operation of a path takes with its own ``HttpResponseNotAllowed``
and an HTML body, ``Method not allowed``; a client parsing ``{"detail": ...}`` got neither. It
offers no hook for that answer, so each of the API's URL patterns is wrapped here, once, at
import, keeping the ``Allow`` header.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.urls import URLPattern


def json_not_allowed(urls: tuple[list[Any], str, str]) -> tuple[list[Any], str, str]:
    """``api.urls`` with every view's 405 answered in JSON."""
    for pattern in urls[0]:
        if isinstance(pattern, URLPattern):
            pattern.callback = _answering_json(pattern.callback)
    return urls


def _answering_json(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)  # keeps ``csrf_exempt`` and the view's name
    def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if not isinstance(response, HttpResponseNotAllowed):
            return response
        allowed = response["Allow"]
        detail = f"method {request.method} not allowed here; allowed: {allowed}"
        json_response = JsonResponse({"detail": detail}, status=405)
        json_response["Allow"] = allowed
        return json_response

    return answer
