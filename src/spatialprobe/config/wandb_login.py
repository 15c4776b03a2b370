"""Whether W&B could log in on this machine, read with the standard library (no wandb import, no network):
``logger.mode=online`` without credentials is answered in one line before anything runs."""

from __future__ import annotations

import configparser
import contextlib
import netrc
import os
from pathlib import Path
from urllib.parse import urlsplit

from spatialprobe.errors import ConfigError

LOGIN_HELP = ("run `wandb login` (or set WANDB_API_KEY) first, or log with logger.mode=offline "
              "and upload later with `wandb sync`")


def wandb_credentials() -> str | None:
    """Where W&B would find an API key for its server (WANDB_BASE_URL), or None: the places
    wandb.login looks, read with the standard library (no wandb import, no network)."""
    if os.environ.get("WANDB_API_KEY"):
        return "WANDB_API_KEY"
    if os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return "WANDB_IDENTITY_TOKEN_FILE"
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc
    paths = [Path(os.environ["NETRC"]).expanduser()] if os.environ.get("NETRC") else [
        Path("~/.netrc").expanduser(), Path("~/_netrc").expanduser()]
    for path in paths:
        try:
            if path.is_file() and netrc.netrc(path).authenticators(host):
                return str(path)
        except (netrc.NetrcParseError, OSError):
            continue
    settings = Path(os.environ.get("WANDB_CONFIG_DIR") or "~/.config/wandb").expanduser() / "settings"
    parser = configparser.ConfigParser()
    with contextlib.suppress(configparser.Error, OSError):
        parser.read(settings)
        if parser.get("default", "api_key", fallback=None):
            return str(settings)
    return None


def require_wandb_login(mode: str, key: str = "logger.mode") -> None:
    """Online mode needs credentials: without them, one line with the way out, before anything runs."""
    if mode == "online" and wandb_credentials() is None:
        host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc
        raise ConfigError(key, mode, f"no W&B credentials on this machine (no WANDB_API_KEY, no {host} entry "
                          f"in ~/.netrc); {LOGIN_HELP}")
