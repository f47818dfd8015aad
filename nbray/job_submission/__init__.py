"""The Jobs API (Ray's ``ray.job_submission``): run shell commands as drivers of a cluster.

    from nbray.job_submission import JobSubmissionClient, JobStatus

    client = JobSubmissionClient("http://127.0.0.1:8265")
    sid = client.submit_job(entrypoint="python train.py", runtime_env={"env_vars": {"LR": "0.1"}})
    client.get_job_status(sid)        # JobStatus.RUNNING
    print(client.get_job_logs(sid))
"""

from nbray.job_submission.common import JobDetails, JobStatus, JobType
from nbray.job_submission.sdk import JobSubmissionClient

JobInfo = JobDetails

__all__ = ["JobDetails", "JobInfo", "JobStatus", "JobSubmissionClient", "JobType"]
