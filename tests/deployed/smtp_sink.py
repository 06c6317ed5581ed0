"""The test SMTP server (tests/smtp.py) as a process of its own, for a deployed stack:
every accepted message is written to DIR as ``<n>.eml`` (complete files only).

Usage: python -m tests.deployed.smtp_sink PORT DIR   (runs until SIGTERM/SIGINT)
"""

from __future__ import annotations

import itertools
import signal
import sys
import threading
from pathlib import Path

from tests.smtp import RecordingHandler, SmtpServer


class MaildirHandler(RecordingHandler):
    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.numbers = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        number = next(self.numbers)
        partial = self.directory / f".{number}.tmp"
        partial.write_bytes(envelope.original_content)
        partial.rename(self.directory / f"{number}.eml")
        return await super().handle_DATA(server, session, envelope)


def main() -> None:
    port, directory = int(sys.argv[1]), Path(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    server = SmtpServer()
    server.port = port
    server.handler = MaildirHandler(directory)
    server.start()
    print(f"smtp sink on 127.0.0.1:{port}, messages in {directory}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
