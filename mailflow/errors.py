"""Errors the lab reports to its users; each carries the HTTP status the API answers with."""

from __future__ import annotations


class LabError(Exception):
    status = 400


class Invalid(LabError):
    status = 400


class NotFound(LabError):
    status = 404


class Conflict(LabError):
    status = 409
