"""Real services for the tests: Distribution registries, a token server, dockerd.

Each starts on a free loopback port in a temp dir and is stopped by its fixture. Nothing here
fakes a registry: the token server only issues JWTs that the real registry verifies.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


REQUIRED = {"docker-registry": "docker-registry", "dockerd": "docker.io", "docker": "docker.io", "skopeo": "skopeo",
            "htpasswd": "apache2-utils", "openssl": "openssl", "containerd": "containerd", "ctr": "containerd",
            "podman": "podman", "umoci": "umoci", "buildah": "buildah", "zstd": "zstd"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout}s")


def make_ca(d: Path, cn: str = "porter-test-ca") -> tuple[Path, Path]:
    """A self-signed CA/server certificate for 127.0.0.1 and localhost."""
    key, cert = d / f"{cn}.key", d / f"{cn}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=digitalSignature,keyCertSign"],
                   check=True, capture_output=True)
    return key, cert


@dataclass
class Registry:
    """A running ``docker-registry serve``. ``host`` is what image references use."""

    root: Path
    port: int
    proc: subprocess.Popen | None = None
    tls: tuple[Path, Path] | None = None
    auth: dict | None = None
    shared_storage: Path | None = None  # serve another registry's storage (auth/TLS siblings)
    log: Path = field(init=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def storage(self) -> Path:
        return self.shared_storage or self.root / "storage"

    def config(self) -> dict:
        http: dict = {"addr": self.host, "secret": "porter-test"}
        if self.tls:
            http["tls"] = {"certificate": str(self.tls[1]), "key": str(self.tls[0])}
        cfg = {"version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
               "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True},
                           "maintenance": {"uploadpurging": {"enabled": False}}},
               "http": http}
        if self.auth:
            cfg["auth"] = self.auth
        return cfg

    def start(self) -> "Registry":
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "config.yml"
        cfg.write_text(json.dumps(self.config()))  # JSON is YAML
        self.log = self.root / "registry.log"
        self.proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        wait_until(self._up, 20, f"registry on {self.host}")
        return self

    def _up(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise RuntimeError(f"registry exited: {self.log.read_text()[-2000:]}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            return True

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def htpasswd_file(path: Path, user: str, password: str) -> Path:
    out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True)
    path.write_text(out.stdout)
    return path


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues RS256 JWTs (signed with openssl) that Distribution's token auth accepts.

    Requires basic credentials ``user``/``password`` when given; counts the tokens it issued."""

    def __init__(self, d: Path, user: str | None = None, password: str | None = None):
        self.key, self.cert = make_ca(d, "porter-token")
        self.port = free_port()
        self.user, self.password = user, password
        self.issued = 0
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict:
        return {"token": {"realm": self.realm, "service": "porter-test", "issuer": "porter-token",
                          "rootcertbundle": str(self.cert)}}

    def sign(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self.x5c]}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64(sig)}"

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        from urllib.parse import parse_qs, urlparse

        q = parse_qs(urlparse(req.path).query)
        if self.user is not None:
            expect = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if req.headers.get("Authorization") != expect:
                req.send_response(401)
                req.end_headers()
                return
        access = []
        for scope in q.get("scope", []):
            typ, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else (scope, "", "")
            access.append({"type": typ, "name": name, "actions": [a for a in actions.split(",") if a] + ["*"]})
        now = int(time.time())
        claims = {"iss": "porter-token", "sub": self.user or "anonymous", "aud": "porter-test", "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        body = json.dumps({"token": self.sign(claims), "expires_in": 300}).encode()
        self.issued += 1
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()


class Dockerd:
    """A rootful dockerd with vfs storage and no networking, trusting the given insecure registries."""

    def __init__(self, d: Path):
        self.dir = d
        self.sock = d / "docker.sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Dockerd":
        self.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "dockerd.log", "ab")
        self.proc = subprocess.Popen(
            ["dockerd", "--storage-driver=vfs", "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
             "--pidfile", str(self.dir / "docker.pid"), "-H", f"unix://{self.sock}",
             "--insecure-registry", "127.0.0.0/8"],
            stdout=log, stderr=subprocess.STDOUT)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError((self.dir / "dockerd.log").read_text()[-2000:])
            return self.client().ping()

        wait_until(up, 60, "dockerd")
        return self

    def client(self):
        import docker

        return docker.DockerClient(base_url=f"unix://{self.sock}", version="auto", timeout=120)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir / "exec", ignore_errors=True)


def missing_tools() -> list[str]:
    return [pkg for tool, pkg in REQUIRED.items() if shutil.which(tool) is None]


def can_run_dockerd() -> bool:
    return os.geteuid() == 0 and shutil.which("dockerd") is not None
