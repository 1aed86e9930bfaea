"""``pillarbox mail``: the command-line mail client (see :mod:`pillarbox.cli.mail.commands`)."""

from pillarbox.cli.mail.commands import mail

__all__ = ["mail"]
