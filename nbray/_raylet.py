"""The private module path Ray programs import core types from.

``from ray._raylet import ObjectRef, ObjectRefGenerator`` is common in code
written for Ray (type hints, isinstance checks); with ``import nbray as
ray`` the same import reads ``from nbray._raylet import ...``. Nothing is
defined here: every name is the public one.
"""

from __future__ import annotations

from nbray.common.ids import (
    ActorClassID,
    ActorID,
    FunctionID,
    JobID,
    NodeID,
    ObjectID,
    PlacementGroupID,
    TaskID,
    UniqueID,
    WorkerID,
)
from nbray.object_ref import DynamicObjectRefGenerator, ObjectRef, ObjectRefGenerator

# The name Ray used for ObjectRefGenerator before 2.8.
StreamingObjectRefGenerator = ObjectRefGenerator

__all__ = [
    "ActorClassID",
    "ActorID",
    "DynamicObjectRefGenerator",
    "FunctionID",
    "JobID",
    "NodeID",
    "ObjectID",
    "ObjectRef",
    "ObjectRefGenerator",
    "PlacementGroupID",
    "StreamingObjectRefGenerator",
    "TaskID",
    "UniqueID",
    "WorkerID",
]
