"""Small file helpers every command uses: output-path guards, atomic writes that honour the
umask, an exclusive lock per output, JSON Lines, and one-line descriptions of file errors."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

MODEL_MARKER = "policytag.json"  # the file that makes a folder a policytag model directory


class OutputPathError(OSError):
    """An output path that must not or cannot be written; str() is a one-line message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class OutputBusy(OutputPathError):
    """Another process holds the lock on this output."""


# ---- guards ------------------------------------------------------------------------------------
def _existing_ancestor(path: Path) -> Path:
    """The nearest ancestor of `path` (or `path` itself) that exists, without following the
    final component beyond what the file system reports."""
    for p in [path, *path.parents]:
        if os.path.lexists(p):
            return p
    return Path(".")


def _check_parent(path: Path, what: str) -> None:
    """The folder that will hold `path` exists or can be created, and can be written."""
    parent = path.parent if str(path.parent) else Path(".")
    anc = _existing_ancestor(parent)
    if not anc.is_dir():
        raise OutputPathError(f"{path}: cannot write {what} here: {anc} is a file, not a folder")
    probe_dir = anc
    try:  # the real test (os.access lies for root and for read-only mounts)
        fd, probe = tempfile.mkstemp(prefix=".policytag-write-test.", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"{path}: cannot write {what} here: {probe_dir}: {describe_errno(exc)}") from None


def check_writable_file(path: str | Path, what: str = "the output file") -> Path:
    """Fail early, with a one-line OutputPathError, if `path` cannot be written as a file:
    it is a folder, it lies under a file, or its folder is read-only. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path} is a folder; {what} needs a file name (e.g. {path / 'out'}{path.suffix or ''})")
    if os.path.lexists(path) and not path.is_file() and not path.is_symlink():
        raise OutputPathError(f"{path} exists and is not a regular file; choose another path for {what}")
    _check_parent(path, what)
    return path


def is_model_dir(path: str | Path) -> bool:
    return (Path(path) / MODEL_MARKER).is_file()


def check_model_out_dir(path: str | Path, force: bool = False) -> Path:
    """Fail early, with a one-line OutputPathError, unless `path` may become a model directory:
    it does not exist yet, is an empty folder, or is already a policytag model directory (has
    policytag.json). An existing file is never replaced; a non-empty folder that is not a model
    is replaced only with `force=True`."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise OutputPathError(f"{path} is a file, not a model folder; refusing to replace it: choose another --out")
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise OutputPathError(f"{path}: cannot read this folder to check it: permission denied")
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        if entries and not is_model_dir(path) and not force:
            shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            raise OutputPathError(f"{path} exists and is not a policytag model folder (it holds {shown}); refusing to "
                                  "replace it: choose another --out, or pass --force to replace it")
    _check_parent(path, "the model folder")
    return path


# ---- permissions ------------------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | Path) -> None:
    """Give a file (0666) or a folder tree (0777) the permissions the user's umask asks for:
    mkstemp/mkdtemp create 0600/0700 whatever the umask is."""
    path = Path(path)
    mask = current_umask()
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            os.chmod(root, 0o777 & ~mask)
            for f in files:
                fp = os.path.join(root, f)
                if not os.path.islink(fp):
                    os.chmod(fp, 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


# ---- atomic writes ----------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds,
    so readers never see a half-written file. The path is checked first (a folder, a path under
    a file or a read-only folder fail at once with a one-line message); the new file gets the
    mode of the file it replaces, or 0666 less the umask."""
    path = Path(path)
    check_writable_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~current_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, data) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


# ---- one writer per output ------------------------------------------------------------------------
def lock_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[Path]:
    """Hold an exclusive, non-blocking lock on output `path` (and everything written beside it,
    such as a journal) for the block. A second process asking for the same path gets
    OutputBusy at once instead of interleaving its writes. The lock file `.NAME.lock` is
    removed on release; a crashed holder's lock is released by the kernel."""
    try:
        import fcntl
    except ImportError:  # not POSIX (Windows): no advisory locks; run unguarded rather than not at all
        yield lock_path(path)
        return

    path = Path(path)
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise OutputBusy(f"{path} is being written by another policytag process{who}; wait for it to finish "
                             "or choose another --out") from None
        except BaseException:
            os.close(fd)
            raise
        # The holder before us may have removed the lock file after we opened it: lock the
        # file that is at the path now, not an unlinked one.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


# ---- reading ------------------------------------------------------------------------------------
def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON Lines file; a bad line raises ValueError naming the file and line."""
    rows = []
    with open(path, encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from None
    return rows


def read_jsonl_tolerant(path: str | Path) -> tuple[list[dict], int]:
    """Read a journal that an interrupted writer (kill -9, power loss) may have left with a torn
    last line: that line is dropped and counted (0 or 1). A bad line anywhere else still raises."""
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    nonblank = [i for i, raw in enumerate(lines) if raw.strip()]
    last = nonblank[-1] if nonblank else -1
    rows, torn = [], 0
    for i in nonblank:
        try:
            rows.append(json.loads(lines[i].decode("utf-8-sig" if i == 0 else "utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if i == last:
                torn = 1
                continue
            raise ValueError(f"{path}:{i + 1}: invalid JSON in the middle of the file (not an interrupted write)") from None
    return rows, torn


# ---- errors ------------------------------------------------------------------------------------
_ERRNO_WORDS = {
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only file system",
    errno.EEXIST: "already exists",
    errno.ELOOP: "too many levels of symbolic links (a link loop)",
    errno.ENAMETOOLONG: "file name too long",
    errno.EDQUOT: "disk quota exceeded",
}


def describe_errno(exc: OSError) -> str:
    return _ERRNO_WORDS.get(exc.errno, exc.strerror or type(exc).__name__)


def describe_error(exc: BaseException) -> str:
    """One line for a file-system (or decoding) error, naming the path where there is one."""
    if isinstance(exc, OutputPathError):
        return str(exc)
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else ""
        if exc.filename2 is not None:
            where = f"{where} -> {exc.filename2}"
        text = describe_errno(exc) if exc.errno else str(exc)
        return f"{where}: {text}" if where else text
    if isinstance(exc, UnicodeError):
        return f"text is not valid {getattr(exc, 'encoding', 'UTF-8')}: {exc.reason if hasattr(exc, 'reason') else exc}"
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
