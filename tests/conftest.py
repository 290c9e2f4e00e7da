"""Shared fixtures. Real data lives in ../shared beside the repository; tests that need it
skip with a loud reason when it is absent."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EXAMPLES = ROOT / "examples" / "docs"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"SHARED DATA MISSING: {path} (clone the repo next to ../shared)")
    return path


@pytest.fixture
def shared():
    return shared_path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer, 64-wide BERT with the real Chinese vocabulary, randomly initialised."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = shared_path("models", "m3e-small", "vocab.txt")
    tok = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tfidf_model(tmp_path_factory):
    """The TF-IDF baseline trained on the shared annotations (seconds), shared by the suite."""
    from typer.testing import CliRunner

    from policytag.cli import app

    out = tmp_path_factory.mktemp("models") / "tfidf"
    # --cv 0: the suite needs a working model, not its out-of-fold estimate (tested on its own)
    result = CliRunner().invoke(app, ["train", "--model", "tfidf", "--cv", "0", "--data",
                                      str(shared_path("data", "annotations", "ihms-train.json")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


# ---- a real Label Studio, one per test session (tests/test_studio.py, tests/test_medsec.py) ----
ADMIN = ("admin@policytag.test", "admin-pass-4821")


def label_studio_bin() -> str | None:
    return os.environ.get("LABEL_STUDIO_BIN") or shutil.which("label-studio") or (
        str(ROOT / ".lsvenv" / "bin" / "label-studio") if (ROOT / ".lsvenv" / "bin" / "label-studio").exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


POLICYTAG = shutil.which("policytag") or str(Path(sys.executable).with_name("policytag"))


def wait_until_up(proc: subprocess.Popen, probe: str, timeout: float, what: str, output, interval: float) -> None:
    """Poll `probe` until it answers 200; a process that exits first or a timeout raises, with
    `output()` (its log) when it died. Both servers the tests start are waited for this way."""
    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(probe, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {output()}")
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} did not become ready in {timeout:.0f} s")
        time.sleep(interval)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def serving(model_dir: Path, env: dict[str, str], timeout: float = 120):
    """A real `policytag serve` process on a free port; yields its URL once /readyz says ready,
    stops it afterwards. Its output is shown if it dies while starting."""
    port = free_port()
    proc = subprocess.Popen([POLICYTAG, "serve", "--model", str(model_dir), "--port", str(port)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, f"{url}/readyz", timeout, "policytag serve", proc.stdout.read, interval=0.2)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def studio(tmp_path_factory):
    exe = label_studio_bin()
    if not exe:
        pytest.skip("LABEL STUDIO NOT INSTALLED: set LABEL_STUDIO_BIN (tests/run.sh installs it into .lsvenv)")
    data_dir = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("USERNAME", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_URL")}
    # Our ML backend runs on loopback: allow Label Studio to call it (its defaults block local addresses).
    env.update(LABEL_STUDIO_USERNAME=ADMIN[0], LABEL_STUDIO_PASSWORD=ADMIN[1], ML_BLOCK_LOCAL_IP="false",
               SSRF_PROTECTION_ENABLED="false")
    log = open(data_dir / "server.log", "w")
    proc = subprocess.Popen([exe, "start", "--no-browser", "--data-dir", str(data_dir), "-p", str(port),
                             "--internal-host", "127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(proc, f"{url}/health", 300, "Label Studio",
                  lambda: (data_dir / "server.log").read_text()[-2000:], interval=1)
    from policytag.labels.studio import connect, create_personal_access_token

    token = create_personal_access_token(url, *ADMIN)
    yield {"url": url, "token": token, "client": connect(url, token), "log": data_dir / "server.log"}
    stop(proc)


