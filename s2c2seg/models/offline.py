"""Fail fast when real weights are not reachable: find them in the Hugging Face cache, or download, or raise.

Loading a missing checkpoint without network otherwise costs 20-200 s of retries inside huggingface_hub /
urllib. Every loader here first looks in the local cache; when the file is absent it raises at once in offline
mode (``HF_HUB_OFFLINE=1``) and otherwise probes the host with a short TCP connect before downloading. The
error names the model and the two fixes (network, or a populated cache / ``HF_HOME``).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["ModelUnavailableError", "HubProbe", "hub_offline", "host_reachable", "unavailable",
           "cached_hub_file", "resolve_hub_file", "resolve_url_file"]

_TRUE = {"1", "on", "yes", "true"}


class ModelUnavailableError(RuntimeError):
    """Real weights could not be loaded (no network and not in the cache). The message names the model id.

    ``problem`` is the message without its fixes (the command line shows it with the fixes it offers).
    """

    def __init__(self, message: str, problem: str | None = None) -> None:
        super().__init__(message)
        self.problem = message if problem is None else problem


@dataclass(frozen=True)
class HubProbe:
    """How long to wait for the network before declaring a model unavailable."""

    timeout_s: float = 3.0
    """TCP connect timeout of the reachability probe."""


def hub_offline() -> bool:
    """True when the environment asks huggingface_hub not to touch the network."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    return bool(constants.HF_HUB_OFFLINE) or env


def host_reachable(url: str, probe: HubProbe = HubProbe()) -> bool:
    """True when a TCP connection to the host of ``url`` opens within ``probe.timeout_s`` seconds."""
    parsed = urlparse(url)
    host = parsed.hostname
    if not host:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=probe.timeout_s):
            return True
    except OSError:
        return False


def unavailable(model_id: str, source: str, reason: str) -> ModelUnavailableError:
    """The error raised when weights are missing: names the model, where they come from, and the fixes."""
    problem = f"cannot load the real weights of {model_id!r} ({source}): {reason}"
    return ModelUnavailableError(
        f"{problem}. "
        "Fix: run once with network access so the weights are downloaded into the Hugging Face cache, or point "
        "HF_HOME (or HF_HUB_CACHE) at a cache that already holds them; with the cache populated, "
        "HF_HUB_OFFLINE=1 works. Tests and experiments without weights can build a random model from a config "
        "instead (config=...).", problem)


def cached_hub_file(repo_id: str, filenames: tuple[str, ...]) -> str | None:
    """Path of the first of ``filenames`` present in the local HF cache for ``repo_id``, else None."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        path = try_to_load_from_cache(repo_id, name)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def _ensure_online(model_id: str, source: str, url: str, probe: HubProbe) -> None:
    if hub_offline():
        raise unavailable(model_id, source, "not in the local cache and HF_HUB_OFFLINE is set")
    if not host_reachable(url, probe):
        raise unavailable(model_id, source, f"not in the local cache and {urlparse(url).hostname} is unreachable")


def resolve_hub_file(model_id: str, repo_id: str, filenames: tuple[str, ...],
                     probe: HubProbe = HubProbe()) -> str:
    """Local path of the first of ``filenames`` of ``repo_id``: from the cache, else downloaded, else raise fast."""
    from huggingface_hub import constants, hf_hub_download

    cached = cached_hub_file(repo_id, filenames)
    if cached is not None:
        return cached
    source = f"Hugging Face repo {repo_id}"
    _ensure_online(model_id, source, constants.ENDPOINT, probe)
    errors = []
    for name in filenames:
        try:
            return hf_hub_download(repo_id, name)
        except Exception as exc:  # the repo may hold only some of the alternative file names
            errors.append(f"{name}: {exc}")
    raise unavailable(model_id, source, "download failed (" + "; ".join(errors) + ")")


def resolve_url_file(model_id: str, url: str, cache_dir: str | Path, probe: HubProbe = HubProbe()) -> str | None:
    """Path of a URL-hosted checkpoint if already in ``cache_dir``; raise fast when it cannot be fetched.

    Returns None when the host is reachable (the caller's own downloader fetches it).
    """
    target = Path(cache_dir).expanduser() / os.path.basename(urlparse(url).path)
    if target.is_file():
        return str(target)
    _ensure_online(model_id, url, url, probe)
    return None
