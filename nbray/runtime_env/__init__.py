"""Runtime environments: the code, files and packages a task runs with.

``nbray.runtime_env.RuntimeEnv`` and the field rules are in spec.py;
packing and uploading in packaging.py (``upload_package`` gives the URI
of a working directory stored in the cluster); what the driver puts in a
task's spec in resolve.py; node-side setup in node_agent.py and pip_env.py;
the worker side in worker_setup.py.
"""

from nbray.runtime_env.spec import KNOWN_FIELDS, RuntimeEnv, merge, validate

__all__ = ["KNOWN_FIELDS", "RuntimeEnv", "merge", "validate"]
