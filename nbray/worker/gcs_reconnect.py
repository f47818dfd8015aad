"""What a driver or worker does when its GCS comes back (runs in drivers and workers).

The GCS client itself reconnects, subscribes again and sends what waited
(nbray/gcs/client.py). A driver must also tell a restarted GCS that its job
still runs, on the new connection, so that the job ends when this
connection closes (and the GCS does not finish the job for want of a
driver once its re-registration grace period ends).
"""

from __future__ import annotations

import logging
from typing import Any

from nbray.gcs.client import GcsClient
from nbray.protocol import common_pb2, gcs_pb2

logger = logging.getLogger(__name__)


def watch_gcs(gcs: GcsClient, *, is_driver: bool, job_id: bytes, driver: common_pb2.Address) -> None:
    """Install the reconnection hooks of a driver (`is_driver`) or worker."""
    if is_driver:
        gcs.on_reconnected.append(lambda: _reattach_job(gcs, job_id, driver))
    gcs.on_gave_up.append(lambda reason: logger.error("calls to the GCS fail from now on: %s", reason))


def _reattach_job(gcs: GcsClient, job_id: bytes, driver: common_pb2.Address) -> None:
    job = gcs_pb2.JobInfo(job_id=job_id, driver=driver)

    def done(reply: Any, error: BaseException | None) -> None:
        if error is not None:
            logger.warning("could not tell the restarted GCS that job %s still runs: %s", job_id.hex(), error)

    gcs.call_async("AddJob", gcs_pb2.AddJobRequest(job=job), callback=done)
