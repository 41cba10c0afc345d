#!/usr/bin/env python3
"""Checks the deployment examples under deploy/ and .github/workflows/ci.yml.

Usage: python scripts/check_deploy.py path/to/sacred-server

The binary must be built with --features redis. Each example is checked
statically (a schema or the tool that reads it) and, where it starts
sacred-server, by running the binary here with exactly the example's flags,
its addresses rewritten to loopback ports the OS picks:

  systemd     systemd-analyze verify and security on the unit; ExecStart run as
              an unprivileged user under strace, every system call checked
              against SystemCallFilter, the address families against
              RestrictAddressFamilies, no writable-and-executable mapping
              (MemoryDenyWriteExecute); the stop within TimeoutStopSec
  container   dockerfile-parse; COPY sources in the build context that
              .dockerignore leaves; that context loads as the workspace
              (cargo metadata --locked); the binary needs only glibc; the
              ENTRYPOINT/CMD flags run until /ready is 200, the HEALTHCHECK
              command run against it, SIGTERM exits 0
  kubernetes  kubernetes-validate --strict (and that it refuses a broken copy);
              the Deployment's args and env on the image's entry point, every
              probe answered 200 on the port it names, the grace against the
              drain, and a real shutdown with a client that stays
  compose     the compose-spec schema (check-jsonschema's copy); a real
              redis-server, the three nodes with the file's flags, nginx with
              the file's config; a publication from node 1 reaches a
              subscriber on node 3, and one through nginx
  ci          check-jsonschema's GitHub workflow schema and timeout rule; the
              job runs bash .ci/run within 90 minutes with a cargo cache

Debian packages it needs: systemd (systemd-analyze), strace, redis-server,
nginx (nginx-light). PyPI packages: scripts/requirements-deploy.txt.
Every wait is bounded; every process it starts is killed on exit. The last
line is "check_deploy: N passed, N failed"; the exit code is 1 on any failure.
"""

from __future__ import annotations

import atexit
import copy
import fnmatch
import json
import os
import pwd
import queue
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent
DEFAULT_DRAIN = 15
HTTP_AFTER_DRAIN = 2  # docs/operations.md, Shutdown: HTTP gets 2 s more
WHOLE_RUN_LIMIT = 900  # seconds: the whole script, whatever hangs

try:
    import yaml
    from dockerfile_parse import DockerfileParser
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect
except ImportError as err:  # pragma: no cover
    sys.exit(
        f"check_deploy: missing Python package ({err.name}): "
        "pip install -r scripts/requirements-deploy.txt"
    )


class Failed(Exception):
    """A check that did not hold."""


def need(condition: object, message: str) -> None:
    if not condition:
        raise Failed(message)


# ---------------------------------------------------------------- processes

CHILDREN: list[subprocess.Popen] = []


def kill_children() -> None:
    for proc in CHILDREN:
        if proc.poll() is None:
            try:
                # Each child leads its own process group (start_new_session):
                # this ends it and whatever it started (nginx's workers).
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def on_signal(signum, _frame):
    raise SystemExit(f"check_deploy: stopped by signal {signum}")


atexit.register(kill_children)
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)


def spawn(argv, **kwargs) -> subprocess.Popen:
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    CHILDREN.append(proc)
    return proc


def stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def run(argv, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as err:
        raise Failed(f"{shlex.join(map(str, argv))} did not finish within {timeout} s") from err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, timeout: float, probe):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - anything means "not yet"
            last = err
        time.sleep(0.1)
    raise Failed(f"{what}: not within {timeout} s" + (f" (last: {last})" if last else ""))


def tool(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    need(path, f"{name} not found: install Debian's {package}")
    return path


def venv_tool(name: str) -> str:
    path = BIN_DIR / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    need(found, f"{name} not found: pip install -r scripts/requirements-deploy.txt")
    return found


def unprivileged() -> dict:
    """Popen arguments that run a child as nobody when we are root."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def own_by_child(path: Path) -> None:
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


def http_get(url: str, timeout: float = 3) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


# ------------------------------------------------------------ sacred-server


class Server:
    """A sacred-server process whose JSON log lines are collected."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None, cwd=None,
                 preexec=None, as_nobody: bool = True, json_logs: bool = True):
        self.name = name
        self.argv = argv
        self.json_logs = json_logs
        self.lines: list[dict] = []
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.cond = threading.Condition()
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SACRED_LOG": "info"}
        full_env.update(env or {})
        extra = unprivileged() if as_nobody else {}
        self.proc = spawn(argv, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=preexec, **extra)
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._read, args=(stream, sink), daemon=True).start()

    def _read(self, stream, sink):
        for line in stream:
            line = line.rstrip("\n")
            with self.cond:
                sink.append(line)
                if sink is self.stdout and self.json_logs:
                    try:
                        self.lines.append(json.loads(line))
                    except json.JSONDecodeError:
                        self.lines.append({"not_json": line})
                self.cond.notify_all()

    def log_tail(self) -> str:
        return "\n".join((self.stdout + self.stderr)[-12:])

    def wait_log(self, what: str, pred, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if pred(line):
                        return line
                if self.proc.poll() is not None and not any(pred(l) for l in self.lines):
                    # Give the reader a moment for the last lines.
                    self.cond.wait(0.2)
                    if not any(pred(l) for l in self.lines):
                        raise Failed(f"{self.name} exited with {self.proc.returncode} before "
                                     f"{what}:\n{self.log_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failed(f"{self.name}: no {what} within {timeout} s:\n{self.log_tail()}")
                self.cond.wait(min(left, 0.2))

    def address(self, kind: str) -> str:
        marker = {"main": "sacred-server listening", "metrics": "metrics and probes"}[kind]
        line = self.wait_log(f"'{marker}' log line",
                             lambda l: marker in l.get("fields", {}).get("message", ""))
        return line["fields"]["address" if kind == "main" else "metrics_address"]

    def log_value(self, message: str, field: str):
        line = self.wait_log(f"'{message}' log line",
                             lambda l: l.get("fields", {}).get("message") == message)
        return line["fields"][field]

    def check_json_logs(self) -> None:
        bad = [l["not_json"] for l in self.lines if "not_json" in l]
        need(not bad, f"{self.name}: log lines that are not JSON (--log-format json): {bad[:3]}")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise Failed(f"{self.name} still running {timeout} s after SIGTERM") from err


class Client:
    """A minimal Sacred client over the JSON subprotocol (docs/protocol.md)."""

    def __init__(self, url: str, name: str = "check-deploy", origin: str | None = None):
        # Entered at once (websockets 17 wants its context manager used).
        self.ws = ws_connect(url, subprotocols=["sacred.v1.json"], open_timeout=5,
                             close_timeout=2, origin=origin).__enter__()
        need(self.ws.subprotocol == "sacred.v1.json",
             f"{url}: subprotocol {self.ws.subprotocol!r}, not sacred.v1.json")
        self.next_id = 0
        self.pushes: list[dict] = []
        self.closed_code = None
        self.reply = self.call("connect", {"client": {"name": name, "kind": "agent",
                                                      "runtime": "python"}})

    def _send(self, command: str, body: dict) -> int:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, command: body}))
        return self.next_id

    def _messages(self, timeout: float):
        frame = self.ws.recv(timeout=max(timeout, 0.01))
        messages = json.loads(frame)
        for message in messages if isinstance(messages, list) else [messages]:
            if "ping" in message:
                self._send("pong", {})
            yield message

    def call(self, command: str, body: dict, timeout: float = 5):
        id_ = self._send(command, body)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            need(left > 0, f"no reply to {command} within {timeout} s")
            try:
                for message in self._messages(left):
                    if message.get("id") == id_:
                        need("error" not in message, f"{command} refused: {message}")
                        return message[command]
                    if "id" not in message:
                        self.pushes.append(message)
            except TimeoutError:
                continue

    def wait_push(self, key: str, pred=lambda body: True, timeout: float = 5) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.pushes:
                if key in message and pred(message[key]):
                    self.pushes.remove(message)
                    return message[key]
            left = deadline - time.monotonic()
            need(left > 0, f"no {key} push within {timeout} s")
            try:
                for message in self._messages(left):
                    if "id" not in message:
                        self.pushes.append(message)
            except TimeoutError:
                pass

    def read_until_closed(self, timeout: float) -> int | None:
        """Keeps reading (answering pings) until the server closes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                for message in self._messages(deadline - time.monotonic()):
                    if "id" not in message:
                        self.pushes.append(message)
            except TimeoutError:
                pass
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None
        raise Failed(f"the server did not close the connection within {timeout} s")

    def close(self) -> None:
        self.ws.close()


def rewrite_binds(args: list[str]) -> list[str]:
    """--bind/--metrics-bind on any address: loopback, a port the OS picks."""
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg in ("--bind", "--metrics-bind"):
            out[i + 1] = "127.0.0.1:0"
    return out


def container_port(args: list[str], flag: str) -> int | None:
    for i, arg in enumerate(args[:-1]):
        if arg == flag:
            return int(args[i + 1].rsplit(":", 1)[1])
    return None


def rewrite_redis(args: list[str], port: int) -> list[str]:
    return [re.sub(r"^redis://[^/]+", f"redis://127.0.0.1:{port}", a) for a in args]


def drain_of(args: list[str], env: dict) -> int:
    for i, arg in enumerate(args[:-1]):
        if arg == "--drain-secs":
            return int(args[i + 1])
    return int(env.get("SACRED_DRAIN_SECS", DEFAULT_DRAIN))


class Redis:
    def __init__(self, tmp: Path, flags: list[str]):
        self.port = free_port()
        binary = tool("redis-server", "redis-server")
        data = tmp / "redis"
        data.mkdir()
        argv = [binary, *flags, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(data), "--save", "", "--protected-mode", "yes"]
        self.proc = spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until("redis-server answering PING", 10, self.ping)

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")


# ----------------------------------------------------------------- results

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str):
    def wrap(func):
        def runner(*args):
            try:
                detail = func(*args) or ""
                RESULTS.append((name, True, detail))
                print(f"PASS {name}" + (f": {detail}" if detail else ""), flush=True)
            except Failed as err:
                RESULTS.append((name, False, str(err)))
                print(f"FAIL {name}: {err}", flush=True)
            except Exception as err:  # noqa: BLE001 - report, go on with the next check
                RESULTS.append((name, False, f"{type(err).__name__}: {err}"))
                print(f"FAIL {name}: {type(err).__name__}: {err}", flush=True)
            finally:
                kill_children()
                CHILDREN.clear()
        return runner
    return wrap


# ------------------------------------------------------------ the container

CONTAINERFILE = ROOT / "deploy/container/Containerfile"


def containerfile() -> dict:
    """The parsed Containerfile: its stages and the runtime stage's settings."""
    parser = DockerfileParser(fileobj=open(CONTAINERFILE, "rb"))
    stages: list[dict] = []
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            words = value.split()
            stages.append({"image": words[0],
                           "name": words[2] if len(words) == 3 and words[1].upper() == "AS"
                           else None,
                           "items": []})
        elif instruction != "COMMENT":
            need(stages, f"{instruction} before any FROM")
            stages[-1]["items"].append((instruction, value))
    need(len(stages) >= 2, "not a multi-stage build")
    runtime = stages[-1]

    def last(instruction):
        values = [v for i, v in runtime["items"] if i == instruction]
        return values[-1] if values else None

    entrypoint = last("ENTRYPOINT")
    need(entrypoint and entrypoint.startswith("["), "ENTRYPOINT must be in JSON (exec) form")
    cmd = last("CMD") or "[]"
    need(cmd.startswith("["), "CMD must be in JSON (exec) form")
    health = last("HEALTHCHECK")
    return {"stages": stages, "runtime": runtime, "entrypoint": json.loads(entrypoint),
            "cmd": json.loads(cmd), "user": last("USER"),
            "expose": {int(p.split("/")[0]) for v in
                       [v for i, v in runtime["items"] if i == "EXPOSE"] for p in v.split()},
            "healthcheck": None if health is None or health.strip() == "NONE"
            else json.loads(health.split("CMD", 1)[1].strip())}


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    patterns = [l.strip() for l in path.read_text().splitlines()
                if l.strip() and not l.strip().startswith("#")]
    need(not any(p.startswith("!") for p in patterns),
         ".dockerignore exceptions (!) are not understood by this check")
    return [p.rstrip("/") for p in patterns]


def ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        forms = [pattern] + ([pattern[3:]] if pattern.startswith("**/") else [])
        if any(fnmatch.fnmatchcase(c, f) for c in candidates for f in forms):
            return True
    return False


def context_files() -> list[str]:
    listed = run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others",
                  "--exclude-standard", "-z"])
    need(listed.returncode == 0, f"git ls-files: {listed.stderr}")
    patterns = dockerignore_patterns()
    return [f for f in listed.stdout.split("\0")
            if f and (ROOT / f).is_file() and not ignored(f, patterns)]


@check("container: Containerfile parsed (dockerfile-parse), stages, user, ports, entry point")
def container_static(binary: Path):
    spec = containerfile()
    stages, runtime = spec["stages"], spec["runtime"]
    need(stages[0]["image"].startswith("rust:") and "bookworm" in stages[0]["image"],
         f"builder stage is {stages[0]['image']}, not rust:*-bookworm")
    need(runtime["image"] == "debian:bookworm-slim",
         f"runtime stage is {runtime['image']}, not debian:bookworm-slim")
    builds = [v for s in stages[:-1] for i, v in s["items"] if i == "RUN"]
    need(any("cargo build --release --locked -p sacred-server --features redis" in " ".join(
        v.split()) for v in builds), "no RUN cargo build --release --locked -p sacred-server "
         "--features redis in a build stage")
    runtime_runs = " ".join(v for i, v in runtime["items"] if i == "RUN")
    need("ca-certificates" in runtime_runs, "the runtime stage installs no ca-certificates")
    user = spec["user"]
    need(user and user.split(":")[0] not in ("0", "root"), f"runtime USER is {user!r}: root")
    need(re.fullmatch(r"\d+(:\d+)?", user), f"USER {user!r} is not numeric "
         "(runAsNonRoot cannot verify a name)")
    need(f"--uid {user.split(':')[0]}" in runtime_runs,
         f"no user with uid {user.split(':')[0]} is created in the runtime stage")
    need({8000, 9090} <= spec["expose"], f"EXPOSE {sorted(spec['expose'])}: want 8000 and 9090")
    args = spec["entrypoint"] + spec["cmd"]
    need(args[0] == "sacred-server", f"ENTRYPOINT starts with {args[0]!r}")
    joined = " ".join(args)
    need("--bind 0.0.0.0:8000" in joined, "ENTRYPOINT lacks --bind 0.0.0.0:8000")
    need("--log-format json" in joined, "ENTRYPOINT lacks --log-format json")
    need(container_port(args, "--metrics-bind") in spec["expose"],
         "the --metrics-bind port is not exposed")
    # The binary the entry point names is the one copied from the build stage.
    names = {s["name"] for s in stages if s["name"]}
    copies = [v.split() for i, v in runtime["items"] if i == "COPY"]
    from_build = [c for c in copies if c[0].startswith("--from=")]
    need(from_build, "the runtime stage copies nothing from a build stage")
    for c in from_build:
        need(c[0].split("=", 1)[1] in names, f"COPY {c[0]}: no stage of that name")
        need(any(c[1] in v for s in stages[:-1] for i, v in s["items"] if i == "RUN"),
             f"COPY {c[0]} {c[1]}: no build step writes {c[1]}")
    need(any(c[-1] == "/usr/local/bin/sacred-server" for c in from_build),
         "sacred-server is not copied to /usr/local/bin (on the image's PATH)")
    stop = [v for i, v in runtime["items"] if i == "STOPSIGNAL"]
    need(stop in ([], ["SIGTERM"]), f"STOPSIGNAL {stop}: the graceful shutdown is on SIGTERM")
    return f"{len(stages)} stages, USER {user}, EXPOSE {sorted(spec['expose'])}, " \
           f"entry point {shlex.join(args)}"


@check("container: every COPY source is in the build context .dockerignore leaves, "
       "and that context loads as the locked workspace (cargo metadata)")
def container_context(binary: Path):
    spec = containerfile()
    files = context_files()
    patterns = dockerignore_patterns()
    for stage in spec["stages"]:
        for instruction, value in stage["items"]:
            if instruction not in ("COPY", "ADD"):
                continue
            words = [w for w in value.split() if not w.startswith("--")]
            if any(w.startswith("--from=") for w in value.split()):
                continue
            for source in words[:-1]:
                if source in (".", "./"):
                    continue
                rel = source.strip("/")
                need((ROOT / rel).exists(), f"COPY source {source} is not in the repository")
                need(not ignored(rel, patterns), f"COPY source {source} is excluded by "
                     ".dockerignore")
    for heavy in ("target", ".venv"):
        need(not any(f == heavy or f.startswith(heavy + "/") for f in files),
             f"{heavy}/ would be sent in the build context")
    with tempfile.TemporaryDirectory(prefix="sacred-context-") as tmp:
        for rel in files:
            dest = Path(tmp) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest)
        meta = run(["cargo", "metadata", "--locked", "--offline", "--format-version", "1",
                    "--manifest-path", str(Path(tmp) / "Cargo.toml")], timeout=300)
        need(meta.returncode == 0, f"cargo metadata --locked in the build context failed:\n"
             f"{meta.stderr[-2000:]}")
        packages = {p["name"] for p in json.loads(meta.stdout)["packages"]}
        need("sacred-server" in packages, "sacred-server is not a package of the context")
    return f"{len(files)} files in the context, the workspace and Cargo.lock load from them"


@check("container: the binary needs only glibc (nothing to install in the slim image)")
def container_libraries(binary: Path):
    out = run(["ldd", str(binary)])
    need(out.returncode == 0, f"ldd {binary}: {out.stderr}")
    allowed = ("linux-vdso", "libc.so", "libm.so", "libgcc_s.so", "ld-linux", "libpthread.so",
               "libdl.so", "librt.so")
    libs = [l.split()[0] for l in out.stdout.splitlines() if l.strip()]
    extra = [l for l in libs if not any(l.startswith(a) or a in l for a in allowed)]
    need(not extra, f"libraries bookworm-slim may lack: {extra}")
    return ", ".join(libs)


@check("container: ENTRYPOINT/CMD flags run until /ready is 200, HEALTHCHECK passes, "
       "SIGTERM exits 0")
def container_run(binary: Path):
    spec = containerfile()
    args = spec["entrypoint"] + spec["cmd"]
    with tempfile.TemporaryDirectory(prefix="sacred-container-") as tmp:
        own_by_child(Path(tmp))
        server = Server("sacred-server (container flags)",
                        [str(binary), *rewrite_binds(args[1:])], cwd=tmp)
        main = server.address("main")
        ports = {container_port(args, "--bind"): main}
        if container_port(args, "--metrics-bind"):
            ports[container_port(args, "--metrics-bind")] = server.address("metrics")
        wait_until("/ready 200", 10, lambda: http_get(f"http://{main}/ready")[0] == 200)
        status, body = http_get(f"http://{main}/health")
        need(status == 200 and json.loads(body).get("status") == "ok",
             f"/health answered {status} {body}")
        metrics = ports.get(container_port(args, "--metrics-bind"))
        if metrics:
            status, body = http_get(f"http://{metrics}/metrics")
            need(status == 200 and "# TYPE" in body, f"/metrics on the metrics port: {status}")
            need(http_get(f"http://{main}/metrics")[0] == 404,
                 "/metrics is also served on the clients' port")
        if spec["healthcheck"]:
            port = int(main.rsplit(":", 1)[1])
            health = [a.replace("/8000", f"/{port}") for a in spec["healthcheck"]]
            result = run(health, timeout=10)
            need(result.returncode == 0, f"HEALTHCHECK {health} failed: {result.stderr}")
            dead = [a.replace("/8000", f"/{free_port()}") for a in spec["healthcheck"]]
            need(run(dead, timeout=10).returncode != 0,
                 "HEALTHCHECK passes against a port where nothing listens")
        server.proc.send_signal(signal.SIGTERM)
        code = server.wait_exit(DEFAULT_DRAIN + HTTP_AFTER_DRAIN + 5)
        need(code == 0, f"exit code {code} after SIGTERM:\n{server.log_tail()}")
        server.check_json_logs()
    return f"flags {shlex.join(args[1:])}; ports {ports}; every log line JSON"


# --------------------------------------------------------------- kubernetes

KUBERNETES = ROOT / "deploy/kubernetes/sacred.yaml"


def kubernetes_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(KUBERNETES.read_text()) if d]


def sacred_deployment(docs) -> tuple[dict, dict]:
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    for d in deployments:
        for c in d["spec"]["template"]["spec"]["containers"]:
            if "sacred-server" in c["image"] or c["name"] == "sacred-server":
                return d, c
    raise Failed("no Deployment with a sacred-server container")


@check("kubernetes: kubernetes-validate --strict (bundled schemas, offline), "
       "and it refuses a broken copy")
def kubernetes_schema(binary: Path):
    validate = venv_tool("kubernetes-validate")
    result = run([validate, "--strict", str(KUBERNETES)])
    need(result.returncode == 0, f"kubernetes-validate:\n{result.stdout}{result.stderr}")
    docs = kubernetes_docs()
    broken = copy.deepcopy(docs)
    _, container = sacred_deployment(broken)
    container["readinessProbe"]["httpGet"]["pathh"] = "/ready"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as tmp:
        yaml.safe_dump_all(broken, tmp)
        tmp.flush()
        refused = run([validate, "--strict", tmp.name])
        need(refused.returncode != 0, "kubernetes-validate accepted an unknown probe field: "
             "the validation is not effective")
    kinds = [f"{d['kind']}/{d['metadata']['name']}" for d in docs]
    return ", ".join(kinds)


def probe_seconds(container: dict) -> int:
    pre = container.get("lifecycle", {}).get("preStop")
    need(pre, "no preStop hook")
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    command = pre.get("exec", {}).get("command", [])
    need(len(command) == 2 and command[0] == "sleep", f"preStop is {pre}, not a sleep")
    return int(command[1])


@check("kubernetes: Deployment, Service, probes, grace, security context, resources, "
       "secret, metrics annotations")
def kubernetes_static(binary: Path):
    docs = kubernetes_docs()
    deployment, container = sacred_deployment(docs)
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    args = container.get("args", [])
    need(not container.get("command"), "command overrides the image's entry point")
    need(deployment["spec"].get("replicas", 1) >= 2 and "--broker" in args,
         "not the several-nodes form (replicas >= 2 with --broker)")
    env = {e["name"]: e for e in container.get("env", [])}
    secret = env.get("SACRED_ADMIN_SECRET", {}).get("valueFrom", {}).get("secretKeyRef")
    need(secret, "SACRED_ADMIN_SECRET is not taken from a Secret")
    need(not any("secret" in a.lower() and not a.endswith("-file") for a in args),
         f"a secret in args: {args}")
    plain = {k: e["value"] for k, e in env.items() if "value" in e}
    drain = drain_of(args, plain)
    pre_stop = probe_seconds(container)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    need(grace >= drain + 5, f"terminationGracePeriodSeconds {grace} < drain {drain} + 5")
    need(grace >= pre_stop + drain + HTTP_AFTER_DRAIN + 1,
         f"grace {grace} < preStop {pre_stop} + drain {drain} + {HTTP_AFTER_DRAIN} + 1: "
         "the kubelet's SIGKILL would cut the drain")
    need(container["livenessProbe"]["httpGet"]["path"] == "/health", "liveness is not /health")
    need(container["readinessProbe"]["httpGet"]["path"] == "/ready", "readiness is not /ready")
    pod_sc, sc = spec.get("securityContext", {}), container.get("securityContext", {})
    need(pod_sc.get("runAsNonRoot") or sc.get("runAsNonRoot"), "runAsNonRoot is not set")
    need(sc.get("readOnlyRootFilesystem"), "readOnlyRootFilesystem is not set")
    need(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
    need("ALL" in sc.get("capabilities", {}).get("drop", []), "capabilities are not dropped")
    uid = pod_sc.get("runAsUser") or sc.get("runAsUser")
    image_user = containerfile()["user"].split(":")[0]
    need(uid is None or str(uid) == image_user,
         f"runAsUser {uid} is not the image's USER {image_user}")
    resources = container.get("resources", {})
    need(resources.get("requests") and resources.get("limits", {}).get("memory"),
         "resources lack requests or a memory limit")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    image = containerfile()
    entry = image["entrypoint"] + image["cmd"]
    need(set(ports.values()) <= image["expose"], f"container ports {ports} not all exposed")
    need(container_port(entry, "--bind") in ports.values(), "the --bind port is not declared")
    annotations = pod["metadata"].get("annotations", {})
    need(annotations.get("prometheus.io/scrape") == "true", "no prometheus.io/scrape annotation")
    need(int(annotations.get("prometheus.io/port", 0)) == container_port(entry, "--metrics-bind"),
         "prometheus.io/port is not the --metrics-bind port")
    labels = pod["metadata"]["labels"]
    services = [d for d in docs if d["kind"] == "Service"
                and d["spec"].get("selector")
                and all(labels.get(k) == v for k, v in d["spec"]["selector"].items())]
    need(services, "no Service selects the pods")
    for port in services[0]["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        need(target in ports or target in ports.values(),
             f"Service targetPort {target} is not a container port")
    broker_hosts = {re.match(r"redis://([^:/]+)", a).group(1) for a in args
                    if a.startswith("redis://")}
    named = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    need(broker_hosts <= named or not named, f"--broker host {broker_hosts} is no Service here")
    return (f"replicas {deployment['spec']['replicas']}, grace {grace} >= preStop {pre_stop} + "
            f"drain {drain} + {HTTP_AFTER_DRAIN}, uid {uid}, Service {services[0]['metadata']['name']}")


@check("kubernetes: the Deployment's args and env run here; every probe answers 200; "
       "SIGTERM with a client: /ready 503, migrate, exit 0 within the grace")
def kubernetes_run(binary: Path):
    docs = kubernetes_docs()
    deployment, container = sacred_deployment(docs)
    spec = deployment["spec"]["template"]["spec"]
    image = containerfile()
    entry = image["entrypoint"] + container.get("args", image["cmd"])
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            env[item["name"]] = secrets.token_hex(32)
    drain = drain_of(entry, env)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    pre_stop = probe_seconds(container)
    with tempfile.TemporaryDirectory(prefix="sacred-k8s-") as tmp:
        redis = Redis(Path(tmp), ["--appendonly", "yes"])
        args = rewrite_redis(rewrite_binds(entry[1:]), redis.port)
        server = Server("sacred-server (Deployment args)", [str(binary), *args], env=env)
        local = {container_port(entry, "--bind"): server.address("main")}
        if container_port(entry, "--metrics-bind"):
            local[container_port(entry, "--metrics-bind")] = server.address("metrics")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        answered = []
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = container.get(kind)
            if not probe:
                continue
            get = probe["httpGet"]
            port = ports.get(get["port"], get["port"])
            need(port in local, f"{kind} port {get['port']} is no port the server listens on")
            url = f"http://{local[port]}{get['path']}"
            wait_until(f"{kind} {get['path']} 200", 15, lambda u=url: http_get(u)[0] == 200)
            answered.append(f"{kind} {get['path']}:{port}")
        main = local[container_port(entry, "--bind")]
        status, body = http_get(f"http://{main}/health")
        need(json.loads(body)["broker"]["up"], f"the broker is not up: {body}")
        need(http_get(f"http://{main}/admin/api/connections")[0] == 400,
             "the admin API is not served: SACRED_ADMIN_SECRET from the Secret was not taken")
        client = Client(f"ws://{main}/ws")
        client.call("subscribe", {"channel": "news"})
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        wait_until("/ready 503 after SIGTERM", 2,
                   lambda: http_get(f"http://{main}/ready")[0] == 503)
        migrate = client.wait_push("migrate", timeout=3)
        code = client.read_until_closed(drain + 5)
        need(code == 3001, f"the client was closed with {code}, not 3001 (shutdown)")
        status = server.wait_exit(drain + HTTP_AFTER_DRAIN + 5)
        took = time.monotonic() - start
        need(status == 0, f"exit code {status} after SIGTERM:\n{server.log_tail()}")
        need(took >= drain - 1, f"exited after {took:.1f} s: the drain of {drain} s did not run")
        need(pre_stop + took <= grace, f"preStop {pre_stop} + shutdown {took:.1f} s > grace {grace}")
        server.check_json_logs()
    return (f"{', '.join(answered)}; migrate {migrate}; closed 3001; exit 0 after {took:.1f} s, "
            f"+ preStop {pre_stop} s <= grace {grace} s")


# ------------------------------------------------------------------ compose

COMPOSE = ROOT / "deploy/compose/compose.yaml"


def compose_nodes(doc: dict) -> dict:
    return {name: s for name, s in doc["services"].items()
            if "Containerfile" in str(s.get("build", {}).get("dockerfile", ""))
            or "sacred-server" in str(s.get("image", ""))}


def nginx_conf(doc: dict) -> tuple[str, Path]:
    fronts = [(n, s) for n, s in doc["services"].items() if "nginx" in s.get("image", "")]
    need(len(fronts) == 1, "not exactly one nginx service")
    name, front = fronts[0]
    for volume in front.get("volumes", []):
        source, target = volume.split(":")[:2]
        if target.startswith("/etc/nginx"):
            path = (COMPOSE.parent / source).resolve()
            need(path.is_file(), f"{name} mounts {source}, which is not in the repository")
            return name, path
    raise Failed(f"{name} mounts no nginx configuration")


@check("compose: compose-spec schema (check-jsonschema's bundled copy), and it refuses a "
       "broken copy")
def compose_schema(binary: Path):
    checker = venv_tool("check-jsonschema")
    result = run([checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    need(result.returncode == 0, f"compose-spec:\n{result.stdout}{result.stderr}")
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["redis"]["restarts"] = "always"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as tmp:
        yaml.safe_dump(broken, tmp)
        tmp.flush()
        refused = run([checker, "--builtin-schema", "vendor.compose-spec", tmp.name])
        need(refused.returncode != 0, "the compose-spec schema accepted an unknown service "
             "key: the validation is not effective")
    return "valid"


@check("compose: three nodes on the redis service, their build, the balancer's upstreams "
       "and upgrade headers, the stop grace")
def compose_static(binary: Path):
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    nodes = compose_nodes(doc)
    need(len(nodes) == 3, f"{len(nodes)} sacred-server nodes, not 3: {sorted(nodes)}")
    redis = [n for n, s in services.items() if str(s.get("image", "")).startswith("redis")]
    need(len(redis) == 1, "not exactly one redis service")
    brokers = set()
    for name, node in nodes.items():
        command = node.get("command", [])
        need(isinstance(command, list), f"{name}: command is not a list")
        urls = [a for a in command if a.startswith("redis://")]
        need(urls and all(re.match(rf"redis://{redis[0]}:6379$", u) for u in urls),
             f"{name}: --broker {urls} is not the {redis[0]} service")
        brokers.add(tuple(urls))
        build = node.get("build", {})
        need((COMPOSE.parent / build.get("context", ".") / build.get("dockerfile", "")).resolve()
             == CONTAINERFILE, f"{name}: build is not deploy/container/Containerfile")
        grace = node.get("stop_grace_period", "10s")
        seconds = int(re.fullmatch(r"(\d+)s", grace).group(1))
        drain = drain_of(command, node.get("environment") or {})
        need(seconds >= drain + 5, f"{name}: stop_grace_period {grace} < drain {drain} + 5")
        need(redis[0] in (node.get("depends_on") or {}), f"{name} does not depend on redis")
    need(len(brokers) == 1, "the nodes are not given the same --broker URLs")
    front, conf_path = nginx_conf(doc)
    conf = conf_path.read_text()
    upstream = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", conf, re.M))
    need(upstream == {f"{n}:8000" for n in nodes}, f"nginx upstreams {upstream} are not the "
         "three nodes' port 8000")
    for header in ("proxy_set_header Upgrade $http_upgrade",
                   "proxy_set_header Connection", "proxy_http_version 1.1"):
        need(header in conf, f"nginx.conf lacks {header}")
    return f"nodes {sorted(nodes)} on {redis[0]}, front {front} ({conf_path.name})"


def local_nginx(tmp: Path, conf: str, front_port: int) -> None:
    nginx = tool("nginx", "nginx-light")
    prefix = tmp / "nginx"
    (prefix / "logs").mkdir(parents=True)
    (prefix / "sacred.conf").write_text(conf)
    temp = " ".join(f"{kind}_temp_path {prefix}/{kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (prefix / "nginx.conf").write_text(
        f"worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;\n"
        f"events {{ worker_connections 64; }}\n"
        f"http {{ access_log {prefix}/logs/access.log; {temp}\n"
        f"  include {prefix}/sacred.conf; }}\n")
    argv = [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    test = run([*argv, "-t"], timeout=30)
    need(test.returncode == 0, f"nginx -t on the compose config:\n{test.stderr}")
    spawn([*argv, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until("nginx listening", 10,
               lambda: socket.create_connection(("127.0.0.1", front_port), timeout=1).close()
               or True)


@check("compose: the topology run here (redis-server, three nodes with the file's flags, "
       "nginx with its config): node 1 -> node 3, and through nginx")
def compose_run(binary: Path):
    doc = yaml.safe_load(COMPOSE.read_text())
    nodes = compose_nodes(doc)
    redis_name = next(n for n, s in doc["services"].items()
                      if str(s.get("image", "")).startswith("redis"))
    redis_command = doc["services"][redis_name].get("command", ["redis-server"])
    image = containerfile()
    with tempfile.TemporaryDirectory(prefix="sacred-compose-") as tmpdir:
        tmp = Path(tmpdir)
        own_by_child(tmp)
        redis = Redis(tmp, redis_command[1:])
        secret_files = {}
        for name, spec in (doc.get("secrets") or {}).items():
            path = tmp / f"secret-{name}"
            path.write_text(secrets.token_hex(32) + "\n")
            os.chmod(path, 0o444)
            secret_files[f"/run/secrets/{name}"] = str(path)
        servers, addresses = {}, {}
        for name, node in sorted(nodes.items()):
            args = image["entrypoint"][1:] + node.get("command", image["cmd"])
            args = [secret_files.get(a, a) for a in rewrite_redis(rewrite_binds(args), redis.port)]
            env = {k: str(v) for k, v in (node.get("environment") or {}).items()}
            servers[name] = Server(f"{name} (compose flags)", [str(binary), *args], env=env,
                                   cwd=tmpdir)
        for name, server in servers.items():
            addresses[name] = server.address("main")
            wait_until(f"{name} /ready 200", 15,
                       lambda a=addresses[name]: http_get(f"http://{a}/ready")[0] == 200)
            need(http_get(f"http://{addresses[name]}/admin/api/connections")[0] == 400,
                 f"{name}: the admin API is not served (the secret file was not read)")
        first, _, third = sorted(nodes)
        subscriber = Client(f"ws://{addresses[third]}/ws", "subscriber-node3")
        subscriber.call("subscribe", {"channel": "news"})
        publisher = Client(f"ws://{addresses[first]}/ws", "publisher-node1")
        ack = publisher.call("publish", {"channel": "news", "data": {"text": "from node 1"}})
        pub = subscriber.wait_push("publication", lambda p: p["data"] == {"text": "from node 1"})
        need(pub.get("offset") == ack.get("offset") and pub.get("epoch") == ack.get("epoch"),
             f"publication {pub} does not match the ack {ack}")
        # The balancer: the file's nginx.conf with the upstreams on these nodes.
        _, conf_path = nginx_conf(doc)
        front_port = free_port()
        conf = conf_path.read_text()
        for name, address in addresses.items():
            conf = re.sub(rf"(\bserver\s+){re.escape(name)}:8000", rf"\g<1>{address}", conf)
        conf = re.sub(r"\blisten\s+8000\s*;", f"listen 127.0.0.1:{front_port};", conf)
        local_nginx(tmp, conf, front_port)
        front = f"127.0.0.1:{front_port}"
        wait_until("/ready through nginx", 10,
                   lambda: http_get(f"http://{front}/ready")[0] == 200)
        # As a browser page served by the balancer would: its Origin names
        # the balancer's host and port, which the node compares with Host.
        behind = Client(f"ws://{front}/ws", "through-nginx", origin=f"http://{front}")
        behind.call("subscribe", {"channel": "news"})
        second = Client(f"ws://{addresses[sorted(nodes)[1]]}/ws", "publisher-node2")
        ack2 = second.call("publish", {"channel": "news", "data": {"text": "through nginx"}})
        got = behind.wait_push("publication", lambda p: p["data"] == {"text": "through nginx"})
        need(got["offset"] == ack2["offset"], f"through nginx: {got} vs ack {ack2}")
        late = subscriber.wait_push("publication", lambda p: p["data"] == {"text": "through nginx"})
        need(late["offset"] == ack["offset"] + 1, f"node 3 got offset {late['offset']} after "
             f"{ack['offset']}")
        for client in (subscriber, publisher, behind, second):
            client.close()
        for name, server in servers.items():
            server.proc.send_signal(signal.SIGTERM)
        for name, server in servers.items():
            code = server.wait_exit(DEFAULT_DRAIN + HTTP_AFTER_DRAIN + 5)
            need(code == 0, f"{name}: exit code {code} after SIGTERM:\n{server.log_tail()}")
            server.check_json_logs()
    return (f"offset {ack['offset']} from {first} reached {third}; offset {ack2['offset']} "
            f"from {sorted(nodes)[1]} reached a client through nginx; all exited 0")


# ------------------------------------------------------------------ systemd

UNIT = ROOT / "deploy/systemd/sacred-server.service"


def unit_settings() -> dict[str, list[str]]:
    """Service-section keys (repeatable) of the unit, continuation lines joined."""
    text = re.sub(r"\\\n", " ", UNIT.read_text())
    section, out = None, {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def unit_one(settings, key, default=None):
    values = settings.get(f"Service.{key}")
    return values[-1] if values else default


def rewritten_unit(tmp: Path, binary: Path) -> Path:
    exec_start = shlex.split(unit_one(unit_settings(), "ExecStart"))
    text = UNIT.read_text().replace(exec_start[0], str(binary))
    path = tmp / UNIT.name
    path.write_text(text)
    return path


@check("systemd: systemd-analyze verify (ExecStart pointed at the built binary) is silent, "
       "and security --offline scores 2.0 or better")
def systemd_verify(binary: Path):
    analyze = tool("systemd-analyze", "systemd")
    with tempfile.TemporaryDirectory(prefix="sacred-unit-") as tmp:
        unit = rewritten_unit(Path(tmp), binary)
        result = run([analyze, "verify", str(unit)], timeout=60)
        output = (result.stdout + result.stderr).strip()
        need(result.returncode == 0 and not output, f"systemd-analyze verify:\n{output}")
        bad = Path(tmp) / "broken.service"
        bad.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=stric"))
        result = run([analyze, "verify", str(bad)], timeout=60)
        need((result.stdout + result.stderr).strip(), "systemd-analyze verify is silent on a "
             "bad value: the check is not effective")
        result = run([analyze, "security", "--offline=yes", "--threshold=20", "--no-pager",
                      str(unit)], timeout=60)
        score = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
        need(result.returncode == 0 and score, f"systemd-analyze security:\n"
             f"{result.stdout[-1500:]}{result.stderr}")
    return f"verify silent; exposure {score.group(1)} {score.group(2)}"


@check("systemd: the unit's settings (user, state directory, hardening, limits, restart, "
       "stop timeout against the drain, secrets only in the EnvironmentFile)")
def systemd_static(binary: Path):
    s = unit_settings()
    exec_start = shlex.split(unit_one(s, "ExecStart"))
    need(unit_one(s, "DynamicUser") == "yes" or unit_one(s, "User") not in (None, "root", "0"),
         "neither DynamicUser=yes nor a non-root User=")
    state = unit_one(s, "StateDirectory")
    need(state == "sacred", f"StateDirectory={state}, not sacred")
    for key, want in (("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                      ("Restart", "on-failure"), ("KillSignal", "SIGTERM")):
        need(unit_one(s, key) == want, f"{key}={unit_one(s, key)}, not {want}")
    nofile = unit_one(s, "LimitNOFILE", "0")
    need(nofile == "infinity" or int(nofile.split(":")[-1]) >= 65536, f"LimitNOFILE={nofile}")
    need(unit_one(s, "EnvironmentFile"), "no EnvironmentFile for the secrets")
    drain = drain_of(exec_start, {})
    stop = unit_one(s, "TimeoutStopSec", "90")
    stop_secs = int(stop.rstrip("s"))
    need(stop_secs >= drain + 5, f"TimeoutStopSec={stop} < drain {drain} + 5")
    need(not any("secret" in a.lower() and not a.endswith("-file") for a in exec_start),
         f"a secret on the command line: {exec_start}")
    need(not any(k.endswith(".Environment") and "SECRET" in " ".join(v) for k, v in s.items()),
         "a secret in Environment=")
    stores = [a for a in exec_start if a.startswith("sqlite:")]
    need(all(a[len("sqlite:"):].startswith(f"/var/lib/{state}/") for a in stores),
         f"--store {stores} is not under the StateDirectory /var/lib/{state}")
    return f"drain {drain} s, TimeoutStopSec {stop_secs} s, LimitNOFILE {nofile}"


def syscall_groups(analyze: str) -> dict[str, set[str]]:
    listing = run([analyze, "syscall-filter", "--no-pager"], timeout=30).stdout
    groups, current = {}, None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = line.split()[0]
            groups[current] = set()
        elif current and line.startswith("    ") and not line.strip().startswith("#"):
            groups[current].add(line.strip())

    def expand(name, seen=()):
        if not name.startswith("@"):
            return {name}
        need(name in groups, f"unknown system call group {name}")
        out = set()
        for member in groups[name]:
            if member not in seen:
                out |= expand(member, (*seen, name))
        return out

    return {name: expand(name) for name in groups}


def syscall_filter(settings, groups) -> tuple[set[str], set[str]]:
    allow, deny = set(), set()
    for value in settings.get("Service.SystemCallFilter", []):
        target = deny if value.startswith("~") else allow
        for word in value.lstrip("~").split():
            target |= groups[word] if word.startswith("@") else {word}
    return allow, deny


@check("systemd: ExecStart run as an unprivileged user under strace with the unit's "
       "LimitNOFILE and EnvironmentFile: every system call, address family and mapping is "
       "one the unit's filters allow; stopped within TimeoutStopSec")
def systemd_run(binary: Path):
    analyze = tool("systemd-analyze", "systemd")
    strace = tool("strace", "strace")
    s = unit_settings()
    exec_start = shlex.split(unit_one(s, "ExecStart"))
    state = unit_one(s, "StateDirectory")
    nofile = int(unit_one(s, "LimitNOFILE").split(":")[-1])
    groups = syscall_groups(analyze)
    allow, deny = syscall_filter(s, groups)
    need(allow, "no SystemCallFilter allow-list")
    families = set(unit_one(s, "RestrictAddressFamilies", "").split())
    with tempfile.TemporaryDirectory(prefix="sacred-systemd-") as tmpdir:
        tmp = Path(tmpdir)
        state_dir = tmp / state
        state_dir.mkdir()
        own_by_child(state_dir)
        os.chmod(tmp, 0o755)
        # The EnvironmentFile, as an operator writes it.
        env_file = tmp / "env"
        env_file.write_text(f"SACRED_ADMIN_SECRET={secrets.token_hex(32)}\n")
        env = dict(l.split("=", 1) for l in env_file.read_text().splitlines() if "=" in l)
        args = [a.replace(f"/var/lib/{state}", str(state_dir)) for a in exec_start[1:]]
        args = rewrite_binds(args)
        trace = tmp / "strace.out"
        user = ["-u", "nobody"] if os.geteuid() == 0 else []

        # The unit's LimitNOFILE as the hard limit, a low soft one: the binary
        # must raise its soft limit to it. Without CAP_SYS_RESOURCE the hard
        # limit cannot go above ours: then ours stands in for it.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(
                resource.RLIMIT_NOFILE)[0], max(hard, nofile)))
            hard = max(hard, nofile)
        except (ValueError, OSError):
            pass
        hard = min(hard, nofile) if hard != resource.RLIM_INFINITY else nofile

        def limits():
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

        server = Server("sacred-server (ExecStart)",
                        [strace, "-f", "-qq", "-o", str(trace), *user, str(binary), *args],
                        env=env, cwd=str(state_dir), preexec=limits, as_nobody=False)
        main = server.address("main")
        limit = server.log_value("open file limit", "limit")
        need(limit == hard, f"the binary runs with {limit} open files, not the hard limit {hard}")
        wait_until("/ready 200", 15, lambda: http_get(f"http://{main}/ready")[0] == 200)
        need(http_get(f"http://{main}/admin/api/connections")[0] == 400,
             "the admin API is not served: the EnvironmentFile's secret was not taken")
        client = Client(f"ws://{main}/ws")
        client.call("subscribe", {"channel": "news"})
        ack = client.call("publish", {"channel": "news", "data": {"text": "stored"}})
        client.wait_push("publication")
        client.close()
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
        pid = int(wait_until("the traced server's pid", 5, lambda: children.read_text().split()
                             and children.read_text().split()[0]))
        start = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        stop = int(unit_one(s, "TimeoutStopSec").rstrip("s"))
        code = server.wait_exit(stop)
        took = time.monotonic() - start
        need(code == 0, f"exit code {code} after SIGTERM:\n{server.log_tail()}")
        need(any(p.name.startswith("history.db") for p in state_dir.iterdir()),
             "no database in the state directory")
        server.check_json_logs()
        # What the process did, from its execve on.
        lines = trace.read_text().splitlines()
        first = next(i for i, l in enumerate(lines) if f'execve("{binary}"' in l)
        calls, used_families, wx = set(), set(), []
        for line in lines[first:]:
            m = re.match(r"\d+\s+(?:<\.\.\. )?(\w+)[( ]", line)
            if m and "resumed>" not in line[:40] and m.group(1) != "exited":
                calls.add(m.group(1))
            f = re.match(r"\d+\s+socket\((AF_\w+)", line)
            if f:
                used_families.add(f.group(1))
            if re.match(r"\d+\s+(mmap|mprotect)\(", line) and "PROT_WRITE" in line \
                    and "PROT_EXEC" in line:
                wx.append(line)
        calls.discard("execve")
        # Files under /proc outside the process's own (ProcSubset=pid hides them).
        hidden = sorted({p for p in re.findall(r'"(/proc/[^"]*)"', "\n".join(lines[first:]))
                         if not re.match(r"/proc/(self|thread-self|\d+)(/|$)", p)})
        refused = sorted(c for c in calls if c not in allow or c in deny)
        need(not refused, f"system calls SystemCallFilter refuses: {refused}")
        need(used_families <= families, f"address families {used_families - families} outside "
             f"RestrictAddressFamilies {families}")
        need(not wx, f"writable and executable mappings (MemoryDenyWriteExecute): {wx[:2]}")
    return (f"{len(calls)} distinct system calls, all allowed; families {sorted(used_families)}; "
            f"soft open-file limit raised to {limit}" + ("" if hard == nofile else
            f" (LimitNOFILE {nofile} is above what this machine lets us set)") + "; "
            f"publish acked at offset {ack.get('offset')}; exit 0 in {took:.1f} s <= {stop} s"
            + (f"; read outside ProcSubset=pid (hidden under the unit): {hidden}" if hidden else ""))


# ----------------------------------------------------------------------- ci

WORKFLOW = ROOT / ".github/workflows/ci.yml"


@check("ci: check-jsonschema vendor.github-workflows and the timeout rule; bash .ci/run "
       "within 90 minutes with a cargo cache")
def ci_workflow(binary: Path):
    checker = venv_tool("check-jsonschema")
    for schema in ("vendor.github-workflows", "custom.github-workflows-require-timeout"):
        result = run([checker, "--builtin-schema", schema, str(WORKFLOW)])
        need(result.returncode == 0, f"{schema}:\n{result.stdout}{result.stderr}")
    doc = yaml.safe_load(WORKFLOW.read_text())
    jobs = [(n, j) for n, j in doc["jobs"].items()
            if any("bash .ci/run" in str(step.get("run", "")) for step in j["steps"])]
    need(jobs, "no job runs bash .ci/run")
    name, job = jobs[0]
    need(0 < int(job.get("timeout-minutes", 360)) <= 90,
         f"timeout-minutes {job.get('timeout-minutes')}, not within 90")
    caches = [st for st in job["steps"] if str(st.get("uses", "")).startswith("actions/cache")]
    need(caches and "Cargo.lock" in caches[0]["with"]["key"], "no cargo cache keyed on Cargo.lock")
    need((ROOT / ".ci/run").read_text().strip().endswith("exec scripts/test"),
         ".ci/run no longer runs scripts/test (the README's test command)")
    runner = job.get("container", {}).get("image", "") if isinstance(job.get("container"), dict) \
        else job.get("container", "")
    return f"job {name} on {job['runs-on']} {runner}, {job['timeout-minutes']} min"


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 2
    binary = Path(sys.argv[1]).resolve()
    if not os.access(binary, os.X_OK):
        print(f"check_deploy: {binary} is not an executable", file=sys.stderr)
        return 2
    if os.geteuid() == 0:
        # nobody must reach the binary to run it, and a checkout may sit
        # under a directory only root may enter (a fresh clone in mktemp -d):
        # run a copy from a directory anyone may read.
        reachable = Path(tempfile.mkdtemp(prefix="check-deploy-bin-"))
        atexit.register(shutil.rmtree, reachable, ignore_errors=True)
        reachable.chmod(0o755)
        copy = reachable / binary.name
        shutil.copy2(binary, copy)
        copy.chmod(0o755)
        binary = copy
    signal.alarm(WHOLE_RUN_LIMIT)
    signal.signal(signal.SIGALRM, lambda *_: on_signal("SIGALRM (the whole run's limit)", None))
    for step in (ci_workflow, systemd_static, systemd_verify, systemd_run, container_static,
                 container_context, container_libraries, container_run, kubernetes_schema,
                 kubernetes_static, kubernetes_run, compose_schema, compose_static, compose_run):
        step(binary)
    failed = [name for name, ok, _ in RESULTS if not ok]
    passed = len(RESULTS) - len(failed)
    if failed:
        print("\nfailed:\n  " + "\n  ".join(failed))
    print(f"check_deploy: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
