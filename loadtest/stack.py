"""A throwaway production-shaped stack for benchmarks: N daphne processes, a fresh database, a private Redis.

    python -m loadtest.stack --processes 2 [--layer pubsub] [--database sqlite] [--env NAME=VALUE ...]

prints one JSON line (urls, daphne pids, redis pid, database URL) and serves until Ctrl-C or SIGTERM,
then stops everything and drops the database. `loadtest.stack.running(...)` does the same from Python.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import DaphneServer, RedisServer, migrate, postgres_database


@dataclass
class Stack:
    """What a benchmark needs to know about the servers it loads."""

    urls: list[str]
    daphne_pids: list[int]
    redis_pid: int | None
    database_url: str
    env: dict[str, str]
    log_dir: str
    servers: list[DaphneServer] = field(default_factory=list, repr=False)

    def describe(self) -> dict:
        """The stack as JSON-ready figures (no secrets: the key is a throwaway)."""
        return {
            "urls": self.urls,
            "daphne_pids": self.daphne_pids,
            "redis_pid": self.redis_pid,
            "database_url": self.database_url,
            "layer": self.env.get("REDIS_CHANNEL_LAYER", "core") if self.env.get("REDIS_URL") else "memory",
            "log_dir": self.log_dir,
        }


@contextmanager
def running(
    processes: int = 1, layer: str = "core", database: str = "postgres", extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """Start the stack; stop it and drop its database on exit."""
    with ExitStack() as stack:
        log_dir = tempfile.mkdtemp(prefix="chat-stack-")
        if database == "postgres":
            database_url = stack.enter_context(postgres_database())
        else:
            database_url = f"sqlite:///{log_dir}/db.sqlite3"
        env = {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "benchmark-only-key",
            "DEBUG": "0",
            "ACCOUNT_RATE_LIMITS": "off",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            "REDIS_URL": "",
        }
        redis_pid = None
        if layer != "memory":
            redis = stack.enter_context(RedisServer())
            env.update(REDIS_URL=redis.url, REDIS_CHANNEL_LAYER=layer)
            redis_pid = redis.process.pid
        elif processes > 1:
            raise SystemExit("the in-memory layer serves one process only")
        env.update(extra_env or {})
        migrate(env)
        servers = []
        for index in range(processes):
            server = DaphneServer(env=env, log_path=Path(log_dir) / f"daphne{index}.log")
            stack.callback(server.stop)
            servers.append(server.start())
        yield Stack(
            urls=[server.url for server in servers],
            daphne_pids=[server.process.pid for server in servers],
            redis_pid=redis_pid,
            database_url=database_url,
            env=env,
            log_dir=log_dir,
            servers=servers,
        )


def main(argv: list[str] | None = None) -> int:
    """Hold a stack up until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=1, help="daphne processes (default: 1)")
    parser.add_argument("--layer", choices=["core", "pubsub", "memory"], default="core", help="channel layer")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres", help="database")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra server setting")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with running(args.processes, args.layer, args.database, extra) as stack:
        print(json.dumps(stack.describe()), flush=True)
        try:
            while all(server.process.poll() is None for server in stack.servers):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
