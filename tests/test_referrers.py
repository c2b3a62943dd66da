"""Signatures, attestations and SBOMs travel with their images (issue 13).

Artifacts are attached with oras (the Python package, a client porter did not write) using a
``subject``, indexed the way oras indexes them on a registry without the referrers API (the
``sha256-<hex>`` fallback tag), and signed cosign-style (``sha256-<hex>.sig``/``.att`` tags in
cosign's published layout). Distribution 2.8 has no referrers API, so the fallback schema is the
real path; the API path runs against a small proxy in front of the real registry that answers
``GET /v2/<name>/referrers/<digest>`` as the OCI distribution spec says.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import httpx
import pytest

from conftest import porter
from images import Seeder, busybox_layer, tar_layer
from proxy import Fault, Proxy
from services import Registry, free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])
SBOM = "application/spdx+json"
SIGNATURE = "application/vnd.example.signature"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fallback(digest: str) -> str:
    return "sha256-" + digest[7:]


def get_manifest(reg_url: str, repo: str, ref: str) -> httpx.Response:
    return httpx.get(f"{reg_url}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})


def oras_attach(reg, repo: str, subject_raw: bytes, subject_type: str, tag: str, artifact_type: str,
                content: bytes, tmp_path: Path) -> dict:
    """Attach ``content`` to a manifest with oras-py (its ``subject``), then index it under the
    fallback tag as oras does on a registry without the referrers API; returns its descriptor."""
    import oras.oci
    import oras.provider

    f = tmp_path / f"{tag}.json"
    f.write_bytes(content)
    client = oras.provider.Registry(reg.host, insecure=True)
    subject = oras.oci.Subject(mediaType=subject_type, digest=sha(subject_raw), size=len(subject_raw))
    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        client.push(target=f"{reg.host}/{repo}:{tag}", files=[f"{f.name}:{artifact_type}"], subject=subject,
                    manifest_annotations={"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}, quiet=True)
    finally:
        os.chdir(here)
    raw = get_manifest(reg.url, repo, tag).content
    desc = {"mediaType": OCI_MANIFEST, "digest": sha(raw), "size": len(raw), "artifactType": artifact_type,
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}}
    index_fallback(reg, repo, sha(subject_raw), [desc])
    return desc


def index_fallback(reg, repo: str, subject: str, descs: list[dict]) -> None:
    r = get_manifest(reg.url, repo, fallback(subject))
    current = r.json()["manifests"] if r.status_code == 200 else []
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": current + descs}
    httpx.put(f"{reg.url}/v2/{repo}/manifests/{fallback(subject)}", content=json.dumps(doc).encode(),
              headers={"Content-Type": OCI_INDEX}).raise_for_status()


def cosign_sign(reg, repo: str, subject: str, suffix: str = ".sig") -> str:
    """A cosign-format signature (or attestation) manifest under ``sha256-<hex>.sig`` (``.att``)."""
    s = Seeder(reg.url)
    if suffix == ".sig":
        payload = json.dumps({"critical": {"identity": {"docker-reference": f"{reg.host}/{repo}"},
                                           "image": {"docker-manifest-digest": subject},
                                           "type": "cosign container image signature"}, "optional": None}).encode()
        layer_type, ann = SIMPLESIGNING, {"dev.cosignproject.cosign/signature": base64.b64encode(b"sig" * 20).decode()}
    else:
        payload = json.dumps({"payloadType": "application/vnd.in-toto+json",
                              "payload": base64.b64encode(b'{"subject":[]}').decode(), "signatures": []}).encode()
        layer_type, ann = DSSE, {"predicateType": "https://slsa.dev/provenance/v0.2"}
    cfg = json.dumps({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers",
                                                                             "diff_ids": [sha(payload)]}}).encode()
    man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": s.blob(repo, cfg),
                      "size": len(cfg)},
           "layers": [{"mediaType": layer_type, "digest": s.blob(repo, payload), "size": len(payload),
                       "annotations": ann}]}
    return s.manifest(repo, fallback(subject) + suffix, json.dumps(man).encode(), OCI_MANIFEST)


@pytest.fixture(scope="module")
def signed(tools, tmp_path_factory):
    """A source registry: team/app:1.0 with an SBOM (oras), a signature on the SBOM (oras), a
    cosign signature and attestation; multi/app:1 with a cosign signature on the index and an SBOM
    on its amd64 manifest."""
    d = tmp_path_factory.mktemp("signed")
    reg = Registry(d / "reg", free_port()).start()
    s = Seeder(reg.url)
    base = busybox_layer()
    app = s.image("team/app", "1.0", [base, tar_layer({"etc/app.txt": b"app\n"})], fmt="oci", cmd=["/bin/cat", "/etc/app.txt"])
    s.image("team/app", "0.9", [base, tar_layer({"etc/app.txt": b"old\n"})], fmt="oci")  # nothing attached
    reg.app = app
    reg.sbom = oras_attach(reg, "team/app", app.raw, OCI_MANIFEST, "sbom-1.0", SBOM, b'{"spdxVersion":"SPDX-2.3"}', d)
    sbom_raw = get_manifest(reg.url, "team/app", "sbom-1.0").content
    reg.sbom_sig = oras_attach(reg, "team/app", sbom_raw, OCI_MANIFEST, "sbom-1.0-sig", SIGNATURE, b'{"sig":1}', d)
    reg.sig = cosign_sign(reg, "team/app", app.digest)
    reg.att = cosign_sign(reg, "team/app", app.digest, ".att")
    amd = s.image("multi/app", None, [base, tar_layer({"a": b"amd64"})], fmt="oci")
    arm = s.image("multi/app", None, [tar_layer({"a": b"arm64"})], fmt="oci", arch="arm64")
    reg.multi = s.index("multi/app", "1", [(amd, {"os": "linux", "architecture": "amd64"}),
                                           (arm, {"os": "linux", "architecture": "arm64"})], fmt="oci")
    reg.multi_sig = cosign_sign(reg, "multi/app", reg.multi.digest)
    reg.amd_sbom = oras_attach(reg, "multi/app", amd.raw, OCI_MANIFEST, "sbom-amd64", SBOM, b'{"spdx":"amd"}', d)
    reg.amd = amd
    yield reg
    reg.stop()


def assert_travelled(src, dest, prefix: str = "") -> None:
    """Every attachment of team/app:1.0 is at the destination with the same digest, and the
    fallback indexes list exactly the source's referrers (plus what the destination had)."""
    repo = f"{prefix}team/app"
    for ref, digest in ((fallback(src.app.digest) + ".sig", src.sig), (fallback(src.app.digest) + ".att", src.att),
                        (src.sbom["digest"], src.sbom["digest"]), (src.sbom_sig["digest"], src.sbom_sig["digest"])):
        r = get_manifest(dest.url, repo, ref)
        assert r.status_code == 200 and sha(r.content) == digest, ref
    for subject, want in ((src.app.digest, src.sbom), (src.sbom["digest"], src.sbom_sig)):
        src_index = get_manifest(src.url, "team/app", fallback(subject)).json()["manifests"]
        dest_index = get_manifest(dest.url, repo, fallback(subject)).json()["manifests"]
        assert src_index == [want]
        assert [d for d in dest_index if d["digest"] in {x["digest"] for x in src_index}] == src_index


def writes(proxy) -> list:
    return [s for s in proxy.seen if s.method in ("PUT", "POST", "PATCH", "DELETE")]


def test_mirror_carries_attachments_and_merges_the_fallback_index(signed, fresh_registry, tmp_path):
    dest = fresh_registry()
    # The destination already lists a referrer of the image: the merge must keep it.
    theirs = oras_attach(dest, "team/app", signed.app.raw, OCI_MANIFEST, "their-note", "application/vnd.their.note",
                         b'{"note":"already here"}', tmp_path)
    p = porter("mirror", f"{signed.host}/team/app:1.0", f"{dest.host}/team/app", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["artifacts"] == 4
    assert_travelled(signed, dest)
    assert theirs in get_manifest(dest.url, "team/app", fallback(signed.app.digest)).json()["manifests"]
    with Proxy(dest.url) as proxy:  # a rerun sends nothing
        p = porter("mirror", f"{signed.host}/team/app:1.0", f"{proxy.host}/team/app")
        assert p.returncode == 0, p.stderr
        assert writes(proxy) == []


def test_multi_platform_attachments_travel(signed, fresh_registry):
    dest = fresh_registry()
    porter("mirror", f"{signed.host}/multi/app:1", f"{dest.host}/multi/app", check=True)
    assert sha(get_manifest(dest.url, "multi/app", fallback(signed.multi.digest) + ".sig").content) == signed.multi_sig
    assert sha(get_manifest(dest.url, "multi/app", signed.amd_sbom["digest"]).content) == signed.amd_sbom["digest"]
    assert get_manifest(dest.url, "multi/app", fallback(signed.amd.digest)).json()["manifests"] == [signed.amd_sbom]


def test_export_import_carries_attachments(signed, fresh_registry, dockerd, tmp_path):
    out = tmp_path / "signed.tar"
    porter("export", f"{signed.host}/team/app:1.0", "-o", str(out), check=True)
    dest = fresh_registry()
    p = porter("import", str(out), dest.host, "--json")
    assert p.returncode == 0, p.stderr
    assert_travelled(signed, dest)
    # The docker-load part is unchanged: docker load still takes it.
    import subprocess

    subprocess.run(["docker", "-H", f"unix://{dockerd.sock}", "load", "-i", str(out)], check=True, capture_output=True)


def test_bulk_mirror_copies_attachments_once(signed, fresh_registry):
    dest = fresh_registry()
    p = porter("mirror", signed.host, f"{dest.host}/all", "--json")
    assert p.returncode == 0, p.stderr
    assert_travelled(signed, dest, "all/")
    out = json.loads(p.stdout)
    dests = [i["destination"] + "@" + i["digest"] for i in out["images"]]
    assert len(dests) == len(set(dests))
    with Proxy(dest.url) as proxy:  # a rerun of the bulk job sends nothing
        p = porter("mirror", signed.host, f"{proxy.host}/all")
        assert p.returncode == 0, p.stderr
        assert writes(proxy) == []


def test_no_referrers_and_type_filter(signed, fresh_registry):
    dest = fresh_registry()
    porter("mirror", f"{signed.host}/team/app:1.0", f"{dest.host}/team/app", "--no-referrers", check=True)
    assert get_manifest(dest.url, "team/app", fallback(signed.app.digest) + ".sig").status_code == 404
    assert get_manifest(dest.url, "team/app", fallback(signed.app.digest)).status_code == 404
    dest = fresh_registry()
    porter("mirror", f"{signed.host}/team/app:1.0", f"{dest.host}/team/app", "--referrers-type", SIMPLESIGNING,
           check=True)
    assert get_manifest(dest.url, "team/app", fallback(signed.app.digest) + ".sig").status_code == 200
    assert get_manifest(dest.url, "team/app", fallback(signed.app.digest) + ".att").status_code == 404
    assert get_manifest(dest.url, "team/app", signed.sbom["digest"]).status_code == 404


def test_ls_counts_and_dry_run_lists_attachments(signed, fresh_registry):
    rows = porter("ls", f"{signed.host}/team/app", "--json").stdout
    by_tag = {r["tag"]: r for r in json.loads(rows)}
    assert by_tag["1.0"]["artifacts"] == 4 and by_tag["0.9"].get("artifacts", 0) == 0
    assert "ARTIFACTS" in porter("ls", f"{signed.host}/team/app").stdout.decode()
    dest = fresh_registry()
    p = porter("mirror", f"{signed.host}/team/app:1.0", f"{dest.host}/team/app", "--dry-run")
    assert p.returncode == 0 and fallback(signed.app.digest) + ".sig" in p.stdout.decode()
    assert signed.sbom["digest"] in p.stdout.decode()


def test_delete_removes_attachments_and_gc_keeps_referrers_of_kept_images(tools, tmp_path):
    reg = Registry(tmp_path / "r", free_port()).start()
    try:
        s = Seeder(reg.url)
        base = busybox_layer()
        gone = s.image("team/app", "1", [base, tar_layer({"x": b"1"})], fmt="oci")
        kept = s.image("team/app", "2", [base, tar_layer({"x": b"2"})], fmt="oci")
        sig = cosign_sign(reg, "team/app", gone.digest)
        sbom = oras_attach(reg, "team/app", gone.raw, OCI_MANIFEST, "sbom-1", SBOM, b"{}", tmp_path)
        kept_sbom = oras_attach(reg, "team/app", kept.raw, OCI_MANIFEST, "sbom-2", SBOM, b'{"k":1}', tmp_path)
        # oras tagged the SBOMs; untag them, and drop the kept image's fallback tag, so only its
        # subject keeps the kept image's SBOM (as on a registry with the referrers API).
        for t in ("sbom-1", "sbom-2", fallback(kept.digest)):
            link = reg.storage / f"docker/registry/v2/repositories/team/app/_manifests/tags/{t}"
            import shutil

            shutil.rmtree(link)
        p = porter("delete", f"{reg.host}/team/app:1")
        assert p.returncode == 0, p.stderr
        for ref in (fallback(gone.digest) + ".sig", sbom["digest"], fallback(gone.digest)):
            assert get_manifest(reg.url, "team/app", ref).status_code == 404, ref
        del sig
        reg.stop()
        p = porter("gc", str(reg.storage), "--delete-untagged", "--json")
        assert p.returncode == 0, p.stderr
        assert f"team/app@{kept_sbom['digest']}" not in json.loads(p.stdout)["manifests"]
        reg.start()
        assert get_manifest(reg.url, "team/app", kept_sbom["digest"]).status_code == 200
    finally:
        reg.stop()


class ReferrersAPI(Fault):
    """The referrers API of the OCI distribution spec, in front of a registry without one: every
    manifest with a ``subject`` pushed through here is listed for that subject."""

    def __init__(self):
        self.index: dict[tuple[str, str], list[dict]] = {}

    def request(self, seen, headers):
        m = re.match(r"/v2/(.+)/referrers/(sha256:[a-f0-9]{64})", seen.path.split("?")[0])
        if m and seen.method == "GET":
            body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                               "manifests": self.index.get((m[1], m[2]), [])}).encode()
            return 200, {"Content-Type": OCI_INDEX}, body
        m = re.match(r"/v2/(.+)/manifests/", seen.path)
        if m and seen.method == "PUT" and seen.body:
            doc = json.loads(seen.body)
            if isinstance(doc.get("subject"), dict):
                d = {"mediaType": doc.get("mediaType", OCI_MANIFEST), "digest": sha(seen.body), "size": len(seen.body)}
                if doc.get("artifactType"):
                    d["artifactType"] = doc["artifactType"]
                self.index.setdefault((m[1], doc["subject"]["digest"]), []).append(d)
        return None


def test_referrers_api_on_both_sides(signed, fresh_registry, tmp_path):
    src_api = ReferrersAPI()
    with Proxy(signed.url, src_api) as src:
        # An artifact attached through the API-speaking proxy: no fallback tag is written for it.
        s = Seeder(f"http://{src.host}")
        cfg = b"{}"
        man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.report",
               "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": s.blob("team/app", cfg), "size": 2},
               "layers": [{"mediaType": "text/plain", "digest": s.blob("team/app", b"report"), "size": 6}],
               "subject": {"mediaType": OCI_MANIFEST, "digest": signed.app.digest, "size": len(signed.app.raw)}}
        raw = json.dumps(man).encode()
        s.manifest("team/app", sha(raw), raw, OCI_MANIFEST)
        dest_api = ReferrersAPI()
        dest = fresh_registry()
        with Proxy(dest.url, dest_api) as dproxy:
            p = porter("mirror", f"{src.host}/team/app:1.0", f"{dproxy.host}/team/app", "--json")
            assert p.returncode == 0, p.stderr
            assert any(s.path.startswith("/v2/team/app/referrers/") for s in src.seen)
        # The API listed the report at the source: it travelled, and the destination's API lists it.
        assert get_manifest(dest.url, "team/app", sha(raw)).status_code == 200
        assert sha(raw) in [d["digest"] for d in dest_api.index[("team/app", signed.app.digest)]]
        # A destination with the API gets no fallback tag from porter.
        assert get_manifest(dest.url, "team/app", fallback(signed.app.digest)).status_code == 404


def test_cosign_tag_in_a_foreign_layout_keeps_its_tag(signed, fresh_registry, tmp_path):
    import subprocess

    layout = tmp_path / "layout"
    sig_tag = fallback(signed.app.digest) + ".sig"
    for tag in ("1.0", sig_tag):
        subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{signed.host}/team/app:{tag}",
                        f"oci:{layout}:{tag}"], check=True, capture_output=True)
    dest = fresh_registry()
    p = porter("import", str(layout), f"{dest.host}/team/app", "--json")
    assert p.returncode == 0, p.stderr
    assert sha(get_manifest(dest.url, "team/app", sig_tag).content) == signed.sig
    assert sha(get_manifest(dest.url, "team/app", "1.0").content) == signed.app.digest


def test_prune_removes_attachments_with_their_images(tools, tmp_path):
    reg = Registry(tmp_path / "r", free_port()).start()
    try:
        s = Seeder(reg.url)
        old = s.image("ci/build", "1.0.0", [tar_layer({"x": b"1"})], fmt="oci")
        new = s.image("ci/build", "1.0.1", [tar_layer({"x": b"2"})], fmt="oci")
        cosign_sign(reg, "ci/build", old.digest)
        cosign_sign(reg, "ci/build", new.digest)
        p = porter("prune", f"{reg.host}/ci/build", "--keep-last", "1")
        assert p.returncode == 0, p.stderr
        tags = httpx.get(f"{reg.url}/v2/ci/build/tags/list").json()["tags"]
        assert sorted(tags) == sorted(["1.0.1", fallback(new.digest) + ".sig"])
    finally:
        reg.stop()
