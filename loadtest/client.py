"""Browser-like HTTP login, htmx-style sockets, process sampling and statistics for the load generator."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import resource
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_PASSWORD = "load-test-pass-1234"
USER_AGENT = "chat-loadtest/1 (aiohttp)"
CLK_TCK = os.sysconf("SC_CLK_TCK")

_CSRF_INPUT_RE = re.compile(r'<input[^>]*name="csrfmiddlewaretoken"[^>]*>')
_VALUE_RE = re.compile(r'value="([^"]*)"')
_ERRORLIST_RE = re.compile(r'class="errorlist[^"]*"[^>]*>(.*?)</ul>', re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")


class LoadTestError(Exception):
    """A problem that stops a run before it measures anything (bad target, bad options)."""


@dataclass(frozen=True)
class Target:
    """The server under test: base URL, the Origin a browser would send, and the socket base URL."""

    base: str
    origin: str
    ws_base: str

    def room_page(self, room: str) -> str:
        """The room page's URL, as htmx reports it in HX-Current-URL."""
        return f"{self.base}/chat/{room}/"

    def room_socket(self, room: str) -> str:
        """The room socket's URL."""
        return f"{self.ws_base}/ws/chat/{room}/"


def loopback_target(url: str) -> Target:
    """Parse the server URL, refusing anything but a loopback host (127.0.0.1, localhost, ::1)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise LoadTestError(f"--url must start with http:// or https://, not {url!r}")
    host = (parts.hostname or "").lower()
    if host not in LOOPBACK_HOSTS:
        raise LoadTestError(
            f"refusing to load a non-loopback host {host or url!r}: only 127.0.0.1, localhost and ::1 are allowed"
        )
    origin = f"{parts.scheme}://{parts.netloc}"
    ws_scheme = "wss" if parts.scheme == "https" else "ws"
    return Target(base=origin, origin=origin, ws_base=f"{ws_scheme}://{parts.netloc}")


def new_session() -> aiohttp.ClientSession:
    """One HTTP client for every simulated browser: no shared cookie jar (cookies travel explicitly), no pool limit."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"User-Agent": USER_AGENT},
    )


@dataclass
class Account:
    """A logged-in user: the cookies a browser would hold after logging in."""

    username: str
    cookies: dict[str, str] = field(default_factory=dict)
    how: str = ""

    def cookie_header(self) -> str:
        """The Cookie header a browser would send."""
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())


def _remember_cookies(cookies: dict[str, str], response: aiohttp.ClientResponse) -> None:
    """Apply a response's Set-Cookie headers to a browser's cookie dict (deletions included)."""
    for name, morsel in response.cookies.items():
        if morsel.value == "" or morsel["max-age"] == "0":
            cookies.pop(name, None)
        else:
            cookies[name] = morsel.value


def _csrf_input(html: str) -> str | None:
    """The csrfmiddlewaretoken hidden input's value in a page, if any."""
    tag = _CSRF_INPUT_RE.search(html)
    if tag is None:
        return None
    value = _VALUE_RE.search(tag.group(0))
    return value.group(1) if value else None


def _form_errors(html: str) -> str:
    """The text of a re-rendered form's error lists, for diagnostics."""
    texts = [_SPACE_RE.sub(" ", _TAG_RE.sub(" ", m.group(1))).strip() for m in _ERRORLIST_RE.finditer(html)]
    return "; ".join(text for text in texts if text)[:200]


class Browser:
    """HTTP requests as one browser makes them: its own cookies, Origin and Referer on POST, no redirects followed."""

    def __init__(self, session: aiohttp.ClientSession, target: Target, http_timeout: float) -> None:
        self.session = session
        self.target = target
        self.cookies: dict[str, str] = {}
        self.timeout = aiohttp.ClientTimeout(total=http_timeout)

    def _headers(self, referer: str | None = None) -> dict[str, str]:
        """Cookie (and on POST, Origin and Referer) headers."""
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        if referer is not None:
            headers["Origin"] = self.target.origin
            headers["Referer"] = referer
        return headers

    async def get(self, path: str) -> tuple[int, str, str]:
        """GET a path; return status, body and the Location header."""
        async with self.session.get(
            self.target.base + path, headers=self._headers(), allow_redirects=False, timeout=self.timeout
        ) as response:
            _remember_cookies(self.cookies, response)
            return response.status, await response.text(), response.headers.get("Location", "")

    async def post(self, path: str, data: dict[str, str]) -> tuple[int, str, str]:
        """POST a form to a path as the page at that path would; return status, body and the Location header."""
        url = self.target.base + path
        async with self.session.post(
            url, data=data, headers=self._headers(referer=url), allow_redirects=False, timeout=self.timeout
        ) as response:
            _remember_cookies(self.cookies, response)
            return response.status, await response.text(), response.headers.get("Location", "")

    async def form_token(self, path: str) -> str:
        """GET a form page and return its CSRF token (the hidden input), failing clearly when absent."""
        status, body, location = await self.get(path)
        if status != 200:
            raise LoadTestError(f"GET {path} answered {status} {location}".strip())
        token = _csrf_input(body)
        if token is None:
            raise LoadTestError(f"GET {path} has no csrfmiddlewaretoken input")
        return token


async def sign_in(
    session: aiohttp.ClientSession,
    target: Target,
    username: str,
    password: str,
    session_cookie: str = "sessionid",
    http_timeout: float = 120.0,
) -> Account:
    """Sign up through allauth's form, or log in when the username exists; return the logged-in cookies."""
    browser = Browser(session, target, http_timeout)
    token = await browser.form_token("/accounts/signup/")
    status, body, location = await browser.post(
        "/accounts/signup/",
        {
            "username": username,
            "email": "",
            "password1": password,
            "password2": password,
            "csrfmiddlewaretoken": token,
        },
    )
    if status == 302 and session_cookie in browser.cookies:
        return Account(username, dict(browser.cookies), "signup")
    if status != 200:
        raise LoadTestError(f"signup of {username} answered {status} {location}".strip())
    signup_errors = _form_errors(body)
    token = await browser.form_token("/accounts/login/")
    status, body, location = await browser.post(
        "/accounts/login/", {"login": username, "password": password, "csrfmiddlewaretoken": token}
    )
    if status == 302 and session_cookie in browser.cookies:
        return Account(username, dict(browser.cookies), "login")
    detail = _form_errors(body) if status == 200 else location
    raise LoadTestError(f"{username}: signup refused ({signup_errors}) and login answered {status} ({detail})")


@dataclass
class SignInReport:
    """Accounts signed in, how, and what failed."""

    accounts: dict[str, Account]
    failures: dict[str, str]
    seconds: float

    def summary(self, requested: int) -> dict:
        """The report as JSON-ready figures."""
        how = [account.how for account in self.accounts.values()]
        return {
            "requested": requested,
            "signed_up": how.count("signup"),
            "logged_in": how.count("login"),
            "failed": len(self.failures),
            "failure_samples": sorted(set(self.failures.values()))[:5],
            "seconds": round(self.seconds, 2),
        }


async def sign_in_many(
    session: aiohttp.ClientSession,
    target: Target,
    usernames: Sequence[str],
    password: str,
    concurrency: int,
    session_cookie: str = "sessionid",
    http_timeout: float = 120.0,
) -> SignInReport:
    """Sign in many users with at most `concurrency` in flight."""
    started = time.monotonic()
    gate = asyncio.Semaphore(max(1, concurrency))
    accounts: dict[str, Account] = {}
    failures: dict[str, str] = {}

    async def one(username: str) -> None:
        async with gate:
            try:
                accounts[username] = await sign_in(session, target, username, password, session_cookie, http_timeout)
            except LoadTestError as error:
                failures[username] = str(error)[:300]
            except (aiohttp.ClientError, TimeoutError) as error:
                failures[username] = describe_error(error)

    await asyncio.gather(*(one(name) for name in usernames))
    return SignInReport(accounts, failures, time.monotonic() - started)


def htmx_frame(text: str, target: Target, room: str) -> str:
    """The JSON text frame htmx's ws extension sends for the message form (JSON.stringify, so no spaces)."""
    return htmx_frame_at(text, target.room_page(room))


def htmx_frame_at(text: str, page_url: str, key: str | None = None) -> str:
    """The message form's frame as sent from the page at `page_url` (a room's, or a direct conversation's), with
    the form's hidden `key` when given (32 hex digits: a message sent again under it is stored once)."""
    fields = {} if key is None else {"key": key}
    return json.dumps(
        {
            **fields,
            "message": text,
            "HEADERS": {
                "HX-Request": "true",
                "HX-Trigger": "message-form",
                "HX-Trigger-Name": None,
                "HX-Target": "message-form",
                "HX-Current-URL": page_url,
            },
        },
        separators=(",", ":"),
    )


async def open_socket(
    session: aiohttp.ClientSession, target: Target, room: str, account: Account, timeout: float
) -> aiohttp.ClientWebSocketResponse:
    """Open a room's socket as the browser of `account` does (its cookies, the site's Origin), within `timeout`."""
    return await open_socket_at(session, target, f"/ws/chat/{room}/", account, timeout)


async def open_socket_at(
    session: aiohttp.ClientSession, target: Target, path: str, account: Account, timeout: float
) -> aiohttp.ClientWebSocketResponse:
    """Open the socket at `path` (/ws/chat/<room>/, /ws/dm/<username>/, /ws/directory/) as `account`'s browser."""
    async with asyncio.timeout(timeout):
        return await session.ws_connect(
            target.ws_base + path,
            origin=target.origin,
            headers={"Cookie": account.cookie_header()},
            autoping=True,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
        )


async def close_all(sockets: Iterable[aiohttp.ClientWebSocketResponse]) -> None:
    """Close sockets concurrently, ignoring errors (each close is bounded by its ws_close timeout)."""
    pending = [ws.close() for ws in sockets if not ws.closed]
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


def describe_error(error: BaseException) -> str:
    """A short reason for a failed socket or request, the same for every room (no URL), for grouping."""
    if isinstance(error, aiohttp.WSServerHandshakeError):
        return f"handshake answered HTTP {error.status}"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect: {error.os_error.strerror or error.os_error}"
    return f"{type(error).__name__}: {error}"[:200]


def percentiles_ms(values_ns: Sequence[int]) -> dict:
    """Count, p50, p90, p99, max and mean in milliseconds (nearest rank) of durations in nanoseconds."""
    if not values_ns:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values_ns)
    n = len(ordered)

    def rank(p: float) -> float:
        """The nearest-rank percentile, in ms."""
        return round(ordered[max(0, math.ceil(p / 100 * n) - 1)] / 1e6, 2)

    return {
        "count": n,
        "p50": rank(50),
        "p90": rank(90),
        "p99": rank(99),
        "max": round(ordered[-1] / 1e6, 2),
        "mean": round(sum(ordered) / n / 1e6, 2),
    }


def read_proc(pid: int) -> dict | None:
    """CPU seconds (utime+stime), VmRSS and VmHWM (KiB) of a process from /proc; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    # Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    sample = {"cpu_s": (int(fields[11]) + int(fields[12])) / CLK_TCK, "rss_kb": None, "hwm_kb": None}
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            sample["rss_kb"] = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            sample["hwm_kb"] = int(line.split()[1])
    return sample


class ProcWatch:
    """CPU and memory of given processes (the server, Redis) sampled at named moments of a run."""

    def __init__(self, pids: Sequence[int]) -> None:
        for pid in pids:
            if read_proc(pid) is None:
                raise LoadTestError(f"no readable process with pid {pid} (/proc/{pid}/stat)")
        self.pids = list(pids)
        self.samples: dict[str, dict[int, dict | None]] = {}

    def mark(self, name: str) -> None:
        """Sample every process now, under a name such as 'before' or 'after'."""
        self.samples[name] = {pid: read_proc(pid) for pid in self.pids}

    def cpu_s(self, start: str, end: str) -> float | None:
        """CPU seconds all processes used between two marks; None without processes or marks."""
        if not self.pids or start not in self.samples or end not in self.samples:
            return None
        total = 0.0
        for pid in self.pids:
            first, last = self.samples[start][pid], self.samples[end][pid]
            if first is None or last is None:
                return None
            total += last["cpu_s"] - first["cpu_s"]
        return round(total, 3)

    def rss_kb(self, name: str) -> int | None:
        """Summed VmRSS of all processes at a mark."""
        if not self.pids or name not in self.samples:
            return None
        values = [sample["rss_kb"] for sample in self.samples[name].values() if sample and sample["rss_kb"]]
        return sum(values) if values else None

    def summary(self, start: str = "before", end: str = "after", per: int = 0, per_name: str = "us_per_frame") -> dict:
        """Per-process and total figures between two marks; with `per`, CPU microseconds per unit of work."""
        processes = []
        for pid in self.pids:
            entry: dict = {"pid": pid}
            for name, samples in self.samples.items():
                sample = samples.get(pid)
                entry[f"rss_kb_{name}"] = sample["rss_kb"] if sample else None
            last = self.samples.get(end, {}).get(pid) or {}
            entry["hwm_kb"] = last.get("hwm_kb")
            first = self.samples.get(start, {}).get(pid)
            entry["cpu_s"] = round(last["cpu_s"] - first["cpu_s"], 3) if first and last else None
            processes.append(entry)
        cpu = self.cpu_s(start, end)
        result = {"pids": self.pids, "cpu_s": cpu, "rss_kb": self.rss_kb(end), "processes": processes}
        if per_name:
            result[per_name] = round(cpu * 1e6 / per, 1) if cpu is not None and per else None
        return result


class GeneratorWatch:
    """The load generator's own CPU time over a window, to tell when the generator is the ceiling."""

    def __init__(self) -> None:
        self.cpu0 = self._cpu()
        self.wall0 = time.monotonic()
        self.started = False
        self.result: dict | None = None

    @staticmethod
    def _cpu() -> float:
        """User plus system CPU seconds of this process."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def restart(self) -> None:
        """Start the window now."""
        self.cpu0, self.wall0, self.result, self.started = self._cpu(), time.monotonic(), None, True

    def stop(self) -> dict:
        """End the window: CPU seconds, wall seconds and utilisation of one core (the event loop uses one)."""
        cpu, wall = self._cpu() - self.cpu0, time.monotonic() - self.wall0
        utilization = cpu / wall if wall > 0 else 0.0
        self.result = {
            "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3),
            "utilization": round(utilization, 3),
            "saturated": utilization > 0.85,
        }
        return self.result

    def summary(self) -> dict | None:
        """The window's figures, ending it now if it was not ended; None when no window was started."""
        if not self.started:
            return None
        return self.result or self.stop()


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (one descriptor per socket); return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft
