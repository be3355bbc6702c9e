"""A real SMTP server on 127.0.0.1 (aiosmtpd) for the tests that send email: alert emails go nowhere else."""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import threading

from aiosmtpd.controller import Controller

from tests.e2e.server import free_port


class Mailbox:
    """A real SMTP server on 127.0.0.1 that keeps what it receives; stopped and started on the same port."""

    def __init__(self, delay: float = 0.0):
        self.port = free_port()
        self.received: list[tuple[list[str], email.message.EmailMessage]] = []
        self.delay = delay  # seconds before it accepts each message, like a busy server
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.received.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def start(self) -> Mailbox:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        with self._lock:
            return [m for _, m in self.received]
