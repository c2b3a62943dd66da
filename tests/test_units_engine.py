"""Fast tests (no services, about a second) of the engine and the pure logic around it: the copy
engine over in-memory places, the blob reader, platform choice, latest-N ordering, the retry
policy, the archive layout, and the gc plan on a generated storage tree.

The in-memory places here are not stand-ins for a registry (the end-to-end suite runs the real
one): they implement the place protocols directly, to pin down what the engine itself decides.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from porter.blob import BlobReader
from porter.engine import Engine, Item
from porter.errors import DigestMismatch, PorterError, TransportError
from porter.image import resolve
from porter.mediatypes import Descriptor, Manifest, Platform
from porter.places.archive import docker_manifest, members_for
from porter.places.protocol import Abilities, Destination, Source
from porter.progress import Quiet
from porter.reference import Reference
from porter.selection import newest_first
from porter.transport import Options, Transport

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

OCI_M, OCI_I = "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class MemorySource:
    """A source in memory: manifests by (repository, tag or digest), blobs by digest."""

    origin = None

    def __init__(self, name: str = "mem") -> None:
        self.name = name
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.drop_once: set[str] = set()  # digests whose first read breaks off half-way

    def blob(self, data: bytes) -> dict:
        self.blobs[sha(data)] = data
        return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(data), "size": len(data)}

    def image(self, repo: str, tag: str, *layers: bytes, arch: str = "amd64") -> dict:
        cfg = json.dumps({"os": "linux", "architecture": arch, "name": f"{repo}:{tag}"}).encode()
        c = self.blob(cfg)
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_M, "config": dict(c, mediaType="application/vnd.oci.image.config.v1+json"),
                          "layers": [self.blob(x) for x in layers]}).encode()
        self.manifests[(repo, tag)] = self.manifests[(repo, sha(raw))] = (raw, OCI_M)
        return {"mediaType": OCI_M, "digest": sha(raw), "size": len(raw),
                "platform": {"os": "linux", "architecture": arch}}

    def index(self, repo: str, tag: str, *children: dict) -> str:
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_I, "manifests": list(children)}).encode()
        self.manifests[(repo, tag)] = self.manifests[(repo, sha(raw))] = (raw, OCI_I)
        return sha(raw)

    def get_manifest(self, ref: Reference, digest: str | None = None) -> Manifest:
        raw, mt = self.manifests[(ref.repository, digest or ref.manifest_ref)]
        return Manifest.parse(raw, mt, sha(raw), str(ref))

    def blob_chunks(self, repository: str, desc: Descriptor, offset: int = 0) -> Iterator[bytes]:
        data = self.blobs[desc.digest][offset:]
        if desc.digest in self.drop_once:
            self.drop_once.discard(desc.digest)
            yield data[: len(data) // 2]
            raise httpx.ReadError("connection dropped")
        yield from (data[i:i + 7] for i in range(0, len(data), 7))


class MemoryDestination:
    """A destination in memory that records what the engine asked of it, in order."""

    origin = None

    def __init__(self, abilities: Abilities = Abilities(mount=True, per_repository=True), lie: bool = False):
        self.name, self.abilities, self.lie = "memdest", abilities, lie
        self.blobs: dict[str, dict[str, bytes]] = {}
        self.tags: dict[tuple[str, str], str] = {}
        self.calls: list[tuple] = []

    def prepare(self, images: list) -> None:
        self.calls.append(("prepare", len(images)))

    def has_manifest(self, repository: str, ref: str, digest: str) -> bool:
        self.calls.append(("has_manifest", repository, ref))
        return self.tags.get((repository, ref)) == digest

    def has_blob(self, repository: str, digest: str) -> bool:
        self.calls.append(("has_blob", repository, digest))
        return digest in self.blobs.get(repository, {})

    def tag_set(self, repository: str) -> set[str]:
        return {t for r, t in self.tags if r == repository}

    def mount(self, repository: str, digest: str, from_repository: str) -> bool:
        self.calls.append(("mount", repository, digest, from_repository))
        data = self.blobs.get(from_repository, {}).get(digest)
        if data is not None:
            self.blobs.setdefault(repository, {})[digest] = data
        return data is not None

    def write_blob(self, repository: str, blob: BlobReader, on_bytes: Callable[[int], None]) -> bool:
        self.calls.append(("write", repository, blob.digest))
        if self.abilities.asks_on_upload and blob.digest in self.blobs.get(repository, {}):
            return False
        self.blobs.setdefault(repository, {})[blob.digest] = b"".join(blob.read())
        return True

    def put_manifest(self, repository: str, ref: str, manifest: Manifest) -> None:
        self.calls.append(("put_manifest", repository, ref))
        self.tags[(repository, ref)] = manifest.digest

    def commit(self) -> None:
        self.calls.append(("commit",))

    def served(self, repository: str, ref: str) -> str | None:
        return "sha256:" + "0" * 64 if self.lie else self.tags.get((repository, ref))

    def close(self) -> None:
        pass


def items_for(src: MemorySource, dest: MemoryDestination, *names: str) -> list[Item]:
    out = []
    for name in names:
        repo, tag = name.split(":")
        img = resolve(src, Reference("mem", repo, tag), None, all_platforms=True)
        out.append(Item(img, src, dest, Reference("dest", repo, tag)))
    return out


def test_places_satisfy_the_protocols():
    assert isinstance(MemorySource(), Source) and isinstance(MemoryDestination(), Destination)


def test_shared_blob_sent_once_then_mounted_and_tag_last():
    src, dest = MemorySource(), MemoryDestination()
    base = b"B" * 1000
    src.image("a", "1", base, b"only a")
    src.image("b", "1", base, b"only b")
    items = items_for(src, dest, "a:1", "b:1")
    report = Engine(jobs=1, progress=Quiet()).copy(items)
    writes = [c for c in dest.calls if c[0] == "write" and c[2] == sha(base)]
    mounts = [c for c in dest.calls if c[0] == "mount" and c[2] == sha(base)]
    assert len(writes) == 1 and len(mounts) == 1
    assert report.blobs.mounted == 1 and report.blobs.uploaded == 5  # two configs, two own layers, the base
    assert [i.state for i in items] == ["copied", "copied"]
    # No blob question about the base in the second repository: it is mounted straight away.
    assert not [c for c in dest.calls if c[0] == "has_blob" and c[2] == sha(base) and c[1] != mounts[0][3]]


def test_a_destination_that_asks_on_upload_gets_no_blob_questions():
    """Where starting an upload tells whether the blob is there (a registry's mount from the
    repository itself), the engine asks nothing first; a blob found there counts as skipped."""
    src = MemorySource()
    src.image("a", "1", b"A" * 100, b"a own")
    dest = MemoryDestination(Abilities(mount=True, per_repository=True, asks_on_upload=True))
    dest.blobs["a"] = {sha(b"A" * 100): b"A" * 100}  # left there by an earlier, interrupted run
    items = items_for(src, dest, "a:1")
    report = Engine(jobs=1, progress=Quiet()).copy(items)
    assert not [c for c in dest.calls if c[0] == "has_blob"]
    assert report.blobs.skipped == 1 and report.blobs.uploaded == 2 and items[0].state == "copied"


def test_images_are_committed_as_their_blobs_land_where_the_destination_serves_at_once():
    src = MemorySource()
    for t in ("1", "2", "3"):
        src.image("a", t, t.encode() * 10)
    dest = MemoryDestination(Abilities(mount=True, per_repository=True, serves_at_once=True))
    items = items_for(src, dest, "a:1", "a:2", "a:3")
    Engine(jobs=1, progress=Quiet()).copy(items)
    kinds = [c[0] for c in dest.calls if c[0] in ("write", "put_manifest")]
    # one worker: each image's blobs, then its tag — not every blob first, then every tag
    assert kinds == ["write", "write", "put_manifest"] * 3
    assert [i.state for i in items] == ["copied"] * 3


def test_one_failed_blob_fails_only_its_image_when_committing_as_blobs_land():
    src = MemorySource()
    src.image("a", "1", b"good")
    src.image("a", "2", b"bad")
    src.blobs[sha(b"bad")] = b"bax"  # same size, other bytes
    dest = MemoryDestination(Abilities(mount=True, per_repository=True, serves_at_once=True))
    items = items_for(src, dest, "a:1", "a:2")
    Engine(jobs=2, progress=Quiet(), keep_going=True, retries=0).copy(items)
    assert [i.state for i in items] == ["copied", "failed"] and ("a", "2") not in dest.tags


def test_blobs_of_an_image_already_there_are_mounted_not_sent_again():
    """After an interruption: an image committed before it is present; what it shares with the
    rest is mounted from its repository."""
    src, dest = MemorySource(), MemoryDestination()
    base = b"B" * 1000
    src.image("a", "1", base)
    src.image("b", "1", base)
    Engine(jobs=1, progress=Quiet()).copy(items_for(src, dest, "a:1"))
    dest.calls.clear()
    items = items_for(src, dest, "a:1", "b:1")
    Engine(jobs=1, progress=Quiet()).copy(items)
    assert [i.state for i in items] == ["present", "copied"]
    assert ("mount", "b", sha(base), "a") in dest.calls
    assert not [c for c in dest.calls if c[0] == "write" and c[2] == sha(base)]


def test_index_children_before_the_index_and_one_blob_store():
    src = MemorySource()
    amd = src.image("m", "amd", b"amd layer", arch="amd64")
    arm = src.image("m", "arm", b"arm layer", arch="arm64")
    top = src.index("m", "1", amd, arm)
    dest = MemoryDestination(Abilities())  # one store for every repository, like an archive
    items = items_for(src, dest, "m:1")
    Engine(jobs=2, progress=Quiet()).copy(items)
    puts = [c[2] for c in dest.calls if c[0] == "put_manifest"]
    assert puts[-1] == "1" and set(puts[:-1]) == {amd["digest"], arm["digest"]}
    assert dest.tags[("m", "1")] == top and items[0].state == "copied"
    assert not [c for c in dest.calls if c[0] == "mount"]


def test_present_image_costs_one_question_and_moves_nothing():
    src, dest = MemorySource(), MemoryDestination()
    src.image("a", "1", b"x")
    Engine(jobs=1, progress=Quiet()).copy(items_for(src, dest, "a:1"))
    dest.calls.clear()
    again = items_for(src, dest, "a:1")
    Engine(jobs=1, progress=Quiet()).copy(again)
    assert again[0].state == "present" and dest.calls == [("has_manifest", "a", "1")]


def test_tags_list_spares_heads_for_absent_tags_only():
    src, dest = MemorySource(), MemoryDestination(Abilities(mount=True, per_repository=True, lists_tags=True))
    for t in ("1", "2", "3"):
        src.image("a", t, t.encode())
    first = items_for(src, dest, "a:1", "a:2", "a:3")
    by_digest = Item(first[0].image, src, dest, Reference("dest", "a", None))  # pushed by digest: always asked
    Engine(jobs=1, progress=Quiet()).copy(first + [by_digest])
    heads = [c for c in dest.calls if c[0] == "has_manifest"]
    assert heads == [("has_manifest", "a", first[0].image.listed.digest)]  # none for the three absent tags
    dest.calls.clear()
    again = items_for(src, dest, "a:1", "a:2", "a:3")
    Engine(jobs=1, progress=Quiet()).copy(again)
    assert [i.state for i in again] == ["present"] * 3
    assert [c[0] for c in dest.calls] == ["has_manifest"] * 3  # listed tags are asked about, by HEAD


def test_a_destination_that_does_not_serve_the_digest_afterwards_is_a_failure():
    src, dest = MemorySource(), MemoryDestination(lie=True)
    src.image("a", "1", b"x")
    items = items_for(src, dest, "a:1")
    with pytest.raises(PorterError, match="not counted as copied"):
        Engine(jobs=1, progress=Quiet()).copy(items)
    items = items_for(src, MemoryDestination(lie=True), "a:1")
    Engine(jobs=1, progress=Quiet(), keep_going=True).copy(items)
    assert items[0].state == "failed" and "not counted as copied" in items[0].error


def test_corrupt_source_bytes_commit_nothing():
    src, dest = MemorySource(), MemoryDestination()
    desc = src.image("a", "1", b"the real layer")
    layer = json.loads(src.manifests[("a", "1")][0])["layers"][0]["digest"]
    src.blobs[layer] = b"the fake layer"  # same size, other bytes
    with pytest.raises(DigestMismatch):
        Engine(jobs=1, progress=Quiet()).copy(items_for(src, dest, "a:1"))
    assert not [c for c in dest.calls if c[0] == "put_manifest"] and desc


def test_blob_reader_resumes_after_a_drop_and_verifies():
    src = MemorySource()
    data = bytes(range(256)) * 40
    d = src.blob(data)
    src.drop_once.add(d["digest"])
    reader = BlobReader(src, "r", Descriptor("x", d["digest"], len(data)), retries=1)
    assert reader.read_all() == data
    # A chunk sent again after a failure: back to the checkpoint, the hash state with it.
    reader = BlobReader(src, "r", Descriptor("x", d["digest"], len(data)))
    first = b"".join(reader.read(end=100))
    saved = reader.checkpoint()
    b"".join(reader.read(end=200))
    reader.restore(saved)
    assert first + b"".join(reader.read()) == data
    # Bytes that are not the blob's never pass as complete.
    src.blobs["sha256:" + "1" * 64] = data
    bad = BlobReader(src, "r", Descriptor("x", "sha256:" + "1" * 64, len(data)))
    with pytest.raises(DigestMismatch):
        bad.check()


def test_blob_reader_gives_up_after_drops_without_progress():
    class Dead(MemorySource):
        def blob_chunks(self, repository, desc, offset=0):
            raise httpx.ConnectError("refused")
            yield b""

    with pytest.raises(TransportError, match="kept failing"):
        BlobReader(Dead(), "r", Descriptor("x", "sha256:" + "1" * 64, 10), retries=2).check()


def test_platform_choice():
    src = MemorySource()
    amd, arm = src.image("m", "a", b"1", arch="amd64"), src.image("m", "b", b"2", arch="arm64")
    src.index("m", "1", amd, arm)
    top = src.get_manifest(Reference("mem", "m", "1"))
    assert top.pick(Platform.parse("linux/arm64")).digest == arm["digest"]
    assert top.pick(Platform("linux", "arm64", "v8")).digest == arm["digest"]  # arm64's implicit v8
    with pytest.raises(PorterError, match="platforms: linux/amd64, linux/arm64"):
        top.pick(Platform.parse("linux/s390x"))
    one = resolve(src, Reference("mem", "m", "1"), Platform.parse("linux/arm64"), all_platforms=False)
    assert one.listed.digest == arm["digest"] and one.narrowed
    with pytest.raises(PorterError, match="the image is linux/amd64"):
        resolve(src, Reference("mem", "m", "a"), Platform.parse("linux/arm64"), all_platforms=False, strict=True)


def test_latest_n_ordering():
    assert newest_first(["1.2.0", "1.10.0", "v1.9.1"], {})[0] == ["1.10.0", "v1.9.1", "1.2.0"]
    when = {"a": datetime(2024, 1, 1, tzinfo=timezone.utc), "b": datetime(2025, 1, 1, tzinfo=timezone.utc)}
    order, by = newest_first(["a", "b", "latest"], when)
    assert order[:2] == ["b", "a"] and by == "creation time"


def test_retry_policy():
    t = Transport("127.0.0.1:9", "127.0.0.1:9", Options(retries=2))
    calls = []

    def flaky() -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ConnectError("refused")
        return httpx.Response(200)

    assert t.with_retries(flaky, "x").status_code == 200 and len(calls) == 3
    calls.clear()
    with pytest.raises(TransportError):
        t.with_retries(lambda: (calls.append(1), (_ for _ in ()).throw(httpx.ReadError("reset")))[1], "x")
    assert len(calls) == 3  # one try and two retries, no more
    answers = iter([httpx.Response(503, headers={"Retry-After": "0"}), httpx.Response(404)])
    started = time.monotonic()
    assert t.with_retries(lambda: next(answers), "x").status_code == 404  # 503 again; 404 is an answer
    assert time.monotonic() - started < 1  # Retry-After: 0 wins over the backoff
    t.close()


def test_archive_layout_one_member_per_blob_and_docker_manifest():
    src = MemorySource()
    base = b"shared"
    src.image("a", "1", base, b"a")
    src.image("b", "1", base, b"b")
    images = [resolve(src, Reference("reg", r, "1"), None, all_platforms=True) for r in ("a", "b")]
    members = members_for(images)
    names = [m.name for m in members]
    assert names[:3] == ["oci-layout", "index.json", "manifest.json"]
    assert len(names) == len(set(names)) and f"blobs/sha256/{sha(base)[7:]}" in names
    loads = docker_manifest(images)
    assert [e["RepoTags"] for e in loads] == [["reg/a:1"], ["reg/b:1"]]
    assert all(m.size == len(m.data) for m in members if m.data is not None)


def test_gc_plan_on_a_generated_storage_tree(tmp_path):
    from catalog import make_catalog

    from porter.gc import collect

    make_catalog(tmp_path, repos=20)
    v2 = tmp_path / "docker" / "registry" / "v2"
    orphan = v2 / "blobs" / "sha256" / "ab" / ("ab" * 32)
    orphan.mkdir(parents=True)
    (orphan / "data").write_bytes(b"nobody links me")
    plan = collect(str(tmp_path), dry_run=True, delete_untagged=False, upload_age="7d", force=False)
    assert list(plan.blobs) == ["sha256:" + "ab" * 32] and not plan.problems
    assert len(plan.marked) == 1 + 20 * 2 * 3  # the shared base; per image a config, a layer, a manifest
    assert orphan.exists()  # a dry run


def test_ahead_runs_the_next_item_while_this_one_is_used():
    from porter.pool import ahead

    done: list[int] = []
    seen: list[tuple[int, list[int]]] = []

    def work(n: int) -> None:
        if n == 3:
            raise PorterError("three")
        done.append(n)

    with pytest.raises(PorterError, match="three"):
        for n in ahead(work, [0, 1, 2, 3]):
            time.sleep(0.05)  # the consumer's work: the next item's fn runs meanwhile
            seen.append((n, list(done)))
    assert [n for n, _ in seen] == [0, 1, 2]
    assert all(n + 1 in d for n, d in seen[:2])  # fn(n + 1) had run while n was being used
