"""Seed 004 (PHAITA's robust loader) examples, as its guide writes them, with the import line
changed (`from phaita.utils.model_loader import …` → `from modelctl import …`).

The repos are made on the fixture Hub with a real tokenizer (the `tokenizers` package writes its
tokenizer.json); transformers loads it. No PyTorch here: models that need it are refused before
any byte is fetched, and their files are fetched by the same code, tested through fetch_pretrained.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.hubserver import HubServer, Repo, safetensors_bytes


def tokenizer_repo() -> dict[str, bytes]:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return {
        "README.md": b"# a test repo\n",
        "config.json": json.dumps({"model_type": "bert", "vocab_size": 3}).encode(),
        "tokenizer.json": tokenizer.to_str().encode(),
        "tokenizer_config.json": json.dumps(
            {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]"}
        ).encode(),
        "model.safetensors": safetensors_bytes({"w": ("F32", [64, 64])}),
        "pytorch_model.bin": b"\x80\x02not loaded when safetensors exist" * 100,
    }


@pytest.fixture
def deberta(hub: HubServer) -> Repo:
    repo = Repo("microsoft/deberta-v3-base", tokenizer_repo())
    hub.add(repo)
    return repo


def test_basic_usage_downloads_a_tokenizer_into_the_hf_cache(
    deberta: Repo, hub: HubServer, tmp_path: Path
) -> None:
    from modelctl import ModelDownloadError, robust_model_download  # noqa: F401 (the seed's import line)

    # Download a tokenizer with retry support
    tokenizer = robust_model_download(
        model_name="microsoft/deberta-v3-base", model_type="tokenizer", max_retries=3, timeout=300
    )

    assert tokenizer("hello world")["input_ids"] == [1, 2]
    fetched = sorted(r.path.rsplit("/", 1)[-1] for r in hub.file_gets())
    assert fetched == ["config.json", "tokenizer.json", "tokenizer_config.json"]  # no weights for a tokenizer
    # Where transformers and `hf` look: huggingface_hub's own cache reader finds every file.
    from huggingface_hub import try_to_load_from_cache

    cache = tmp_path / "hf-cache"
    for name in fetched:
        found = try_to_load_from_cache("microsoft/deberta-v3-base", name, cache_dir=cache)
        assert isinstance(found, str) and Path(found).read_bytes() == deberta.files[name], name
    repo = cache / "models--microsoft--deberta-v3-base"
    assert (repo / "refs" / "main").read_text() == deberta.commit
    assert os.readlink(repo / "snapshots" / deberta.commit / "tokenizer.json").startswith("../../blobs/")

    hub.reset_counters()
    again = robust_model_download("microsoft/deberta-v3-base", model_type="tokenizer")
    assert again("world hello")["input_ids"] == [2, 1] and hub.file_gets() == []  # verified on disk: reused


def test_offline_mode(deberta: Repo, hub: HubServer, tmp_path: Path) -> None:
    from modelctl import ModelDownloadError, robust_model_download

    robust_model_download("microsoft/deberta-v3-base", model_type="tokenizer")
    hub.reset_counters()
    cached = robust_model_download("microsoft/deberta-v3-base", model_type="tokenizer", allow_offline=True)
    assert cached("hello")["input_ids"] == [1] and hub.requests == []

    # Only use cached models (no network access)
    try:
        model = robust_model_download(model_name="gpt2", model_type="tokenizer", allow_offline=True)
    except ModelDownloadError as e:
        print(f"Model not cached: {e}")
        text = str(e)
    else:
        pytest.fail(f"gpt2 is not cached, yet {model!r} was returned")
    assert hub.requests == []
    assert text.startswith("Model gpt2 not found in cache and offline mode is enabled")
    assert f"Cache location: {tmp_path / 'hf-cache'}" in text  # the cache location
    assert "hf download gpt2" in text  # the manual download command
    assert "allow_offline=False and HF_HUB_OFFLINE unset" in text  # how to leave offline mode

    from modelctl.pretrained import _check_cached_model

    assert _check_cached_model("microsoft/deberta-v3-base") and not _check_cached_model("gpt2")


def test_network_failures_end_in_the_seeds_error(deberta: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelctl import ModelDownloadError, robust_model_download

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    try:
        robust_model_download("microsoft/deberta-v3-base", model_type="tokenizer", max_retries=2, timeout=5)
    except ModelDownloadError as e:
        text = str(e)
    else:
        pytest.fail("a Hub that cannot be reached gave a model")
    assert text.startswith("Failed to download model microsoft/deberta-v3-base after 2 attempts: ")
    assert "Troubleshooting:" in text and "hf download microsoft/deberta-v3-base" in text


def test_the_weights_transformers_reads(hub: HubServer, tmp_path: Path) -> None:
    from modelctl.pretrained import fetch_pretrained

    hub.add(Repo("org/both", tokenizer_repo()))
    only_bin = {k: v for k, v in tokenizer_repo().items() if k != "model.safetensors"}
    hub.add(Repo("org/old", only_bin))
    both = fetch_pretrained("org/both", weights=True)
    assert sorted(p.name for p in both.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]  # safetensors, never also the .bin
    old = fetch_pretrained("org/old", weights=True)
    assert (old / "pytorch_model.bin").read_bytes() == only_bin["pytorch_model.bin"]


def test_a_model_without_pytorch_is_refused_before_any_byte(deberta: Repo, hub: HubServer) -> None:
    from modelctl import ConfigurationError, load_model_and_tokenizer, robust_model_download

    for call in (robust_model_download, load_model_and_tokenizer):
        with pytest.raises(ConfigurationError, match=r"needs PyTorch"):
            call("microsoft/deberta-v3-base", model_type="auto", max_retries=3, timeout=300)
    assert hub.requests == []


def test_without_transformers_the_error_names_the_extra(
    deberta: Repo, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelctl import ConfigurationError, robust_model_download

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(ConfigurationError) as raised:
        robust_model_download("microsoft/deberta-v3-base", model_type="tokenizer")
    assert raised.value.hint == 'Install the extra: pip install "modelctl[transformers]".'
    assert hub.requests == []


def test_a_bad_blob_already_in_the_hf_cache_is_replaced_by_verified_bytes(
    deberta: Repo, hub: HubServer, tmp_path: Path
) -> None:
    from huggingface_hub import try_to_load_from_cache

    from modelctl import robust_model_download

    repo = tmp_path / "hf-cache" / "models--microsoft--deberta-v3-base"
    good = deberta.files["tokenizer.json"]
    bad = bytes([good[0] ^ 1]) + good[1:]  # same size, one bit off: what a size check would keep
    blob = repo / "blobs" / deberta.etag("tokenizer.json")
    blob.parent.mkdir(parents=True)
    blob.write_bytes(bad)
    link = repo / "snapshots" / deberta.commit / "tokenizer.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(deberta.commit)

    tokenizer = robust_model_download("microsoft/deberta-v3-base", model_type="tokenizer")
    assert tokenizer("hello world")["input_ids"] == [1, 2]
    found = try_to_load_from_cache("microsoft/deberta-v3-base", "tokenizer.json", cache_dir=repo.parent)
    assert isinstance(found, str) and Path(found).read_bytes() == good
    assert "tokenizer.json" in [
        r.path.rsplit("/", 1)[-1] for r in hub.file_gets()
    ]  # the bad blob was not reused


def test_a_revision_that_would_leave_the_cache_is_refused(
    deberta: Repo, hub: HubServer, tmp_path: Path
) -> None:
    from modelctl import ConfigurationError, ModelDownloadError, robust_model_download

    with pytest.raises((ConfigurationError, ModelDownloadError)):
        robust_model_download(
            "microsoft/deberta-v3-base", model_type="tokenizer", revision="../../../outside"
        )
    assert not (tmp_path / "outside").exists() and not (tmp_path / "hf-cache" / "outside").exists()
    with pytest.raises(ConfigurationError, match=r"not a Hub repo id"):
        robust_model_download("../etc/passwd", model_type="tokenizer")
    assert hub.file_gets() == []


def test_offline_an_hf_cache_snapshot_is_checked_before_it_is_handed_out(
    deberta: Repo, hub: HubServer, tmp_path: Path
) -> None:
    """A snapshot `hf` wrote (no modelctl copy): each blob must hash to its name."""
    from modelctl import ModelDownloadError, robust_model_download

    repo = tmp_path / "hf-cache" / "models--microsoft--deberta-v3-base"
    snapshot = repo / "snapshots" / deberta.commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(deberta.commit)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        blob = repo / "blobs" / deberta.etag(name)
        blob.write_bytes(deberta.files[name])
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    good = robust_model_download("microsoft/deberta-v3-base", model_type="tokenizer", allow_offline=True)
    assert good("hello world")["input_ids"] == [1, 2] and hub.requests == []  # hf's snapshot, checked
    blob = repo / "blobs" / deberta.etag("tokenizer.json")
    data = bytearray(blob.read_bytes())
    data[-2] ^= 1  # bit rot in hf's copy
    blob.write_bytes(bytes(data))
    with pytest.raises(ModelDownloadError, match=r"tokenizer\.json in the HF cache is damaged"):
        robust_model_download("microsoft/deberta-v3-base", model_type="tokenizer", allow_offline=True)
    assert hub.requests == []
