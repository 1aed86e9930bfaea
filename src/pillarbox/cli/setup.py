"""First-run set-up: config file, data directory, store, TLS certificate, first domain and account.

``initialise`` is what ``pillarbox init`` does; ``prepare_demo`` is the one-command demo of the
README (idempotent: the second run reuses what the first created, and prints the same password).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

from pillarbox import config as cfg
from pillarbox import provisioning
from pillarbox.errors import UserError
from pillarbox.net.tls import certificate_addresses, ensure_self_signed, tls_paths
from pillarbox.store.open import open_store, shown_url

DEMO_DOMAIN = "example.test"
DEMO_USER = "demo@example.test"
DEMO_PASSWORD_FILE = "demo-password.txt"


async def _create_store(
    config: cfg.Config,
    domain: str | None,
    user: str | None,
    password: str | None,
    admin: bool,
) -> list[str]:
    lines: list[str] = []
    store = open_store(config.store.url, config.data_dir, config.store)
    await store.open()
    try:
        if domain:
            name = provisioning.normalise_domain(domain)
            if await store.get_domain(name) is None:
                await provisioning.add_domain(store, name)
                lines.append(f"added domain {name}")
        if user and password is not None:
            user_domain = provisioning.account_key(user).rpartition("@")[2]
            if await store.get_domain(user_domain) is None:
                await provisioning.add_domain(store, user_domain)
                lines.append(f"added domain {user_domain}")
            account = await provisioning.add_account(store, config, user, password, is_admin=admin)
            lines.append(f"added account {account.address}" + (" (admin)" if admin else ""))
    finally:
        await store.close()
    return lines


def initialise(
    config_path: Path,
    *,
    data_dir: str,
    hostname: str | None,
    dev: bool,
    store_url: str | None,
    domain: str | None = None,
    user: str | None = None,
    password: str | None = None,
    admin: bool = True,
    force: bool = False,
) -> list[str]:
    """Create everything a server needs; returns what was done, line by line."""
    if config_path.exists() and not force:
        raise UserError(f"{config_path} exists already (use --force to overwrite)")
    name = hostname or "localhost"
    config = cfg.dev_config(data_dir, name) if dev else cfg.production_config(data_dir, name)
    if store_url:
        config = dataclasses.replace(config, store=cfg.StoreSection(url=store_url))
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(cfg.render_toml(config), encoding="utf-8")
    config = cfg.load(config_path)  # what serve will see, paths resolved against the file
    lines = [f"wrote {config_path}"]
    config.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.data_dir, 0o700)
    lines.append(f"data directory {config.data_dir}")
    cert, key = tls_paths(config)
    if ensure_self_signed(cert, key, config.server.hostname, certificate_addresses(config)):
        lines.append(f"self-signed certificate {cert}")
    lines += asyncio.run(_create_store(config, domain, user, password, admin))
    store = shown_url(config.store.url, config.data_dir)
    lines.append(f"store {store} ready; start with: pillarbox --config {config_path} serve")
    return lines


def prepare_demo(data_dir: Path) -> tuple[cfg.Config, list[str]]:
    """Create (once) a loopback config with a demo domain and account; return it and a banner."""
    from pillarbox.cli.main import generated_password

    config_path = data_dir / "pillarbox.toml"
    password_file = data_dir / DEMO_PASSWORD_FILE
    if not config_path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        password = generated_password()
        initialise(
            config_path,
            data_dir=".",
            hostname="localhost",
            dev=True,
            store_url=None,
            domain=DEMO_DOMAIN,
            user=DEMO_USER,
            password=password,
            admin=True,
        )
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
    config = cfg.load(config_path)
    password = password_file.read_text().strip() if password_file.exists() else "(unknown)"
    banner = [
        f"Pillarbox demo — data in {data_dir.resolve()}",
        f"  account   {DEMO_USER}",
        f"  password  {password}",
        f"  config    {config_path.resolve()}",
    ]
    return config, banner
