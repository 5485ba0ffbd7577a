"""``--download``: fetch, verify, resume, extract safely and atomically, reuse without a request.

A local HTTP server (tests/data_server.py) serves synthetic archives of every downloadable data
set in its published format and folder structure; the checksums are patched in here only.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import stat
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from data_server import DataServer, nmnist_members, synthetic_archives, tar_bytes, zip_bytes
from snnexit.cli import main
from snnexit.data import load_dataset
from snnexit.data import sources
from snnexit.data.archives import JOURNAL, PARTIAL
from snnexit.data.download import Archive, fetch
from snnexit.errors import SnnexitError
from snnexit.runs.config_file import load_config

DOWNLOADABLE = sorted(sources.SOURCES)
SIZES = {  # (train + val, test) of the synthetic archives
    "cifar10": (50, 10), "cifar100": (50, 10), "nmnist": (30, 10), "ncaltech101": (4, 2),
    "cifar10_dvs": (20, 10), "dvs_gesture": (33, 11),
}


def md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


@pytest.fixture
def server():
    s = DataServer().start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _no_mirror(monkeypatch, tmp_path):
    monkeypatch.delenv("SNNEXIT_DATA_MIRROR", raising=False)
    monkeypatch.setenv("SNNEXIT_CACHE", str(tmp_path / "cache"))


def publish(server, monkeypatch, name: str, archives: dict[str, bytes] | None = None, checksums: dict | None = None):
    """Serve ``archives`` (default: the synthetic ones) at ``/<name>/<file>`` and point the source
    table at them, with their checksums (or ``checksums``)."""
    archives = synthetic_archives(name) if archives is None else archives
    table = {a.filename: a for a in sources.SOURCES[name]}
    patched = []
    for filename, data in archives.items():
        server.files[f"/{name}/{filename}"] = data
        into = table[filename].into if filename in table else ""
        patched.append(Archive(server.url(f"/{name}/{filename}"), filename, (checksums or {}).get(filename, md5(data)),
                               into))
    monkeypatch.setitem(sources.SOURCES, name, tuple(patched))
    return archives


def closed_port_url(path: str = "/x.zip") -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("name", DOWNLOADABLE)
def test_clean_download_then_the_cache_without_a_request(server, monkeypatch, tmp_path, name):
    archives = publish(server, monkeypatch, name)
    lines = []
    data = load_dataset(name, 0, cache_dir=tmp_path / "c", download=True, log=lines.append, progress=False)
    assert (len(data.train) + len(data.val), len(data.test)) == SIZES[name]
    assert sorted(p for p, _ in server.requests) == sorted(f"/{name}/{f}" for f in archives)
    assert all(r is None for _, r in server.requests)  # nothing to resume
    folder = tmp_path / "c" / "data" / name
    journal = json.loads((folder / JOURNAL).read_text())["archives"]
    assert {k: v["state"] for k, v in journal.items()} == {f: "done" for f in archives}
    assert not list(folder.glob("*.part")) and not (folder / PARTIAL).exists()
    assert any(line.endswith(f"{name} is ready in {folder}") for line in lines)
    again = load_dataset(name, 0, cache_dir=tmp_path / "c", download=True, log=lines.append, progress=False)
    assert len(server.requests) == len(archives)  # the second run made no request
    assert again.test.x.shape == data.test.x.shape


def test_download_into_data_dir_and_mirror(server, monkeypatch, tmp_path):
    archives = synthetic_archives("cifar10")
    server.files.update({f"/cifar10/{f}": d for f, d in archives.items()})
    unreachable = closed_port_url("/cifar-10-python.tar.gz")
    monkeypatch.setitem(sources.SOURCES, "cifar10", (Archive(unreachable, "cifar-10-python.tar.gz",
                                                              md5(archives["cifar-10-python.tar.gz"])),))
    monkeypatch.setenv("SNNEXIT_DATA_MIRROR", "")  # empty: unset, the publisher's URL
    with pytest.raises(SnnexitError) as exc:
        load_dataset("cifar10", 0, root=str(tmp_path / "mine"), download=True, log=lambda m: None)
    assert unreachable in one_line(exc)
    monkeypatch.setenv("SNNEXIT_DATA_MIRROR", server.base + "/")
    data = load_dataset("cifar10", 0, root=str(tmp_path / "mine"), download=True, log=lambda m: None)
    assert len(data.test) == 10 and (tmp_path / "mine" / "cifar-10-batches-py" / "test_batch").is_file()
    assert server.requests == [("/cifar10/cifar-10-python.tar.gz", None)]


def test_a_mirror_with_another_file_is_refused(server, monkeypatch, tmp_path):
    publish(server, monkeypatch, "cifar100")
    server.files["/cifar100/cifar-100-python.tar.gz"] = tar_bytes({"cifar-100-python/train": b"x"})
    monkeypatch.setenv("SNNEXIT_DATA_MIRROR", server.base)
    with pytest.raises(SnnexitError, match="md5 of the .* bytes received is .*expected") as exc:
        load_dataset("cifar100", 0, download=True, log=lambda m: None)
    one_line(exc)
    assert not (tmp_path / "cache" / "data" / "cifar100" / "cifar-100-python").exists()


def test_interrupted_then_resumed_with_a_range_request(server, monkeypatch, tmp_path):
    archives = publish(server, monkeypatch, "nmnist")
    server.faults["/nmnist/Train.zip"] = [("cut", 1000)]
    lines = []
    data = load_dataset("nmnist", 0, download=True, log=lines.append, progress=False)
    assert len(data.test) == 10
    train = [r for p, r in server.requests if p == "/nmnist/Train.zip"]
    assert train == [None, "bytes=1000-"]
    assert any("connection dropped" in line for line in lines) and any("resuming Train.zip" in line for line in lines)
    assert (tmp_path / "cache" / "data" / "nmnist" / "Train.zip").read_bytes() == archives["Train.zip"]


def test_a_killed_run_resumes_in_the_next(server, monkeypatch, tmp_path):
    archives = publish(server, monkeypatch, "nmnist")
    folder = tmp_path / "cache" / "data" / "nmnist"
    server.faults["/nmnist/Test.zip"] = [("cut", 700)]
    with pytest.raises(SnnexitError, match="interrupted 1 times .*run again to resume") as exc:
        fetch(server.url("/nmnist/Test.zip"), folder / "Test.zip", md5(archives["Test.zip"]), log=lambda m: None,
              attempts=1)
    one_line(exc)
    assert (folder / "Test.zip.part").stat().st_size == 700 and not (folder / "Test.zip").exists()
    load_dataset("nmnist", 0, download=True, log=lambda m: None)
    assert ("/nmnist/Test.zip", "bytes=700-") in server.requests
    assert (folder / "Test.zip").read_bytes() == archives["Test.zip"]


def test_a_redirect_is_followed_and_the_range_goes_with_it(server, monkeypatch, tmp_path):
    archives = publish(server, monkeypatch, "cifar100")
    name = "/cifar100/cifar-100-python.tar.gz"
    server.files["/storage/blob"] = archives["cifar-100-python.tar.gz"]
    server.faults[name] = [("redirect", "/storage/blob"), ("redirect", "/storage/blob")]
    server.faults["/storage/blob"] = [("cut", 3000)]
    assert len(load_dataset("cifar100", 0, download=True, log=lambda m: None).test) == 10
    assert server.requests == [(name, None), ("/storage/blob", None), (name, "bytes=3000-"),
                               ("/storage/blob", "bytes=3000-")]


def test_a_server_that_ignores_the_range_starts_over(server, monkeypatch, tmp_path):
    archives = publish(server, monkeypatch, "cifar10")
    name = "/cifar10/cifar-10-python.tar.gz"
    server.faults[name] = [("cut", 5000), ("no-range",)]
    load_dataset("cifar10", 0, download=True, log=lambda m: None)
    assert [r for _, r in server.requests] == [None, "bytes=5000-"]
    got = (tmp_path / "cache" / "data" / "cifar10" / "cifar-10-python.tar.gz").read_bytes()
    assert got == archives["cifar-10-python.tar.gz"]


def test_a_connection_that_always_drops_gives_up_and_keeps_the_part(server, monkeypatch, tmp_path):
    publish(server, monkeypatch, "cifar10")
    server.faults["/cifar10/cifar-10-python.tar.gz"] = [("cut", 100), ("cut", 100), ("cut", 100)]
    with pytest.raises(SnnexitError, match="interrupted 3 times") as exc:
        load_dataset("cifar10", 0, download=True, log=lambda m: None)
    one_line(exc)
    assert (tmp_path / "cache" / "data" / "cifar10" / "cifar-10-python.tar.gz.part").stat().st_size == 300
    assert len(server.requests) == 3


def test_a_truncated_archive_is_refused_and_removed(server, monkeypatch, tmp_path):
    full = synthetic_archives("nmnist")
    publish(server, monkeypatch, "nmnist", {"Train.zip": full["Train.zip"][:-200], "Test.zip": full["Test.zip"]},
            checksums={"Train.zip": md5(full["Train.zip"])})
    with pytest.raises(SnnexitError, match="Train.zip: md5 of the .* bytes received is") as exc:
        load_dataset("nmnist", 0, download=True, log=lambda m: None)
    one_line(exc)
    folder = tmp_path / "cache" / "data" / "nmnist"
    assert not (folder / "Train.zip").exists() and not (folder / "Train.zip.part").exists()
    assert not (folder / "Train").exists() and not (folder / JOURNAL).exists()


def test_a_wrong_checksum_is_refused_in_one_line(server, monkeypatch, tmp_path):
    publish(server, monkeypatch, "ncaltech101", checksums={"Caltech101.zip": md5(b"another file")})
    with pytest.raises(SnnexitError) as exc:
        load_dataset("ncaltech101", 0, download=True, log=lambda m: None)
    text = one_line(exc)
    assert f"expected {hashlib.md5(b'another file').hexdigest()}" in text and "removed it" in text
    assert list((tmp_path / "cache" / "data" / "ncaltech101").iterdir()) == [
        tmp_path / "cache" / "data" / "ncaltech101" / ".snnexit-download.lock"]


def test_a_server_error_names_the_url_the_checksum_and_the_folder(server, monkeypatch, tmp_path):
    archives = publish(server, monkeypatch, "cifar10")
    server.faults["/cifar10/cifar-10-python.tar.gz"] = [("status", 500)]
    with pytest.raises(SnnexitError) as exc:
        load_dataset("cifar10", 0, download=True, log=lambda m: None)
    text = one_line(exc)
    assert server.url("/cifar10/cifar-10-python.tar.gz") in text and "HTTP 500" in text
    assert md5(archives["cifar-10-python.tar.gz"]) in text and str(tmp_path / "cache" / "data" / "cifar10") in text


def test_offline_names_the_url_the_checksum_and_the_folder(monkeypatch, tmp_path):
    url = closed_port_url("/Caltech101.zip")
    monkeypatch.setitem(sources.SOURCES, "ncaltech101", (Archive(url, "Caltech101.zip", md5(b"z")),))
    with pytest.raises(SnnexitError) as exc:
        load_dataset("ncaltech101", 0, root=str(tmp_path / "here"), download=True, log=lambda m: None)
    text = one_line(exc)
    assert url in text and md5(b"z") in text and f"into {tmp_path / 'here'}/ as Caltech101.zip" in text
    # put by hand: read from the folder, checked, no request
    (tmp_path / "here" / "Caltech101.zip").write_bytes(synthetic_archives("ncaltech101")["Caltech101.zip"])
    with pytest.raises(SnnexitError, match="differs from the published"):  # the test's checksum is md5(b"z")
        load_dataset("ncaltech101", 0, root=str(tmp_path / "here"), download=True, log=lambda m: None)
    assert not (tmp_path / "here" / "Caltech101.zip").exists()  # the bad file removed


def _symlink_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    return buf.getvalue()


def _zip_symlink() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("cifar-10-batches-py/data_batch_1")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.mark.parametrize("archive,member", [
    (tar_bytes({"cifar-10-batches-py/../../escaped.txt": b"x"}), "../../escaped.txt"),
    (tar_bytes({"/tmp/snnexit-absolute.txt": b"x"}), "is an absolute path"),
    (_symlink_tar(), "is a link"),
    (zip_bytes({"cifar-10-batches-py/test_batch": b"ok", "../escaped.txt": b"x"}), "climbs out"),
    (zip_bytes({"C:/Windows/escaped.txt": b"x"}), "names a drive"),
    (_zip_symlink(), "is a link"),
])
def test_a_member_outside_the_folder_is_refused(server, monkeypatch, tmp_path, archive, member):
    publish(server, monkeypatch, "cifar10", {"cifar-10-python.tar.gz": archive})
    with pytest.raises(SnnexitError, match="refused, nothing was extracted") as exc:
        load_dataset("cifar10", 0, download=True, log=lambda m: None)
    assert member in one_line(exc)
    folder = tmp_path / "cache" / "data" / "cifar10"
    assert not (tmp_path / "cache" / "escaped.txt").exists() and not Path("/tmp/snnexit-absolute.txt").exists()
    assert sorted(p.name for p in folder.iterdir()) == [".snnexit-download.lock", "cifar-10-python.tar.gz"]


def test_a_killed_extraction_is_never_trusted(server, monkeypatch, tmp_path):
    archives = publish(server, monkeypatch, "nmnist")
    folder = tmp_path / "cache" / "data" / "nmnist"
    # killed while extracting Train.zip: the archive was whole, its partial folder half made
    (folder / PARTIAL / "Train.zip" / "Train" / "3").mkdir(parents=True)
    (folder / PARTIAL / "Train.zip" / "Train" / "3" / "junk.bin").write_bytes(b"12345")
    (folder / "Train.zip").write_bytes(archives["Train.zip"])
    # killed while moving Test.zip's entries into place: the journal says which
    (folder / "Test" / "0").mkdir(parents=True)
    (folder / "Test" / "0" / "half.bin").write_bytes(b"12345")
    (folder / "Test.zip").write_bytes(archives["Test.zip"])
    (folder / JOURNAL).write_text(json.dumps({"archives": {"Test.zip": {
        "state": "placing", "checksum": md5(archives["Test.zip"]), "into": "", "entries": ["Test"]}}}))
    data = load_dataset("nmnist", 0, download=True, log=lambda m: None)
    assert server.requests == []  # both archives were there and whole
    assert len(data.test) == 10 and not (folder / "Test" / "0" / "half.bin").exists()
    assert not list(folder.rglob("junk.bin")) and not (folder / PARTIAL).exists()


def test_a_folder_we_did_not_make_is_not_overwritten(server, monkeypatch, tmp_path):
    publish(server, monkeypatch, "nmnist")
    (tmp_path / "mine" / "Train" / "0").mkdir(parents=True)
    (tmp_path / "mine" / "Train" / "0" / "keep.bin").write_bytes(b"abcde")
    with pytest.raises(SnnexitError, match="Train already exists and is not from a download of Train.zip") as exc:
        load_dataset("nmnist", 0, root=str(tmp_path / "mine"), download=True, log=lambda m: None)
    one_line(exc)
    assert (tmp_path / "mine" / "Train" / "0" / "keep.bin").read_bytes() == b"abcde"


def test_a_copy_another_tool_left_needs_no_download(server, monkeypatch, tmp_path):
    publish(server, monkeypatch, "nmnist")
    tonic = tmp_path / "tonic" / "NMNIST"  # tonic's save_to/NMNIST/Train, Test
    for part, n in (("Train", 3), ("Test", 1)):
        for member, data in nmnist_members(part, n).items():
            (tonic / member).parent.mkdir(parents=True, exist_ok=True)
            (tonic / member).write_bytes(data)
    data = load_dataset("nmnist", 0, root=str(tmp_path / "tonic"), download=True, log=lambda m: None)
    assert len(data.test) == 10 and server.requests == []


def test_progress_is_one_line_per_tenth_when_piped(server, capsys, tmp_path):
    server.files["/big.bin"] = bytes(range(256)) * 8192  # 2 MiB: 32 reads
    lines = []
    fetch(server.url("/big.bin"), tmp_path / "big.bin", md5(server.files["/big.bin"]), log=lines.append, bar=False)
    assert len(lines) == 10 and lines[-1].startswith("downloading big.bin: 100% (2.1 of 2.1 MB)")
    shown = [int(line.split(": ")[1].split("%")[0]) for line in lines]
    assert [s // 10 for s in shown] == list(range(1, 11))
    fetch(server.url("/big.bin"), tmp_path / "again.bin", md5(server.files["/big.bin"]), log=lines.append, bar=True)
    err = capsys.readouterr().err
    assert len(lines) == 10 and "downloading again.bin:" in err and "B/s" in err  # a bar on stderr, no lines


def test_one_process_at_a_time_downloads_into_a_folder(server, monkeypatch, tmp_path):
    archives = publish(server, monkeypatch, "cifar10")
    errors = []

    def load():
        try:
            load_dataset("cifar10", 0, download=True, log=lambda m: None)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(server.requests) == len(archives)


def test_download_is_a_config_key(tmp_path):
    (tmp_path / "c.toml").write_text('dataset = "nmnist"\ndownload = true\n')
    assert load_config(tmp_path / "c.toml").run.download is True
    (tmp_path / "d.toml").write_text('dataset = "digits"\ndownload = true\n')
    with pytest.raises(SnnexitError, match="built in: --download does not apply"):
        load_config(tmp_path / "d.toml")


def test_download_is_refused_where_it_does_not_apply():
    for name, message in (("digits", "built in"), ("imagefolder", "no public download")):
        with pytest.raises(SnnexitError, match=message):
            load_dataset(name, 0, download=True)


def test_cli_download_reaches_the_stages(server, monkeypatch, tmp_path, capsys):
    publish(server, monkeypatch, "nmnist")
    base = ["--dataset", "nmnist", "--download", "--epochs", "1", "--width", "4", "--cache-dir", str(tmp_path / "c")]
    assert main(["train", *base, "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "downloading Train.zip: 100%" in err and "nmnist is ready in" in err
    assert len(server.requests) == 2
    assert main(["train", *base, "--out", str(tmp_path / "run2")]) == 0
    assert len(server.requests) == 2  # the second run reused the data
    assert main(["report", "--download", "--out", str(tmp_path / "run")]) == 2
    assert "report does not use --download" in capsys.readouterr().err
