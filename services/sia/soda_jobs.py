"""What an asynchronous SODA job does: every requested cutout, each one a result file.

Each ID x region x BAND x TIME combination is one cutout (SODA 1.0 section
3.3: several values make several results). The first is the job's result
``result``, the others ``result-2``, ``result-3``, ... in the order of the
combinations. A combination that does not overlap its image is skipped; an
unknown ID, a bad parameter or no overlap at all fails the job with the
SODA error message.
"""

from __future__ import annotations

from pathlib import Path

from services.sia.image_index import ImageIndex
from services.sia.soda import FITS_MEDIA_TYPE, make_cutout
from services.sia.soda_errors import NoOverlap, UsageError
from services.sia.soda_params import parse_request
from services.tap.uws.documents import VALUE_SEPARATOR
from services.tap.uws.jobs import Job
from services.tap.uws.runner import Execute, JobOutcome, ResultFile

#: The ``service`` of SODA's UWS jobs.
SODA_JOBS = "soda"
#: Most cutouts one job may make.
MAX_CUTOUTS = 100


def soda_executor(images: ImageIndex) -> Execute:
    """The runner's ``execute`` for SODA jobs."""

    def execute(job: Job, path: Path) -> JobOutcome:
        return run_soda_job(images, job, path)

    return execute


def job_values(job: Job) -> dict[str, list[str]]:
    """The job's parameters, upper-case names -> every value."""
    return {name.upper(): value.split(VALUE_SEPARATOR) for name, value in job.parameters.items()}


def run_soda_job(images: ImageIndex, job: Job, path: Path) -> JobOutcome:
    """Write the job's cutouts: the first to ``path``, the others beside it."""
    cutouts = parse_request(job_values(job), single=False).cutouts()
    if len(cutouts) > MAX_CUTOUTS:
        raise UsageError(
            f"the job asks for {len(cutouts)} cutouts (IDs x regions x BANDs x TIMEs); "
            f"at most {MAX_CUTOUTS} per job"
        )
    more: list[ResultFile] = []
    first: NoOverlap | None = None
    written = 0
    for cutout in cutouts:
        name = "result" if written == 0 else f"result-{written + 1}"
        target = path if written == 0 else path.parent / f"{name}.fits"
        try:
            with target.open("wb") as out:
                make_cutout(images, cutout, out)
        except NoOverlap as e:
            target.unlink(missing_ok=True)
            first = first or e
            continue
        if written:
            more.append(ResultFile(name, target.name, FITS_MEDIA_TYPE))
        written += 1
    if written == 0:
        assert first is not None
        raise first
    return JobOutcome(FITS_MEDIA_TYPE, written, False, tuple(more))
