"""Blocking clients of other people's mail servers: IMAP sessions (through imapclient) and the
TLS settings and error translation every client conversation shares.

Library code, so that both ``pillarbox mail`` (the command-line client, :mod:`pillarbox.cli.mail`)
and ``pillarbox import imap`` (:mod:`pillarbox.transfer.imapsource`) use it without one
depending on the other's package. The SMTP submission and POP3 fetching halves stay with the
mail command, their only user.
"""
