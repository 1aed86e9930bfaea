"""Pillarbox: a complete email system in one package.

The public surface is the CLI (``pillarbox``); the packages below are the parts it is built from:
protocol cores (``smtp``, ``imap``, ``pop3``) that do no I/O, the ``store`` they persist through,
and ``net``, the one package that touches sockets.
"""

__version__ = "0.1.0"
