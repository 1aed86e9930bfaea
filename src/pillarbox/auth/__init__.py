"""Authentication for every protocol.

``sasl`` (mechanisms, no I/O), ``saslprep`` and ``scram`` (the string and key rules they share),
``passwords`` (argon2id hashes, SCRAM verifiers, strength), ``ratelimit`` (failure limits, no
I/O) and ``directory`` (the async :class:`~pillarbox.auth.directory.Authenticator` that checks
credentials against the store). The package imports none of them, so a protocol core importing
``pillarbox.auth.sasl`` pulls in no asyncio.
"""
