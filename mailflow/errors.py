"""Errors the lab reports to its users.

In: raised by the move engines, the read models and the admin actions when a
request names nothing, is malformed or clashes with the lab's state. Out: caught
by the API (answered with each class's HTTP ``status``) and by the CLI.
(A lab *file* that cannot run is ``mailflow.labs.LabFileError``.)
"""

from __future__ import annotations


class LabError(Exception):
    status = 400


class Invalid(LabError):
    status = 400


class NotFound(LabError):
    status = 404


class Conflict(LabError):
    status = 409
