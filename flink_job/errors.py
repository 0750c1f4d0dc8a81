"""The root of every error the TA job raises on purpose.

Each error also keeps its builtin base (`ValueError` for bad input, `RuntimeError` for a
setup or runtime condition), so `except ValueError` around a decode still catches it; code
that wants everything the job reports catches `TaJobError`.
"""

from __future__ import annotations


class TaJobError(Exception):
    """An error the TA job raises on purpose, with a message naming the input and what to do."""
