"""The outcomes of a realtime directory (``retry --realtime``), read from its journal of generations.

A realtime directory has no batches: each request went through ``POST /v2/generate`` on its own and the
journal's ``generations`` table holds its end. :func:`realtime_results` gives the finished ones in the columns
of a batch's output.jsonl, :func:`realtime_outcomes` every journaled request's outcome.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._shard.builddir import JOURNAL
from .._submit.journal import GenerationRecord, Journal
from .outputs import COLUMNS

__all__ = ["realtime_outcomes", "realtime_results"]


def _records(directory: str | Path) -> list[GenerationRecord]:
    folder = Path(directory)
    if not (folder / JOURNAL).exists():
        return []
    with Journal.open(folder, create=False) as journal:
        return journal.generations()


def realtime_results(directory: str | Path) -> dict[str, list[Any]]:
    """The finished requests of a realtime directory, in the columns of ``read_output`` (:data:`COLUMNS`).

    A refused create reads as ``REJECTED`` with the server's error code (``http-<status>`` when it gave
    none) and message. Unfinished requests are left out, like lines a batch has not written yet;
    :func:`realtime_outcomes` tells pending ones from unsubmitted ones. ``result_line`` is always None.
    """
    finished = [r for r in _records(directory) if r.terminal]
    columns: dict[str, list[Any]] = {
        "request_id": [r.request_id for r in finished],
        "result_status": ["REJECTED" if r.state == "refused" else r.status for r in finished],
        "error_code": [r.error_code for r in finished],
        "error_message": [r.error for r in finished],
        "output_url": [r.output_url for r in finished],
        "output_duration": [r.output_duration for r in finished],
        "generation_id": [r.generation_id for r in finished],
        "result_line": [None] * len(finished),
    }
    assert tuple(columns) == COLUMNS
    return columns


def realtime_outcomes(directory: str | Path) -> dict[str, str]:
    """Every journaled request's outcome, by the rules of ``batchkit results``.

    ``completed``, ``rejected`` (REJECTED, or a refused create), ``failed`` (any other end), ``pending`` (a
    generation that has not finished, or a create whose answer was lost: never resend it elsewhere), or
    ``unsubmitted`` (never sent). Requests the journal does not know yet are not listed: they are unsubmitted.
    """
    outcomes: dict[str, str] = {}
    for record in _records(directory):
        if record.state == "pending":
            outcome = "unsubmitted"
        elif not record.terminal:
            outcome = "pending"
        elif record.state == "refused" or record.status == "REJECTED":
            outcome = "rejected"
        else:
            outcome = "completed" if record.status == "COMPLETED" else "failed"
        outcomes[record.request_id] = outcome
    return outcomes
