"""Object stores for backups: OpenStack Swift and S3, behind one small interface.

:class:`ObjectStore` has five verbs on the objects of one container (Swift)
or bucket (S3): :meth:`~ObjectStore.ensure`, :meth:`~ObjectStore.put`,
:meth:`~ObjectStore.get`, :meth:`~ObjectStore.delete` and
:meth:`~ObjectStore.list`. Foreign errors become the typed exceptions of
:mod:`xensm_driver.exception` here, once:

- the object is absent -> :class:`~xensm_driver.exception.ObjectNotFound`
  (``delete`` of an absent object is not an error: deletes converge);
- the store cannot be reached -> ``ObjectStoreUnreachable``;
- anything else (auth refused, bucket missing, 5xx after the client's own
  retries) -> ``ObjectStoreError``.

Messages name the store by container and URL, never by key or password.
Both clients are safe to call from several threads: Swift gets one
``swiftclient.Connection`` per thread (a Connection is not thread-safe);
a boto3 client is.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from xensm_driver import exception

#: What a target's ``type`` may be.
TYPES = ("swift", "s3")


class ObjectStore:
    """One container or bucket."""

    kind = "object store"
    holder = "container"

    def __init__(self, container: str, url: str) -> None:
        self.container = container
        self.url = url

    @property
    def label(self) -> str:
        return "%s %s %s at %s" % (self.kind, self.holder, self.container, self.url)

    def _error(self, cls: type[exception.ObjectStoreError], op: str, name: str,
               reason: str) -> exception.ObjectStoreError:
        return cls(store=self.label, op=op, name=name, reason=reason)

    def ensure(self) -> None:
        """Make the container/bucket if it is not there."""
        raise NotImplementedError

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` as ``name``; the store checks its MD5 on arrival."""
        raise NotImplementedError

    def get(self, name: str) -> bytes:
        raise NotImplementedError

    def delete(self, name: str) -> None:
        """Remove ``name``; absent already is done."""
        raise NotImplementedError

    def list(self, prefix: str) -> list[str]:
        """Names starting with ``prefix``, in order."""
        raise NotImplementedError


class SwiftStore(ObjectStore):
    """A Swift container through python-swiftclient (v1 auth, e.g. tempauth;
    or Keystone v3 with ``auth_version='3'`` and the usual os_options)."""

    kind = "Swift"

    def __init__(self, auth_url: str, user: str, key: str, container: str, *,
                 auth_version: str = "1", timeout: float = 60.0, retries: int = 3,
                 os_options: dict[str, str] | None = None) -> None:
        super().__init__(container, auth_url)
        self._args: dict[str, Any] = {
            "authurl": auth_url, "user": user, "key": key, "auth_version": auth_version,
            "timeout": timeout, "retries": retries, "os_options": dict(os_options or {})}
        self._local = threading.local()

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import swiftclient.client as swift
            conn = swift.Connection(**self._args)
            self._local.conn = conn
        return conn

    def _call(self, op: str, name: str, fn: str, *args: Any, **kwargs: Any) -> Any:
        import swiftclient.exceptions as swift_exc
        from requests import exceptions as req_exc
        try:
            return getattr(self._conn(), fn)(*args, **kwargs)
        except swift_exc.ClientException as exc:
            status = getattr(exc, "http_status", None)
            if status == 404:
                raise self._error(exception.ObjectNotFound, op, name, "HTTP 404") from None
            if status is None:
                raise self._error(exception.ObjectStoreUnreachable, op, name,
                                  _first_line(exc.msg)) from None
            raise self._error(exception.ObjectStoreError, op, name, "HTTP %s %s" % (
                status, getattr(exc, "http_reason", "") or "")) from None
        except (req_exc.RequestException, OSError) as exc:
            raise self._error(exception.ObjectStoreUnreachable, op, name,
                              type(exc).__name__) from None

    def ensure(self) -> None:
        self._call("create container", self.container, "put_container", self.container)

    def put(self, name: str, data: bytes) -> None:
        self._call("put", name, "put_object", self.container, name, data,
                   etag=hashlib.md5(data, usedforsecurity=False).hexdigest(),
                   content_length=len(data))

    def get(self, name: str) -> bytes:
        _headers, body = self._call("get", name, "get_object", self.container, name)
        return bytes(body)

    def delete(self, name: str) -> None:
        try:
            self._call("delete", name, "delete_object", self.container, name)
        except exception.ObjectNotFound:
            pass

    def list(self, prefix: str) -> list[str]:
        _headers, items = self._call("list", prefix + "*", "get_container", self.container,
                                     prefix=prefix, full_listing=True)
        return [item["name"] for item in items]


class S3Store(ObjectStore):
    """An S3 bucket through boto3 (path-style addressing: works with any
    endpoint, Swift's s3api and MinIO included)."""

    kind = "S3"
    holder = "bucket"

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, *,
                 region: str = "us-east-1", timeout: float = 60.0, retries: int = 3,
                 verify: bool | str = True) -> None:
        super().__init__(bucket, endpoint)
        import boto3
        from botocore.config import Config
        self._client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, region_name=region, verify=verify,
            config=Config(s3={"addressing_style": "path"}, connect_timeout=timeout,
                          read_timeout=timeout, retries={"max_attempts": retries + 1,
                                                         "mode": "standard"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))

    def _call(self, op: str, name: str, fn: str, **kwargs: Any) -> Any:
        from botocore import exceptions as boto_exc
        try:
            return getattr(self._client, fn)(**kwargs)
        except boto_exc.ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404", "NotFound") or (status == 404 and op == "get"):
                raise self._error(exception.ObjectNotFound, op, name, code) from None
            raise self._error(exception.ObjectStoreError, op, name, "%s (HTTP %s)" % (
                code or "error", status)) from None
        except (boto_exc.EndpointConnectionError, boto_exc.ConnectionClosedError,
                boto_exc.ReadTimeoutError, boto_exc.ConnectTimeoutError) as exc:
            raise self._error(exception.ObjectStoreUnreachable, op, name,
                              type(exc).__name__) from None
        except boto_exc.BotoCoreError as exc:
            raise self._error(exception.ObjectStoreError, op, name,
                              type(exc).__name__) from None

    def ensure(self) -> None:
        try:
            self._call("check bucket", self.container, "head_bucket", Bucket=self.container)
        except exception.ObjectStoreError:
            self._call("create bucket", self.container, "create_bucket",
                       Bucket=self.container)

    def put(self, name: str, data: bytes) -> None:
        import base64
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        self._call("put", name, "put_object", Bucket=self.container, Key=name, Body=data,
                   ContentMD5=md5)

    def get(self, name: str) -> bytes:
        answer = self._call("get", name, "get_object", Bucket=self.container, Key=name)
        body = answer["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def delete(self, name: str) -> None:
        # S3 answers 204 for an absent key too.
        self._call("delete", name, "delete_object", Bucket=self.container, Key=name)

    def list(self, prefix: str) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.container, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list", prefix + "*", "list_objects_v2", **kwargs)
            names += [item["Key"] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return names
            token = page.get("NextContinuationToken")


def _first_line(text: str) -> str:
    return (str(text).strip().splitlines() or ["error"])[0][:300]
