"""A real streaming replica of the test PostgreSQL, for tests/replica.

``streaming_replica`` (session scope) runs after pytest-django created the test database,
takes a ``pg_basebackup -R`` of the whole cluster (the test database included; later
changes arrive by streaming), and starts it as a hot standby on a free port in a temporary
directory. PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` user and its commands run as that user. ``scripts/pg-replication`` (run by
``scripts/services``) lets the primary accept replication connections from 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connections

from tests.smtp import free_port

ROOT = Path(__file__).resolve().parents[2]


class StreamingReplica:
    def __init__(self, primary: dict) -> None:
        self.primary = primary
        self.host = "127.0.0.1"
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="stockpipe-replica-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.as_root = os.geteuid() == 0
        version = self.primary_query("SHOW server_version_num")[0][0]
        self.bin = Path(f"/usr/lib/postgresql/{int(version) // 10000}/bin")

    # --- the primary -----------------------------------------------------------------------

    def primary_conninfo(self) -> dict:
        return {
            "host": self.primary["HOST"],
            "port": self.primary["PORT"],
            "user": self.primary["USER"] or "postgres",
            "password": self.primary["PASSWORD"] or None,
        }

    def primary_query(self, sql: str, dbname: str = "postgres") -> list[tuple]:
        with psycopg.connect(**self.primary_conninfo(), dbname=dbname, autocommit=True) as conn:
            return conn.execute(sql).fetchall()

    # --- the replica -----------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 360) -> None:
        command = [*(["runuser", "-u", "postgres", "--"] if self.as_root else []), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        log = self.log.read_text()[-4000:] if self.log.exists() else ""
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}{result.stderr}{log}"

    def create(self) -> None:
        subprocess.run(
            [str(ROOT / "scripts" / "pg-replication")],
            check=True,
            env={**os.environ, "PGPORT": str(self.primary["PORT"])},
        )
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        info = self.primary_conninfo()
        self.run(
            str(self.bin / "pg_basebackup"),
            *("-h", info["host"], "-p", str(info["port"]), "-U", info["user"]),
            *("-D", str(self.data), "-R", "-X", "stream", "-c", "fast", "--no-sync", "-w"),
        )
        # A hot standby needs these at least as high as on its primary.
        limits = [
            "max_connections",
            "max_worker_processes",
            "max_wal_senders",
            "max_prepared_transactions",
            "max_locks_per_transaction",
        ]
        values = {name: self.primary_query(f"SHOW {name}")[0][0] for name in limits}
        config = {
            **values,
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.dir}'",
            "hot_standby": "on",
            "fsync": "off",
            "shared_buffers": "'32MB'",
            "max_standby_streaming_delay": "'-1'",  # never cancel the tests' reads
        }
        self.write("postgresql.conf", "".join(f"{k} = {v}\n" for k, v in config.items()))
        self.write("pg_hba.conf", "local all all trust\nhost all all 127.0.0.1/32 trust\n")
        self.write("pg_ident.conf", "")

    def write(self, name: str, text: str) -> None:
        path = self.data / name
        path.write_text(text)
        if self.as_root:
            shutil.chown(path, "postgres", "postgres")

    def start(self) -> None:
        self.run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "300",
            "start",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.query("SELECT pg_is_in_recovery()")[0][0]:
                    return
            except psycopg.OperationalError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.2)

    def stop(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def query(self, sql: str, dbname: str = "postgres") -> list[tuple]:
        with psycopg.connect(
            host=self.host, port=self.port, user="postgres", dbname=dbname, autocommit=True
        ) as conn:
            return conn.execute(sql).fetchall()

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@{self.host}:{self.port}/{dbname}"

    def pause(self) -> None:
        """Stop replaying WAL: the replica keeps the state it has (received WAL waits)."""
        self.wait_caught_up()
        self.query("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + 10
        while self.query("SELECT pg_get_wal_replay_pause_state()")[0][0] != "paused":
            assert time.monotonic() < deadline, "replay did not pause"
            time.sleep(0.05)

    def resume(self) -> None:
        self.query("SELECT pg_wal_replay_resume()")

    def wait_caught_up(self, timeout: float = 30) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        target = self.primary_query("SELECT (pg_current_wal_lsn() - '0/0')::bigint")[0][0]
        deadline = time.monotonic() + timeout
        while self.query("SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint")[0][0] < target:
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.05)


@pytest.fixture(scope="session")
def streaming_replica(django_db_setup, django_db_blocker):
    """A hot standby of the test PostgreSQL cluster, taken after the test database exists."""
    with django_db_blocker.unblock():
        connection = connections["default"]
        assert connection.vendor == "postgresql"
        # The server itself, also when the tests reach it through a pooler (PgBouncer takes
        # no replication connections): its address as its backend sees it, else loopback.
        with connection.cursor() as cursor:
            cursor.execute("SELECT host(inet_server_addr()), current_setting('port')")
            host, port = cursor.fetchone()
        primary = {**connection.settings_dict, "HOST": host or "127.0.0.1", "PORT": int(port)}
    replica = StreamingReplica(primary)
    try:
        replica.create()
        replica.start()
        yield replica
    finally:
        replica.remove()
