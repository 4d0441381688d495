"""The object store plane: data and outputs by URI on local files or S3, behind one interface."""

from mlsvc.objects.base import ObjectInfo, ObjectStore
from mlsvc.objects.router import RoutingObjectStore

__all__ = ["ObjectInfo", "ObjectStore", "RoutingObjectStore"]
