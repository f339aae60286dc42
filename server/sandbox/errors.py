"""Errors answered the way Cekura (Django REST framework) answers them."""

from __future__ import annotations

from typing import Any

DJANGO_500_PAGE = """<!doctype html>
<html lang="en">
<head>
  <title>Server Error (500)</title>
</head>
<body>
  <h1>Server Error (500)</h1><p></p>
</body>
</html>
"""


class ApiError(Exception):
    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(status, payload)
        self.status = status
        self.payload = payload


class ServerErrorPage(Exception):
    """Reproduces an unhandled exception on the real service: a bare Django 500 page."""


def field_error(field: str, message: str) -> ApiError:
    return ApiError(400, {field: [message]})


def not_found(detail: str = "Not found.") -> ApiError:
    return ApiError(404, {"detail": detail})
