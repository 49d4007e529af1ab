"""A throwaway production-shaped stack for benchmarks: N daphne processes, a fresh database, a private Redis.

    python -m loadtest.stack --processes 2 [--nginx] [--layer pubsub] [--database sqlite] [--env NAME=VALUE ...]

prints one JSON line (urls, daphne pids, redis pid, database URL, nginx's URL) and serves until Ctrl-C or SIGTERM,
then stops everything and drops the database. `loadtest.stack.running(...)` does the same from Python.

With --nginx, an nginx (Debian's, `apt install nginx`) runs in front of the processes on one address, with
deploy/nginx.conf's settings and an upstream of exactly these processes, as deploy/run.sh --nginx starts it; its
/ws/ location also names the process that took each socket in an `X-Chat-Upstream` header of the 101 answer (for
figures per process; not in deploy/nginx.conf).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.org import UPSTREAM_HEADER  # nginx's answer to a socket names the process that took it
from tests.support.servers import (
    BASE_DIR,
    DaphneServer,
    RedisServer,
    free_port,
    migrate,
    postgres_database,
    wait_for_port,
)


def nginx_binary() -> str | None:
    """Debian's nginx, if installed."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def nginx_config(ports: list[int], listen_port: int, directory: str, media_root: str | None = None) -> str:
    """deploy/nginx.conf as deploy/run.sh --nginx fills it in, for these daphne ports, plus the upstream header."""
    site = (BASE_DIR / "deploy" / "nginx.conf").read_text()
    upstream = "upstream chat_daphne { least_conn; " + "".join(f"server 127.0.0.1:{p} max_fails=0; " for p in ports)
    site = re.sub(r"(?ms)^upstream chat_daphne \{.*?^\}", lambda _: upstream + "keepalive 32; }", site, count=1)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{listen_port};")
    site = site.replace("server_name chat.example.com;", "server_name 127.0.0.1 localhost;")
    site = site.replace("/srv/chat/staticfiles/", f"{BASE_DIR}/staticfiles/")
    site = site.replace("/srv/chat/media/", f"{media_root or BASE_DIR / 'media'}/")
    ws = "location /ws/ {\n        proxy_pass http://chat_daphne;\n"
    if ws not in site:
        raise RuntimeError("deploy/nginx.conf has no `location /ws/` proxied to chat_daphne")
    site = site.replace(ws, ws + f"        add_header {UPSTREAM_HEADER} $upstream_addr always;\n", 1)
    return "\n".join(
        [
            f"daemon off; worker_processes 1; pid {directory}/nginx.pid; error_log {directory}/nginx-error.log;",
            "events { worker_connections 16384; }",
            "http {",
            f"  access_log off; client_body_temp_path {directory}; proxy_temp_path {directory};",
            f"  fastcgi_temp_path {directory}; uwsgi_temp_path {directory}; scgi_temp_path {directory};",
            site,
            "}",
            "",
        ]
    )


class NginxServer:
    """nginx in the foreground, in its own folder, in front of the given daphne ports."""

    def __init__(self, ports: list[int], directory: str) -> None:
        self.binary = nginx_binary()
        if self.binary is None:
            raise RuntimeError("nginx is not installed (apt install nginx)")
        self.port = free_port()
        self.directory = directory
        self.config = Path(directory) / "nginx.conf"
        self.config.write_text(nginx_config(ports, self.port, directory))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NginxServer:
        log = open(Path(self.directory) / "nginx.out", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config), "-p", self.directory], stdout=log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, process=self.process)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # nginx's fast shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_until_serving(url: str, timeout: float = 60.0) -> None:
    """Until the process answers /readyz with 200 (it reaches PostgreSQL and Redis), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/readyz did not answer 200 within {timeout} s")
        time.sleep(0.1)


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
    # nginx in front of the processes (None without --nginx): its URL is the one address browsers use.
    nginx: NginxServer | None = field(default=None, repr=False)

    @property
    def front_url(self) -> str | None:
        return self.nginx.url if self.nginx is not None else None

    @property
    def client_urls(self) -> list[str]:
        """Where the load goes: nginx's one address, else every process's own."""
        return [self.nginx.url] if self.nginx is not None else self.urls

    def upstreams(self) -> dict[str, int]:
        """Each process's address as nginx names it (`127.0.0.1:port`) and its index."""
        return {f"127.0.0.1:{server.port}": index for index, server in enumerate(self.servers)}

    def restart(self, index: int, timeout: float = 60.0) -> dict:
        """SIGTERM process `index`, start it again on its port, wait until it serves; what it took."""
        server = self.servers[index]
        started = time.monotonic()
        exit_code = server.stop(timeout=20)  # systemd's TimeoutStopSec in deploy/chat@.service, then SIGKILL
        stopped = time.monotonic()
        server.start()
        wait_until_serving(server.url, timeout)
        self.daphne_pids[index] = server.process.pid
        return {
            "index": index,
            "pid": server.process.pid,
            "exit_code": exit_code,
            "stop_s": round(stopped - started, 2),
            "start_s": round(time.monotonic() - stopped, 2),
        }

    def describe(self) -> dict:
        """The stack as JSON-ready figures (no secrets: the key is a throwaway)."""
        return {
            "urls": self.urls,
            "daphne_pids": self.daphne_pids,
            "redis_pid": self.redis_pid,
            "database_url": self.database_url,
            "layer": self.env.get("REDIS_CHANNEL_LAYER", "core") if self.env.get("REDIS_URL") else "memory",
            "log_dir": self.log_dir,
            "nginx_url": self.front_url,
            "nginx_pid": self.nginx.process.pid if self.nginx is not None and self.nginx.process else None,
        }


@contextmanager
def running(
    processes: int = 1,
    layer: str = "core",
    database: str = "postgres",
    extra_env: dict[str, str] | None = None,
    nginx: bool = False,
) -> Iterator[Stack]:
    """Start the stack (with nginx in front if asked); stop it and drop its database on exit."""
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
            servers.append(server)
        with ThreadPoolExecutor(max_workers=processes) as pool:  # they start side by side, each a few seconds
            list(pool.map(DaphneServer.start, servers))
        front = None
        if nginx:
            front = NginxServer([server.port for server in servers], log_dir)
            stack.callback(front.stop)
            front.start()
        yield Stack(
            urls=[server.url for server in servers],
            daphne_pids=[server.process.pid for server in servers],
            redis_pid=redis_pid,
            database_url=database_url,
            env=env,
            log_dir=log_dir,
            servers=servers,
            nginx=front,
        )


def main(argv: list[str] | None = None) -> int:
    """Hold a stack up until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=1, help="daphne processes (default: 1)")
    parser.add_argument("--layer", choices=["core", "pubsub", "memory"], default="core", help="channel layer")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres", help="database")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra server setting")
    parser.add_argument("--nginx", action="store_true", help="nginx in front of the processes, on one address")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with running(args.processes, args.layer, args.database, extra, nginx=args.nginx) as stack:
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
