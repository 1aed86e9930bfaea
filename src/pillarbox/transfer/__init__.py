"""Moving mail in and out of the store: mbox and Maildir files, a remote IMAP account, backups.

Everything here writes through the :class:`~pillarbox.store.interface.Store` exactly as IMAP
APPEND does (the same line-ending normalisation, the parse-once metadata, the quota), so an
imported message is indistinguishable from one a client uploaded.
"""
