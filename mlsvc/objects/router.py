"""The object store the service and the jobs use: each URI goes to its backend (S3 or local files)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from mlsvc.errors import ErrorCode, MlsvcError
from mlsvc.objects.base import Held, MiB, ObjectInfo, ObjectStore, Sink
from mlsvc.objects.local import LocalObjectStore
from mlsvc.objects.s3 import COPY_OBJECT_LIMIT, S3ObjectStore
from mlsvc.security.uris import S3Location, UriValidator


class RoutingObjectStore(ObjectStore):
    """s3:// URIs to S3, file:// URIs and paths to local files inside ``local_roots``; every URI is checked by
    the one validator first (``validator``, else one over ``local_roots``)."""

    def __init__(
        self,
        local_roots: tuple[Path, ...] = (),
        *,
        validator: UriValidator | None = None,
        s3_page_size: int = 1000,
        s3_part_size: int = 8 * MiB,
        s3_copy_threshold: int = COPY_OBJECT_LIMIT,
    ) -> None:
        self.validator = validator or UriValidator(local_roots)
        self.local = LocalObjectStore(self.validator)
        self.s3 = S3ObjectStore(
            page_size=s3_page_size, part_size=s3_part_size, copy_threshold=s3_copy_threshold, validator=self.validator
        )

    @property
    def local_roots(self) -> tuple[Path, ...]:
        return self.validator.local_roots

    def backend(self, uri: str) -> ObjectStore:
        self.validator.parse(uri)  # refuses unknown schemes and paths outside the roots, whichever backend
        return self.s3 if uri.lower().startswith("s3://") else self.local

    def check_uri(self, uri: str) -> str:
        location = self.validator.parse(uri)
        return location.uri if isinstance(location, S3Location) else str(location)

    def list_data_files(self, uri: str) -> list[ObjectInfo]:
        return self.backend(uri).list_data_files(uri)

    def stat(self, uri: str) -> ObjectInfo:
        return self.backend(uri).stat(uri)

    def open_raw(self, uri: str) -> BinaryIO:
        return self.backend(uri).open_raw(uri)

    def open_range(self, uri: str, start: int, end: int) -> BinaryIO:
        return self.backend(uri).open_range(uri, start, end)

    def sink(self, uri: str) -> Sink:
        return self.backend(uri).sink(uri)

    def hold(self, final_uri: str, staged_uri: str) -> Held:
        return self.backend(final_uri).hold(final_uri, staged_uri)

    def abort_unfinished(self, uri: str) -> None:
        self.backend(uri).abort_unfinished(uri)

    def publish(self, src_uri: str, dst_uri: str) -> None:
        source, target = self.backend(src_uri), self.backend(dst_uri)
        if source is not target:
            raise MlsvcError(
                ErrorCode.UNSUPPORTED_URI,
                f"cannot publish {src_uri} to {dst_uri}: both must be on S3 or both local",
                {"src_uri": src_uri, "dst_uri": dst_uri},
            )
        source.publish(src_uri, dst_uri)

    def delete(self, uri: str) -> None:
        self.backend(uri).delete(uri)

    def _delete_tree(self, uri: str, keep: str | None) -> None:
        self.backend(uri).delete_staging(uri, keep)
