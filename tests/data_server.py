"""A local HTTP server for the download tests (loopback only, in a thread), and synthetic
archives of every downloadable data set in its published format and folder structure.

``DataServer.faults[path]`` is a list of faults, one used per request to that path:
``("cut", n)`` sends the full ``Content-Length`` but only ``n`` bytes and drops the connection;
``("status", code)`` answers with that HTTP error; ``("no-range",)`` ignores a ``Range`` header;
``("redirect", path)`` answers 302 to ``path`` (as figshare and Mendeley Data do).
Every request is recorded (path, Range header).
"""

from __future__ import annotations

import io
import pickle
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from test_events_formats import cifar10_dvs_bytes, ncaltech_bytes, random_events


class DataServer:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                fault = server.faults.get(self.path, [None]).pop(0) if server.faults.get(self.path) else None
                if fault and fault[0] == "status":
                    self.send_error(fault[1])
                    return
                if fault and fault[0] == "redirect":
                    self.send_response(302)
                    self.send_header("Location", fault[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                asked = self.headers.get("Range")
                if asked and not (fault and fault[0] == "no-range"):
                    start = int(asked.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault and fault[0] == "cut":
                    self.wfile.write(body[: fault[1]])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- archives ----------------------------------------------------------------------------------
def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def cifar_members(name: str, per_batch: int = 10, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        out = {}
        for batch in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            out[f"cifar-10-batches-py/{batch}"] = _pickle({
                b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                b"labels": [int(v) for v in rng.integers(0, 10, per_batch)]})
        out["cifar-10-batches-py/batches.meta"] = _pickle({b"label_names": [f"c{i}".encode() for i in range(10)]})
        return out
    out = {}
    for part, n in (("train", 5 * per_batch), ("test", per_batch)):
        out[f"cifar-100-python/{part}"] = _pickle({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                                   b"fine_labels": [int(v) for v in rng.integers(0, 100, n)]})
    return out


def nmnist_members(part: str, per_class: int, seed: int = 0) -> dict[str, bytes]:
    """``Train/<digit>/NNNNN.bin`` (or Test/) as the published zips hold them."""
    return {f"{part}/{d}/{seed + 100 * d + i:05d}.bin": ncaltech_bytes(random_events(40, 34, 34, t_max=300_000,
                                                                                     seed=seed + 100 * d + i))
            for d in range(10) for i in range(per_class)}


def gesture_npy(label: int, seed: int) -> bytes:
    """One gesture of tonic's copy: an (N, 4) array of x, y, p, t in ms."""
    ev = random_events(60, 128, 128, t_max=6000, seed=seed)
    buf = io.BytesIO()
    np.save(buf, np.stack([ev["x"], ev["y"], ev["p"], ev["t"]], axis=1).astype(np.int64))
    return buf.getvalue()


def synthetic_archives(name: str) -> dict[str, bytes]:
    """file name -> bytes of every archive of ``name``, small but in the published structure."""
    if name in ("cifar10", "cifar100"):
        return {f"{'cifar-10' if name == 'cifar10' else 'cifar-100'}-python.tar.gz": tar_bytes(cifar_members(name))}
    if name == "nmnist":
        return {"Train.zip": zip_bytes(nmnist_members("Train", 3)), "Test.zip": zip_bytes(nmnist_members("Test", 1, 7))}
    if name == "ncaltech101":
        return {"Caltech101.zip": zip_bytes({f"Caltech101/{cls}/image_{i:04d}.bin":
                                             ncaltech_bytes(random_events(30, 180, 240, seed=10 * c + i))
                                             for c, cls in enumerate(["accordion", "airplanes"]) for i in range(3)})}
    if name == "cifar10_dvs":
        from snnexit.data.events import CIFAR10_DVS_CLASSES

        return {f"{cls}.zip": zip_bytes({f"{cls}/cifar10_{cls}_{i}.aedat":
                                         cifar10_dvs_bytes(random_events(30, 128, 128, seed=10 * c + i))
                                         for i in range(3)})
                for c, cls in enumerate(CIFAR10_DVS_CLASSES)}
    if name == "dvs_gesture":
        train = {f"ibmGestureTrain/user{u:02d}_led/{label}.npy": gesture_npy(label, 20 * u + label)
                 for u in range(1, 4) for label in range(11)}
        test = {f"ibmGestureTest/user04_led/{label}.npy": gesture_npy(label, 100 + label) for label in range(11)}
        return {"ibmGestureTrain.tar.gz": tar_bytes(train), "ibmGestureTest.tar.gz": tar_bytes(test)}
    raise KeyError(name)
