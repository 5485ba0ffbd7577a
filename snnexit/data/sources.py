"""Where each data set is published, and :func:`ensure_downloaded`: its archives fetched,
verified and unpacked once into a data folder (``--download``; ``load_dataset(download=True)``).

The URLs and checksums below are facts read from the sources of torchvision, tonic and
SpikingJelly (their code is not used); each entry says where. A data set whose publisher gives
no stable public URL (DVS128 Gesture's originals sit behind a Box folder: SpikingJelly's
``DVS128Gesture.downloadable()`` is False) is fetched from the stable copy those tools use.

The data folder is ``--data-dir`` when given (as in torchvision, the download lands where the
data is read), else ``<cache>/data/<data set>`` (``$SNNEXIT_CACHE`` or ``~/.cache/snnexit``).
"""

from __future__ import annotations

import fcntl
import sys
from contextlib import contextmanager
from pathlib import Path

from snnexit.data.archives import extract, is_done
from snnexit.data.builtin import is_built_in
from snnexit.data.cifar import find_cifar_root
from snnexit.data.download import Archive, archive_url, fetch, mirror, verify_local
from snnexit.data.events.layouts import find_layout
from snnexit.data.events.simulator import default_cache_dir
from snnexit.errors import SnnexitError
from snnexit.progress import ProgressLog

_MENDELEY = "https://data.mendeley.com/public-files/datasets"
_CIFAR10_DVS_FILES = {  # class -> (figshare file id, md5): SpikingJelly's CIFAR10DVS.resource_url_md5()
    "airplane": (7712788, "0afd5c4bf9ae06af762a77b180354fdd"),
    "automobile": (7712791, "8438dfeba3bc970c94962d995b1b9bdd"),
    "bird": (7712794, "a9c207c91c55b9dc2002dc21c684d785"),
    "cat": (7712812, "52c63c677c2b15fa5146a8daf4d56687"),
    "deer": (7712815, "b6bf21f6c04d21ba4e23fc3e36c8a4a3"),
    "dog": (7712818, "f379ebdf6703d16e0a690782e62639c3"),
    "frog": (7712842, "cad6ed91214b1c7388a5f6ee56d08803"),
    "horse": (7712851, "e7cbbf77bec584ffbf913f00e682782a"),
    "ship": (7712836, "41c7bd7d6b251be82557c6cce9a7d5c9"),
    "truck": (7712839, "89f3922fd147d9aeff89e76a2b0b70a7"),
}

SOURCES: dict[str, tuple[Archive, ...]] = {
    # torchvision/datasets/cifar.py (CIFAR10.url, tgz_md5): the archive unpacks to cifar-10-batches-py/
    "cifar10": (Archive("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
                        "md5:c58f30108f718f92721af3b95e74349a"),),
    # torchvision/datasets/cifar.py (CIFAR100): unpacks to cifar-100-python/
    "cifar100": (Archive("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "cifar-100-python.tar.gz",
                         "md5:eb9058c3a382ffc7106e4002c42a8d85"),),
    # tonic/datasets/nmnist.py (the authors' Mendeley Data deposit; train_md5 / test_md5, folders Train/ and
    # Test/); SpikingJelly's NMNIST.resource_url_md5() gives the same md5s for Train.zip / Test.zip
    "nmnist": (
        Archive(f"{_MENDELEY}/468j46mzdv/files/39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded", "Train.zip",
                "md5:20959b8e626244a1b502305a9e6e2031"),
        Archive(f"{_MENDELEY}/468j46mzdv/files/05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded", "Test.zip",
                "md5:69ca8762b2fe404d9b9bad1103e97832"),
    ),
    # tonic/datasets/ncaltech101.py (Mendeley Data, file_md5); SpikingJelly's NCaltech101 gives the same md5
    # for Caltech101.zip, which unpacks to Caltech101/<category>/*.bin
    "ncaltech101": (Archive(f"{_MENDELEY}/cy6cvx3ryv/files/36b5c52a-b49d-4853-addb-a836a8883e49/file_downloaded",
                            "Caltech101.zip", "md5:66201824eabb0239c7ab992480b50ba3"),),
    # the authors' figshare deposit of the AEDAT 2.0 originals, one zip per class (SpikingJelly's
    # CIFAR10DVS.resource_url_md5(); tonic's single CIFAR10DVS.zip holds AEDAT 4 conversions instead)
    "cifar10_dvs": tuple(Archive(f"https://ndownloader.figshare.com/files/{fid}", f"{cls}.zip", f"md5:{md5}", into=cls)
                         for cls, (fid, md5) in _CIFAR10_DVS_FILES.items()),
    # tonic/datasets/dvsgesture.py (train_url / train_md5, test_url / test_md5): tonic's figshare copy with the
    # recordings already cut into one .npy per gesture (timestamps in ms); the IBM originals have no stable URL
    "dvs_gesture": (
        Archive("https://figshare.com/ndownloader/files/38022171", "ibmGestureTrain.tar.gz",
                "md5:3a8f0d4120a166bac7591f77409cb105"),
        Archive("https://figshare.com/ndownloader/files/38020584", "ibmGestureTest.tar.gz",
                "md5:56070e45dadaa85fff82e0fbfbc06de5"),
    ),
}


def check_downloadable(name: str) -> tuple[Archive, ...]:
    """The archives of ``name``, or a one-line error: built in, or no public download."""
    if is_built_in(name):
        raise SnnexitError(f"data set {name!r} is built in: --download does not apply")
    if name not in SOURCES:
        raise SnnexitError(f"data set {name!r} has no public download; pass its local folder (--data-dir). "
                           f"Downloadable: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def default_data_folder(name: str, cache_dir=None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "data" / name


def _readable(name: str, folder: Path) -> bool:
    """Can the data set's reader find a copy in ``folder`` (ours, or one that torchvision, tonic
    or SpikingJelly left there)? Checked by file names only, before any download."""
    try:
        if name in ("cifar10", "cifar100"):
            find_cifar_root(name, folder)
        else:
            find_layout(name, folder)
        return True
    except SnnexitError:
        return False


@contextmanager
def _folder_lock(folder: Path):
    """One process at a time downloads into a folder (several processes of a torchrun job wait
    for the first, then find the data there)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".snnexit-download.lock", "a")
    except OSError as exc:
        raise SnnexitError(f"cannot download into {folder}: {exc.strerror or exc}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_downloaded(name: str, folder=None, cache_dir=None, *, log=None, progress: bool | None = None,
                      mirror_base: str | None = None) -> Path:
    """The folder holding data set ``name``: fetched, verified and unpacked there unless a
    finished download (the journal) or a copy the reader can read is already there, in which
    case no request is made. ``progress``: a bar on a terminal (None: when stderr is one),
    else ``log`` lines (None: on stderr with the elapsed time)."""
    archives = check_downloadable(name)
    if log is None:
        log = ProgressLog()
    bar = sys.stderr.isatty() if progress is None else bool(progress)
    folder = Path(folder).expanduser() if folder is not None else default_data_folder(name, cache_dir)
    if folder.exists() and not folder.is_dir():
        raise SnnexitError(f"cannot download {name} into {folder}: it is a file, not a folder")
    base = mirror() if mirror_base is None else mirror_base.rstrip("/") or None
    with _folder_lock(folder):
        todo = [a for a in archives if not is_done(folder, a.filename, a.checksum)]
        if not todo or (len(todo) == len(archives) and _readable(name, folder)):
            return folder
        for archive in todo:
            url = archive_url(archive, name, base)
            path = folder / archive.filename
            if path.is_file():  # put there by hand, or a finished download whose extraction was killed
                verify_local(path, archive.checksum, url)
            else:
                log(f"downloading {name}: {url} -> {path}")
                fetch(url, path, archive.checksum, log=log, bar=bar)
            extract(path, folder, archive.checksum, archive.into, log=log)
        log(f"{name} is ready in {folder}")
    return folder
