"""The milter protocol's client side (Sendmail's mail filter API, version 6), sans-I/O.

An external filter — OpenDKIM, OpenDMARC, rspamd, clamav-milter, SpamAssassin's
spamass-milter — is consulted at each stage of an SMTP session as Postfix and Sendmail consult
it (docs/milter.md). :mod:`.protocol` is the wire format, :mod:`.session` the client's state
machine for one filter connection, :mod:`.edits` applies a filter's changes to a message;
:mod:`pillarbox.net.milter` connects them to sockets and to the SMTP session.
"""
