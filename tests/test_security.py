"""Hostile input stays outside (issue 11). The attacker is a small HTTP server of the tests (or a
fault in front of the real registry); the honest side is the real Distribution registry. Only
loopback addresses: 127.0.0.2 is another host than 127.0.0.1 for porter.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import pytest

from conftest import PASSWORD, USER, porter
from hostile import Hostile, answer
from images import Seeder, tar_layer
from proxy import Fault, Proxy

TESTDATA = Path(__file__).parent.parent / "testdata" / "registry"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
RSS_LIMIT_MB = 150


def one_line_error(p: subprocess.CompletedProcess, code: int = 1) -> str:
    err = p.stderr.decode(errors="replace")
    assert p.returncode == code, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert "\x1b" not in err
    return err


def peak(*args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    """Run porter; also return its peak RSS in MB."""
    wrapper = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(p.returncode)")
    p = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "porter", *args], capture_output=True,
                       timeout=timeout)
    lines = p.stderr.decode().strip().splitlines()
    rss = int(lines[-1]) / 1024
    p.stderr = "\n".join(lines[:-1]).encode()
    return p, rss


def dest_names(reg) -> list[str]:
    out = []
    for repo in httpx.get(f"{reg.url}/v2/_catalog").json().get("repositories") or []:
        out += [f"{repo}:{t}" for t in httpx.get(f"{reg.url}/v2/{repo}/tags/list").json().get("tags") or []]
    return sorted(out)


class Canned(Fault):
    """Answer requests whose path starts with a given prefix (and method) with canned answers."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, dict, bytes]]):
        self.answers = answers

    def request(self, seen, headers):
        for (method, prefix), canned in self.answers.items():
            if seen.method == method and seen.path.startswith(prefix):
                return canned
        return None


def as_json(doc) -> bytes:
    return json.dumps(doc).encode()


# --- 1. names from outside ------------------------------------------------------------------
@pytest.mark.fault("catalog entry ../victim/api", "refused by name; nothing written outside the prefix")
def test_catalog_name_with_dotdot_is_refused(registry, fresh_registry):
    dest = fresh_registry()
    lie = Canned({("GET", "/v2/_catalog"): (200, {"Content-Type": "application/json"},
                                             as_json({"repositories": ["../victim/api", "team/api"]}))})
    with Proxy(registry.url, lie) as proxy:
        p = porter("mirror", proxy.host, f"{dest.host}/mirror", "--include", ".*api")
    err = one_line_error(p)
    assert "../victim/api" in err and "refused" not in err or "invalid repository name" in err
    assert dest_names(dest) == ["mirror/team/api:1.4"]


@pytest.mark.fault("tag ../../../../victim/api/manifests/latest", "refused by name; only valid tags copied")
def test_tag_with_path_is_refused(registry, fresh_registry):
    dest = fresh_registry()
    evil = "../../../../victim/api/manifests/latest"
    lie = Canned({("GET", "/v2/team/api/tags/list"): (200, {}, as_json({"name": "team/api", "tags": ["1.4", evil]}))})
    with Proxy(registry.url, lie) as proxy:
        p = porter("mirror", f"{proxy.host}/team/api", f"{dest.host}/mirror/api")
        assert not [s for s in proxy.seen if "victim" in s.path]
    err = one_line_error(p)
    assert "invalid tag" in err
    assert dest_names(dest) == ["mirror/api:1.4"]


@pytest.fixture
def storage_copy(tmp_path) -> Path:
    d = tmp_path / "store"
    shutil.copytree(TESTDATA, d, symlinks=True)
    return d


@pytest.mark.fault("storage tag directories latest#evil and v9?x=y", "refused by name; no tag latest or v9 arrives")
def test_storage_tag_names_are_refused(storage_copy, fresh_registry):
    tags = storage_copy / "docker/registry/v2/repositories/demo/busybox/_manifests/tags"
    real = sorted(t.name for t in tags.iterdir())
    for bad in ("latest#evil", "v9?x=y"):
        shutil.copytree(tags / real[0], tags / bad)
    dest = fresh_registry()
    p = porter("mirror", "--storage", str(storage_copy), "demo/busybox", f"{dest.host}/demo/busybox")
    err = one_line_error(p)
    assert "latest#evil" in err and "v9?x=y" in err
    assert dest_names(dest) == [f"demo/busybox:{t}" for t in real]


# --- 2. digests from outside ----------------------------------------------------------------
def test_index_child_with_unverified_algorithm_is_refused(registry, catalog, tmp_path):
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha512:" + "ab" * 64, "size": 500,
         "platform": {"os": "linux", "architecture": "amd64"}}]}
    raw = as_json(index)
    lie = Canned({("GET", "/v2/multi/oci/manifests/"): (200, {"Content-Type": OCI_INDEX}, raw)})
    with Proxy(registry.url, lie) as proxy:
        pinned = "sha256:" + __import__("hashlib").sha256(raw).hexdigest()
        p = porter("export", f"{proxy.host}/multi/oci@{pinned}", "--all-platforms", "-o", str(tmp_path / "x.tar"))
        assert not [s for s in proxy.seen if "sha512" in s.path]
    assert "malformed digest" in one_line_error(p)
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.fault("Docker-Content-Digest: sha256:../../victim", "delete refuses; no DELETE is sent")
def test_delete_does_not_follow_a_crafted_digest_header(registry):
    evil = "sha256:../../../victim/api/manifests/" + "a" * 64
    lie = Canned({("HEAD", "/v2/team/web/manifests/2.0"): (200, {"Docker-Content-Digest": evil}, b"")})
    with Proxy(registry.url, lie) as proxy:
        p = porter("delete", f"{proxy.host}/team/web:2.0", "--force")
        assert not proxy.requests("DELETE")
    assert "malformed digest" in one_line_error(p)


def test_descriptor_digest_is_checked_before_any_request(registry, fresh_registry):
    man = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
           "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:../../x",
                      "size": 2}, "layers": []}
    lie = Canned({("GET", "/v2/team/api/manifests/1.4"): (200, {"Content-Type": DOCKER_MANIFEST}, as_json(man))})
    dest = fresh_registry()
    with Proxy(registry.url, lie) as proxy, Proxy(dest.url) as dproxy:
        p = porter("mirror", f"{proxy.host}/team/api:1.4", f"{dproxy.host}/x")
        assert not [s for s in proxy.seen + dproxy.seen if ".." in s.path or "%2e" in s.path.lower()]
    assert "malformed digest" in one_line_error(p)


# --- 3. gc stays inside its root --------------------------------------------------------------
def _v2(root: Path) -> Path:
    return root / "docker/registry/v2"


def test_gc_never_deletes_through_links(tmp_path):
    ours, victim = tmp_path / "ours", tmp_path / "victim"
    for d in (ours, victim):
        shutil.copytree(TESTDATA, d, symlinks=True)
    vblobs = sorted((_v2(victim) / "blobs/sha256").iterdir())
    before = sorted(str(p.relative_to(victim)) for p in victim.rglob("*"))
    # A prefix directory of ours that is a link into the victim's blobs (a prefix ours lacks).
    free = next(f"{i:02x}" for i in range(256) if not (_v2(ours) / f"blobs/sha256/{i:02x}").exists())
    os.symlink(vblobs[0], _v2(ours) / "blobs/sha256" / free)
    # A stray file and a non-hex directory under blobs/, and an unreferenced blob that must go.
    (_v2(ours) / "blobs/sha256/stray.txt").write_text("x")
    (_v2(ours) / "blobs/sha256" / vblobs[1].name / "not-hex").mkdir(parents=True, exist_ok=True)
    orphan = "ee" + "0" * 62
    (_v2(ours) / f"blobs/sha256/ee/{orphan}").mkdir(parents=True)
    (_v2(ours) / f"blobs/sha256/ee/{orphan}/data").write_text("orphan")
    p = porter("gc", str(ours), "--json")
    assert p.returncode == 0, p.stderr.decode()
    plan = json.loads(p.stdout)
    assert f"sha256:{orphan}" in plan["blobs"] and not (_v2(ours) / f"blobs/sha256/ee/{orphan}").exists()
    problems = " ".join(plan["problems"])
    assert "stray.txt" in problems and "not-hex" in problems and free in problems
    assert sorted(str(p.relative_to(victim)) for p in victim.rglob("*")) == before


@pytest.mark.parametrize("what", ["_layers", "_manifests", "_uploads"])
def test_gc_refuses_repository_metadata_that_is_a_link(tmp_path, what):
    ours, victim = tmp_path / "ours", tmp_path / "victim"
    for d in (ours, victim):
        shutil.copytree(TESTDATA, d, symlinks=True)
    before = sorted(str(p.relative_to(victim)) for p in victim.rglob("*"))
    repo = _v2(ours) / "repositories/demo/busybox"
    (_v2(victim) / "repositories/demo/busybox/_uploads").mkdir(exist_ok=True)
    if (repo / what).exists():
        shutil.rmtree(repo / what)
    os.symlink(_v2(victim) / "repositories/demo/busybox" / what, repo / what)
    before = sorted(str(p.relative_to(victim)) for p in victim.rglob("*"))
    p = porter("gc", str(ours), "--delete-untagged", "--upload-age", "0s")
    assert "symbolic link" in one_line_error(p)
    assert sorted(str(p.relative_to(victim)) for p in victim.rglob("*")) == before


def test_gc_keeps_blobs_of_a_tagged_manifest_whose_data_is_missing(tmp_path):
    ours = tmp_path / "ours"
    shutil.copytree(TESTDATA, ours, symlinks=True)
    tag = next((_v2(ours) / "repositories/demo/busybox/_manifests/tags").iterdir())
    digest = (tag / "current/link").read_text().strip()
    layers = sorted(p.name for p in (_v2(ours) / "repositories/demo/busybox/_layers/sha256").iterdir())
    shutil.rmtree(_v2(ours) / f"blobs/sha256/{digest[7:9]}/{digest[7:]}")
    p = porter("gc", str(ours), "--json")
    assert p.returncode == 0, p.stderr.decode()
    assert "missing or unreadable" in " ".join(json.loads(p.stdout)["problems"])
    for h in layers:
        assert (_v2(ours) / f"blobs/sha256/{h[:2]}/{h}/data").exists()


# --- 4. credentials go only to their origin ---------------------------------------------------
@pytest.mark.fault("blob redirect to another host whose 401 names its own realm", "that host gets no credentials")
def test_redirect_target_401_gets_no_credentials(registry, basic_registry, catalog, tmp_path):
    def unauthorized(h, m):
        answer(h, 401, b"{}", {"WWW-Authenticate": f'Bearer realm="http://{h.server.server_address[0]}:'
                                                 f'{h.server.server_address[1]}/token",service=evil'})

    with Hostile([("*", r"/blob.*", unauthorized), ("*", r"/token.*", lambda h, m: answer(h, 200, b'{"token":"x"}'))],
                 host="127.0.0.2") as evil:
        layer = catalog["api"].blobs[1]
        redirect = Canned({("GET", f"/v2/team/api/blobs/{layer}"): (307, {"Location": f"http://{evil.host}/blob"}, b"")})
        with Proxy(basic_registry.url, redirect) as proxy:
            p = porter("export", f"{proxy.host}/team/api:1.4", "-o", str(tmp_path / "x.tar"),
                       "--creds", f"{USER}:{PASSWORD}", "--retries", "0")
        one_line_error(p)
        assert evil.seen and not [s for s in evil.seen if s.path.startswith("/token")]
        assert not [s for s in evil.seen if "Authorization" in s.headers or "authorization" in s.headers]


@pytest.mark.fault("upload Location on another origin", "refused; that origin is never contacted")
def test_upload_location_on_another_origin_is_refused(registry, fresh_registry):
    dest = fresh_registry()
    with Hostile([], host="127.0.0.2") as evil:
        lie = Canned({("POST", "/v2/x/blobs/uploads/"): (202, {"Location": f"http://{evil.host}/upload"}, b"")})
        with Proxy(dest.url, lie) as proxy:
            p = porter("mirror", f"{registry.host}/team/api:1.4", f"{proxy.host}/x", "--creds", "u:p")
        assert "another origin" in one_line_error(p)
        assert evil.seen == []


@pytest.mark.fault("journal holding an upload URL on another origin", "never contacted; the blob starts over")
def test_journal_upload_url_on_another_origin_is_ignored(tools, fresh_registry, tmp_path):
    from porter.bulk import Entry, job_key
    from porter.journal import Journal
    from porter.selection import Filters

    src, dest = fresh_registry(), fresh_registry()
    big = os.urandom(3 << 20)
    Seeder(src.url).image("big/app", "1", [tar_layer({"big": big})], cmd=["/bin/true"])
    layer = json.loads(httpx.get(f"{src.url}/v2/big/app/manifests/1",
                                 headers={"Accept": DOCKER_MANIFEST}).content)["layers"][0]["digest"]
    entry = Entry(f"{src.host}/big/app", f"{dest.host}/big/app", Filters(None, None, None, None, None))
    key = job_key([entry])
    state = tmp_path / "state.json"
    with Hostile([], host="127.0.0.2") as evil:
        j = Journal(state, key)
        j.upload_progress(Journal.upload_key(dest.host, "big/app", layer), f"http://{evil.host}/steal", 1 << 20)
        p = porter("mirror", f"{src.host}/big/app", f"{dest.host}/big/app", "--state", str(state),
                   "--chunk-size", "1MiB")
        assert p.returncode == 0, p.stderr.decode()
        assert evil.seen == []
    assert dest_names(dest) == ["big/app:1"]


def test_plain_http_token_realm_gets_no_credentials(registry):
    lie = Canned({("GET", "/v2/"): (401, {"WWW-Authenticate": 'Bearer realm="http://auth.invalid/token",service=x'},
                                    b"{}")})
    with Proxy(registry.url, lie) as proxy:
        p = porter("ls", f"{proxy.host}/team/api", "--creds", "u:p")
    assert "refusing plain HTTP to 'auth.invalid'" in one_line_error(p)


# --- 5. every read is bounded ------------------------------------------------------------------
def _endless(status: int, headers: dict[str, str], chunk: bytes = b"\0" * (1 << 20), prefix: bytes = b""):
    def handler(h, m):
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(prefix)
        for _ in range(2000):  # up to 2 GB, unless porter hangs up first (it must)
            h.wfile.write(chunk)
    return handler


def _gzip_bomb() -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zero = b"\0" * (1 << 20)
    return b"".join([c.compress(zero) for _ in range(1024)] + [c.flush()])  # 1 GiB of zeros, ~1 MB


BOUNDED = {
    "600 MiB manifest": ("/v2/x/manifests/1", _endless(200, {"Content-Type": DOCKER_MANIFEST}), ["export", "{h}/x:1"]),
    "endless 404 body": ("/v2/x/manifests/1", _endless(404, {"Content-Type": "application/json"}), ["export", "{h}/x:1"]),
    "10 million tags": ("/v2/x/tags/list.*", _endless(200, {}, b'"t0000000",' * 100_000, b'{"tags":['), ["ls", "{h}/x"]),
}


@pytest.mark.parametrize("case", sorted(BOUNDED) + ["gzip bomb manifest"])
def test_reads_are_bounded(tools, case, tmp_path):
    if case == "gzip bomb manifest":
        bomb = _gzip_bomb()
        path, args = "/v2/x/manifests/1", ["export", "{h}/x:1"]
        handler = lambda h, m: answer(h, 200, bomb, {"Content-Type": DOCKER_MANIFEST, "Content-Encoding": "gzip"})
    else:
        path, handler, args = BOUNDED[case]
    with Hostile([("GET", path, handler)]) as evil:
        argv = [a.replace("{h}", evil.host) for a in args]
        p, rss = peak(*argv, *(["-o", str(tmp_path / "o.tar")] if argv[0] == "export" else []), "--retries", "0")
    one_line_error(p)
    assert rss <= RSS_LIMIT_MB, f"{case}: peak RSS {rss:.0f} MB"


def test_link_loop_in_pagination_ends(tools):
    def page(h, m):
        nxt = "/v2/_catalog?n=1000&last=b" if "last=b" not in h.path else "/v2/_catalog?n=1000"
        answer(h, 200, as_json({"repositories": ["a"]}), {"Link": f'<{nxt}>; rel="next"'})

    with Hostile([("GET", r"/v2/_catalog.*", page)]) as evil:
        p = porter("ls", evil.host, timeout=30)
    assert "loops back" in one_line_error(p)


@pytest.mark.parametrize("kind", ["huge link file", "link file is a FIFO", "manifest data is a link to /dev/zero"])
def test_storage_reads_are_bounded(storage_copy, tmp_path, kind):
    tag = next((_v2(storage_copy) / "repositories/demo/busybox/_manifests/tags").iterdir())
    link = tag / "current/link"
    if kind == "huge link file":
        with open(link, "r+b") as f:
            f.truncate(1 << 30)
    elif kind == "link file is a FIFO":
        link.unlink()
        os.mkfifo(link)
    else:
        d = link.read_text().strip()[7:]
        data = _v2(storage_copy) / f"blobs/sha256/{d[:2]}/{d}/data"
        data.unlink()
        os.symlink("/dev/zero", data)
    p, rss = peak("export", "--storage", str(storage_copy), f"demo/busybox:{tag.name}", "-o", str(tmp_path / "o.tar"),
                  timeout=30)
    one_line_error(p)
    assert rss <= RSS_LIMIT_MB


# --- 6. time is bounded --------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["body", "headers"])
def test_trickling_server_hits_the_deadline(tools, tmp_path, where):
    def trickle(h, m):
        if where == "headers":
            for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 100:
                h.wfile.write(bytes([b]))
                h.wfile.flush()
                time.sleep(0.5)
            return
        h.send_response(200)
        h.send_header("Content-Type", DOCKER_MANIFEST)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        for _ in range(100):
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(0.5)

    with Hostile([("GET", "/v2/x/manifests/1", trickle)]) as evil:
        started = time.monotonic()
        p = porter("export", f"{evil.host}/x:1", "-o", str(tmp_path / "o.tar"), "--timeout", "2", timeout=60)
        took = time.monotonic() - started
    assert "no complete answer" in one_line_error(p)
    assert took < 15


# --- 7. local files -----------------------------------------------------------------------------
def test_state_never_replaces_a_file_that_is_not_a_journal(registry, fresh_registry, tmp_path):
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0:root:/root:/bin/bash\n")
    dest = fresh_registry()
    p = porter("mirror", f"{registry.host}/team/api", f"{dest.host}/team/api", "--state", str(victim))
    assert "not a porter journal" in one_line_error(p)
    assert victim.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    job = tmp_path / "job.toml"
    job.write_text(f'[settings]\nstate = "{victim}"\n[[mirror]]\nsource = "{registry.host}/team/api"\n'
                   f'destination = "{dest.host}/team/api"\n')
    assert "not a porter journal" in one_line_error(porter("mirror", "--config", str(job)))
    assert victim.read_text().startswith("root:x")


@pytest.mark.parametrize("secret", ["/dev/zero", "big", "two-lines"])
def test_file_credentials_read_only_a_small_regular_file(registry, tmp_path, secret):
    path = secret
    if secret == "big":
        path = str(tmp_path / "big")
        Path(path).write_text("u:" + "p" * 10000)
    elif secret == "two-lines":
        path = str(tmp_path / "two")
        Path(path).write_text("u:p\nroot:x\n")
    job = tmp_path / "job.toml"
    job.write_text(f'[[mirror]]\nsource = "{registry.host}/team/api:1.4"\ndestination = "{registry.host}/copy"\n'
                   f'source_credentials = "file:{path}"\n')
    err = one_line_error(porter("mirror", "--config", str(job), timeout=20), 2)
    assert "credentials file" in err


# --- 8. job-file settings are typed ---------------------------------------------------------------
@pytest.mark.parametrize("line,why", [('insecure = "false"', "true or false"), ('jobs = "abc"', "integer"),
                                      ("timeout = -1", "number"), ("jobs = 0", "from 1 to 64"),
                                      ("retries = 100", "from 0 to 20"), ('chunk_size = "1x"', "size"),
                                      ("insecure = 1", "true or false")])
def test_job_file_settings_are_typed(registry, tmp_path, line, why):
    job = tmp_path / "job.toml"
    job.write_text(f'# migration\n[settings]\n{line}\n[[mirror]]\nsource = "{registry.host}/team/api:1.4"\n'
                   f'destination = "{registry.host}/copy"\n')
    err = one_line_error(porter("mirror", "--config", str(job)), 2)
    key = line.split()[0]
    assert f"{job}:3:" in err and key in err and why in err


def test_command_line_flag_wins_over_job_file(registry, fresh_registry, tmp_path):
    dest = fresh_registry()
    flaky = Canned({})
    flaky.left = 2

    def first_two_fail(seen, headers):
        if seen.method == "PUT" and "/manifests/" in seen.path and flaky.left:
            flaky.left -= 1
            return 503, {}, b"{}"
        return None

    flaky.request = first_two_fail
    with Proxy(dest.url, flaky) as proxy:
        job = tmp_path / "job.toml"
        job.write_text(f'[settings]\nretries = 0\n[[mirror]]\nsource = "{registry.host}/team/api:1.4"\n'
                       f'destination = "{proxy.host}/team/api"\n')
        p = porter("mirror", "--config", str(job), "--retries", "3")
    assert p.returncode == 0, p.stderr.decode()


# --- 9. redirects ---------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["file:///etc/passwd", "gopher://127.0.0.1:9/x", "loop"])
def test_redirects_only_to_http_and_never_in_a_loop(tools, tmp_path, target):
    def redirect(h, m):
        if target == "loop":
            answer(h, 302, b"", {"Location": "/v2/x/manifests/2" if h.path.endswith("/1") else "/v2/x/manifests/1"})
        else:
            answer(h, 302, b"", {"Location": target})

    with Hostile([("GET", r"/v2/x/manifests/.*", redirect)]) as evil:
        p = porter("export", f"{evil.host}/x:1", "-o", str(tmp_path / "o.tar"))
        assert len(evil.seen) < 30
    err = one_line_error(p)
    assert ("redirect loop" in err) if target == "loop" else ("refusing" in err)


# --- 10. text from outside ------------------------------------------------------------------------
def test_registry_error_text_cannot_drive_the_terminal(tools, tmp_path):
    msg = "\x1b[2J\x1b[H\rporter: wrote images.tar: export complete\n"
    body = as_json({"errors": [{"code": "DENIED", "message": msg}]})
    with Hostile([("GET", r"/v2/x/manifests/.*", lambda h, m: answer(h, 403, body))]) as evil:
        p = porter("export", f"{evil.host}/x:1", "-o", str(tmp_path / "o.tar"))
    err = one_line_error(p)
    assert err.count("\n") == 1 and "\\x1b[2J" in err


# --- 11. abandoned uploads are cancelled -----------------------------------------------------------
@pytest.mark.fault("upload refused at commit (400)", "the upload is cancelled (DELETE); no upload data left")
def test_abandoned_upload_is_cancelled(registry, fresh_registry):
    dest = fresh_registry()

    class RefuseCommit(Fault):
        def request(self, seen, headers):
            if seen.method == "PUT" and "/blobs/uploads/" in seen.path and "digest=" in seen.path:
                return 400, {}, as_json({"errors": [{"code": "BLOB_UPLOAD_INVALID", "message": "no"}]})
            return None

    with Proxy(dest.url, RefuseCommit()) as proxy:
        p = porter("mirror", f"{registry.host}/team/api:1.4", f"{proxy.host}/x", "--retries", "0")
        assert proxy.requests("DELETE", "/blobs/uploads/")
    one_line_error(p)
    # Distribution's cancel removes an upload's data and leaves only its small hash state behind.
    uploads = dest.storage / "docker/registry/v2/repositories/x/_uploads"
    assert not [f for f in uploads.rglob("data")] and sum(f.stat().st_size for f in uploads.rglob("*") if f.is_file()) < 4096


# --- 12. no traceback, whatever the input -----------------------------------------------------------
MALFORMED = {
    "descriptor list": b'[1, "x"]',
    "config is a list": as_json({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": [1, "x"], "layers": []}),
    "manifests of ints": as_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [1]}),
    "layers is 5": as_json({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": 5,
                            "config": {"digest": "sha256:" + "a" * 64, "size": 2}}),
    "3 MB of [": b"[" * 3_000_000,
    "size 10**30": as_json({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": [],
                            "config": {"digest": "sha256:" + "a" * 64, "size": 10**30}}),
    "size true": as_json({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": [],
                          "config": {"digest": "sha256:" + "a" * 64, "size": True}}),
    "platform a string": as_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"digest": "sha256:" + "a" * 64, "size": 2, "platform": "linux"}]}),
    "control characters": as_json({"schemaVersion": 2, "mediaType": "\x1b[31mred\x07"}),
    "not utf-8": b"\xff\xfe{}",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_manifests_give_one_line(tools, tmp_path, case):
    body = MALFORMED[case]
    with Hostile([("GET", r"/v2/x/manifests/.*", lambda h, m: answer(h, 200, body, {"Content-Type": DOCKER_MANIFEST}))]) as evil:
        p = porter("export", f"{evil.host}/x:1", "--all-platforms", "-o", str(tmp_path / "o.tar"))
    one_line_error(p)


@pytest.mark.parametrize("case", ["tags is 5", "bogus gzip", "token with CR/LF", "catalog of ints"])
def test_malformed_answers_give_one_line(tools, case):
    routes = {
        "tags is 5": ("GET", r"/v2/x/tags/list.*", lambda h, m: answer(h, 200, b'{"tags": 5}')),
        "bogus gzip": ("GET", r"/v2/x/tags/list.*",
                       lambda h, m: answer(h, 200, b"\x1f\x8bnot gzip at all", {"Content-Encoding": "gzip"})),
        "catalog of ints": ("GET", r"/v2/_catalog.*", lambda h, m: answer(h, 200, b'{"repositories": [1, 2]}')),
    }
    if case == "token with CR/LF":
        def challenge(h, m):
            if "Authorization" in h.headers:
                answer(h, 200, b'{"tags": []}')
            else:
                host = f"{h.server.server_address[0]}:{h.server.server_address[1]}"
                answer(h, 401, b"{}", {"WWW-Authenticate": f'Bearer realm="http://{host}/token"'})
        route_list = [("GET", r"/v2/x/tags/list.*", challenge),
                      ("GET", r"/token.*", lambda h, m: answer(h, 200, b'{"token": "abc\\r\\nX-Evil: 1"}'))]
    else:
        route_list = [routes[case]]
    target = "{h}" if case == "catalog of ints" else "{h}/x"
    with Hostile(route_list) as evil:
        p = porter("ls", target.format(h=evil.host), "--retries", "0")
    one_line_error(p)


def test_hostile_archive_index_gives_one_line(tmp_path, registry):
    import io
    import tarfile

    out = tmp_path / "a.tar"
    with tarfile.open(out, "w") as t:
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", b"[" * 3_000_000)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    one_line_error(porter("import", str(out), registry.host))


def test_ls_exits_1_when_a_row_shows_an_error(registry, tmp_path):
    lie = Canned({("GET", "/v2/team/api/manifests/1.4"): (500, {}, b"{}")})
    with Proxy(registry.url, lie) as proxy:
        p = porter("ls", f"{proxy.host}/team/api", "--retries", "0")
    assert p.returncode == 1 and b"ERROR" in p.stdout
